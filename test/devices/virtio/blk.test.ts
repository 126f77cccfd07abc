import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestRam } from '../../../src/machine/memory.js';
import {
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VirtioBlk,
  type VirtioBlkOptions,
} from '../../../src/devices/virtio/blk.js';
import {
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_MMIO_STATUS,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  hasFeature,
} from '../../../src/devices/virtio/regs.js';
import { MemoryBackend } from './memory-backend.js';
import { VirtioDriverMock, blkHeader, blkRangeSegment, blkRequest } from './driver-mock.js';

const MiB = 1024 * 1024;

function setup(diskBytes = 4 * MiB, options: VirtioBlkOptions = {}, readOnlyBackend = false) {
  const ram = new GuestRam(32 * MiB);
  const mock = new VirtioDriverMock(ram);
  const backend = new MemoryBackend(diskBytes, readOnlyBackend);
  const dev = new VirtioBlk({ ram, irq: mock.irq, name: 'vda' }, backend, options);
  mock.attach(dev).init(1);
  return { ram, mock, backend, dev };
}

function pattern(length: number, seed: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('configuration space: capacity in sectors, blk_size, seg_max/size_max, features', () => {
  const { mock } = setup(3 * MiB + 512);
  assert.equal(mock.config64(0), (3 * MiB) / 512 + 1);
  assert.equal(mock.config32(20), 512, 'blk_size');
  assert.ok(mock.config32(12) > 0, 'seg_max');
  assert.ok(mock.config32(8) >= 4096, 'size_max');
  for (const f of [VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]) assert.ok(hasFeature(mock.features, f));
  assert.ok(!hasFeature(mock.features, VIRTIO_BLK_F_RO));
});

test('write then read back, direct and indirect, across sectors', async () => {
  const { mock, backend, dev } = setup();
  const data = pattern(8192, 7);
  const w = await blkRequest(mock, VIRTIO_BLK_T_OUT, 10, { out: data });
  assert.equal(w.status, VIRTIO_BLK_S_OK);
  assert.deepEqual(backend.data.subarray(10 * 512, 10 * 512 + 8192), data);
  const r = await blkRequest(mock, VIRTIO_BLK_T_IN, 10, { readLength: 8192, indirect: true });
  assert.equal(r.status, VIRTIO_BLK_S_OK);
  assert.equal(r.len, 8193, 'used length counts data and status');
  assert.deepEqual(r.data, data);
  const m = dev.metrics();
  assert.equal(m.reads, 1);
  assert.equal(m.writes, 1);
  assert.equal(m.writeBytes, 8192);
  assert.equal(m.readBytes, 8192);
});

test('data split across several guest buffers is gathered and scattered in order', async () => {
  const { mock, backend } = setup();
  const a = pattern(512, 1);
  const b = pattern(1024, 2);
  mock.post(0, [blkHeader(VIRTIO_BLK_T_OUT, 0), a, b], [1]);
  mock.kick(0);
  await mock.waitUsed(0);
  assert.deepEqual(backend.data.subarray(0, 1536), new Uint8Array([...a, ...b]));
  mock.post(0, [blkHeader(VIRTIO_BLK_T_IN, 0)], [1000, 536, 1]);
  mock.kick(0);
  const [used] = await mock.waitUsed(0);
  assert.deepEqual(new Uint8Array([...used!.written[0]!, ...used!.written[1]!]), new Uint8Array([...a, ...b]));
});

test('flush completes only after the backend flush resolves, and after earlier writes', async () => {
  const { mock, backend } = setup(4 * MiB, { maxInflight: 4 });
  backend.delay = (op) => (op === 'flush' ? 30 : op === 'write' ? 15 : 0);
  mock.post(0, [blkHeader(VIRTIO_BLK_T_OUT, 0), pattern(512, 3)], [1]);
  mock.post(0, [blkHeader(VIRTIO_BLK_T_FLUSH, 0)], [1]);
  mock.kick(0);
  const used = await mock.waitUsed(0, 2);
  assert.equal(backend.flushes, 1);
  assert.equal(backend.unflushedWrites, 0, 'the write completed before the flush');
  assert.deepEqual(backend.log, ['write 0 512', 'flush 0 0']);
  assert.equal(used.length, 2);
  const flushUsed = used[1]!;
  assert.equal(flushUsed.written[0]![0], VIRTIO_BLK_S_OK);
});

test('a flush is not reported before fsync: no used entry while the backend flush is pending', async () => {
  const { mock, backend } = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const realFlush = backend.flush.bind(backend);
  backend.flush = async () => {
    await gate;
    await realFlush();
  };
  mock.post(0, [blkHeader(VIRTIO_BLK_T_FLUSH, 0)], [1]);
  mock.kick(0);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(mock.collect(0).length, 0);
  release();
  const [used] = await mock.waitUsed(0);
  assert.equal(used!.written[0]![0], VIRTIO_BLK_S_OK);
  assert.equal(backend.flushes, 1);
});

test('discard and write-zeroes zero the ranges; bad flags are UNSUPP', async () => {
  const { mock, backend, dev } = setup();
  backend.data.fill(0xaa);
  const d = await blkRequest(mock, VIRTIO_BLK_T_DISCARD, 0, {
    out: new Uint8Array([...blkRangeSegment(8, 8), ...blkRangeSegment(100, 2)]),
  });
  assert.equal(d.status, VIRTIO_BLK_S_OK);
  assert.ok(backend.data.subarray(8 * 512, 16 * 512).every((x) => x === 0));
  assert.ok(backend.data.subarray(100 * 512, 102 * 512).every((x) => x === 0));
  assert.equal(backend.data[16 * 512], 0xaa);
  const z = await blkRequest(mock, VIRTIO_BLK_T_WRITE_ZEROES, 0, { out: blkRangeSegment(200, 3, 1) });
  assert.equal(z.status, VIRTIO_BLK_S_OK);
  assert.ok(backend.data.subarray(200 * 512, 203 * 512).every((x) => x === 0));
  const bad = await blkRequest(mock, VIRTIO_BLK_T_DISCARD, 0, { out: blkRangeSegment(300, 1, 1) });
  assert.equal(bad.status, VIRTIO_BLK_S_UNSUPP, 'UNMAP on discard is UNSUPP');
  const oob = await blkRequest(mock, VIRTIO_BLK_T_WRITE_ZEROES, 0, { out: blkRangeSegment(8191, 2) });
  assert.equal(oob.status, VIRTIO_BLK_S_IOERR);
  assert.equal(dev.metrics().discards, 1);
  assert.equal(dev.metrics().writeZeroes, 1);
});

test('GET_ID returns the serial, zero padded to 20 bytes', async () => {
  const { mock } = setup(MiB, { serial: 'disk-serial-01' });
  const r = await blkRequest(mock, VIRTIO_BLK_T_GET_ID, 0, { readLength: 20 });
  assert.equal(r.status, VIRTIO_BLK_S_OK);
  assert.equal(new TextDecoder().decode(r.data.subarray(0, 14)), 'disk-serial-01');
  assert.ok(r.data.subarray(14).every((x) => x === 0));
});

test('read-only disks: F_RO offered, writes are IOERR and change nothing, no discard features', async () => {
  const { mock, backend } = setup(MiB, {}, true);
  assert.ok(hasFeature(mock.features, VIRTIO_BLK_F_RO));
  assert.ok(!hasFeature(mock.features, VIRTIO_BLK_F_DISCARD));
  const w = await blkRequest(mock, VIRTIO_BLK_T_OUT, 0, { out: pattern(512, 9) });
  assert.equal(w.status, VIRTIO_BLK_S_IOERR);
  assert.ok(backend.data.every((x) => x === 0));
  const d = await blkRequest(mock, VIRTIO_BLK_T_DISCARD, 0, { out: blkRangeSegment(0, 1) });
  assert.equal(d.status, VIRTIO_BLK_S_UNSUPP);
  const r = await blkRequest(mock, VIRTIO_BLK_T_IN, 0, { readLength: 512 });
  assert.equal(r.status, VIRTIO_BLK_S_OK);
  const ro2 = setup(MiB, { readOnly: true });
  assert.ok(hasFeature(ro2.mock.features, VIRTIO_BLK_F_RO), 'readOnly option forces F_RO on a writable backend');
});

test('out-of-range sectors, partial sectors, unknown types and backend errors are reported, not thrown', async () => {
  const { mock, backend, dev } = setup(MiB);
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_IN, 2047, { readLength: 1024 })).status, VIRTIO_BLK_S_IOERR);
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_IN, 2 ** 50, { readLength: 512 })).status, VIRTIO_BLK_S_IOERR);
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_OUT, 2 ** 63, { out: pattern(512, 1) })).status, VIRTIO_BLK_S_IOERR);
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_IN, 0, { readLength: 100 })).status, VIRTIO_BLK_S_IOERR);
  assert.equal((await blkRequest(mock, 99, 0)).status, VIRTIO_BLK_S_UNSUPP);
  backend.failNext.add('read');
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_IN, 0, { readLength: 512 })).status, VIRTIO_BLK_S_IOERR);
  backend.failNext.add('flush');
  assert.equal((await blkRequest(mock, VIRTIO_BLK_T_FLUSH, 0)).status, VIRTIO_BLK_S_IOERR);
  assert.equal(
    (await blkRequest(mock, VIRTIO_BLK_T_IN, 2047, { readLength: 512 })).status,
    VIRTIO_BLK_S_OK,
    'the last sector is fine',
  );
  assert.equal(dev.needsReset, false);
  assert.equal(dev.metrics().errors, 6);
  assert.equal(dev.metrics().unsupported, 1);
});

