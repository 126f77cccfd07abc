/**
 * fast-check suites over qcow2 images:
 *  - hostile images: random mutations of the header, L1/L2 tables and refcount structures of a valid image.
 *    openDisk either refuses with a StorageError carrying a message, or the image is usable with every
 *    read/write either succeeding or failing with a StorageError; nothing else is thrown, nothing hangs,
 *    and the file never grows past a small bound (no writes outside the image's sane range).
 *  - a model-based test: random read/write/discard/writeZeroes/flush sequences against an in-memory model,
 *    with and without a backing file, across cluster sizes.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import {
  createDisk,
  MemoryFile,
  openDisk,
  openImageFile,
  Qcow2Image,
  StorageError,
  type BlockBackend,
} from '../../src/storage/index.js';
import { applyOp, fillRandom, qemu, rng, tempDir, type Op } from './helpers.js';

const { dir, cleanup } = tempDir('fuzz');
after(cleanup);

const CLUSTER = 4096;
const SIZE = 1024 * 1024;
let template: Uint8Array;
let compressedTemplate: Uint8Array;

/** Metadata regions of the template, found by reading its header and tables. */
let regions: [start: number, end: number][] = [];

before(async () => {
  const p = join(dir, 'template.qcow2');
  await createDisk(p, { format: 'qcow2', size: SIZE, clusterSize: CLUSTER, lazyRefcounts: true });
  const disk = await openDisk(p);
  const rand = rng(42);
  for (let i = 0; i < 30; i++) await disk.write(Math.floor(rand() * (SIZE - 9000)), fillRandom(new Uint8Array(9000), rand));
  await disk.close();
  template = readFileSync(p);
  const dv = new DataView(template.buffer, template.byteOffset, template.byteLength);
  const l1 = Number(dv.getBigUint64(40));
  const rt = Number(dv.getBigUint64(48));
  regions = [
    [0, 112],
    [l1, l1 + dv.getUint32(36) * 8],
    [rt, rt + 64],
  ];
  const l2 = Number(dv.getBigUint64(l1) & 0x00fffffffffffe00n);
  const rb = Number(dv.getBigUint64(rt) & 0xfffffffffffffe00n);
  regions.push([l2, l2 + CLUSTER], [rb, rb + 64]);

  const raw = join(dir, 'c.raw');
  const src = new Uint8Array(256 * 1024);
  for (let i = 0; i < src.length; i++) src[i] = (i >> 10) & 0xff;
  writeFileSync(raw, src);
  const c = join(dir, 'c.qcow2');
  assert.equal(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, c).status, 0);
  compressedTemplate = readFileSync(c);
});

const interesting = fc.constantFrom(0, 1, 0x1ff, 0x200, 0x1000, 0x7fffffff, 0x80000000, 0xffffffff, 0x00ffffff, 0x40000000);

type Mutation =
  { kind: 'byte'; region: number; at: number; value: number } | { kind: 'word'; region: number; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('byte' as const), region: fc.nat(4), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('word' as const), region: fc.nat(4), at: fc.nat(), value: interesting }),
);

