import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_SIZE, GuestRam, PAGE_SIZE } from '../../../src/machine/memory.js';
import { VIRTIO_BALLOON_F_REPORTING, VIRTIO_BALLOON_F_STATS_VQ, VirtioBalloon } from '../../../src/devices/virtio/balloon.js';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  bit,
  hasFeature,
} from '../../../src/devices/virtio/regs.js';
import { VirtioDriverMock } from './driver-mock.js';

const MiB = 1024 * 1024;

function setup(accept?: bigint) {
  const ram = new GuestRam(32 * MiB);
  // Rings and buffers live in the first 2 MiB chunk; the rest is the guest's memory to balloon.
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + CHUNK_SIZE);
  const dev = new VirtioBalloon({ ram, irq: mock.irq, name: 'balloon0' });
  mock.attach(dev);
  assert.ok(mock.negotiate(accept));
  const queues =
    2 +
    (hasFeature(mock.features, VIRTIO_BALLOON_F_STATS_VQ) ? 1 : 0) +
    (hasFeature(mock.features, VIRTIO_BALLOON_F_REPORTING) ? 1 : 0);
  for (let i = 0; i < queues; i++) mock.setupQueue(i, 16);
  mock.driverOk();
  return { ram, mock, dev };
}

function pfnList(first: number, count: number): Uint8Array {
  const b = new Uint8Array(4 * count);
  const v = new DataView(b.buffer);
  for (let i = 0; i < count; i++) v.setUint32(4 * i, first + i, true);
  return b;
}

function touchAll(ram: GuestRam, from: number, to: number): void {
  for (let p = from; p < to; p += PAGE_SIZE) ram.writeU32(p, 0xfeed);
}

test('inflate releases whole chunks to the host; deflate gives pages back', () => {
  const { ram, mock, dev } = setup();
  touchAll(ram, ram.base + CHUNK_SIZE, ram.base + 5 * CHUNK_SIZE);
  const before = ram.allocatedChunks;
  assert.equal(before, 5);
  // Inflate chunk 1 completely (512 pages in two batches of 256, as Linux does) and half of chunk 2.
  const firstPfn = (ram.base + CHUNK_SIZE) / PAGE_SIZE;
  for (const [start, n] of [
    [firstPfn, 256],
    [firstPfn + 256, 256],
    [firstPfn + 512, 256],
  ] as const) {
    mock.post(0, [pfnList(start, n)], []);
    mock.kick(0);
  }
  assert.equal(mock.collect(0).length, 3);
  assert.equal(ram.allocatedChunks, before - 1, 'the fully ballooned chunk went back to the host');
  assert.equal(ram.readU32(ram.base + CHUNK_SIZE), 0);
  assert.equal(ram.readU32(ram.base + 2 * CHUNK_SIZE), 0xfeed, 'a half-ballooned chunk keeps its memory');
  assert.equal(dev.balloonedPages, 768);
  assert.equal(dev.metrics().releasedBytes, CHUNK_SIZE);
  // The driver reports `actual` through the configuration space.
  mock.dev.write(0x104, 4, 768);
  assert.equal(dev.actualPages, 768);
  // Deflate 256 pages: the guest may use them again (they are reallocated on first write).
  mock.post(1, [pfnList(firstPfn, 256)], []);
  mock.kick(1);
  assert.equal(mock.collect(1).length, 1);
  assert.equal(dev.balloonedPages, 512);
  ram.writeU32(ram.base + CHUNK_SIZE, 1);
  assert.equal(ram.allocatedChunks, before);
  // PFNs outside RAM are ignored, not fatal.
  mock.post(0, [pfnList(1, 4)], []);
  mock.kick(0);
  assert.equal(dev.needsReset, false);
  assert.equal(dev.metrics().ignoredPfns, 4);
});

test('setTarget raises a configuration change the driver reads as num_pages', () => {
  const { mock, dev } = setup();
  dev.setTarget(1234);
  assert.equal(mock.ackInterrupt() & 2, 2);
  assert.equal(mock.config32(0), 1234);
  assert.equal(dev.targetPages, 1234);
  mock.dev.write(0x100, 4, 1); // the host's field: read-only for the driver
  assert.equal(dev.targetPages, 1234);
});