test("a single-descriptor read past seg_max x size_max (U-Boot's ext4 reads a whole extent run) completes", async () => {
  const ram = new GuestRam(64 * MiB);
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + ram.size);
  const backend = new MemoryBackend(24 * MiB);
  backend.data.set(pattern(24 * MiB, 5));
  const dev = new VirtioBlk({ ram, irq: mock.irq, name: 'vda' }, backend);
  mock.attach(dev).init(1);
  const length = 20 * MiB + 4096; // over the 16 MiB that seg_max and size_max allow, and not a whole number of pieces
  const r = await blkRequest(mock, VIRTIO_BLK_T_IN, 8, { readLength: length });
  assert.equal(r.status, VIRTIO_BLK_S_OK);
  assert.equal(r.len, length + 1);
  assert.ok(Buffer.from(r.data).equals(backend.data.subarray(8 * 512, 8 * 512 + length)), 'the guest got the disk bytes');
  assert.equal(dev.needsReset, false);
  assert.equal(dev.metrics().readBytes, length);
});

test('a write payload past seg_max x size_max is IOERR and changes nothing; a chain larger than RAM is a protocol error', async () => {
  const ram = new GuestRam(64 * MiB);
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + ram.size);
  const backend = new MemoryBackend(24 * MiB);
  const dev = new VirtioBlk({ ram, irq: mock.irq, name: 'vda' }, backend);
  mock.attach(dev).init(1);
  const w = await blkRequest(mock, VIRTIO_BLK_T_OUT, 0, { out: pattern(16 * MiB + 512, 3) });
  assert.equal(w.status, VIRTIO_BLK_S_IOERR);
  assert.ok(
    backend.data.every((b) => b === 0),
    'nothing was written',
  );
  assert.equal(dev.needsReset, false);
  // Three 30 MiB descriptors over the same RAM (ring descriptors 0-4, fresh queue state): 90 MiB in a 64 MiB guest.
  const q = mock.queues[0]!;
  const header = ram.base + 0x100_0000;
  ram.write(header, blkHeader(VIRTIO_BLK_T_IN, 0));
  const chain: [number, number, number][] = [
    [header, 16, 0],
    [ram.base, 30 * MiB, VIRTQ_DESC_F_WRITE],
    [ram.base, 30 * MiB, VIRTQ_DESC_F_WRITE],
    [ram.base, 30 * MiB, VIRTQ_DESC_F_WRITE],
    [ram.base + 0x200_0000, 1, VIRTQ_DESC_F_WRITE],
  ];
  const first = q.availIdx;
  chain.forEach(([addr, len, flags], i) =>
    mock.writeDesc(q.desc, 10 + i, addr, len, flags | (i + 1 < chain.length ? VIRTQ_DESC_F_NEXT : 0), 11 + i),
  );
  ram.writeU16(q.avail + 4 + 2 * (first % q.size), 10);
  ram.writeU16(q.avail + 2, first + 1);
  mock.notify(0);
  assert.equal(dev.needsReset, true);
  assert.match(dev.lastProtocolError ?? '', /^ChainTooLarge/);
});

