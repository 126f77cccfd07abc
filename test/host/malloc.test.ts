/**
 * The daemon's malloc housekeeping (src/host/memory/malloc.ts) on this host's glibc: freed small blocks between
 * live ones stay resident until malloc_trim gives their pages back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startMallocTrim, trimMalloc } from '../../src/host/memory/malloc.js';

const MIB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('malloc_trim gives back the free pages left between live small blocks (a VM dropping its decoded pages)', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // 16 KiB blocks, as a decoded page's code array; every other one stays, so the freed ones cannot merge into
  // the arena's top, which glibc would give back by itself.
  const keep: Uint8Array[] = [];
  let drop: Uint8Array[] = [];
  for (let i = 0; i < 4096; i++) (i % 2 ? keep : drop).push(new Uint8Array(16 * 1024).fill(1));
  drop = [];
  await sleep(10);
  gc();
  await sleep(200); // the array buffer sweeper frees backing stores after the collection
  const before = process.memoryUsage.rss();
  assert.equal(trimMalloc(), true, 'glibc malloc_trim is available (Linux with glibc, koffi installed)');
  const after = process.memoryUsage.rss();
  assert.ok(
    before - after >= 16 * MIB,
    `32 MiB freed in 16 KiB holes: RSS ${(before / MIB).toFixed(1)} -> ${(after / MIB).toFixed(1)} MiB`,
  );
  assert.equal(keep.length + drop.length, 2048, 'the kept half is still alive');
});

test('the periodic trim can be started and stopped', () => {
  const stop = startMallocTrim(60_000);
  assert.equal(typeof stop, 'function');
  stop!();
});
