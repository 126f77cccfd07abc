/**
 * The built-in engine: every VM runs in its own worker_thread (design.md §5). The host side here turns the
 * Engine interface into typed control requests, watches the worker for death, and measures the thread's CPU
 * use from outside (event-loop utilisation), which stays truthful even when the guest misbehaves.
 */
import { workerEntry, workerReady } from '../net/worker-ready.js';
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { extname } from 'node:path';
import type { VmConfig } from './config.js';
import type { EventLoopUtilization } from 'node:perf_hooks';
import type { RuntimeCounters, StateFileInfo, WorkerInit } from './protocol.js';
import type { Engine, EngineEvents, EngineResources, EngineVm } from '../host/engine.js';
import { VmCpuMeter } from '../host/cpu/accounting.js';
import { createCountersBuffer, readCounters } from './shared-counters.js';
import { HostedVm, VmRequestError, type BusyWindow } from './hosted-vm.js';
import { WarmPool, type WarmPoolStats } from '../host/worker-pool.js';
import type { PooledWorkerData, PoolMessage } from './worker-adopt.js';

const moduleExt = extname(fileURLToPath(import.meta.url));
/** The VM worker's entry (worker.js; under tsx a bootstrap, see workerEntry). */
const vmWorker = (): { entry: URL | string; eval: boolean } => workerEntry('worker', import.meta.url);

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
  /**
   * Workers kept started ahead of need (modules loaded, no VM), so a start or restore skips the thread start and
   * module loading (src/host/worker-pool.ts). Default 0 (off); the daemon turns it on.
   */
  warmWorkers?: number;
  /** No warm worker is started while free host memory is below this. */
  warmMinFreeBytes?: number;
  log?: (line: string) => void;
}

const WARM_REFILL_DELAY_MS = 2_000;
/**
 * The young generation is both semi-spaces, and an idle worker keeps what it once grew to resident: at 32 MiB
 * (Node's default) it was the largest part of an idle VM after its RAM. 4 MiB cost no measurable boot time
 * (docs/performance.md, memory): a boot allocates much, but little of it survives a scavenge.
 */
export const VM_WORKER_LIMITS: ResourceLimits = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 4, stackSizeMb: 8 };

export class WorkerEngine implements Engine {
  readonly name = 'builtin';
  readonly runtimeModule: string;
  readonly pool: WarmPool<Worker> | undefined;
  constructor(private readonly options: WorkerEngineOptions = {}) {
    this.runtimeModule = options.runtimeModule ?? defaultRuntimeModule();
    const size = options.warmWorkers ?? 0;
    if (size > 0) {
      this.pool = new WarmPool<Worker>({
        size,
        start: () => startPooledWorker(this.runtimeModule, options.resourceLimits ?? VM_WORKER_LIMITS),
        dispose: (w) => w.terminate().then(() => undefined),
        died: (w) => new Promise((resolve) => w.once('exit', resolve)),
        minFreeBytes: options.warmMinFreeBytes,
        // A new worker's start and warm-up take a core for a few hundred ms: not while the VM that just took one
        // restores or boots and answers its first commands.
        refillDelayMs: WARM_REFILL_DELAY_MS,
        log: options.log,
      });
      this.pool.fill();
    }
  }
  create(config: VmConfig, events: EngineEvents, resources: EngineResources = {}): EngineVm {
    return new WorkerVm(config, events, this.runtimeModule, this.options, resources, this.pool);
  }
  close(): Promise<void> {
    return this.pool?.close() ?? Promise.resolve();
  }
  poolStats(): WarmPoolStats | undefined {
    return this.pool?.stats();
  }
}

/**
 * A worker with the runtime module loaded and no VM, for the warm pool; resolves once it says `pool-ready`.
 * Idle, it does not keep the daemon alive (unref); WorkerVm refs it when it adopts it.
 */
function startPooledWorker(runtimeModule: string, resourceLimits: ResourceLimits): Promise<Worker> {
  const { entry, eval: evalEntry } = vmWorker();
  const worker = new Worker(entry, {
    eval: evalEntry,
    workerData: { pooled: true, runtimeModule } satisfies PooledWorkerData,
    resourceLimits,
    name: 'vm:warm',
    stdout: false,
    stderr: false,
  });
  worker.unref();
  return workerReady<PoolMessage>(
    worker,
    (msg) => msg.type === 'pool-ready',
    (code) => new Error(`a warm VM worker exited with code ${code} before it was ready`),
  );
}

