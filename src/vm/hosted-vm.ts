/**
 * The daemon's side of one hosted VM, whatever carries its messages: a worker thread's port (worker-engine.ts) or
 * a VM process's socket (process-engine.ts). Both speak protocol.ts to the same VM host (vm-host.ts), so the
 * request table, timeouts, reply routing, the simple control calls and stats sampling live here once; an engine
 * only brings up its transport, feeds its messages to `receive` and reports its end through `transportGone`.
 */
import type { NicRateLimit, VmConfig } from './config.js';
import type { ControlRequest, RuntimeCounters, StateFileInfo, WorkerMessage } from './protocol.js';
import { zeroCounters } from './runtime.js';
import type { EngineEvents, EngineVm, VmStats } from '../host/engine.js';
import { VmCpuMeter } from '../host/cpu/accounting.js';
import { AgentError, type ExecRequest, type ExecResult } from './agent-client.js';

/** How control messages reach the VM: a worker's postMessage or a VM process's channel. */
export interface ControlTransport {
  post(msg: { type: string; id: number }): void;
}

export type OkReply = Extract<WorkerMessage, { type: 'reply'; ok: true }>;

/** Default wait for a VM's counters (see refreshCounters). */
const STATS_TIMEOUT_MS = 250;
const STATS_GIVE_UP_MS = 5000;
/** How much longer than an exec's own timeout the host waits for the VM's answer. */
const EXEC_REPLY_GRACE_MS = 10_000;
/** Shortest window over which rates (instructions per second, busy time) are computed. */
const MIN_SAMPLE_MS = 50;

/** A request the VM did not answer, answered with an error, or that could not be sent. */
export class VmRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmRequestError';
  }
}

interface Pending {
  type: string;
  resolve(reply: Record<string, unknown>): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** Which busy-time figure a stats sample wants from an engine that measures its VM's wall-clock busy time. */
export type BusyWindow = 'since-last' | 'since-start' | 'keep';

export abstract class HostedVm implements EngineVm {
  /** How messages name the other side: 'the VM worker', 'the VM process'. */
  protected abstract readonly peer: string;
  protected transport: ControlTransport | undefined;
  /** Set once the host itself ended or let go of the VM, so its end is not reported as a crash. */
  protected stopping = false;
  /** Set once the VM's end was reported (poweroff, fault or crash). */
  protected ended = false;
  /** When the guest last booted, restored or rebooted: the start of its uptime. */
  protected bootedAt = Date.now();
  protected tids: number[] = [];
  protected cpuMeter = new VmCpuMeter();
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private lastCounters: RuntimeCounters = zeroCounters();
  private lastSample: { at: number; instret: number } | undefined;
  private lastStats: VmStats | undefined;
  private statsInFlight: Promise<boolean> | undefined;

  constructor(
    protected readonly config: VmConfig,
    protected readonly events: EngineEvents,
    private readonly requestTimeoutMs: number,
  ) {}

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
  abstract consoleInput(bytes: Uint8Array): void;
  /** Counters the VM published without being asked (shared memory, pushed records); undefined before the first. */
  protected abstract publishedCounters(): RuntimeCounters | undefined;
  /** The VM ended on its own (poweroff, fault): what the engine does besides reporting it. */
  protected onEnded(): void {}
  /**
   * Wall-clock busy percent for engines that can measure it, used where the VM's threads are not visible to the
   * kernel's accounting; undefined keeps the last figure.
   */
  protected busyPercent(_window: BusyWindow): number | undefined {
    return 0;
  }
  /** A stats sample was taken: the engine's busy-time mark moves to now. */
  protected markBusy(): void {}

  // ---- control calls --------------------------------------------------------------------------------------------

