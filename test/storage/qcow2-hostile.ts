/**
 * The hostile-image fuzz properties of test/storage/qcow2-fuzz.test.ts, in a module of their own so they can
 * run in a worker thread (test/helpers/fuzz-worker.ts says why) from qcow2-fuzz-worker.ts:
 *  - mutated: random mutations of the header, L1/L2 tables and refcount structures of a valid image;
 *  - compressed: the same over an image qemu-img wrote with compressed clusters;
 *  - garbage: random headers (with or without the qcow2 magic) and truncated files.
 * An image either fails to open with a StorageError carrying a message, or opens and takes reads, writes,
 * discards, zeroes and a flush, each succeeding or failing with a StorageError; nothing else is thrown, nothing
 * hangs, and the image never asks to write far past its end. Every image lives in a MemoryFile: the same qcow2
 * and raw code runs over the same positional-I/O interface as with a host file, without a file created,
 * fsynced and deleted per case.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import { MemoryFile, openImageFile, StorageError, type BlockBackend } from '../../src/storage/index.js';
import { rng } from './helpers.js';

export const CLUSTER = 4096;

export type Region = [start: number, end: number];

const interesting = fc.constantFrom(0, 1, 0x1ff, 0x200, 0x1000, 0x7fffffff, 0x80000000, 0xffffffff, 0x00ffffff, 0x40000000);

export type Mutation =
  { kind: 'byte'; region: number; at: number; value: number } | { kind: 'word'; region: number; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('byte' as const), region: fc.nat(4), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('word' as const), region: fc.nat(4), at: fc.nat(), value: interesting }),
);

/** Where an image's header, L1 table, refcount table, first L2 table and first refcount block lie. */
function layout(img: Uint8Array): { l1: number; l1Bytes: number; rt: number; l2: number; rb: number } {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  // Bits 9..55 of a table entry (the flags above would not survive a conversion of the whole entry to a number).
  const offsetAt = (at: number): number =>
    (dv.getUint32(at) & 0x00ffffff) * 2 ** 32 + ((dv.getUint32(at + 4) & 0xfffffe00) >>> 0);
  const l1 = offsetAt(40);
  const rt = offsetAt(48);
  return { l1, l1Bytes: dv.getUint32(36) * 8, rt, l2: offsetAt(l1), rb: offsetAt(rt) };
}

/** Regions the mutated property aims at: header, whole L1 table, refcount table, first L2 table, first refcount block. */
export function plainRegions(img: Uint8Array): Region[] {
  const { l1, l1Bytes, rt, l2, rb } = layout(img);
  return [
    [0, 112],
    [l1, l1 + l1Bytes],
    [rt, rt + 64],
    [l2, l2 + CLUSTER],
    [rb, rb + 64],
  ];
}

/** Regions of the compressed image: header, its first L2 table (whole, and its first 64 entries twice as often), refcount table, L1. */
export function compressedRegions(img: Uint8Array): Region[] {
  const { l1, rt, l2 } = layout(img);
  return [
    [0, 112],
    [l2, l2 + CLUSTER],
    [l2, l2 + 512],
    [rt, rt + 64],
    [l1, l1 + 16],
  ];
}

/**
 * Applies `muts` to a copy of `base` held in `scratch` (the same length; reused from case to case, since
 * MemoryFile copies what it is given anyway). Never writes into `base`: a Buffer template's slice() would be a
 * view, and mutations piling up in the template made cases depend on each other.
 */
export function mutate(base: Uint8Array, muts: Mutation[], regions: Region[], scratch = new Uint8Array(base.length)): Uint8Array {
  scratch.set(base);
  for (const m of muts) {
    const [start, end] = regions[m.region % regions.length]!;
    const span = Math.max(1, end - start);
    if (m.kind === 'byte') scratch[start + (m.at % span)] = m.value;
    else {
      const pos = start + (((m.at % span) >> 2) << 2);
      if (pos + 4 <= scratch.length) {
        scratch[pos] = m.value >>> 24;
        scratch[pos + 1] = m.value >>> 16;
        scratch[pos + 2] = m.value >>> 8;
        scratch[pos + 3] = m.value;
      }
    }
  }
  return scratch;
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

/** How the images of a run fared: a property that never refuses, or never opens, an image tests nothing. */
export interface Outcomes {
  refused: number;
  opened: number;
}

let counter = 0;

/**
 * Opens a hostile image and drives I/O at it; `opsSeed` picks the requests (part of the generated case, so a
 * seed replays and a counterexample shrinks exactly). openImageFile probes the format and forbids backing
 * files exactly as openDisk(path, { backingFiles: 'forbid' }) does.
 */
export async function exercise(image: Uint8Array, opsSeed: number, outcomes: Outcomes): Promise<void> {
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
    const rand = rng(opsSeed);
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

export type HostileProperty = 'mutated' | 'compressed' | 'garbage';

export interface HostileRun {
  property: HostileProperty;
  /** The valid image the mutated and compressed properties mutate (unused by garbage). */
  template: Uint8Array;
}

/** Runs one property with fuzzParams (the suite's few seeded cases, or a campaign's); throws fast-check's report. */
export async function runHostileProperty({ property, template }: HostileRun): Promise<Outcomes> {
  const outcomes: Outcomes = { refused: 0, opened: 0 };
  const scratch = new Uint8Array(template.length);
  const opsSeed = fc.nat();
  switch (property) {
    case 'mutated':
    case 'compressed': {
      const plain = property === 'mutated';
      const regions = plain ? plainRegions(template) : compressedRegions(template);
      await fc.assert(
        fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: plain ? 6 : 4 }), opsSeed, async (muts, seed) => {
          await exercise(mutate(template, muts, regions, scratch), seed, outcomes);
        }),
        plain ? fuzzParams(300, 0x5eed) : fuzzParams(150, 0xc0de),
      );
      break;
    }
    case 'garbage':
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
          outcomes.refused++;
        }),
        fuzzParams(200, 7),
      );
      break;
  }
  return outcomes;
}
