import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MmioDevice } from '../../src/devices/device.js';
import { GuestRam } from '../../src/machine/memory.js';
import type { Machine } from '../../src/machine/machine.js';
import {
  VirtioBlk,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../../src/devices/virtio/blk.js';
import { createDisk } from '../../src/storage/index.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { attachVirtioDevices, type VirtioBoard, type VirtioSlotContext } from '../../src/vm/virtio-devices.js';
import { VirtioDriverMock, blkRequest } from './virtio/driver-mock.js';
import { MemoryBackend } from './virtio/memory-backend.js';

const MiB = 1024 * 1024;

// Compile-time check: the real board satisfies the interface attachVirtioDevices needs.
export type MachineIsAVirtioBoard = Machine extends VirtioBoard ? true : never;
const machineFits: MachineIsAVirtioBoard = true;
void machineFits;

class FakeBoard implements VirtioBoard {
  readonly ram = new GuestRam(32 * MiB);
  readonly slots: { dev: MmioDevice; mock: VirtioDriverMock }[] = [];
  attachVirtio(factory: (ctx: VirtioSlotContext) => MmioDevice): number {
    const mock = new VirtioDriverMock(
      this.ram,
      this.ram.base + this.slots.length * 4 * MiB,
      this.ram.base + (this.slots.length + 1) * 4 * MiB,
    );
    const dev = factory({ ram: this.ram, irq: mock.irq, name: `virtio@${this.slots.length}` });
    mock.attach(dev);
    this.slots.push({ dev, mock });
    return this.slots.length - 1;
  }
}

test('attachVirtioDevices: balloon, rng, console, then disks in reverse (Linux probes the highest slot first); disks reused across reboots; close flushes', async () => {
  const opened: string[] = [];
  const backends = new Map<string, MemoryBackend>();
  const openDisk = async (path: string, opts: { readOnly: boolean }) => {
    opened.push(path);
    const b = new MemoryBackend(MiB, opts.readOnly);
    backends.set(path, b);
    return b;
  };
  const config = defaultVmConfig({
    disks: [
      { path: 'a.img', format: 'raw', readOnly: false, serial: 'AAA' },
      { path: 'b.qcow2', format: 'qcow2', readOnly: true },
    ],
  });
  const board = new FakeBoard();
  const out: string[] = [];
  const vd = await attachVirtioDevices(board, config, {
    openDisk,
    onConsoleOutput: (b) => out.push(new TextDecoder().decode(b)),
  });
  assert.deepEqual(
    board.slots.map((s) => s.dev.read(8, 4)),
    [5, 4, 3, 2, 2],
  );
  assert.deepEqual(
    vd.disks.map((d) => d.slot),
    [4, 3],
  );
  assert.equal(vd.disks.length, 2);
  assert.equal(vd.disks[1]!.device.readOnly, true);
  const disk0 = board.slots[4]!.mock.init(1);
  const id = await blkRequest(disk0, VIRTIO_BLK_T_GET_ID, 0, { readLength: 20 });
  assert.equal(new TextDecoder().decode(id.data.subarray(0, 3)), 'AAA');
  const w = await blkRequest(disk0, VIRTIO_BLK_T_OUT, 0, { out: new Uint8Array(512).fill(9) });
  assert.equal(w.status, VIRTIO_BLK_S_OK);
  assert.deepEqual(vd.counters(), {
    diskReadBytes: 0,
    diskWriteBytes: 512,
    diskReadOps: 0,
    diskWriteOps: 1,
    balloonBytes: 0,
    nics: [],
  });
  // The guest agent channel.
  const con = board.slots[2]!.mock.init(2);
  assert.equal(vd.agentSend('ping'), true);
  con.post(0, [], [64]);
  con.kick(0);
  const [line] = con.collect(0);
  assert.equal(new TextDecoder().decode(line!.written[0]!.subarray(0, line!.len)), 'ping\n');
  con.post(1, [new TextEncoder().encode('pong\n')], []);
  con.kick(1);
  assert.deepEqual(out, ['pong\n']);
  // A reboot attaches fresh devices to a new board but keeps the same open disks.
  const board2 = new FakeBoard();
  const vd2 = await attachVirtioDevices(board2, config, { openDisk });
  assert.deepEqual(opened, ['a.img', 'b.qcow2']);
  assert.equal(vd2.disks[0]!.backend, vd.disks[0]!.backend);
  await vd.close();
  assert.equal(backends.get('a.img')!.closed, true);
  assert.equal(backends.get('a.img')!.flushes, 1);
  // After close, a new attach opens the images again.
  await attachVirtioDevices(new FakeBoard(), config, { openDisk });
  assert.equal(opened.length, 4);
});

test('attachVirtioDevices closes the disks when the board exits, except for a reboot', async () => {
  const backends: MemoryBackend[] = [];
  const openDisk = async () => {
    const b = new MemoryBackend(MiB);
    backends.push(b);
    return b;
  };
  const config = defaultVmConfig({ disks: [{ path: 'a.img', format: 'raw', readOnly: false }] });
  for (const kind of ['reboot', 'poweroff']) {
    let exit!: (e: { kind: string }) => void;
    const board = Object.assign(new FakeBoard(), { exited: new Promise<{ kind: string }>((r) => (exit = r)) });
    await attachVirtioDevices(board, config, { openDisk });
    exit({ kind });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
  assert.equal(backends.length, 1, 'the reboot reused the open disk');
  assert.equal(backends[0]!.closed, true, 'poweroff closed it');
});

test('attachVirtioDevices opens real images through src/storage (raw and qcow2) and FLUSH reaches the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'typevisor-virtio-'));
  try {
    const raw = join(dir, 'disk.raw');
    const qcow = join(dir, 'disk.qcow2');
    await createDisk(raw, { format: 'raw', size: 4 * MiB });
    await createDisk(qcow, { format: 'qcow2', size: 4 * MiB });
    const config = defaultVmConfig({
      disks: [
        { path: raw, format: 'raw', readOnly: false },
        { path: qcow, format: 'qcow2', readOnly: false },
      ],
      virtioConsole: false,
      rng: false,
      balloon: false,
    });
    const board = new FakeBoard();
    const vd = await attachVirtioDevices(board, config);
    assert.equal(board.slots.length, 2);
    const data = new Uint8Array(4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    for (const s of board.slots) {
      const m = s.mock.init(1);
      assert.equal(s.dev.read(8, 4), 2);
      assert.equal(m.config64(0), (4 * MiB) / 512);
      assert.equal((await blkRequest(m, VIRTIO_BLK_T_OUT, 16, { out: data })).status, VIRTIO_BLK_S_OK);
      assert.equal((await blkRequest(m, VIRTIO_BLK_T_FLUSH, 0)).status, VIRTIO_BLK_S_OK);
      const r = await blkRequest(m, VIRTIO_BLK_T_IN, 16, { readLength: 4096 });
      assert.deepEqual(r.data, data);
    }
    const file = new Uint8Array(await readFile(raw));
    assert.deepEqual(file.subarray(16 * 512, 16 * 512 + 4096), data, 'the raw file holds the data after FLUSH');
    assert.ok(vd.disks.every((d) => d.device instanceof VirtioBlk));
    await vd.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
