/**
 * Hosting one VM: the guest runtime (CPU loop, devices, backends) driven by typed control requests
 * (protocol.ts). Both ways of running a VM use it: a worker thread of the daemon (worker.ts, MessagePorts) and a
 * process of its own (vm-process.ts, a unix socket). They differ only in how messages travel (`VmHostOutput`).
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { ControlRequest, RuntimeCounters, WorkerMessage } from './protocol.js';
import type { VmConfig } from './config.js';
import type { PreopenedFiles } from './preopened-files.js';
import type { CreateRuntime, GuestRuntime, RuntimeHooks, RuntimeResources } from './runtime.js';
import type { NicLink } from './nic-link.js';
import { CpuPacer } from './cpu-pacer.js';
import { AgentError } from './agent-client.js';
import { runtimeModuleUrl } from './worker-adopt.js';

/** Where a hosted VM's messages go. */
export interface VmHostOutput {
  /** Replies and events for the host. */
  post(msg: WorkerMessage): void;
  /** Guest console output; a copy the receiver may keep. */
  console(bytes: Uint8Array): void;
  /** The VM is over (the guest powered off or faulted, or the host stopped it): release the channel. */
  ended(): void;
}

export interface VmHostInit {
  config: VmConfig;
  /** Module exporting `createRuntime` (see runtime.ts); absolute path or file URL. */
  runtimeModule: string;
  /** One per NIC in config order; they outlive each runtime (a reboot in place builds a new one over them). */
  nicLinks: NicLink[];
  /** Files opened before the VM process dropped its privileges (vm-process.ts). */
  preopened?: PreopenedFiles;
}

/** What the hosted VM is doing, for a host that (re)attaches. */
export type VmHostPhase = 'idle' | 'running' | 'paused' | 'released' | 'ended';

export interface VmHostStatus {
  phase: VmHostPhase;
  /** A snapshot operation closed the disks ('switch-disks detach') and has not opened them again. */
  disksDetached: boolean;
  /** When the guest last booted, restored or rebooted (ms since the epoch): the start of its uptime. */
  bootedAt: number;
}

/** This thread's Linux thread id (undefined where /proc/thread-self does not exist). */
export function ownThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined; // not Linux
  }
}

/**
 * Guest threads run at a lower scheduling priority than the daemon's thread, so the control plane (API, other
 * VMs' control messages) stays responsive when guests saturate the host's cores. On Linux setpriority() takes a
 * thread id and affects only that thread.
 */
