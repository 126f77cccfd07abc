/**
 * Warm-up of a pooled VM worker (src/host/worker-pool.ts): a fresh isolate runs everything cold, and a restore's
 * first pass through the board, the devices and the state loader costs several times its warm time, as do the
 * guest's first milliseconds in the interpreter. Before the worker is handed a VM, it builds a small board, runs
 * a short loop of guest code on it, saves its state and loads it into a second board: the same code paths as a
 * real restore, with nothing of it kept.
 */
import { Machine } from '../machine/machine.js';
import { captureMachineState, restoreMachineState } from '../machine/snapshot/machine-state.js';
import { bufferSource, encodeStateFile, StateFile } from '../machine/snapshot/format.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultVmConfig, type DiskConfig } from './config.js';
import { createDisk } from '../storage/index.js';
import { defaultHartFactory } from './machine-loop.js';
import { attachVirtioDevices } from './virtio-devices.js';
import { createLinearRam, linearRamWanted } from './linear-ram.js';

/**
 * RV64GC: t1 = 0x8040_0000; loop { t0++; store and load it; every 8th round skip a few ALU ops, a word store and
 * load }: the interpreter's hot integer, load/store and branch paths.
 */
const LOOP = [
  0x031b, 0x2010, 0x035a, 0x4281, 0x0285, 0x3023, 0x0053, 0x3383, 0x0003, 0xfe13, 0x0072, 0x0c63, 0x000e, 0xceb3, 0x007e, 0x9f13,
  0x003e, 0x0fb3, 0x005f, 0x2423, 0x01f3, 0x2583, 0x0083, 0xbfe9,
];
const RUN_MS = 40;

export async function warmUp(): Promise<void> {
  // A small qcow2 disk on the boards: opening a disk image chain costs ~40 ms the first time in an isolate (its
  // code compiled), which a restore of a VM with disks would otherwise pay on its critical path.
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-warm-up-'));
  try {
    const disk = join(dir, 'warm-up.qcow2');
    await createDisk(disk, { format: 'qcow2', size: 2 ** 20 });
    await warmUpBoards([{ path: disk, format: 'qcow2', readOnly: false }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function warmUpBoards(disks: DiskConfig[]): Promise<void> {
  const kernel = new Uint8Array(new Uint16Array(LOOP).buffer);
  const config = { ...defaultVmConfig({ name: 'warm-up', memoryMiB: 16 }), disks };
  const createHart = defaultHartFactory();
  const board = (forRestore: boolean): Machine =>
    new Machine({
      forRestore,
      harts: 1,
      memoryBytes: config.memoryMiB * 2 ** 20,
      firmware: { kind: 'builtin' },
      kernel,
      createHart,
      linearRam: linearRamWanted() ? createLinearRam : undefined,
    });
  const source = board(false);
  const sourceDevices = await attachVirtioDevices(source, config);
  source.start();
  await new Promise((r) => setTimeout(r, RUN_MS));
  source.pause();
  const { parts, length } = encodeStateFile(captureMachineState(source));
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  source.stop();
  await source.ram.dispose();
  await sourceDevices.close();
  const target = board(true);
  // A config object of its own: the target opens the disk again instead of sharing the source's open image.
  const targetDevices = await attachVirtioDevices(target, { ...config });
  restoreMachineState(target, new StateFile(bufferSource(bytes)), { lazyRam: true });
  target.ram.fillLazyChunks(Infinity);
  target.stop();
  await target.ram.dispose();
  await targetDevices.close();
}
