import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_SIZE, GuestMemoryError, GuestRam, RAM_BASE, type LinearRamBacking } from '../../src/machine/memory.js';
import { createLinearRam, linearRamWanted } from '../../src/vm/linear-ram.js';

/** Every behaviour below holds for both ways of holding RAM: a buffer per chunk, and one linear buffer. */
for (const backing of ['chunks', 'linear'] as const) {
  const make = (size: number): GuestRam => {
    if (backing === 'chunks') return new GuestRam(size);
    const linear = createLinearRam(size);
    assert.ok(linear, 'this Linux host can hold RAM in one WebAssembly.Memory (koffi loads libc, madvise works)');
    return new GuestRam(size, RAM_BASE, linear);
  };

  test(`${backing}: untouched RAM reads as zero and allocates nothing`, () => {
    const ram = make(64 * 1024 * 1024);
    assert.equal(ram.readU32(RAM_BASE + 0x1234), 0);
    assert.equal(ram.allocatedChunks, 0);
  });

  test(`${backing}: a write allocates exactly one chunk and discard gives it back`, () => {
    const ram = make(64 * 1024 * 1024);
    const remapped: number[] = [];
    ram.onRemap((i) => remapped.push(i));
    ram.writeU32(RAM_BASE + CHUNK_SIZE + 8, 0xdeadbeef);
    assert.equal(ram.readU32(RAM_BASE + CHUNK_SIZE + 8), 0xdeadbeef);
    assert.equal(ram.allocatedChunks, 1);
    assert.equal(ram.discard(RAM_BASE + CHUNK_SIZE, CHUNK_SIZE), CHUNK_SIZE);
    assert.equal(ram.allocatedChunks, 0);
    assert.equal(ram.readU32(RAM_BASE + CHUNK_SIZE + 8), 0);
    assert.deepEqual(remapped, [1, 1]);
  });

  test(`${backing}: partial discard zeroes without releasing`, () => {
    const ram = make(4 * 1024 * 1024);
    ram.writeU32(RAM_BASE + 4096, 7);
    assert.equal(ram.discard(RAM_BASE + 4096, 4096), 0);
    assert.equal(ram.readU32(RAM_BASE + 4096), 0);
    assert.equal(ram.allocatedChunks, 1);
  });

  test(`${backing}: accesses that straddle a chunk boundary are stitched together`, () => {
    const ram = make(8 * 1024 * 1024);
    const at = RAM_BASE + CHUNK_SIZE - 2;
    ram.writeU32(at, 0x11223344);
    assert.equal(ram.readU32(at), 0x11223344);
    ram.writeU64(RAM_BASE + CHUNK_SIZE - 4, 0x12_3456_789a);
    assert.equal(ram.readU64(RAM_BASE + CHUNK_SIZE - 4), 0x12_3456_789a);
  });

  test(`${backing}: dispose gives every chunk back, pending restored ones included, and RAM reads as zeros`, async () => {
    const ram = make(16 * 1024 * 1024);
    ram.writeU32(RAM_BASE + 8, 0xcafe);
    ram.writeU32(RAM_BASE + 5 * CHUNK_SIZE, 0xbeef);
    const remapped: number[] = [];
    ram.onRemap((i) => remapped.push(i));
    await ram.dispose();
    assert.equal(ram.allocatedChunks, 0);
    assert.deepEqual(remapped, [0, 5]);
    assert.equal(ram.readU32(RAM_BASE + 8), 0);
    assert.equal(ram.readU32(RAM_BASE + 5 * CHUNK_SIZE), 0);
    ram.setLazyChunks([2], () => new Uint8Array(CHUNK_SIZE).fill(1));
    await ram.dispose();
    assert.equal(ram.lazyChunksLeft, 0);
    assert.equal(ram.readU8(RAM_BASE + 2 * CHUNK_SIZE), 0, 'a chunk still pending from a snapshot is dropped unread');
  });

  test(`${backing}: DMA outside RAM is a typed error, never a host crash`, () => {
    const ram = make(1024 * 1024);
    assert.throws(() => ram.read(RAM_BASE + 1024 * 1024 - 2, new Uint8Array(4)), GuestMemoryError);
    assert.throws(() => ram.writeU8(0x1000, 1), GuestMemoryError);
    assert.throws(() => ram.readU32(Number.NaN), GuestMemoryError);
  });
}

