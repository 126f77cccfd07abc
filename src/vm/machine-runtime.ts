/**
 * The default guest runtime of a VM (what vm-host.ts runs in a VM worker or process): the typevisor machine, built
 * and rebuilt across guest reboots by machine-loop.ts, plus what the daemon needs of it: snapshots (save, restore,
 * disk switches), the guest agent channel (virtio-console: exec, graceful shutdown), live limits and counters.
 */
import type { VmConfig } from './config.js';
import type { RuntimeCounters, StateFileInfo } from './protocol.js';
import { openStateFile, writeStateFileAtomic } from './state-file.js';
import { openDisk as openDiskImage } from '../storage/index.js';
import { captureMachineState, restoreMachineState, type RestoreReport } from '../machine/snapshot/machine-state.js';
import { encodeStateFile } from '../machine/snapshot/format.js';
import type { CreateRuntime, GuestRuntime, RuntimeHooks, RuntimeResources } from './runtime.js';
import type { NicRateLimit } from './config.js';
import { defaultHartFactory, MachineLoop } from './machine-loop.js';
import { guestMemoryCounters, type AttachedVirtioDevices } from './virtio-devices.js';
import type { HartFactory, Machine, MachineExit } from '../machine/machine.js';
import { AgentClient, AgentError, type ExecRequest, type ExecResult } from './agent-client.js';
import { getHeapStatistics } from 'node:v8';
import { collectAfterRelease, collectGarbage } from './release-gc.js';

const PAGE = 4096;

class MachineRuntime implements GuestRuntime {
  private readonly loop: MachineLoop;
  private stopPolling: (() => void) | undefined;
  /** Instructions retired by boards before the last guest reboot, so the counter never goes backwards. */
  private instretBefore = 0;
  private pacer: (() => number) | null = null;
  /** Current NIC limits: the config's, then live changes (kept across guest reboots). */
  private readonly nicRates: { rx: NicRateLimit | null; tx: NicRateLimit | null }[];
  /** The guest agent on virtio-console (`typevisor exec`, graceful shutdown); follows the board across reboots. */
  private readonly agent = new AgentClient({
    write: (text) => this.devices?.console?.input(text),
    backlog: () => this.devices?.console?.pendingInputBytes ?? 0,
  });

  constructor(
    private readonly config: VmConfig,
    private readonly hooks: RuntimeHooks,
    createHart: HartFactory,
    resources: RuntimeResources,
  ) {
    this.nicRates = (config.nics ?? []).map((n) => ({ rx: n.rx ?? null, tx: n.tx ?? null }));
    this.loop = new MachineLoop(
      config,
      {
        onConsoleOutput: (b) => this.hooks.console(b),
        onBoard: (machine, devices) => this.onBoard(machine, devices),
        onReboot: (previous) => {
          this.agent.reset('the guest rebooted while the request was in flight');
          this.instretBefore += this.instretOf(previous);
        },
        onRebooted: () => this.hooks.rebooted(),
        onRebootFailed: (err) => this.hooks.fault(`reboot failed: ${err instanceof Error ? err.message : String(err)}`),
        onEnd: (exit) => this.onEnd(exit),
        onHartThread: (hartId, tid) => this.hooks.vcpuThread?.(hartId, tid),
      },
      {
        // Through descriptors opened before the process dropped its privileges: it may not reach the files by path.
        readImage: resources.preopened?.readImage,
        createHart,
        // The dropped decoded pages are garbage an idle worker would otherwise keep for a long time.
        onIdleTrim: () => collectGarbage(),
        virtio: {
          onConsoleOutput: (b) => this.agent.receive(b),
          nicLinks: resources.nicLinks,
          nicRates: this.nicRates,
          openDisk: async (path, opts) => resources.preopened?.takeDisk(path) ?? openDiskImage(path, { ...opts, syncOpen: true }),
        },
      },
    );
  }

  private get machine(): Machine | undefined {
    return this.loop.machine;
  }
  private get devices(): AttachedVirtioDevices | undefined {
    return this.loop.devices;
  }

  async start(): Promise<void> {
    await this.loop.boot();
  }

  /** Every new board (boot, reboot, restore): the pacer and the polling follow it. */
  private onBoard(machine: Machine, devices: AttachedVirtioDevices): void {
    this.stopPolling?.();
    // The host's memory policy samples every second; fresh guest figures let it react within one sample.
    const stopStats = devices.pollBalloonStats(1_000);
    const stopGc = collectAfterRelease(() => this.machine?.ram.allocatedBytes ?? 0);
    this.stopPolling = () => {
      stopStats();
      stopGc();
    };
    machine.setPacer(this.pacer);
  }