test('a request without a status byte is a protocol error (NEEDS_RESET)', async () => {
  const { mock, dev } = setup();
  mock.post(0, [blkHeader(VIRTIO_BLK_T_IN, 0)], []);
  mock.kick(0);
  assert.ok(mock.status & VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.match(dev.lastProtocolError ?? '', /^MalformedRequest/);
});

test('concurrent requests may complete out of order; each lands in the used ring once', async () => {
  const { mock, backend } = setup(4 * MiB, { maxInflight: 8 });
  backend.delay = (_op, offset) => (offset === 0 ? 40 : 1);
  for (let i = 0; i < 6; i++) mock.post(0, [blkHeader(VIRTIO_BLK_T_OUT, i * 8), pattern(4096, i)], [1]);
  mock.kick(0);
  const used = await mock.waitUsed(0, 6);
  assert.equal(used.length, 6);
  assert.notEqual(used[0]!.head, 0, 'the slow first request did not complete first');
  for (let i = 0; i < 6; i++) assert.deepEqual(backend.data.subarray(i * 4096, (i + 1) * 4096), pattern(4096, i));
});

test('with the default of one request in flight, requests run strictly in order', async () => {
  const { mock, backend } = setup();
  backend.delay = (_op, offset) => (offset === 0 ? 20 : 0);
  mock.post(0, [blkHeader(VIRTIO_BLK_T_OUT, 0), pattern(512, 1)], [1]);
  mock.post(0, [blkHeader(VIRTIO_BLK_T_OUT, 0), pattern(512, 2)], [1]);
  mock.kick(0);
  const used = await mock.waitUsed(0, 2);
  assert.deepEqual(
    used.map((u) => u.head),
    [0, 3],
  );
  assert.deepEqual(backend.data.subarray(0, 512), pattern(512, 2), 'the later write wins');
});

test('a reset while a request is in flight drops its completion and writes nothing into the guest', async () => {
  const { mock, backend, ram } = setup();
  backend.data.fill(0x55);
  backend.delay = 20;
  mock.post(0, [blkHeader(VIRTIO_BLK_T_IN, 0)], [512, 1]);
  mock.kick(0);
  const q = mock.queues[0]!;
  mock.w(VIRTIO_MMIO_STATUS, 0);
  const dev = mock.dev as VirtioBlk;
  await dev.whenIdle();
  assert.equal(ram.readU16(q.used + 2), 0, 'used index untouched');
  const posted = [...q.posted.values()][0]!;
  const buf = new Uint8Array(512);
  ram.read(posted.inBuffers[0]!.addr, buf);
  assert.ok(
    buf.every((x) => x === 0),
    'no DMA after reset',
  );
});

test('in-flight requests are re-submitted after saveState/loadState', async () => {
  const { mock, backend, dev, ram } = setup();
  backend.data.set(pattern(512, 42), 0);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const realRead = backend.read.bind(backend);
  backend.read = async (o, into) => {
    await gate;
    await realRead(o, into);
  };
  mock.post(0, [blkHeader(VIRTIO_BLK_T_IN, 0)], [512, 1]);
  mock.kick(0);
  const state = structuredClone(dev.saveState());
  assert.deepEqual(state.data.transport.queues[0]!.inflight, [0]);
  // A new device over the same RAM and disk (as after a restore) completes the request.
  const backend2 = new MemoryBackend(backend.size);
  backend2.data.set(backend.data);
  const dev2 = new VirtioBlk({ ram, irq: mock.irq, name: 'vda' }, backend2);
  dev2.loadState(state);
  mock.attach(dev2);
  const [used] = await mock.waitUsed(0);
  assert.deepEqual(used!.written[0], pattern(512, 42));
  release();
  await dev.whenIdle();
});