export function lowerThreadPriority(tid: number | undefined, nice: number | undefined): void {
  if (tid === undefined || nice === undefined) return;
  try {
    setPriority(tid, nice);
  } catch {
    /* not permitted: run at the default priority */
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class VmHost {
  /** The run-loop cap, kept across guest reboots (a new runtime gets the same pacer). */
  private pacer: CpuPacer | null = null;
  /** Harts a boot brings up, kept across reboots: the config's, then live hot-plug. */
  private vcpusOnline: number | undefined;
  private readonly resources: RuntimeResources;
  private runtime: GuestRuntime | undefined;
  private createRuntime: CreateRuntime | undefined;
  private ending = false;
  private phase: VmHostPhase = 'idle';
  private disksDetached = false;
  private bootedAt = Date.now();
  // Requests are handled one at a time in arrival order, so a pause never overtakes the start before it. Execs
  // run alongside: they wait on the guest, and a stop must be able to end them.
  private queue: Promise<void> = Promise.resolve();
  /** The start this process began on its own (startEarly), until the host's own start takes its outcome. */
  private early: { req: Extract<ControlRequest, { type: 'start' }>; reply: Promise<WorkerMessage> } | undefined;
  private readonly hooks: RuntimeHooks;
  /** The Linux thread of each hart that runs on a thread of its own, reported with this thread's to the host. */
  private readonly vcpuTids = new Map<number, number>();

  constructor(
    private readonly init: VmHostInit,
    private readonly out: VmHostOutput,
  ) {
    this.resources = { nicLinks: init.nicLinks, preopened: init.preopened };
    this.vcpusOnline = init.config.vcpusOnline;
    this.hooks = {
      // Copy: the runtime may reuse its buffer after the call returns.
      console: (bytes) => out.console(bytes.slice()),
      poweroff: () => void this.finish({ type: 'poweroff' }),
      rebooted: () => {
        this.bootedAt = Date.now();
        out.post({ type: 'guest-reboot' });
      },
      fault: (message) => void this.finish({ type: 'fault', message }),
      vcpuThread: (hartId, tid) => {
        // A board after a guest reboot starts new threads: the hart's old one has ended.
        this.vcpuTids.set(hartId, tid);
        const own = ownThreadId();
        out.post({ type: 'threads', tids: [...(own !== undefined ? [own] : []), ...this.vcpuTids.values()] });
      },
    };
  }

  /** Ends the VM as a fault (the host's side found it cannot go on), stopping the runtime first. */
  fail(message: string): void {
    void this.finish({ type: 'fault', message });
  }

  status(): VmHostStatus {
    return { phase: this.phase, disksDetached: this.disksDetached, bootedAt: this.bootedAt };
  }

  /** The runtime's counters, or undefined while no guest runs. */
  counters(): RuntimeCounters | undefined {
    return this.runtime?.counters();
  }

  consoleInput(bytes: Uint8Array): void {
    this.runtime?.consoleInput(bytes);
  }

  /** Runs `fn` after the control requests received so far (a reattaching host reads a settled status). */
  afterQueued<T>(fn: () => T): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Begins the first start before the host asks for it (a VM process loading a restore while its daemon connects):
   * the state is loaded but the guest does not run, and the host's `start` with the same request gets this outcome
   * and runs the guest, instead of starting again.
   */
  startEarly(req: Extract<ControlRequest, { type: 'start' }>): void {
    const run = this.queue.then(() => this.handle(req).catch((err: unknown) => failure(req.id, err)));
    this.early = { req, reply: run };
    this.queue = run.then(() => undefined);
  }

  /** One control request from the host; its reply goes out through `post`. */
  receive(req: ControlRequest): void {
    if (req.type === 'exec') {
      const postLate = (msg: WorkerMessage): void => {
        try {
          this.out.post(msg);
        } catch {
          /* the channel is closed: the VM is ending */
        }
      };
      this.handle(req).then(postLate, (err: unknown) => postLate(failure(req.id, err)));
      return;
    }
    this.queue = this.queue.then(async () => {
      let reply: WorkerMessage;
      try {
        reply = await this.handle(req);
      } catch (err) {
        reply = failure(req.id, err);
      }
      if (!this.ending || req.type === 'stop') this.out.post(reply);
      if (req.type === 'stop') this.close();
    });
  }

  private async loadFactory(): Promise<CreateRuntime> {
    if (!this.createRuntime) {
      const m = this.init.runtimeModule;
      const mod = (await import(runtimeModuleUrl(m))) as { createRuntime?: CreateRuntime };
      if (typeof mod.createRuntime !== 'function') throw new Error(`${m} does not export createRuntime`);
      this.createRuntime = mod.createRuntime;
    }
    return this.createRuntime;
  }

  private async newRuntime(): Promise<GuestRuntime> {
    const r = await (
      await this.loadFactory()
    )({ ...this.init.config, vcpusOnline: this.vcpusOnline }, this.hooks, this.resources);
    const pacer = this.pacer;
    if (pacer) r.setPacer?.(() => pacer.next());
    return r;
  }

  private async rebootInPlace(): Promise<void> {
    const old = this.runtime;
    this.runtime = undefined;
    if (old) await old.stop();
    this.runtime = await this.newRuntime();
    await this.runtime.start();
    this.phase = 'running';
    this.bootedAt = Date.now();
  }

  /** Ends the VM on the guest's initiative: report why, release everything. */
  private async finish(msg: WorkerMessage): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    const r = this.runtime;
    this.runtime = undefined;
    try {
      await r?.stop();
    } catch {
      /* the VM is ending anyway */
    }
    this.out.post(msg);
    this.close();
  }

  private close(): void {
    this.phase = 'ended';
    for (const l of this.resources.nicLinks) l.close();
    this.out.ended();
  }

  private need(): GuestRuntime {
    if (!this.runtime) throw new Error('the VM is not running');
    return this.runtime;
  }

  private async handle(req: ControlRequest): Promise<WorkerMessage> {
    switch (req.type) {
      case 'start': {
        const early = this.early;
        if (early && req.id !== early.req.id) {
          this.early = undefined;
          if (!sameStart(early.req, req)) throw new Error('already started (the start this process began differs)');
          const reply = await early.reply;
          // The guest runs from the daemon's start on, as after any start: the restore was only loaded.
          if (reply.type === 'reply' && reply.ok) {
            this.runtime?.launchHeld?.();
            this.phase = 'running';
            this.bootedAt = Date.now();
          }
          return { ...reply, id: req.id } as WorkerMessage;
        }
        if (this.runtime) throw new Error('already started');
        const t0 = performance.now();
        await this.loadFactory();
        const t1 = performance.now();
        this.runtime = await this.newRuntime();
        const t2 = performance.now();
        this.bootedAt = Date.now();
        if (req.restore) {
          if (!this.runtime.restore) throw new Error('this runtime cannot restore a machine state');
          // The early start only loads the state (held): the guest runs once the daemon's own start arrives.
          const held = this.early?.req.id === req.id;
          const state = await this.runtime.restore(req.restore.path, { lazyRam: req.restore.lazyRam, held });
          // Held, it stays idle for a daemon that reattaches (the one that asked for it died): nothing runs yet.
          if (!held) this.phase = 'running';
          const phases = { loadRuntimeModule: t1 - t0, createRuntime: t2 - t1, ...state.phases };
          return { type: 'reply', id: req.id, ok: true, state: { ...state, ms: performance.now() - t0, phases } };
        }
        await this.runtime.start();
        this.phase = 'running';
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'cpu-cap': {
        // Before start the pacer is kept for the runtime start creates.
        const r = this.runtime;
        if (r && !r.setPacer) throw new Error('this guest runtime cannot cap its run loop');
        if (req.percent === null) {
          this.pacer = null;
          r?.setPacer?.(null);
        } else if (this.pacer) this.pacer.setCap(req.percent);
        else {
          const p = new CpuPacer(req.percent);
          this.pacer = p;
          r?.setPacer?.(() => p.next());
        }
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'release-guest': {
        const r = this.need();
        if (!r.releaseGuest) throw new Error('this runtime cannot release its guest');
        await r.releaseGuest();
        this.phase = 'released';
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'restore-state': {
        const r = this.need();
        if (!r.restore) throw new Error('this runtime cannot restore a machine state');
        const state = await r.restore(req.path, { lazyRam: req.lazyRam });
        this.phase = 'running';
        this.disksDetached = false;
        this.bootedAt = Date.now();
        return { type: 'reply', id: req.id, ok: true, state };
      }
      case 'agent':
        if (/[\r\n]/.test(req.line) || !this.need().agentSend(req.line))
          throw new Error('no guest agent channel, or a bad request line');
        return { type: 'reply', id: req.id, ok: true };
      case 'switch-disks': {
        const r = this.need();
        if (!r.switchDisks) throw new Error('this runtime cannot switch disks');
        await r.switchDisks(req.paths, req.phase);
        this.disksDetached = req.phase === 'detach';
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'save-state': {
        const r = this.need();
        if (!r.saveState) throw new Error('this runtime cannot save its machine state');
        return { type: 'reply', id: req.id, ok: true, state: await r.saveState(req.path) };
      }
      case 'pause':
        await this.need().pause();
        this.phase = 'paused';
        return { type: 'reply', id: req.id, ok: true };
      case 'resume':
        await this.need().resume();
        this.phase = 'running';
        return { type: 'reply', id: req.id, ok: true };
      case 'stop': {
        this.ending = true;
        const r = this.runtime;
        this.runtime = undefined;
        await r?.stop();
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'shutdown':
        if (!this.need().agentSend('shutdown')) throw new Error('this VM has no guest agent channel (virtio-console)');
        return { type: 'reply', id: req.id, ok: true };
      case 'reboot':
        await this.rebootInPlace();
        return { type: 'reply', id: req.id, ok: true };
      case 'stats':
        return { type: 'reply', id: req.id, ok: true, counters: this.need().counters() };
      case 'exec': {
        const r = this.need();
        if (!r.agentExec) throw new AgentError('no-agent', 'this VM runtime cannot run commands in the guest');
        const { id, type, ...exec } = req;
        void type;
        const result = await r.agentExec(exec);
        return { type: 'reply', id, ok: true, exec: result };
      }
      case 'balloon': {
        const r = this.need();
        if (!r.setBalloonTarget) throw new Error('this VM has no balloon');
        r.setBalloonTarget(req.targetBytes);
        return { type: 'reply', id: req.id, ok: true };
      }
      case 'vcpus-online':
        this.vcpusOnline = req.count ?? undefined;
        this.runtime?.setVcpusOnline?.(this.vcpusOnline);
        return { type: 'reply', id: req.id, ok: true };
      case 'nic-rate': {
        const r = this.need();
        if (!r.setNicRate) throw new Error('this VM has no NICs');
        r.setNicRate(req.nic, req.rx, req.tx);
        return { type: 'reply', id: req.id, ok: true };
      }
      default: {
        const never: never = req;
        throw new Error(`unknown request ${JSON.stringify(never)}`);
      }
    }
  }
}

function failure(id: number, err: unknown): WorkerMessage {
  if (err instanceof AgentError)
    return { type: 'reply', id, ok: false, error: err.message, agentFailure: err.failure, agentReason: err.reason };
  return { type: 'reply', id, ok: false, error: errorText(err) };
}

/** Whether two start requests ask for the same thing (a boot, or a restore of the same file the same way). */
function sameStart(a: Extract<ControlRequest, { type: 'start' }>, b: Extract<ControlRequest, { type: 'start' }>): boolean {
  if (!a.restore || !b.restore) return !a.restore && !b.restore;
  return a.restore.path === b.restore.path && a.restore.lazyRam === b.restore.lazyRam;
}