  /**
   * Ends the current machine and closes its disks but keeps this runtime (and its warm thread) for a following
   * restore(): a snapshot revert then costs no new worker.
   */
  async releaseGuest(): Promise<void> {
    this.stopPolling?.();
    const { devices } = this.loop.release();
    // The host replaces the writable images next (a revert renames new overlays over them), so their final flush
    // need not hold up the revert: it finishes on the old files, which a new open of the same paths never sees.
    void devices?.close().catch(() => {});
  }

  /** The board a held restore loaded, and how to follow it, until launchHeld(). */
  private held: (() => void) | undefined;

  async restore(path: string, opts: { lazyRam: boolean; held?: boolean }): Promise<StateFileInfo> {
    const t0 = performance.now();
    if (this.machine) throw new Error('a machine is running: release it first');
    const built: Record<string, number> = {};
    const machine = await this.loop.build(true, built);
    const t1 = performance.now();
    const opened = openStateFile(path);
    const t2 = performance.now();
    let report;
    try {
      // A lazy restore is of a file the host wrote (a snapshot): its chunks are checked just after they are used.
      report = restoreMachineState(machine, opened.file, { lazyRam: opts.lazyRam, checkLater: opts.lazyRam });
    } catch (err) {
      opened.close();
      await this.loop.release().devices?.close();
      throw err;
    }
    const t3 = performance.now();
    const launch = (): void => {
      this.loop.launch(machine);
      if (machine.ram.lazyChunksLeft > 0 || report.checkRam(0) > 0) this.prefetch(machine, report, opened.close);
      else opened.close();
    };
    if (opts.held) this.held = launch;
    else launch();
    const t4 = performance.now();
    return {
      bytes: opened.size,
      ramChunks: report.ramChunks,
      ms: t4 - t0,
      phases: {
        buildMachine: t1 - t0,
        ...Object.fromEntries(Object.entries(built).map(([k, v]) => [`buildMachine.${k}`, v])),
        openStateFile: t2 - t1,
        loadState: t3 - t2,
        ...Object.fromEntries(Object.entries(report.phases).map(([k, v]) => [`loadState.${k}`, v])),
        launch: t4 - t3,
      },
    };
  }

  launchHeld(): void {
    const launch = this.held;
    if (!launch) throw new Error('no restore is held');
    this.held = undefined;
    launch();
  }

