/**
 * Node wiring for one Machine: reads the images a VmConfig names, builds the machine with the real hart,
 * attaches the virtio devices, and restarts the machine when the guest reboots. Used by `typevisor run` and
 * usable from a worker thread by the daemon (no process.stdin/stdout here: console bytes are callbacks).
 */
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { bootArgs, type VmConfig } from './config.js';
import { Machine, type HartFactory, type MachineExit } from '../machine/machine.js';
import type { FirmwareImage } from '../machine/loaders/boot.js';
import { createHart as createRealHart } from '../machine/hart-adapter.js';
import { attachVirtioDevices } from './virtio-devices.js';

export interface RunnerIo {
  onConsoleOutput(bytes: Uint8Array): void;
  /** Called with each machine as it is created (at boot and after every guest reboot). */
  onMachine?(machine: Machine): void;
  /** Called before a reboot's new machine is built. */
  onReboot?(): void;
}

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

export async function loadBootImages(config: VmConfig): Promise<BootImages> {
  const firmware: FirmwareImage =
    config.firmware.kind === 'file'
      ? { kind: 'external', bytes: await readImage('firmware', config.firmware.path) }
      : { kind: config.firmware.kind };
  return {
    firmware,
    kernel: config.kernel ? await readImage('kernel', config.kernel) : undefined,
    initrd: config.initrd ? await readImage('initrd', config.initrd) : undefined,
  };
}

/** The real RV64 hart. */
export function defaultHartFactory(): HartFactory {
  return createRealHart;
}

export async function createMachine(
  config: VmConfig,
  images: BootImages,
  io: RunnerIo,
  createHart?: HartFactory,
): Promise<Machine> {
  const machine = new Machine({
    harts: config.cpus,
    memoryBytes: config.memoryMiB * 1024 * 1024,
    firmware: images.firmware,
    kernel: images.kernel,
    initrd: images.initrd,
    bootargs: bootArgs(config.append, config.cpus, config.vcpusOnline),
    deterministicTime: config.deterministicTime,
    createHart: createHart ?? createRealHart,
    onConsoleOutput: (b) => io.onConsoleOutput(b),
    rngSeed: new Uint8Array(randomBytes(32)),
  });
  await attachVirtioDevices(machine, config);
  return machine;
}

/**
 * Boots the VM and keeps it running across guest reboots. Resolves with the final exit (poweroff, fail,
 * fault or stopped). `control.stop()` ends it from outside.
 */
export async function runVm(
  config: VmConfig,
  io: RunnerIo,
  control: { machine?: Machine; stopped?: boolean } = {},
): Promise<MachineExit> {
  const images = await loadBootImages(config);
  const createHart = defaultHartFactory();
  for (;;) {
    const machine = await createMachine(config, images, io, createHart);
    control.machine = machine;
    io.onMachine?.(machine);
    if (control.stopped) return { kind: 'stopped' };
    machine.start();
    const exit = await machine.exited;
    if (exit.kind !== 'reboot') return exit;
    io.onReboot?.();
  }
}
