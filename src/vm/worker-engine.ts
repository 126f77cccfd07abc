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
import type { Engine, EngineEvents, EngineVm, VmStats } from '../host/engine.js';

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

const DEFAULT_LIMITS: ResourceLimits = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 8 };

export class WorkerEngine implements Engine {
  readonly name = 'builtin';
  readonly runtimeModule: string;
  constructor(private readonly options: WorkerEngineOptions = {}) {
    this.runtimeModule = options.runtimeModule ?? defaultRuntimeModule();
  }
  create(config: VmConfig, events: EngineEvents): EngineVm {
    return new WorkerVm(config, events, this.runtimeModule, this.options);
  }
}

type OkReply = Extract<WorkerMessage, { type: 'reply'; ok: true }>;

interface Pending {
  resolve(reply: OkReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

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

  constructor(
    private readonly config: VmConfig,
    private readonly events: EngineEvents,
    private readonly runtimeModule: string,
    private readonly options: WorkerEngineOptions,
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
    const init: WorkerInit = {
      config: this.config,
      runtimeModule: this.runtimeModule,
      consolePort: channel.port2,
      nice: this.options.nice ?? 10,
    };
    const worker = new Worker(workerEntry(), {
      eval: runningFromSource,
      workerData: init,
      transferList: [channel.port2],
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

  async stats(): Promise<VmStats> {
    const worker = this.worker;
    if (!worker) throw new WorkerRequestError('the VM is not running');
    let counters = this.lastCounters;
    try {
      counters = (await this.request({ id: 0, type: 'stats' }, 1_000)) ?? counters;
    } catch {
      // A busy or wedged worker keeps its last figures; CPU use below is measured from outside anyway.
    }
    this.lastCounters = counters;
    const now = performance.now();
    const elu = worker.performance.eventLoopUtilization();
    let cpuPercent = this.lastStats?.cpuPercent ?? 0;
    let ips = this.lastStats?.instructionsPerSecond ?? 0;
    const prev = this.lastSample;
    if (prev && now - prev.at >= 50) {
      const window = worker.performance.eventLoopUtilization(elu, prev.elu);
      cpuPercent = Math.round(window.utilization * 1000) / 10;
      ips = Math.max(0, Math.round(((counters.instret - prev.instret) * 1000) / (now - prev.at)));
    } else if (!prev) {
      cpuPercent = Math.round(elu.utilization * 1000) / 10;
    }
    if (!prev || now - prev.at >= 50) this.lastSample = { at: now, instret: counters.instret, elu };
    const stats: VmStats = {
      ...counters,
      cpuPercent,
      instructionsPerSecond: ips,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 100) / 10,
    };
    this.lastStats = stats;
    return stats;
  }

  private async simple(req: ControlRequest): Promise<void> {
    await this.request(req, this.options.requestTimeoutMs ?? 10_000);
  }

  private async request(req: ControlRequest, timeoutMs: number): Promise<RuntimeCounters | undefined> {
    return (await this.requestReply(req, timeoutMs)).counters;
  }

  private requestReply(req: ControlRequest, timeoutMs: number): Promise<OkReply> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new WorkerRequestError('the VM is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new WorkerRequestError(`the VM worker did not answer '${req.type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
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
      p.reject(new WorkerRequestError('the VM worker exited'));
      this.pending.delete(id);
    }
    if (!this.stopping) {
      this.events.exit({ kind: 'crash', message: errorText ?? `the VM worker exited with code ${code}` });
    }
  }
}