  /**
   * After a lazy restore, checks the chunks the guest already got (their CRC) and reads the ones it has not touched
   * yet, in the background, a few per event-loop turn between the machine's slices, then closes the state file. A
   * corrupt chunk stops the machine, naming it.
   */
  private prefetch(machine: Machine, report: RestoreReport, close: () => void): void {
    const step = (): void => {
      if (this.machine !== machine || machine.state === 'exited') return close();
      try {
        if (machine.state === 'paused') {
          setTimeout(step, 1);
          return;
        }
        const checksLeft = report.checkRam(1);
        const left = machine.ram.fillLazyChunks(checksLeft > 0 ? 1 : 2);
        if (left > 0 || report.checkRam(0) > 0) {
          setTimeout(step, 1);
          return;
        }
      } catch (err) {
        close();
        this.hooks.fault(`restoring RAM failed: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      close();
    };
    setTimeout(step, 1);
  }

  /**
   * Moves disks onto new images (a snapshot's new overlays) while the guest is paused, in two steps so that the
   * host freezes an image only once it is closed cleanly: `detach` (in-flight requests finish, the image is
   * flushed and closed) for every disk whose path is not null, then `attach` opens the new images.
   */
  async switchDisks(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void> {
    const machine = this.machine;
    if (!machine || machine.state !== 'paused') throw new Error('the VM must be paused to switch its disks');
    const disks = this.devices?.disks ?? [];
    if (paths.length !== disks.length) throw new Error(`${paths.length} paths for ${disks.length} disks`);
    for (const [i, d] of disks.entries()) {
      const path = paths[i];
      if (!path) continue;
      if (phase === 'detach') {
        await d.device.whenIdle();
        await d.backend.detach();
      } else {
        // Synchronous metadata reads: the guest is paused, and this thread has nothing else to do meanwhile.
        await d.backend.attach(
          await openDiskImage(path, { format: d.config.format, readOnly: d.config.readOnly, syncOpen: true }),
        );
      }
    }
  }

  async saveState(path: string): Promise<StateFileInfo> {
    const machine = this.machine;
    if (!machine || machine.state !== 'paused') throw new Error('the VM must be paused to save its state');
    const t0 = performance.now();
    // Requests already in flight finish first, so the disks hold everything the saved device state has completed.
    await Promise.all((this.devices?.disks ?? []).map((d) => d.device.whenIdle()));
    await Promise.all((this.devices?.disks ?? []).filter((d) => !d.backend.readOnly).map((d) => d.backend.flush()));
    const sections = captureMachineState(machine);
    const ram = sections.find((s) => s.kind === 'chunks');
    const { parts } = encodeStateFile(sections);
    const bytes = writeStateFileAtomic(path, parts);
    return {
      bytes,
      ramChunks: ram?.kind === 'chunks' ? ram.chunks.filter((c) => c.bytes).length : 0,
      ms: performance.now() - t0,
    };
  }

  private onEnd(exit: MachineExit): void {
    switch (exit.kind) {
      case 'poweroff':
        this.hooks.poweroff();
        return;
      case 'fail':
        this.hooks.fault(`the guest reported failure (sifive,test code ${exit.code})`);
        return;
      case 'fault':
        this.hooks.fault(`machine fault on hart ${exit.hartId} at pc 0x${exit.pc.toString(16)}: ${exit.message}`);
        return;
      case 'reboot':
      case 'stopped':
        return;
    }
  }

  private instretOf(machine: Machine): number {
    return machine.stats().instret.reduce((a, b) => a + b, 0);
  }

  pause(): void {
    this.machine?.pause();
  }
  resume(): void {
    this.machine?.resume();
  }
  async stop(): Promise<void> {
    this.agent.close('the VM was stopped (or reset) while the request was in flight');
    this.stopPolling?.();
    this.loop.stop();
    await this.devices?.close();
  }
  consoleInput(bytes: Uint8Array): void {
    this.machine?.sendConsoleInput(bytes);
  }
  agentSend(line: string): boolean {
    if (!this.devices?.console) return false;
    this.agent.sendLine(line);
    return true;
  }
  agentExec(req: ExecRequest): Promise<ExecResult> {
    if (!this.devices?.console)
      return Promise.reject(new AgentError('no-agent', 'this VM has no guest agent channel (virtio-console)'));
    return this.agent.exec(req);
  }
  setPacer(pacer: (() => number) | null): void {
    this.pacer = pacer;
    this.machine?.setPacer(pacer);
  }
  setBalloonTarget(bytes: number): void {
    this.devices?.balloon?.setTarget(Math.floor(bytes / PAGE));
  }
  setVcpusOnline(count: number | undefined): void {
    this.loop.vcpusOnline = count;
  }
  setNicRate(nic: number, rx: NicRateLimit | null, tx: NicRateLimit | null): void {
    const device = this.devices?.nics.find((n) => n.config === this.config.nics?.[nic])?.device;
    if (!device || !this.nicRates[nic]) throw new Error(`this VM has no NIC ${nic}`);
    this.nicRates[nic] = { rx, tx };
    device.setRateLimits({ rx, tx });
  }
  counters(): RuntimeCounters {
    const m = this.machine;
    const v = this.devices?.counters();
    const nics = v?.nics ?? [];
    const sum = (f: (n: (typeof nics)[number]) => number) => nics.reduce((a, n) => a + f(n), 0);
    const ms = m?.stats();
    const guestRamBytes = ms?.allocatedRamBytes ?? 0;
    const decodeCacheBytes = ms?.decodeCacheBytes ?? 0;
    // This runs in the VM's worker: the heap figures are its own isolate's.
    const workerHeapBytes = getHeapStatistics().total_heap_size;
    return {
      instret: this.instretBefore + (m ? this.instretOf(m) : 0),
      vcpusOnline: m ? m.onlineHarts() : 0,
      residentBytes: guestRamBytes + decodeCacheBytes + workerHeapBytes,
      guestRamBytes,
      decodeCacheBytes,
      workerHeapBytes,
      memoryBytes: this.config.memoryMiB * 1024 * 1024,
      balloonBytes: v?.balloonBytes ?? 0,
      ...guestMemoryCounters(this.devices?.balloon),
      diskReadBytes: v?.diskReadBytes ?? 0,
      diskWriteBytes: v?.diskWriteBytes ?? 0,
      diskReadOps: v?.diskReadOps ?? 0,
      diskWriteOps: v?.diskWriteOps ?? 0,
      netRxBytes: sum((n) => n.rxBytes),
      netTxBytes: sum((n) => n.txBytes),
      netRxPackets: sum((n) => n.rxPackets),
      netTxPackets: sum((n) => n.txPackets),
      nics,
    };
  }
}

export const createRuntime: CreateRuntime = async (config, hooks, resources) =>
  // No images read ahead: the loop reads them for a boot, and a restore needs none (the state's RAM holds them).
  new MachineRuntime(config, hooks, await defaultHartFactory(), resources ?? { nicLinks: [] });

/** Run by a pooled worker before it is handed a VM (src/vm/worker-adopt.ts). */
export { warmUp } from './warm-up.js';