test('stats queue: the latest stats are kept and new ones are requested by returning the buffer', async () => {
  const { mock, dev } = setup();
  const stats = (free: number): Uint8Array => {
    const b = new Uint8Array(20);
    const v = new DataView(b.buffer);
    v.setUint16(0, 4, true); // VIRTIO_BALLOON_S_MEMFREE
    v.setUint32(2, free, true);
    v.setUint16(10, 5, true); // VIRTIO_BALLOON_S_MEMTOT
    v.setUint32(12, 0, true);
    v.setUint32(16, 1, true); // 4 GiB
    return b;
  };
  mock.post(2, [stats(1000)], []);
  mock.kick(2);
  assert.deepEqual(dev.stats(), { values: { freeMemory: 1000, totalMemory: 2 ** 32 }, updates: 1 });
  assert.equal(mock.collect(2).length, 0, 'the device keeps the stats buffer');
  const arrived = dev.requestStats();
  const used = mock.collect(2);
  assert.equal(used.length, 1, 'requesting stats returns the buffer');
  mock.post(2, [stats(2000)], []);
  mock.kick(2);
  assert.equal(await arrived, true);
  assert.equal(dev.stats().values.freeMemory, 2000);
  assert.equal(dev.stats().updates, 2);
});

test('free page reporting discards the reported ranges and releases their chunks', () => {
  const { ram, mock, dev } = setup();
  touchAll(ram, ram.base + CHUNK_SIZE, ram.base + 8 * CHUNK_SIZE);
  assert.equal(ram.allocatedChunks, 8);
  // Linux reports free blocks as device-writable buffers (virtqueue_add_inbuf), 2 or 4 MiB each.
  const q = mock.queues[3]!;
  const addrs = [ram.base + 2 * CHUNK_SIZE, ram.base + 4 * CHUNK_SIZE];
  mock.writeDesc(q.desc, 0, addrs[0]!, CHUNK_SIZE, 2 | 1, 1);
  mock.writeDesc(q.desc, 1, addrs[1]!, 2 * CHUNK_SIZE, 2, 0);
  ram.writeU16(q.avail + 4, 0);
  ram.writeU16(q.avail + 2, 1);
  q.free.splice(q.free.indexOf(0), 1);
  q.free.splice(q.free.indexOf(1), 1);
  q.posted.set(0, { descriptors: [0, 1], inBuffers: [] });
  q.availIdx = 1;
  mock.kick(3);
  assert.equal(mock.collect(3).length, 1);
  assert.equal(ram.allocatedChunks, 5, 'three chunks went back');
  assert.equal(dev.metrics().reportedBytes, 3 * CHUNK_SIZE);
  assert.equal(ram.readU32(addrs[1]!), 0);
  assert.equal(dev.balloonedPages, 0, 'reported pages are not in the balloon');
});

test('queue numbering follows the negotiated features (reporting without stats is queue 2)', () => {
  const { ram, mock } = setup(
    bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_BALLOON_F_REPORTING),
  );
  touchAll(ram, ram.base + CHUNK_SIZE, ram.base + 3 * CHUNK_SIZE);
  const q = mock.queues[2]!;
  mock.writeDesc(q.desc, 0, ram.base + 2 * CHUNK_SIZE, CHUNK_SIZE, 2, 0);
  ram.writeU16(q.avail + 4, 0);
  ram.writeU16(q.avail + 2, 1);
  q.posted.set(0, { descriptors: [], inBuffers: [] });
  q.availIdx = 1;
  mock.kick(2);
  assert.equal(mock.collect(2).length, 1);
  assert.equal(ram.allocatedChunks, 2);
});

test('balloon state round-trips: ballooned pages, target and stats', () => {
  const { ram, mock, dev } = setup();
  const firstPfn = (ram.base + 3 * CHUNK_SIZE) / PAGE_SIZE;
  mock.post(0, [pfnList(firstPfn, 100)], []);
  mock.kick(0);
  dev.setTarget(100);
  const state = structuredClone(dev.saveState());
  assert.deepEqual(state.data.device.ballooned, [[firstPfn, 100]]);
  const dev2 = new VirtioBalloon({ ram, irq: mock.irq, name: 'balloon0' });
  dev2.loadState(state);
  assert.equal(dev2.balloonedPages, 100);
  assert.equal(dev2.targetPages, 100);
});
