/**
 * The built-in engine: every VM runs in its own worker_thread (design.md §5). The host side here turns the
 * Engine interface into typed control requests, watches the worker for death, and measures the thread's CPU
 * use from outside (event-loop utilisation), which stays truthful even when the guest misbehaves.
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { extname } from 'node:path';
import type { VmConfig } from './config.js';
import type { ControlRequest, RuntimeCounters, StateFileInfo, WorkerInit, WorkerMessage } from './protocol.js';
import { zeroCounters } from './runtime.js';
import type { Engine, EngineEvents, EngineResources, EngineVm, VmStats } from '../host/engine.js';
import type { NicRateLimit } from './config.js';
import { VmCpuMeter } from '../host/cpu/accounting.js';
import { createCountersBuffer, readCounters } from './shared-counters.js';
import { AgentError, type ExecRequest, type ExecResult } from './agent-client.js';

const moduleExt = extname(fileURLToPath(import.meta.url));
/** Under tsx (tests and development from source) the worker needs the tsx loader too. */
const runningFromSource = moduleExt === '.ts';

/**
 * The worker's entry. From dist it is worker.js. Under tsx, Node 20 does not apply `--import tsx` from a
 * worker's execArgv to the entry module, so a tiny bootstrap registers tsx's loader and then imports worker.ts.
 */
