/**
 * Test helper: boots the built Linux guest in-process (board + hart + attachVirtioDevices) with the UART and the
 * virtio-console captured, and runs shell commands on the serial console.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Machine, type MachineExit } from '../../src/machine/machine.js';
import { defaultVmConfig, type VmConfig } from '../../src/vm/config.js';
import { defaultHartFactory, loadBootImages } from '../../src/vm/machine-loop.js';
import { createLinearRam, linearRamWanted } from '../../src/vm/linear-ram.js';
import { requireGuest } from '../helpers/guest.js';
import { TextWaiter } from '../helpers/text-waiter.js';
import { attachVirtioDevices, type AttachedVirtioDevices, type AttachOptions } from '../../src/vm/virtio-devices.js';
import { nodeHartThreadSpawner, sharedClockMs } from '../../src/vm/hart-threads.js';

/** Vm.boot's choices beyond the devices: harts on threads of their own (as the daemon's multi-hart VMs). */
export interface BootOptions extends AttachOptions {
  hartThreads?: boolean;
}

export const MiB = 1024 * 1024;

/** One booted VM with its UART console and virtio-console captured. */
export class Vm {
  serial = '';
  hvc = '';
  private readonly waiter = new TextWaiter();
  private step = 0;
  machine!: Machine;
  virtio!: AttachedVirtioDevices;

  static async boot(config: VmConfig, bootOptions: BootOptions = {}): Promise<Vm> {
    const vm = await Vm.build(config, bootOptions);
    vm.machine.start();
    return vm;
  }

  /**
   * The board for `config` with its virtio devices, not started. `forRestore`: built to load a saved state, so no
   * boot image is read (the state's RAM holds what they were).
   */
  static async build(config: VmConfig, bootOptions: BootOptions = {}, forRestore = false): Promise<Vm> {
    const { hartThreads, ...options } = bootOptions;
    const images = forRestore ? { firmware: { kind: 'builtin' as const } } : await loadBootImages(config);
    const vm = new Vm();
    const machine = new Machine({
      ...(hartThreads ? { hartThreads: nodeHartThreadSpawner(), hostNowMs: sharedClockMs } : {}),
      forRestore,
      harts: config.cpus,
      memoryBytes: config.memoryMiB * MiB,
      firmware: images.firmware,
      kernel: 'kernel' in images ? images.kernel : undefined,
      initrd: 'initrd' in images ? images.initrd : undefined,
      bootargs: config.append ?? '',
      createHart: await defaultHartFactory(),
      // As the daemon's VMs (machine-loop.ts): TYPEVISOR_RAM=linear (which TYPEVISOR_JIT=wasm needs) holds RAM in one memory.
      linearRam: linearRamWanted() ? createLinearRam : undefined,
      onConsoleOutput: (b) => vm.got('serial', b),
    });
    const virtio = await attachVirtioDevices(machine, config, { ...options, onConsoleOutput: (b) => vm.got('hvc', b) });
    vm.machine = machine;
    vm.virtio = virtio;
    return vm;
  }

  got(where: 'serial' | 'hvc', bytes: Uint8Array): void {
    this[where] += Buffer.from(bytes).toString('latin1');
    this.waiter.notify();
  }

  waitFor(where: 'serial' | 'hvc', pattern: string | RegExp, ms: number, from = 0): Promise<number> {
    return this.waiter.waitFor(
      () => this[where],
      pattern,
      ms,
      from,
      () =>
        `timed out after ${ms} ms waiting for ${String(pattern)} on ${where}\n--- serial tail ---\n${this.serial.slice(-2000)}\n--- hvc ---\n${this.hvc.slice(-500)}`,
    );
  }

  /** Runs a shell command on the serial console and returns its output (between unique markers). */
  async sh(command: string, ms = 60_000): Promise<string> {
    const n = ++this.step;
    const from = this.serial.length;
    // The markers are split in the typed text so the echo of the command line never matches them.
    this.machine.sendConsoleInput(Buffer.from(`echo "BEGIN""${n}"; ${command}; echo "END""${n}"\n`, 'latin1'));
    const start = await this.waitFor('serial', `BEGIN${n}\r\n`, ms, from);
    const end = await this.waitFor('serial', `END${n}`, ms, start);
    return this.serial.slice(start, end - `END${n}`.length).replace(/\r/g, '');
  }

  async shutdown(): Promise<MachineExit> {
    this.machine.sendConsoleInput(Buffer.from('sync; poweroff -f\n', 'latin1'));
    const exit = await Promise.race([
      this.machine.exited,
      // unref: a guest that powered off must not keep the test's process alive for the rest of the minute.
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no poweroff')), 60_000).unref()),
    ]);
    await this.virtio.close();
    return exit;
  }
}

export function diskConfig(path: string, format: 'raw' | 'qcow2'): VmConfig {
  return defaultVmConfig({
    kernel: requireGuest().kernel,
    memoryMiB: 256,
    append: 'console=ttyS0 root=/dev/vda rw',
    disks: [{ path, format, readOnly: false, serial: 'typevisor-root' }],
  });
}

export async function bootToShell(config: VmConfig, options: BootOptions = {}): Promise<Vm> {
  const vm = await Vm.boot(config, options);
  await vm.waitFor('serial', requireGuest().marker, 300_000);
  vm.machine.sendConsoleInput(Buffer.from('\n', 'latin1'));
  await vm.waitFor('serial', /# $/m, 30_000);
  return vm;
}

export const sha = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