test('linear RAM: a released chunk goes back to the host and reads as zeros; lazy snapshot chunks land in the buffer', async () => {
  const size = 256 * 2 ** 20;
  const linear = createLinearRam(size);
  assert.ok(linear);
  const ram = new GuestRam(size, RAM_BASE, linear);
  assert.equal(ram.backing, 'linear');
  const rss = () => process.memoryUsage().rss;
  const before = rss();
  const page = new Uint8Array(4096).fill(0x5a);
  for (let p = 0; p < 128 * 2 ** 20; p += 4096) ram.write(RAM_BASE + p, page);
  const written = rss();
  assert.ok(written - before > 100 * 2 ** 20, `128 MiB written: RSS grew by ${((written - before) / 2 ** 20).toFixed(0)} MiB`);
  assert.equal(ram.discard(RAM_BASE, 128 * 2 ** 20), 128 * 2 ** 20);
  const released = rss();
  assert.ok(
    written - released > 100 * 2 ** 20,
    `128 MiB released: RSS fell by ${((written - released) / 2 ** 20).toFixed(0)} MiB`,
  );
  assert.equal(ram.allocatedChunks, 0);
  ram.writeU8(RAM_BASE + 5, 1);
  assert.equal(ram.readU32(RAM_BASE + 4096), 0, 'a chunk allocated again starts zeroed');

  // Restore: chunk 3's bytes come from the snapshot on first touch, into the linear buffer.
  const stored = new Uint8Array(CHUNK_SIZE).fill(0x77);
  ram.setLazyChunks([3], () => stored);
  assert.equal(ram.readU8(RAM_BASE + 3 * CHUNK_SIZE + 10), 0x77);
  assert.equal(ram.readU8(RAM_BASE + 5), 0, 'a restore forgets what was there');
  const view = ram.chunk(RAM_BASE + 3 * CHUNK_SIZE, false)!;
  assert.equal(view.buffer, linear.buffer);
  assert.equal(view.byteOffset, 3 * CHUNK_SIZE);
  // A loader that reads into the range it is handed (the state file's does): no buffer of its own, no copy.
  const handed: (Uint8Array | null)[] = [];
  ram.setLazyChunks([4], (_index, into) => {
    handed.push(into);
    return into!.fill(0x42);
  });
  assert.equal(ram.readU8(RAM_BASE + 4 * CHUNK_SIZE + 7), 0x42);
  assert.equal(handed.length, 1);
  assert.equal(handed[0]!.buffer, linear.buffer, 'it is handed the chunk in the linear buffer');
  assert.equal(handed[0]!.byteOffset, 4 * CHUNK_SIZE);
  assert.equal(handed[0]!.length, CHUNK_SIZE);

  // A board done with gives its pages back at once: nothing else would, since V8 does not count the memory.
  for (let p = 0; p < 64 * 2 ** 20; p += 4096) ram.write(RAM_BASE + p, page);
  const full = rss();
  await ram.dispose();
  assert.ok(full - rss() > 48 * 2 ** 20, `64 MiB disposed: RSS fell by ${((full - rss()) / 2 ** 20).toFixed(0)} MiB`);
});

test('linear RAM is a shared memory: V8 does not count it as external memory, which forced a full collection', () => {
  const linear = createLinearRam(16 * 2 ** 20);
  assert.ok(linear);
  assert.ok(linear.buffer instanceof SharedArrayBuffer);
});

test('linear RAM: where the host cannot take pages back, a released chunk is zeroed by hand and counted as kept', () => {
  const buffer = new ArrayBuffer(4 * CHUNK_SIZE);
  const refusing: LinearRamBacking = { buffer, release: () => false };
  const ram = new GuestRam(4 * CHUNK_SIZE, RAM_BASE, refusing);
  ram.writeU32(RAM_BASE + CHUNK_SIZE + 64, 0xfeedface);
  assert.equal(ram.discard(RAM_BASE + CHUNK_SIZE, CHUNK_SIZE), 0, 'nothing went back to the host');
  assert.equal(new DataView(buffer).getUint32(CHUNK_SIZE + 64, true), 0);
  ram.writeU8(RAM_BASE + CHUNK_SIZE, 1);
  assert.equal(ram.readU32(RAM_BASE + CHUNK_SIZE + 64), 0);
  assert.throws(() => new GuestRam(8 * CHUNK_SIZE, RAM_BASE, refusing), GuestMemoryError, 'a buffer too small is refused');
});

test('RAM is linear by default; TYPEVISOR_RAM=chunks opts out', () => {
  assert.equal(linearRamWanted({}), true);
  assert.equal(linearRamWanted({ TYPEVISOR_RAM: 'linear' }), true);
  assert.equal(linearRamWanted({ TYPEVISOR_RAM: 'chunks' }), false);
});