/** A worker-thread VM: the worker's own port carries control messages, a MessagePort the console. */
class WorkerVm extends HostedVm {
  protected readonly peer = 'the VM worker';
  private worker: Worker | undefined;
  private consolePort: MessagePort | undefined;
  /** Published by the worker (shared-counters.ts); read without a round trip. */
  private countersBuffer = createCountersBuffer();
  private elu: EventLoopUtilization | undefined;
  private eluMark: EventLoopUtilization | undefined;

  constructor(
    config: VmConfig,
    events: EngineEvents,
    private readonly runtimeModule: string,
    private readonly options: WorkerEngineOptions,
    private readonly resources: EngineResources,
    private readonly pool?: WarmPool<Worker>,
  ) {
    super(config, events, options.requestTimeoutMs ?? 10_000);
  }

  async start(): Promise<void> {
    this.spawn();
    // Booting loads the machine module and guest images, which may take a while the first time.
    await this.request({ id: 0, type: 'start' }, 60_000);
  }

  async restore(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    const t0 = performance.now();
    this.spawn();
    const reply = await this.request({ id: 0, type: 'start', restore: { path, lazyRam: opts.lazyRam } }, 120_000);
    if (!reply.state) throw new VmRequestError('the VM worker did not report the restored state');
    const ms = performance.now() - t0;
    // What the worker did not account for: starting the thread and loading its modules, and the messages.
    return { ...reply.state, ms, phases: { workerStartup: ms - reply.state.ms, ...reply.state.phases } };
  }

  private spawn(): void {
    if (this.worker) throw new VmRequestError('the VM worker already exists');
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
    const transferList = [channel.port2, ...(this.resources.nicPorts ?? [])];
    let worker = this.pool?.take();
    if (worker) {
      worker.ref();
      worker.postMessage({ type: 'adopt', init } satisfies PoolMessage, transferList);
    } else {
      const { entry, eval: evalEntry } = vmWorker();
      worker = new Worker(entry, {
        eval: evalEntry,
        workerData: init,
        transferList,
        resourceLimits: this.options.resourceLimits ?? VM_WORKER_LIMITS,
        name: `vm:${this.config.name}`,
        stdout: false,
        stderr: false,
      });
    }
    this.worker = worker;
    this.consolePort = channel.port1;
    channel.port1.on('message', (bytes: Uint8Array) => this.events.console(bytes));
    worker.on('message', (msg: Record<string, unknown>) => this.receive(msg));
    let errorText: string | undefined;
    worker.on('error', (err) => {
      errorText = err instanceof Error ? err.message : String(err);
    });
    worker.on('exit', (code) => this.onExit(worker, code, errorText));
    this.connected({ post: (msg) => worker.postMessage(msg) });
    this.guestStarted(Date.now());
    this.eluMark = undefined;
    this.cpuMeter = new VmCpuMeter();
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

  protected publishedCounters(): RuntimeCounters | undefined {
    return readCounters(
      new Float64Array(this.countersBuffer),
      (this.config.nics ?? []).map((n) => n.mac),
    );
  }

  /** The worker's event-loop utilisation, measured from outside: truthful even when the guest misbehaves. */
  protected override busyPercent(window: BusyWindow): number | undefined {
    const worker = this.worker;
    if (!worker) return undefined;
    this.elu = worker.performance.eventLoopUtilization();
    if (window === 'keep') return undefined;
    const u =
      window === 'since-last' && this.eluMark
        ? worker.performance.eventLoopUtilization(this.elu, this.eluMark).utilization
        : this.elu.utilization;
    return Math.round(u * 1000) / 10;
  }

  protected override markBusy(): void {
    this.eluMark = this.elu;
  }

  private onExit(worker: Worker, code: number, errorText: string | undefined): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.consolePort = undefined;
    this.transportGone(
      'the VM worker exited',
      this.stopping ? undefined : (errorText ?? `the VM worker exited with code ${code}`),
    );
  }
}
