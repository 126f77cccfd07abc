/**
 * The default guest runtime of a VM worker: the typevisor machine (src/machine) with its virtio devices. It
 * keeps running across guest reboots by building a fresh board on the same open disks (as machine-runner's
 * runVm does), and exposes the guest agent channel (virtio-console) for graceful shutdown.
 */
import type { VmConfig } from './config.js';
import type { RuntimeCounters } from './protocol.js';
import type { CreateRuntime, GuestRuntime, RuntimeHooks } from './runtime.js';
import { defaultHartFactory, loadBootImages, type BootImages } from './machine-runner.js';
import { attachVirtioDevices, guestMemoryCounters, type AttachedVirtioDevices } from './virtio-devices.js';
import { Machine, type HartFactory, type MachineExit } from '../machine/machine.js';
import { AgentClient, AgentError, type ExecRequest, type ExecResult } from './agent-client.js';
import { randomBytes } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import { collectAfterRelease } from './release-gc.js';

const PAGE = 4096;

class MachineRuntime implements GuestRuntime {
  private machine: Machine | undefined;
  private devices: AttachedVirtioDevices | undefined;
  private stopPolling: (() => void) | undefined;
  private stopped = false;
  /** Instructions retired by boards before the last guest reboot, so the counter never goes backwards. */
  private instretBefore = 0;
  private pacer: (() => number) | null = null;
  /** The guest agent on virtio-console (`typevisor exec`, graceful shutdown); follows the board across reboots. */
  private readonly agent = new AgentClient({
    write: (text) => this.devices?.console?.input(text),
    backlog: () => this.devices?.console?.pendingInputBytes ?? 0,
  });

  constructor(
    private readonly config: VmConfig,
    private readonly hooks: RuntimeHooks,
    private readonly images: BootImages,
    private readonly createHart: HartFactory,
  ) {}

  async start(): Promise<void> {
    await this.boot();
  }

  private async boot(): Promise<void> {
    const machine = new Machine({
      harts: this.config.cpus,
      memoryBytes: this.config.memoryMiB * 1024 * 1024,
      firmware: this.images.firmware,
      kernel: this.images.kernel,
      initrd: this.images.initrd,
      bootargs: this.config.append ?? '',
      deterministicTime: this.config.deterministicTime,
      createHart: this.createHart,
      onConsoleOutput: (b) => this.hooks.console(b),
      rngSeed: new Uint8Array(randomBytes(32)),
    });
    // Same config object on every boot: attachVirtioDevices reuses the disks it already opened.
    this.devices = await attachVirtioDevices(machine, this.config, { onConsoleOutput: (b) => this.agent.receive(b) });
    this.stopPolling?.();
    // The host's memory policy samples every second; fresh guest figures let it react within one sample.
    const stopStats = this.devices.pollBalloonStats(1_000);
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
  counters(): RuntimeCounters {
    const m = this.machine;
    const v = this.devices?.counters();
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
      netRxBytes: 0,
      netTxBytes: 0,
      netRxPackets: 0,
      netTxPackets: 0,
    };
  }
}

export const createRuntime: CreateRuntime = async (config, hooks) => {
  const images = await loadBootImages(config);
  return new MachineRuntime(config, hooks, images, await defaultHartFactory());
};
