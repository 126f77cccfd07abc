/**
 * The default guest runtime of a VM worker: the typevisor machine (src/machine) with its virtio devices. It
 * keeps running across guest reboots by building a fresh board on the same open disks (as machine-runner's
 * runVm does), and exposes the guest agent channel (virtio-console) for graceful shutdown.
 */
import { bootArgs, type VmConfig } from './config.js';
import type { RuntimeCounters, StateFileInfo } from './protocol.js';
import { openStateFile, writeStateFileAtomic } from './state-file.js';
import { openDisk as openDiskImage } from '../storage/index.js';
import { captureMachineState, restoreMachineState, type RestoreReport } from '../machine/snapshot/machine-state.js';
import { encodeStateFile } from '../machine/snapshot/format.js';
import type { CreateRuntime, GuestRuntime, RuntimeHooks, RuntimeResources } from './runtime.js';
import type { NicRateLimit } from './config.js';
import { defaultHartFactory, loadBootImages, type BootImages } from './machine-runner.js';
import { attachVirtioDevices, guestMemoryCounters, type AttachedVirtioDevices } from './virtio-devices.js';
import { Machine, type HartFactory, type MachineExit } from '../machine/machine.js';
import { AgentClient, AgentError, type ExecRequest, type ExecResult } from './agent-client.js';
import { randomBytes } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import { collectAfterRelease, collectGarbage } from './release-gc.js';

const PAGE = 4096;

