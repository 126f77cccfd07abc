/**
 * fast-check suites over qcow2 images:
 *  - hostile images (test/storage/qcow2-hostile.ts, run in a worker thread): random mutations of the header,
 *    L1/L2 tables and refcount structures of a valid image, and of a qemu-made compressed one, and random
 *    garbage headers. openDisk either refuses with a StorageError carrying a message, or the image is usable
 *    with every read/write either succeeding or failing with a StorageError; nothing else is thrown, nothing
 *    hangs, and the file never grows past a small bound (no writes outside the image's sane range).
 *  - a model-based test: random read/write/discard/writeZeroes/flush sequences against an in-memory model,
 *    with and without a backing file, across cluster sizes.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { fuzzParams, fuzzTimeout } from '../helpers/fuzz.js';
import { runInWorker } from '../helpers/fuzz-worker.js';
import { createDisk, openDisk, Qcow2Image } from '../../src/storage/index.js';
import { applyOp, fillRandom, qemu, rng, tempDir, type Op } from './helpers.js';
import {
  CLUSTER,
  exercise,
  mutate,
  plainRegions,
  type HostileProperty,
  type HostileRun,
  type Mutation,
  type Outcomes,
} from './qcow2-hostile.js';

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
    property,
    template: image,
  } satisfies HostileRun);
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

/** Offsets anywhere, or within a few bytes of a cluster boundary (where partial-cluster paths split). */
const offsetArb = (size: number, cluster: number): fc.Arbitrary<number> =>
  fc.oneof(
    fc.nat(size - 1),
    fc
      .tuple(fc.nat(size / cluster - 1), fc.integer({ min: -600, max: 600 }))
      .map(([c, d]) => Math.min(size - 1, Math.max(0, c * cluster + d))),
  );

const opArb = (size: number, cluster: number): fc.Arbitrary<Op> =>
  fc.oneof(
    fc.record({
      op: fc.constant('write' as const),
      offset: offsetArb(size, cluster),
      length: fc.integer({ min: 1, max: 3 * cluster }),
      seed: fc.nat(),
    }),
    fc.record({
      op: fc.constantFrom('discard' as const, 'writeZeroes' as const),
      offset: offsetArb(size, cluster),
      length: fc.oneof(fc.integer({ min: 1, max: 2 * cluster }), fc.integer({ min: 1, max: 40000 })),
    }),
    fc.constant({ op: 'flush' as const }),
  );

/**
 * How often a model case ends with `qemu-img check` (a process per check, which holds a campaign to a few dozen
 * cases a second): every case in the suite; every Nth case of a campaign that sets
 * TYPEVISOR_FUZZ_QEMU_CHECK_EVERY=N (`npm run fuzz -- qcow2-model --qemu-check-every N`), and always the last
 * case it ran. Every case, checked by qemu-img or not, passes our own `check()` (no corruption, no leak) on the
 * image reopened read-only.
 */
function qemuCheckEvery(): number {
  const n = Number(process.env.TYPEVISOR_FUZZ_QEMU_CHECK_EVERY);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

function assertQemuClean(path: string): void {
  const check = qemu('qemu-img', 'check', path);
  assert.equal(check.status, 0, check.out);
}

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
      const size = 512 * 1024;
      const baseData = backing ? fillRandom(new Uint8Array(size), rng(clusterSize)) : new Uint8Array(size);
      const basePath = join(dir, `model-base-${clusterSize}.raw`);
      if (backing) writeFileSync(basePath, baseData);
      const every = qemuCheckEvery();
      let run = 0;
      let qemuChecks = 0;
      /** The last case's image when qemu-img has not checked it yet (removed when the next case starts). */
      let unchecked: string | null = null;
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(size, clusterSize), { minLength: 1, maxLength: 40 }),
          fc.nat(size - 1),
          async (ops, probe) => {
            if (unchecked) rmSync(unchecked, { force: true });
            unchecked = null;
            const path = join(dir, `model-${clusterSize}-${backing}-${run}.qcow2`);
            const qemuChecked = run++ % every === 0;
            if (backing) await createDisk(path, { format: 'qcow2', backingFile: basePath, backingFormat: 'raw', clusterSize });
            else await createDisk(path, { format: 'qcow2', size, clusterSize });
            // 512-byte clusters: 16 L2 tables for the disk but room for only 3, so dirty tables get evicted.
            const disk =
              clusterSize === 512 ? await Qcow2Image.open(path, { readOnly: false, l2CacheTables: 3 }) : await openDisk(path);
            const model = baseData.slice();
            try {
              for (const o of ops) {
                const clipped = o.op === 'flush' ? o : { ...o, length: Math.min(o.length, size - o.offset) };
                await applyOp(disk, model, clipped);
                const len = Math.min(5000, size - probe);
                const got = new Uint8Array(len);
                await disk.read(probe, got);
                assert.deepEqual(got, model.subarray(probe, probe + len));
              }
              const all = new Uint8Array(size);
              await disk.read(0, all);
              assert.ok(Buffer.from(all).equals(model), 'whole disk matches the model');
            } finally {
              await disk.close();
            }
            const reopened = (await openDisk(path, { readOnly: true })) as Qcow2Image;
            try {
              const report = await reopened.check();
              assert.ok(report.corruptions === 0 && report.leaks === 0, report.messages.join('\n'));
            } finally {
              await reopened.close();
            }
            if (backing) assert.ok(readFileSync(basePath).equals(baseData), 'backing file unchanged');
            if (qemuChecked) {
              assertQemuClean(path);
              qemuChecks++;
              rmSync(path);
            } else unchecked = path;
          },
        ),
        fuzzParams(40, clusterSize),
      );
      if (unchecked) {
        assertQemuClean(unchecked);
        qemuChecks++;
      }
      console.log(`qemu-img check ran on ${qemuChecks} of ${run} cases`);
    },
  );
}
