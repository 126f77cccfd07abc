/**
 * The model-based property of test/storage/qcow2-fuzz.test.ts (target `qcow2-model`), in a module of its own so
 * it runs in a worker thread (test/helpers/fuzz-worker.ts says why) from qcow2-fuzz-worker.ts: random
 * read/write/discard/writeZeroes/flush sequences on a new image match an in-memory model of the disk after every
 * request and at the end, the image then passes our own check() and `qemu-img check`, and a backing file is
 * never written.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import { createDisk, MemoryFile, Qcow2Image, RawImage } from '../../src/storage/index.js';
import { applyOp, fillRandom, qemu, rng, type Op } from './helpers.js';

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

/** Writes an image out (its backing file, if any, is named by absolute path) and runs `qemu-img check` on it. */
function assertQemuClean(path: string, image: Uint8Array): void {
  writeFileSync(path, image);
  const check = qemu('qemu-img', 'check', path);
  assert.equal(check.status, 0, check.out);
  rmSync(path);
}

export interface ModelRun {
  clusterSize: number;
  backing: boolean;
  /** A directory for the empty image, the backing file and the images qemu-img checks. */
  dir: string;
}

/** What a run did: its cases, and how many of them qemu-img checked. */
export interface ModelOutcome {
  cases: number;
  qemuChecks: number;
}

/** Runs the property with fuzzParams (the suite's 40 cases, or a campaign's); throws fast-check's report. */
export async function runModelProperty({ clusterSize, backing, dir }: ModelRun): Promise<ModelOutcome> {
  const size = 512 * 1024;
  const baseData = backing ? fillRandom(new Uint8Array(size), rng(clusterSize)) : new Uint8Array(size);
  const basePath = join(dir, `model-base-${clusterSize}.raw`);
  // The new image, made once by createDisk; each case starts from a copy of it in a MemoryFile (our qcow2 code
  // over the same ImageFile interface as a host file, without the file system calls and fsyncs that made
  // these cases wait on the disk: 80% of their wall time idle). The raw backing file is a read-only
  // MemoryFile, so any write to it would fail the case.
  const emptyPath = join(dir, `model-empty-${clusterSize}-${backing}.qcow2`);
  if (backing) {
    writeFileSync(basePath, baseData);
    await createDisk(emptyPath, { format: 'qcow2', backingFile: basePath, backingFormat: 'raw', clusterSize });
  } else await createDisk(emptyPath, { format: 'qcow2', size, clusterSize });
  const emptyImage = new Uint8Array(readFileSync(emptyPath));
  const openBacking = backing ? async () => RawImage.openFile(new MemoryFile(baseData, true, basePath)) : undefined;
  const open = (file: MemoryFile): Promise<Qcow2Image> =>
    Qcow2Image.openFile(file, {
      readOnly: file.readOnly,
      openBacking,
      // 512-byte clusters: 16 L2 tables for the disk but room for only 3, so dirty tables get evicted.
      l2CacheTables: clusterSize === 512 ? 3 : undefined,
    });
  const checkPath = join(dir, `model-${clusterSize}-${backing}.qcow2`);
  const every = qemuCheckEvery();
  let run = 0;
  let qemuChecks = 0;
  /** The last case's image when qemu-img has not checked it (yet). */
  let unchecked: Uint8Array | null = null;
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb(size, clusterSize), { minLength: 1, maxLength: 40 }),
      fc.nat(size - 1),
      async (ops, probe) => {
        unchecked = null;
        const qemuChecked = run++ % every === 0;
        const file = new MemoryFile(emptyImage, false, emptyPath);
        const disk = await open(file);
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
          assert.ok(Buffer.from(all.buffer, all.byteOffset, all.length).equals(model), 'whole disk matches the model');
        } finally {
          await disk.close();
        }
        const image = file.contents();
        const reopened = await open(new MemoryFile(image, true, emptyPath));
        try {
          const report = await reopened.check();
          assert.ok(report.corruptions === 0 && report.leaks === 0, report.messages.join('\n'));
        } finally {
          await reopened.close();
        }
        if (qemuChecked) {
          assertQemuClean(checkPath, image);
          qemuChecks++;
        } else unchecked = image;
      },
    ),
    fuzzParams(40, clusterSize),
  );
  if (unchecked) {
    assertQemuClean(checkPath, unchecked);
    qemuChecks++;
  }
  return { cases: run, qemuChecks };
}