function workerEntry(): URL | string {
  const script = new URL(`./worker${moduleExt}`, import.meta.url);
  if (!runningFromSource) return script;
  const api = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(script.href)}); })`;
}

export function defaultRuntimeModule(): string {
  return fileURLToPath(new URL(`./machine-runtime${moduleExt}`, import.meta.url));
}

export interface WorkerEngineOptions {
  /** Module exporting createRuntime; defaults to the machine in src/machine (machine-runtime.ts). */
  runtimeModule?: string;
  /** V8 heap limits per VM worker. Guest RAM lives in ArrayBuffers outside these limits. */
  resourceLimits?: ResourceLimits;
  /** Niceness of VM threads (default 10: below the daemon's thread). */
  nice?: number;
  /** How long a control request may take before the worker is considered wedged. */
  requestTimeoutMs?: number;
}

/** Default wait for a worker's counters (see refreshCounters). */
const STATS_TIMEOUT_MS = 250;
const STATS_GIVE_UP_MS = 5000;
const DEFAULT_LIMITS: ResourceLimits = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 8 };

export class WorkerEngine implements Engine {
  readonly name = 'builtin';
  readonly runtimeModule: string;
  constructor(private readonly options: WorkerEngineOptions = {}) {
    this.runtimeModule = options.runtimeModule ?? defaultRuntimeModule();
  }
  create(config: VmConfig, events: EngineEvents, resources: EngineResources = {}): EngineVm {
    return new WorkerVm(config, events, this.runtimeModule, this.options, resources);
  }
}

type OkReply = Extract<WorkerMessage, { type: 'reply'; ok: true }>;

interface Pending {
  type: ControlRequest['type'];
  resolve(reply: OkReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** How much longer than an exec's own timeout the host waits for the worker's answer. */
const EXEC_REPLY_GRACE_MS = 10_000;

export class WorkerRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerRequestError';
  }
}

class WorkerVm implements EngineVm {
  private worker: Worker | undefined;
  private consolePort: MessagePort | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Set once the host itself ended the worker, so its exit is not reported as a crash. */
  private stopping = false;
  private startedAt = 0;
  private lastCounters: RuntimeCounters = zeroCounters();
  private lastSample: { at: number; instret: number; elu: ReturnType<Worker['performance']['eventLoopUtilization']> } | undefined;
  private lastStats: VmStats | undefined;
  private tids: number[] = [];
  private statsInFlight: Promise<boolean> | undefined;
  /** Published by the worker (shared-counters.ts); read without a round trip. */
  private countersBuffer = createCountersBuffer();
  private cpuMeter = new VmCpuMeter();

  constructor(
    private readonly config: VmConfig,
    private readonly events: EngineEvents,
    private readonly runtimeModule: string,
    private readonly options: WorkerEngineOptions,
    private readonly resources: EngineResources,
  ) {}

  async start(): Promise<void> {
    this.spawn();
    // Booting loads the machine module and guest images, which may take a while the first time.
    await this.request({ id: 0, type: 'start' }, 60_000);
  }

  async restore(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    this.spawn();
    const reply = await this.requestReply({ id: 0, type: 'start', restore: { path, lazyRam: opts.lazyRam } }, 120_000);
    if (!reply.state) throw new WorkerRequestError('the VM worker did not report the restored state');
    return reply.state;
  }

  async saveState(path: string): Promise<StateFileInfo> {
    const reply = await this.requestReply({ id: 0, type: 'save-state', path }, 600_000);
    if (!reply.state) throw new WorkerRequestError('the VM worker did not report the saved state');
    return reply.state;
  }

  releaseGuest(): Promise<void> {
    return this.request({ id: 0, type: 'release-guest' }, 60_000).then(() => undefined);
  }

  async restoreInPlace(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    const reply = await this.requestReply({ id: 0, type: 'restore-state', path, lazyRam: opts.lazyRam }, 120_000);
    if (!reply.state) throw new WorkerRequestError('the VM worker did not report the restored state');
    this.startedAt = Date.now();
    this.lastSample = undefined;
    return reply.state;
  }

  sendAgentRequest(line: string): Promise<void> {
    return this.simple({ id: 0, type: 'agent', line });
  }

  switchDisks(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void> {
    return this.request({ id: 0, type: 'switch-disks', paths, phase }, 60_000).then(() => undefined);
  }

  private spawn(): void {
    if (this.worker) throw new WorkerRequestError('the VM worker already exists');
    this.stopping = false;
    const channel = new MessageChannel();
    // A fresh buffer per worker: nothing of an earlier run is read as this one's counters.
    this.countersBuffer = createCountersBuffer();
    const init: WorkerInit = {
      config: this.config,
      runtimeModule: this.runtimeModule,
      consolePort: channel.port2,
      nicPorts: this.resources.nicPorts ?? [],
      nice: this.options.nice ?? 10,
      counters: this.countersBuffer,
    };
    const worker = new Worker(workerEntry(), {
      eval: runningFromSource,
      workerData: init,
      transferList: [channel.port2, ...(this.resources.nicPorts ?? [])],
      resourceLimits: this.options.resourceLimits ?? DEFAULT_LIMITS,
      name: `vm:${this.config.name}`,
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    this.consolePort = channel.port1;
    channel.port1.on('message', (bytes: Uint8Array) => this.events.console(bytes));
    worker.on('message', (msg: WorkerMessage) => this.onMessage(msg));
    let errorText: string | undefined;
    worker.on('error', (err) => {
      errorText = err instanceof Error ? err.message : String(err);
    });
    worker.on('exit', (code) => this.onExit(worker, code, errorText));
    this.startedAt = Date.now();
    this.lastSample = undefined;
    this.lastStats = undefined;
    this.tids = [];
    this.cpuMeter = new VmCpuMeter();
  }

  pause(): Promise<void> {
    return this.simple({ id: 0, type: 'pause' });
  }
  resume(): Promise<void> {
    return this.simple({ id: 0, type: 'resume' });
  }
  requestShutdown(): Promise<void> {
    return this.simple({ id: 0, type: 'shutdown' });
  }
  async reboot(): Promise<void> {
    this.lastSample = undefined;
    await this.request({ id: 0, type: 'reboot' }, 60_000);
    this.startedAt = Date.now();
  }
  setBalloonTarget(bytes: number): Promise<void> {
    return this.simple({ id: 0, type: 'balloon', targetBytes: bytes });
  }
  threadIds(): number[] {
    return [...this.tids];
  }
  setRunLoopCap(percent: number | null): Promise<void> {
    return this.simple({ id: 0, type: 'cpu-cap', percent });
  }
  setNicRate(nic: number, rx: NicRateLimit | null, tx: NicRateLimit | null): Promise<void> {
    return this.simple({ id: 0, type: 'nic-rate', nic, rx, tx });
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.stopping = true;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    try {
      // Let the runtime flush and close its disks; a wedged worker is terminated instead.
      await this.request({ id: 0, type: 'stop' }, 3_000);
    } catch {
      /* terminated below */
    }
    await worker.terminate();
    await exited;
  }

  consoleInput(bytes: Uint8Array): void {
    this.consolePort?.postMessage(bytes);
  }

  async stats(waitMs = STATS_TIMEOUT_MS): Promise<VmStats> {
    const worker = this.worker;
    if (!worker) throw new WorkerRequestError('the VM is not running');
    // Published counters need no waiting; before the first publication (booting) ask the worker.
    const published = readCounters(
      new Float64Array(this.countersBuffer),
      (this.config.nics ?? []).map((n) => n.mac),
    );
    if (published) this.lastCounters = published;
    const fresh = published ? true : await this.refreshCounters(waitMs);
    const counters = this.lastCounters;
    const now = performance.now();
    const elu = worker.performance.eventLoopUtilization();
    let cpuPercent = this.lastStats?.cpuPercent ?? 0;
    let ips = this.lastStats?.instructionsPerSecond ?? 0;
    const prev = this.lastSample;
    if (prev && fresh && now - prev.at >= 50) {
      const window = worker.performance.eventLoopUtilization(elu, prev.elu);
      cpuPercent = Math.round(window.utilization * 1000) / 10;
      ips = Math.max(0, Math.round(((counters.instret - prev.instret) * 1000) / (now - prev.at)));
    } else if (!prev) {
      cpuPercent = Math.round(elu.utilization * 1000) / 10;
    }
    if (fresh && (!prev || now - prev.at >= 50)) this.lastSample = { at: now, instret: counters.instret, elu };
    // The kernel's account of the thread is the truth; event-loop utilisation only where threads are not visible.
    const cpu = this.tids.length ? this.cpuMeter.sample(this.tids, now) : undefined;
    const stats: VmStats = {
      ...counters,
      cpuPercent: cpu ? cpu.cpuPercent : cpuPercent,
      stealPercent: cpu?.stealPercent ?? 0,
      cpuTimeSeconds: cpu?.cpuTimeSeconds ?? 0,
      stealSeconds: cpu?.stealSeconds ?? 0,
      instructionsPerSecond: ips,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 100) / 10,
    };
    this.lastStats = stats;
    return stats;
  }

  async exec(req: ExecRequest): Promise<ExecResult> {
    const reply = await this.request({ id: 0, type: 'exec', ...req }, req.timeoutMs + EXEC_REPLY_GRACE_MS);
    if (!reply.exec) throw new WorkerRequestError('the VM worker answered an exec without a result');
    return reply.exec;
  }

  /**
   * Asks the worker for its counters and waits at most `waitMs` for them: a worker held back by its weight,
   * its cap or a loaded host must not hold up the API. One request is in flight at a time (concurrent reads
   * share it) and a late answer still lands in lastCounters for the next read; a wedged worker's request
   * times out after STATS_GIVE_UP_MS. True when fresh counters arrived in time.
   */
  private async refreshCounters(waitMs: number): Promise<boolean> {
    this.statsInFlight ??= this.request({ id: 0, type: 'stats' }, STATS_GIVE_UP_MS)
      .then(
        (r) => {
          if (r.counters) this.lastCounters = r.counters;
          return true;
        },
        () => false, // a busy or wedged worker keeps its last figures; CPU use is measured from outside anyway
      )
      .finally(() => (this.statsInFlight = undefined));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
    try {
      return await Promise.race([this.statsInFlight, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async simple(req: ControlRequest): Promise<void> {
    await this.request(req, this.options.requestTimeoutMs ?? 10_000);
  }

  private requestReply(req: ControlRequest, timeoutMs: number): Promise<OkReply> {
    return this.request(req, timeoutMs);
  }

  private request(req: ControlRequest, timeoutMs: number): Promise<OkReply> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new WorkerRequestError('the VM is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new WorkerRequestError(`the VM worker did not answer '${req.type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { type: req.type, resolve, reject, timer });
      worker.postMessage({ ...req, id });
    });
  }

  private onMessage(msg: WorkerMessage): void {
    switch (msg.type) {
      case 'reply': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg);
        else if (msg.agentFailure) p.reject(new AgentError(msg.agentFailure, msg.error, msg.agentReason));
        else p.reject(new WorkerRequestError(msg.error));
        return;
      }
      case 'poweroff':
        this.stopping = true;
        this.events.exit({ kind: 'poweroff' });
        return;
      case 'fault':
        this.stopping = true;
        this.events.exit({ kind: 'crash', message: msg.message });
        return;
      case 'threads':
        this.tids = msg.tids.filter((t) => Number.isInteger(t) && t > 0);
        this.events.threads?.(this.tids);
        return;
      case 'guest-reboot':
        this.startedAt = Date.now();
        this.lastSample = undefined;
        this.events.guestReboot();
        return;
      default: {
        const never: never = msg;
        void never;
      }
    }
  }

  private onExit(worker: Worker, code: number, errorText: string | undefined): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.consolePort = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(
        p.type === 'exec'
          ? new AgentError('gone', 'the VM ended while the command ran')
          : new WorkerRequestError('the VM worker exited'),
      );
      this.pending.delete(id);
    }
    if (!this.stopping) {
      this.events.exit({ kind: 'crash', message: errorText ?? `the VM worker exited with code ${code}` });
    }
  }
}