function mutate(base: Uint8Array, muts: Mutation[], regionsOf: [number, number][]): Uint8Array {
  // A copy: the templates are Buffers, whose slice() is a view (mutations would pile up in the template).
  const img = new Uint8Array(base);
  const dv = new DataView(img.buffer);
  for (const m of muts) {
    const [start, end] = regionsOf[m.region % regionsOf.length]!;
    const span = Math.max(1, end - start);
    if (m.kind === 'byte') img[start + (m.at % span)] = m.value;
    else {
      const pos = start + (((m.at % span) >> 2) << 2);
      if (pos + 4 <= img.length) dv.setUint32(pos, m.value);
    }
  }
  return img;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hang: ${what} did not finish in ${ms} ms`)), ms);
    }),
  ]);
}

/** Only StorageErrors with a message are acceptable failures. */
async function tolerate(p: Promise<unknown>): Promise<'ok' | 'refused'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (!(err instanceof StorageError) || err.message.length < 10) throw err;
    return 'refused';
  }
}

let counter = 0;
const outcomes = { refused: 0, opened: 0 };

/**
 * Opens a hostile image and drives I/O at it. The image lives in a MemoryFile: the same qcow2 and raw code runs
 * over the same positional-I/O interface as with a host file, without a file created, fsynced and deleted per
 * case (which made these cases cost milliseconds of system calls each). openImageFile probes the format and
 * forbids backing files exactly as openDisk(path, { backingFiles: 'forbid' }) does.
 */
async function exercise(image: Uint8Array): Promise<void> {
  const file = new MemoryFile(image, false, `m-${counter++}.qcow2`);
  const sizeBefore = image.length;
  let disk: BlockBackend;
  try {
    disk = await withTimeout(openImageFile(file), 5000, 'open');
  } catch (err) {
    if (err instanceof StorageError) {
      assert.ok(err.message.length > 10, 'a clear message');
      outcomes.refused++;
      return;
    }
    throw err;
  }
  outcomes.opened++;
  try {
    const rand = rng(counter);
    const size = disk.size;
    const ops = async (): Promise<void> => {
      for (let i = 0; i < 6; i++) {
        const off = Math.floor(rand() * Math.max(1, size - 10000));
        const len = Math.min(size - off, 1 + Math.floor(rand() * 9000));
        if (len <= 0) continue;
        await tolerate(disk.read(off, new Uint8Array(len)));
        const k = rand();
        if (k < 0.5) await tolerate(disk.write(off, new Uint8Array(len).fill(0xab)));
        else if (k < 0.75) await tolerate(disk.discard(off, len));
        else await tolerate(disk.writeZeroes(off, len));
      }
      await tolerate(disk.flush());
    };
    await withTimeout(ops(), 10_000, 'operations');
  } finally {
    await tolerate(disk.close());
  }
  // Six writes of < 9000 bytes, plus possibly new L2 tables, refcount blocks or a refcount table:
  // generous, but far below what an unchecked hostile offset would produce. largestEnd counts every write and
  // truncate the image code asked for, even one the file refused.
  const grown = file.largestEnd - sizeBefore;
  assert.ok(grown <= 256 * CLUSTER, `file grew by ${grown} bytes`);
}

test(
  'fuzz: mutated headers, L1/L2 tables and refcount structures are refused cleanly or handled in bounds',
  { timeout: 240_000 },
  async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 6 }), async (muts) => {
        await exercise(mutate(template, muts, regions));
      }),
      fuzzParams(300, 0x5eed),
    );
    // Not vacuous: some mutated images must be refused and some must open and take I/O.
    assert.ok(outcomes.refused > 20 && outcomes.opened > 20, JSON.stringify(outcomes));
  },
);

// Found by the campaign of 2026-11-29 (seed 1411300860, case 1272): refcount table entry 0 aimed at a data
// cluster (one byte changed) made the allocator read data as refcounts, skip every cluster that block covers and
// allocate ~5 MB past the end of a 1 MiB image. Clusters past the end of the file are now free whatever a refcount
// block says of them (nothing may reference them), so allocation stays at the end of the file.
test('regression: a refcount block aimed at a data cluster does not make the image allocate far past its end', async () => {
  const counterexample: Mutation[] = [
    { kind: 'byte', region: 2, at: 191716614, value: 208 },
    { kind: 'byte', region: 0, at: 304, value: 0 },
  ];
  await exercise(mutate(template, counterexample, regions));
});

test('fuzz: mutated qemu-made compressed images', { timeout: 240_000 }, async () => {
  const dv = new DataView(compressedTemplate.buffer, compressedTemplate.byteOffset, compressedTemplate.byteLength);
  const l1 = Number(dv.getBigUint64(40));
  const l2 = Number(dv.getBigUint64(compressedTemplate.byteOffset === 0 ? l1 : l1) & 0x00fffffffffffe00n);
  const rt = Number(dv.getBigUint64(48));
  const regs: [number, number][] = [
    [0, 112],
    [l2, l2 + CLUSTER],
    [l2, l2 + 512],
    [rt, rt + 64],
    [l1, l1 + 16],
  ];
  await fc.assert(
    fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), async (muts) => {
      await exercise(mutate(compressedTemplate, muts, regs));
    }),
    fuzzParams(150, 0xc0de),
  );
});

test('fuzz: random garbage headers and truncated files', { timeout: 60_000 }, async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.boolean(), async (bytes, withMagic) => {
      const img = new Uint8Array(Math.max(bytes.length, 8));
      img.set(bytes);
      if (withMagic) img.set([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
      const file = new MemoryFile(img, false, `g-${counter++}.qcow2`);
      await assert.rejects(
        withTimeout(openImageFile(file, { format: 'qcow2' }), 5000, 'open'),
        (err: unknown) => err instanceof StorageError && err.message.length > 10,
      );
    }),
    fuzzParams(200, 7),
  );
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

for (const [clusterSize, backing] of [
  [512, false],
  [4096, true],
  [65536, true],
  [4096, false],
] as const) {
  test(
    `model-based: read/write/discard/writeZeroes/flush match a model (${clusterSize}-byte clusters${backing ? ', backing file' : ''}${clusterSize === 512 ? ', tiny L2 cache' : ''})`,
    { timeout: 240_000 },
    async () => {
      const size = 512 * 1024;
      const baseData = backing ? fillRandom(new Uint8Array(size), rng(clusterSize)) : new Uint8Array(size);
      const basePath = join(dir, `model-base-${clusterSize}.raw`);
      if (backing) writeFileSync(basePath, baseData);
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(size, clusterSize), { minLength: 1, maxLength: 40 }),
          fc.nat(size - 1),
          async (ops, probe) => {
            const path = join(dir, `model-${clusterSize}-${backing}-${run++}.qcow2`);
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
            const check = qemu('qemu-img', 'check', path);
            assert.equal(check.status, 0, check.out);
            if (backing) assert.ok(readFileSync(basePath).equals(baseData), 'backing file unchanged');
          },
        ),
        fuzzParams(40, clusterSize),
      );
    },
  );
}
