/**
 * fast-check suites over qcow2 images:
 *  - hostile images (test/storage/qcow2-hostile.ts, run in a worker thread): random mutations of the header,
 *    L1/L2 tables and refcount structures of a valid image, and of a qemu-made compressed one, and random
 *    garbage headers. openDisk either refuses with a StorageError carrying a message, or the image is usable
 *    with every read/write either succeeding or failing with a StorageError; nothing else is thrown, nothing
 *    hangs, and the file never grows past a small bound (no writes outside the image's sane range).
 *  - a model-based test (test/storage/qcow2-model.ts, in a worker too): random read/write/discard/writeZeroes/flush
 *    sequences against an in-memory model,
 *    with and without a backing file, across cluster sizes.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fuzzTimeout } from '../helpers/fuzz.js';
import { runInWorker } from '../helpers/fuzz-worker.js';
import { createDisk, openDisk } from '../../src/storage/index.js';
import { fillRandom, qemu, rng, tempDir } from './helpers.js';
import { CLUSTER, exercise, mutate, plainRegions, type HostileProperty, type Mutation, type Outcomes } from './qcow2-hostile.js';
import type { FuzzWorkerData } from './qcow2-fuzz-worker.js';
import type { ModelOutcome } from './qcow2-model.js';

const { dir, cleanup } = tempDir('fuzz');
after(cleanup);

const SIZE = 1024 * 1024;
/** Built once per run of this file, then handed to each property's worker. */
let template: Uint8Array;
let compressedTemplate: Uint8Array;

before(async () => {
  // A 1 MiB image of ours (lazy refcounts) with 30 random 9000-byte writes: L2 tables and refcount blocks in use.
  const p = join(dir, 'template.qcow2');
  await createDisk(p, { format: 'qcow2', size: SIZE, clusterSize: CLUSTER, lazyRefcounts: true });
  const disk = await openDisk(p);
  const rand = rng(42);
  for (let i = 0; i < 30; i++) await disk.write(Math.floor(rand() * (SIZE - 9000)), fillRandom(new Uint8Array(9000), rand));
  await disk.close();
  template = new Uint8Array(readFileSync(p));

  // qemu-img's own compressed clusters (4 KiB clusters, 256 KiB of compressible data).
  const raw = join(dir, 'c.raw');
  const src = new Uint8Array(256 * 1024);
  for (let i = 0; i < src.length; i++) src[i] = (i >> 10) & 0xff;
  writeFileSync(raw, src);
  const c = join(dir, 'c.qcow2');
  assert.equal(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, c).status, 0);
  compressedTemplate = new Uint8Array(readFileSync(c));
});

function runHostile(property: HostileProperty, image: Uint8Array): Promise<Outcomes> {
  return runInWorker<Outcomes>(new URL('./qcow2-fuzz-worker.js', import.meta.url), {
    kind: 'hostile',
    property,
    template: image,
  } satisfies FuzzWorkerData);
}

test(
  'fuzz: mutated headers, L1/L2 tables and refcount structures are refused cleanly or handled in bounds',
  { timeout: fuzzTimeout(240_000) },
  async () => {
    const outcomes = await runHostile('mutated', template);
    // Not vacuous: some mutated images must be refused and some must open and take I/O.
    assert.ok(outcomes.refused > 20 && outcomes.opened > 20, JSON.stringify(outcomes));
  },
);

// Found by the campaign of 2026-11-29 (seed 1411300860, case 1272): refcount table entry 0 aimed at a data
// cluster (one byte changed) made the allocator read data as refcounts, skip every cluster that block covers and
// allocate ~5 MB past the end of a 1 MiB image. Clusters past the end of the file are now free whatever a refcount
// block says of them (nothing may reference them), so allocation stays at the end of the file.
// Any request sequence shows it (the image needs only to allocate once); without the fix this one fails with
// "file grew by 5095424 bytes".
const REGRESSION_OPS_SEED = 1;
test('regression: a refcount block aimed at a data cluster does not make the image allocate far past its end', async () => {
  const counterexample: Mutation[] = [
    { kind: 'byte', region: 2, at: 191716614, value: 208 },
    { kind: 'byte', region: 0, at: 304, value: 0 },
  ];
  const outcomes: Outcomes = { refused: 0, opened: 0 };
  await exercise(mutate(template, counterexample, plainRegions(template)), REGRESSION_OPS_SEED, outcomes);
  assert.deepEqual(outcomes, { refused: 0, opened: 1 }, 'the image opens and takes the I/O');
});

test('fuzz: mutated qemu-made compressed images', { timeout: fuzzTimeout(240_000) }, async () => {
  const outcomes = await runHostile('compressed', compressedTemplate);
  assert.ok(outcomes.refused > 10 && outcomes.opened > 10, JSON.stringify(outcomes));
});

test('fuzz: random garbage headers and truncated files', { timeout: fuzzTimeout(60_000) }, async () => {
  const outcomes = await runHostile('garbage', new Uint8Array(0));
  assert.ok(outcomes.refused > 0, JSON.stringify(outcomes));
});

for (const [clusterSize, backing] of [
  [512, false],
  [4096, true],
  [65536, true],
  [4096, false],
] as const) {
  test(
    `model-based: read/write/discard/writeZeroes/flush match a model (${clusterSize}-byte clusters${backing ? ', backing file' : ''}${clusterSize === 512 ? ', tiny L2 cache' : ''})`,
    { timeout: fuzzTimeout(240_000) },
    async () => {
      const { cases, qemuChecks } = await runInWorker<ModelOutcome>(new URL('./qcow2-fuzz-worker.js', import.meta.url), {
        kind: 'model',
        clusterSize,
        backing,
        dir,
      } satisfies FuzzWorkerData);
      console.log(`qemu-img check ran on ${qemuChecks} of ${cases} cases`);
      assert.ok(qemuChecks >= 1 && cases >= 1);
    },
  );
}