  async saveState(path: string): Promise<StateFileInfo> {
    const reply = await this.request({ id: 0, type: 'save-state', path }, 600_000);
    if (!reply.state) throw new VmRequestError(`${this.peer} did not report the saved state`);
    return reply.state;
  }
  async releaseGuest(): Promise<void> {
    await this.request({ id: 0, type: 'release-guest' }, 60_000);
  }
  async restoreInPlace(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    const reply = await this.request({ id: 0, type: 'restore-state', path, lazyRam: opts.lazyRam }, 120_000);
    if (!reply.state) throw new VmRequestError(`${this.peer} did not report the restored state`);
    this.guestStarted(Date.now());
    return reply.state;
  }
  sendAgentRequest(line: string): Promise<void> {
    return this.simple({ id: 0, type: 'agent', line });
  }
  async switchDisks(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void> {
    await this.request({ id: 0, type: 'switch-disks', paths, phase }, 60_000);
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
    this.bootedAt = Date.now();
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
  setVcpusOnline(count: number | null): Promise<void> {
    return this.simple({ id: 0, type: 'vcpus-online', count });
  }
  async exec(req: ExecRequest): Promise<ExecResult> {
    const reply = await this.request({ id: 0, type: 'exec', ...req }, req.timeoutMs + EXEC_REPLY_GRACE_MS);
    if (!reply.exec) throw new VmRequestError(`${this.peer} answered an exec without a result`);
    return reply.exec;
  }

  // ---- stats ----------------------------------------------------------------------------------------------------

  async stats(waitMs = STATS_TIMEOUT_MS): Promise<VmStats> {
    if (!this.transport) throw new VmRequestError('the VM is not running');
    // Published counters need no waiting; before the first publication (booting) ask the VM.
    const published = this.publishedCounters();
    if (published) this.lastCounters = published;
    const fresh = published ? true : await this.refreshCounters(waitMs);
    const counters = this.lastCounters;
    const now = performance.now();
    let ips = this.lastStats?.instructionsPerSecond ?? 0;
    const prev = this.lastSample;
    const windowed = prev !== undefined && fresh && now - prev.at >= MIN_SAMPLE_MS;
    if (windowed) ips = Math.max(0, Math.round(((counters.instret - prev.instret) * 1000) / (now - prev.at)));
    const busy = this.busyPercent(windowed ? 'since-last' : prev ? 'keep' : 'since-start');
    if (fresh && (!prev || windowed)) {
      this.lastSample = { at: now, instret: counters.instret };
      this.markBusy();
    }
    // The kernel's account of the VM's threads is the truth; busy time only where threads are not visible.
    const cpu = this.tids.length ? this.cpuMeter.sample(this.tids, now) : undefined;
    const stats: VmStats = {
      ...counters,
      cpuPercent: cpu ? cpu.cpuPercent : (busy ?? this.lastStats?.cpuPercent ?? 0),
      stealPercent: cpu?.stealPercent ?? 0,
      cpuTimeSeconds: cpu?.cpuTimeSeconds ?? 0,
      stealSeconds: cpu?.stealSeconds ?? 0,
      instructionsPerSecond: ips,
      uptimeSeconds: Math.round((Date.now() - this.bootedAt) / 100) / 10,
    };
    this.lastStats = stats;
    return stats;
  }

  /**
   * Asks the VM for its counters and waits at most `waitMs` for them: a VM held back by its weight, its cap or a
   * loaded host must not hold up the API. One request is in flight at a time (concurrent reads share it) and a
   * late answer still lands in lastCounters for the next read; a wedged VM's request times out after
   * STATS_GIVE_UP_MS. True when fresh counters arrived in time.
   */
  private async refreshCounters(waitMs: number): Promise<boolean> {
    this.statsInFlight ??= this.request({ id: 0, type: 'stats' }, STATS_GIVE_UP_MS)
      .then(
        (r) => {
          if (r.counters) this.lastCounters = r.counters;
          return true;
        },
        () => false, // a busy or wedged VM keeps its last figures; CPU use is measured from outside anyway
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

  // ---- requests and messages ------------------------------------------------------------------------------------

  /** A (new) guest started at `bootedAt`: uptime counts from there and the next rate window starts afresh. */
  protected guestStarted(bootedAt: number): void {
    this.bootedAt = bootedAt;
    this.lastSample = undefined;
  }

  /** A new transport (a spawned worker, an attached process): figures of an earlier one are not carried over. */
  protected connected(transport: ControlTransport): void {
    this.transport = transport;
    this.stopping = false;
    this.lastSample = undefined;
    this.lastStats = undefined;
    this.tids = [];
  }

  protected async simple(req: ControlRequest): Promise<void> {
    await this.request(req, this.requestTimeoutMs);
  }

  protected async request(req: ControlRequest, timeoutMs: number): Promise<OkReply> {
    return (await this.send(req, timeoutMs)) as unknown as OkReply;
  }

  /**
   * Sends any control message with an id and resolves with its reply (a `reply` or, in process mode, `hello`).
   * `via`: a transport not yet open to every request (a VM process's channel before its hello is answered).
   */
  protected send<R extends { type: string; id: number }>(
    req: R,
    timeoutMs: number,
    via: ControlTransport | undefined = this.transport,
  ): Promise<Record<string, unknown>> {
    const transport = via;
    if (!transport) return Promise.reject(new VmRequestError('the VM is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VmRequestError(`${this.peer} did not answer '${req.type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { type: req.type, resolve, reject, timer });
      transport.post({ ...req, id });
    });
  }

  /** The transport is gone: requests in flight fail (`message`), and an end the host did not ask for is a crash. */
  protected transportGone(message: string, crash?: string): void {
    this.transport = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(p.type === 'exec' ? new AgentError('gone', 'the VM ended while the command ran') : new VmRequestError(message));
      this.pending.delete(id);
    }
    if (crash !== undefined) this.events.exit({ kind: 'crash', message: crash });
  }

  /** Messages from the VM: replies (and a process's hello reply) and events. Malformed ones are ignored. */
  protected receive(msg: Record<string, unknown>): void {
    const m = msg as unknown as WorkerMessage | { type: 'hello'; id: number };
    switch (m.type) {
      case 'hello':
      case 'reply': {
        const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined;
        if (!p) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.type === 'hello' || m.ok) p.resolve(msg);
        else if (m.agentFailure) p.reject(new AgentError(m.agentFailure, String(m.error), m.agentReason));
        else p.reject(new VmRequestError(String(m.error)));
        return;
      }
      case 'poweroff':
        this.end({ kind: 'poweroff' });
        return;
      case 'fault':
        this.end({ kind: 'crash', message: String(m.message) });
        return;
      case 'threads':
        if (!Array.isArray(m.tids)) return;
        this.setThreads(m.tids);
        return;
      case 'guest-reboot':
        this.guestStarted(Date.now());
        this.events.guestReboot();
        return;
      default:
        /* unknown messages from a newer or confused VM are ignored */
        return;
    }
  }

  protected setThreads(tids: unknown[]): void {
    this.tids = tids.filter((t): t is number => Number.isInteger(t) && (t as number) > 0);
    this.events.threads?.(this.tids);
  }

  private end(exit: { kind: 'poweroff' } | { kind: 'crash'; message: string }): void {
    if (this.ended) return;
    this.ended = true;
    this.stopping = true;
    this.onEnded();
    this.events.exit(exit);
  }
}
