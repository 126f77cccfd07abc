/** MemoryFile: the in-memory ImageFile keeps HostFile's read/write/truncate semantics and bounds its growth. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryFile, StorageError } from '../../src/storage/index.js';

test('reads past the end are zeros; writes extend the file; truncate shrinks and re-extends with zeros', async () => {
  const f = new MemoryFile(new Uint8Array([1, 2, 3, 4]));
  const into = new Uint8Array(6).fill(9);
  await f.read(2, into);
  assert.deepEqual([...into], [3, 4, 0, 0, 0, 0]);
  await f.write(10, new Uint8Array([7, 7]));
  assert.equal(await f.size(), 12);
  assert.deepEqual([...f.contents()], [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 7, 7]);
  await f.truncate(3);
  await f.truncate(5);
  assert.deepEqual([...f.contents()], [1, 2, 3, 0, 0]);
  assert.equal(f.largestEnd, 12);
});

test('a MemoryFile never shares memory with the bytes it was made from (not even a Buffer)', async () => {
  const source = Buffer.from([1, 2, 3, 4]);
  const f = new MemoryFile(source);
  await f.write(0, new Uint8Array([9]));
  assert.deepEqual([...source], [1, 2, 3, 4]);
});

test('growth past the limit is refused with a StorageError but recorded in largestEnd; bad offsets are refused', async () => {
  const f = new MemoryFile(new Uint8Array(16), false, 'x', 1024);
  await assert.rejects(f.write(2000, new Uint8Array(8)), (e: unknown) => e instanceof StorageError && e.code === 'IO');
  assert.equal(f.largestEnd, 2008);
  assert.equal(await f.size(), 16);
  await assert.rejects(f.read(-1, new Uint8Array(1)), (e: unknown) => e instanceof StorageError && e.code === 'OUT_OF_RANGE');
  await assert.rejects(
    f.write(2 ** 53, new Uint8Array(1)),
    (e: unknown) => e instanceof StorageError && e.code === 'OUT_OF_RANGE',
  );
});

test('read-only files refuse writes; a closed file refuses everything', async () => {
  const ro = new MemoryFile(new Uint8Array(4), true);
  await assert.rejects(ro.write(0, new Uint8Array(1)), (e: unknown) => e instanceof StorageError && e.code === 'READ_ONLY');
  const f = new MemoryFile(new Uint8Array(4));
  await f.close();
  await assert.rejects(f.read(0, new Uint8Array(1)), (e: unknown) => e instanceof StorageError);
});