class MachineRuntime implements GuestRuntime {
  private machine: Machine | undefined;
  private devices: AttachedVirtioDevices | undefined;
  private stopPolling: (() => void) | undefined;
  private stopped = false;
  /** Instructions retired by boards before the last guest reboot, so the counter never goes backwards. */
  private instretBefore = 0;
  private pacer: (() => number) | null = null;
  /** Harts the next boot brings up: the config's, then live hot-plug (kept across guest reboots). */
  private vcpusOnline: number | undefined;
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
    private readonly createHart: HartFactory,
    private readonly resources: RuntimeResources,
  ) {
    this.nicRates = (config.nics ?? []).map((n) => ({ rx: n.rx ?? null, tx: n.tx ?? null }));
    this.vcpusOnline = config.vcpusOnline;
  }

  async start(): Promise<void> {
    await this.boot();
  }

  private async boot(): Promise<void> {
    const machine = await this.buildMachine();
    this.launch(machine);
  }

  /** A board with its virtio devices attached, not started; `timing` gets the steps' milliseconds. */
  private async buildMachine(forRestore = false, timing?: Record<string, number>): Promise<Machine> {
    let t = performance.now();
    const lap = (name: string): void => {
      const now = performance.now();
      if (timing) timing[name] = now - t;
      t = now;
    };
    // Read for each boot and not kept, so an idle VM does not hold a copy of its kernel and initrd (~6 MiB). A
    // restore reads none: the state's RAM holds what they were (a bare-metal kernel excepted: its symbols count).
    const images =
      forRestore && this.config.firmware.kind !== 'none' ? restoreImages(this.config) : await loadBootImages(this.config);
    lap('bootImages');
    const machine = new Machine({
      forRestore,
      harts: this.config.cpus,
      memoryBytes: this.config.memoryMiB * 1024 * 1024,
      firmware: images.firmware,
      kernel: images.kernel,
      initrd: images.initrd,
      bootargs: bootArgs(this.config.append, this.config.cpus, this.vcpusOnline),
      deterministicTime: this.config.deterministicTime,
      createHart: this.createHart,
      onConsoleOutput: (b) => this.hooks.console(b),
      // The dropped decoded pages are garbage an idle worker would otherwise keep for a long time.
      onIdleTrim: () => collectGarbage(),
      rngSeed: new Uint8Array(randomBytes(32)),
    });
    lap('board');
    const opened: { openDisks?: number } = {};
    // Same config object on every boot: attachVirtioDevices reuses the disks it already opened.
    this.devices = await attachVirtioDevices(machine, this.config, {
      onConsoleOutput: (b) => this.agent.receive(b),
      nicLinks: this.resources.nicLinks,
      nicRates: this.nicRates,
      timing: opened,
    });
    lap('devices');
    if (timing && opened.openDisks !== undefined) timing['devices.openDisks'] = opened.openDisks;
    return machine;
  }

  private launch(machine: Machine): void {
    this.stopPolling?.();
    // The host's memory policy samples every second; fresh guest figures let it react within one sample.
    const stopStats = this.devices!.pollBalloonStats(1_000);
    const stopGc = collectAfterRelease(() => this.machine?.ram.allocatedBytes ?? 0);
    this.stopPolling = () => {
      stopStats();
      stopGc();
    };
    this.machine = machine;
    machine.setPacer(this.pacer);
    void machine.exited.then((exit) => this.onExit(machine, exit));
    if (!this.stopped) machine.start();
  }

  /**
   * Ends the current machine and closes its disks but keeps this runtime (and its warm thread) for a following
   * restore(): a snapshot revert then costs no new worker.
   */
  async releaseGuest(): Promise<void> {
    const machine = this.machine;
    this.machine = undefined;
    this.stopPolling?.();
    machine?.stop();
    // The host replaces the writable images next (a revert renames new overlays over them), so their final flush
    // need not hold up the revert: it finishes on the old files, which a new open of the same paths never sees.
    void this.devices?.close().catch(() => {});
    this.devices = undefined;
  }

  async restore(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    const t0 = performance.now();
    if (this.machine) throw new Error('a machine is running: release it first');
    const built: Record<string, number> = {};
    const machine = await this.buildMachine(true, built);
    const t1 = performance.now();
    const opened = openStateFile(path);
    const t2 = performance.now();
    let report;
    try {
      // A lazy restore is of a file the host wrote (a snapshot): its chunks are checked just after they are used.
      report = restoreMachineState(machine, opened.file, { lazyRam: opts.lazyRam, checkLater: opts.lazyRam });
    } catch (err) {
      opened.close();
      await this.devices?.close();
      throw err;
    }
    const t3 = performance.now();
    this.launch(machine);
    if (machine.ram.lazyChunksLeft > 0 || report.checkRam(0) > 0) this.prefetch(machine, report, opened.close);
    else opened.close();
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

  private onExit(machine: Machine, exit: MachineExit): void {
    if (machine !== this.machine || this.stopped) return;
    switch (exit.kind) {
      case 'poweroff':
        this.hooks.poweroff();
        return;
      case 'reboot':
        this.agent.reset('the guest rebooted while the request was in flight');
        this.instretBefore += this.instretOf(machine);
        this.boot().then(
          () => this.hooks.rebooted(),
          (err: unknown) => this.hooks.fault(`reboot failed: ${err instanceof Error ? err.message : String(err)}`),
        );
        return;
      case 'fail':
        this.hooks.fault(`the guest reported failure (sifive,test code ${exit.code})`);
        return;
      case 'fault':
        this.hooks.fault(`machine fault on hart ${exit.hartId} at pc 0x${exit.pc.toString(16)}: ${exit.message}`);
        return;
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
    this.stopped = true;
    this.agent.close('the VM was stopped (or reset) while the request was in flight');
    this.stopPolling?.();
    this.machine?.stop();
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
    this.vcpusOnline = count;
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

/** What a board built for a restore is told of its boot images: only which firmware ran (Machine `forRestore`). */
function restoreImages(config: VmConfig): BootImages {
  return {
    firmware: config.firmware.kind === 'file' ? { kind: 'external', bytes: new Uint8Array(0) } : { kind: config.firmware.kind },
  };
}

export const createRuntime: CreateRuntime = async (config, hooks, resources) =>
  new MachineRuntime(config, hooks, await defaultHartFactory(), resources ?? { nicLinks: [] });

/** Run by a pooled worker before it is handed a VM (src/vm/worker-adopt.ts). */
export { warmUp } from './warm-up.js';
