/**
 * One VM's machine across guest reboots, the one place a board is built: reads the images a VmConfig names, builds
 * the `virt` board (src/machine) with the real hart, attaches the virtio devices, and on a guest reboot builds a
 * fresh board on the same open disks. `typevisor run` drives it directly (`run()`); in the daemon the machine runtime
 * (machine-runtime.ts, run by a VM worker or process) drives it and adds snapshots, the agent and counters.
 * No process.stdin/stdout here: console bytes are callbacks.
 */
import { createLinearRam, linearRamWanted } from './linear-ram.js';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { bootArgs, type VmConfig } from './config.js';
import { Machine, type HartFactory, type MachineExit } from '../machine/machine.js';
import type { FirmwareImage } from '../machine/loaders/boot.js';
import { createHart as createRealHart } from '../machine/hart-adapter.js';
import { hartThreadsWanted, nodeHartThreadSpawner, sharedClockMs } from './hart-threads.js';
import type { HartThreadSpawner } from '../machine/parallel/hart-threads.js';
import { attachVirtioDevices, type AttachedVirtioDevices, type AttachOptions } from './virtio-devices.js';

export interface BootImages {
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  firmware: FirmwareImage;
}

export class ImageReadError extends Error {
  constructor(what: string, path: string, cause: unknown) {
    super(`cannot read ${what} '${path}': ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ImageReadError';
  }
}

async function readImage(what: string, path: string): Promise<Uint8Array> {
  try {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (err) {
    throw new ImageReadError(what, path, err);
  }
}

/** Reads one boot image's bytes; `what` names it in errors (firmware, kernel, initrd). */
export type ImageReader = (what: string, path: string) => Promise<Uint8Array>;

export async function loadBootImages(config: VmConfig, read: ImageReader = readImage): Promise<BootImages> {
  const firmware: FirmwareImage =
    config.firmware.kind === 'file'
      ? { kind: 'external', bytes: await read('firmware', config.firmware.path) }
      : { kind: config.firmware.kind };
  return {
    firmware,
    kernel: config.kernel ? await read('kernel', config.kernel) : undefined,
    initrd: config.initrd ? await read('initrd', config.initrd) : undefined,
  };
}

/** The real RV64 hart. */
export function defaultHartFactory(): HartFactory {
  return createRealHart;
}

export interface MachineLoopEvents {
  onConsoleOutput(bytes: Uint8Array): void;
  /** A new board is built (at boot, for a restore, after every guest reboot), before it starts. */
  onBoard?(machine: Machine, devices: AttachedVirtioDevices): void;
  /** The guest reset itself: called with the old board, before the new one is built. */
  onReboot?(previous: Machine): void;
  /** The board after a guest reboot runs. */
  onRebooted?(): void;
  /** A guest reboot could not build the next board (an image gone, a disk that fails to open). */
  onRebootFailed?(err: unknown): void;
  /** The machine ended for good (poweroff, fail, fault, stopped) on its own: not after stop() or release(). */
  onEnd?(exit: MachineExit): void;
  /** A hart thread (a vCPU on a thread of its own) started, with its Linux thread id. */
  onHartThread?(hartId: number, tid: number): void;
}

export interface MachineLoopOptions {
  /**
   * How each boot reads its images (a VM process that dropped privileges reads them through descriptors it opened
   * before). By default each boot reads the files by path. Either way no copy is kept, so an idle VM does not hold
   * its kernel and initrd (~6 MiB).
   */
  readImage?: ImageReader;
  createHart?: HartFactory;
  /** Devices beyond the config's plain ones (the agent's console, NIC links, live NIC limits). */
  virtio?: AttachOptions;
  /** Called when the run loop drops decoded pages (the daemon collects its garbage at once). */
  onIdleTrim?: () => void;
  /**
   * How a board with several harts runs each on a thread of its own; null keeps them on the VM's thread. By
   * default worker_threads, unless TYPEVISOR_HART_THREADS=0.
   */
  hartThreads?: HartThreadSpawner | null;
}

export class MachineLoop {
  /** The current board (undefined before the first build and after release()). */
  machine: Machine | undefined;
  devices: AttachedVirtioDevices | undefined;
  /** Harts every later boot brings up: the config's, then live hot-plug (kept across guest reboots). */
  vcpusOnline: number | undefined;
  private stopped = false;
  /** The caller of run(), told of the final exit or a failed reboot. */
  private finished: { resolve(exit: MachineExit): void; reject(err: unknown): void } | undefined;

  constructor(
    private readonly config: VmConfig,
    private readonly events: MachineLoopEvents,
    private readonly options: MachineLoopOptions = {},
  ) {
    this.vcpusOnline = config.vcpusOnline;
  }

  /**
   * Builds a board with its virtio devices (not started) and makes it the current one; `timing` gets the steps'
   * milliseconds.
   */
  async build(forRestore = false, timing?: Record<string, number>): Promise<Machine> {
    let t = performance.now();
    const lap = (name: string): void => {
      const now = performance.now();
      if (timing) timing[name] = now - t;
      t = now;
    };
    // A restore reads no image: the state's RAM holds what they were (a bare-metal kernel excepted: its symbols
    // count).
    const images =
      forRestore && this.config.firmware.kind !== 'none'
        ? restoreImages(this.config)
        : await loadBootImages(this.config, this.options.readImage);
    lap('bootImages');
    const threads =
      this.options.hartThreads !== undefined
        ? (this.options.hartThreads ?? undefined)
        : this.config.cpus > 1 && !this.config.deterministicTime && hartThreadsWanted()
          ? nodeHartThreadSpawner((h, tid) => this.events.onHartThread?.(h, tid))
          : undefined;
    const machine = new Machine({
      forRestore,
      hartThreads: threads,
      ...(threads ? { hostNowMs: sharedClockMs } : {}),
      harts: this.config.cpus,
      memoryBytes: this.config.memoryMiB * 1024 * 1024,
      firmware: images.firmware,
      kernel: images.kernel,
      initrd: images.initrd,
      bootargs: bootArgs(this.config.append, this.config.cpus, this.vcpusOnline),
      deterministicTime: this.config.deterministicTime,
      createHart: this.options.createHart ?? createRealHart,
      linearRam: linearRamWanted() ? createLinearRam : undefined,
      onConsoleOutput: (b) => this.events.onConsoleOutput(b),
      onIdleTrim: this.options.onIdleTrim,
      rngSeed: new Uint8Array(randomBytes(32)),
    });
    lap('board');
    const opened: { openDisks?: number } = {};
    // Same config object on every boot: attachVirtioDevices reuses the disks it already opened.
    const devices = await attachVirtioDevices(machine, this.config, { ...this.options.virtio, timing: opened });
    lap('devices');
    if (timing && opened.openDisks !== undefined) timing['devices.openDisks'] = opened.openDisks;
    this.machine = machine;
    this.devices = devices;
    this.events.onBoard?.(machine, devices);
    return machine;
  }

  /** Builds the first board and starts it. */
  async boot(): Promise<Machine> {
    const machine = await this.build();
    this.launch(machine);
    return machine;
  }

  /** Starts a built board (ends it at once if stopped meanwhile) and follows it: a guest reboot builds the next. */
  launch(machine: Machine): void {
    void machine.exited.then((exit) => this.onExit(machine, exit));
    if (this.stopped) machine.stop();
    else machine.start();
  }

  /** Resolves with the final exit: boots and follows guest reboots until the machine ends or stop() is called. */
  run(): Promise<MachineExit> {
    return new Promise((resolve, reject) => {
      this.finished = { resolve, reject };
      this.boot().catch(reject);
    });
  }

  /**
   * Lets go of the current board without ending the loop: its exit is not followed and its RAM goes back to the
   * host (a snapshot revert).
   */
  release(): { machine: Machine | undefined; devices: AttachedVirtioDevices | undefined } {
    const released = { machine: this.machine, devices: this.devices };
    this.machine = undefined;
    this.devices = undefined;
    released.machine?.stop();
    void released.machine?.ram.dispose();
    return released;
  }

  /** Ends the machine for good; no further board is built. Disks stay open (close `devices`). */
  stop(): void {
    this.stopped = true;
    this.machine?.stop();
  }

  private onExit(machine: Machine, exit: MachineExit): void {
    if (machine !== this.machine) return;
    if (this.stopped) {
      // Whatever ended it (a poweroff may have raced the stop), the loop is over; onEnd is for ends of its own.
      this.finished?.resolve(exit);
      return;
    }
    if (exit.kind !== 'reboot') {
      this.end(exit);
      return;
    }
    this.events.onReboot?.(machine);
    void machine.ram.dispose();
    this.build().then(
      (next) => {
        this.launch(next);
        if (!this.stopped) this.events.onRebooted?.();
      },
      (err: unknown) => {
        this.events.onRebootFailed?.(err);
        this.finished?.reject(err);
      },
    );
  }

  private end(exit: MachineExit): void {
    this.events.onEnd?.(exit);
    this.finished?.resolve(exit);
  }
}

/** What a board built for a restore is told of its boot images: only which firmware ran (Machine `forRestore`). */
function restoreImages(config: VmConfig): BootImages {
  return {
    firmware: config.firmware.kind === 'file' ? { kind: 'external', bytes: new Uint8Array(0) } : { kind: config.firmware.kind },
  };
}
