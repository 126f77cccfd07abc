import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_SIZE, GuestMemoryError, GuestRam, RAM_BASE } from '../../src/machine/memory.js';

test('untouched RAM reads as zero and allocates nothing', () => {
  const ram = new GuestRam(64 * 1024 * 1024);
  assert.equal(ram.readU32(RAM_BASE + 0x1234), 0);
  assert.equal(ram.allocatedChunks, 0);
});

test('a write allocates exactly one chunk and discard gives it back', () => {
  const ram = new GuestRam(64 * 1024 * 1024);
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

test('partial discard zeroes without releasing', () => {
  const ram = new GuestRam(4 * 1024 * 1024);
  ram.writeU32(RAM_BASE + 4096, 7);
  assert.equal(ram.discard(RAM_BASE + 4096, 4096), 0);
  assert.equal(ram.readU32(RAM_BASE + 4096), 0);
  assert.equal(ram.allocatedChunks, 1);
});

test('accesses that straddle a chunk boundary are stitched together', () => {
  const ram = new GuestRam(8 * 1024 * 1024);
  const at = RAM_BASE + CHUNK_SIZE - 2;
  ram.writeU32(at, 0x11223344);
  assert.equal(ram.readU32(at), 0x11223344);
  ram.writeU64(RAM_BASE + CHUNK_SIZE - 4, 0x12_3456_789a);
  assert.equal(ram.readU64(RAM_BASE + CHUNK_SIZE - 4), 0x12_3456_789a);
});

test('DMA outside RAM is a typed error, never a host crash', () => {
  const ram = new GuestRam(1024 * 1024);
  assert.throws(() => ram.read(RAM_BASE + 1024 * 1024 - 2, new Uint8Array(4)), GuestMemoryError);
  assert.throws(() => ram.writeU8(0x1000, 1), GuestMemoryError);
  assert.throws(() => ram.readU32(Number.NaN), GuestMemoryError);
});
