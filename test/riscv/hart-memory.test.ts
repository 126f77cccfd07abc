/**
 * What the hart keeps alive: memory it gave up (decoded pages it dropped, RAM chunks the guest gave back) must be
 * collectable, or an idle VM's host memory never comes back. Checked with WeakRefs and a real collection.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { cpu, type CpuTest } from './runner.js';
import { linearByDefault } from './harness.js';
import { CHUNK_SIZE } from '../../src/machine/memory.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects after the current job, so WeakRefs made in it no longer hold their targets. */
async function collect(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
}

const CODE_CHUNK = 0x8020_0000; // chunk 1: a function the program calls
const LOAD_CHUNK = 0x8040_0000; // chunk 2: read
const STORE_CHUNK = 0x8060_0000; // chunk 3: written

/** Runs code, loads and stores in three chunks besides the program's own, so every TLB holds entries there. */
function touchThreeChunks(): CpuTest {
  const t = cpu(
    `
    ld t0, 0(a1)
    sd t0, 0(a2)
    jalr ra, 0(a3)
  `,
    '',
    false,
  )
    .reg('a0', 1)
    .reg('a1', LOAD_CHUNK)
    .reg('a2', STORE_CHUNK)
    .reg('a3', CODE_CHUNK);
  const words = new Uint32Array([0x0015_0513, 0x0000_8067]); // addi a0, a0, 1; ret
  t.m.ram.write(CODE_CHUNK, new Uint8Array(words.buffer));
  t.m.ram.write(LOAD_CHUNK, new Uint8Array([42]));
  return t.run().expectReg('a0', 2).expectReg('t0', 42);
}

/** WeakRefs to the buffers of the three chunks (made in a function so no strong reference stays on our stack). */
function chunkRefs(t: CpuTest): WeakRef<ArrayBufferLike>[] {
  return [CODE_CHUNK, LOAD_CHUNK, STORE_CHUNK].map((a) => new WeakRef(t.m.ram.chunk(a, false)!.buffer));
}

/** The hart's decoded pages by RAM page number (a private field: what is retained is the point here). */
const decodeCache = (t: CpuTest): Map<number, object> => (t.hart as unknown as { decodeCache: Map<number, object> }).decodeCache;

describe('hart memory retention', () => {
  // On linear RAM (TYPEVISOR_RAM=linear, or the WebAssembly JIT's layout, which touchThreeChunks avoids by running
  // the interpreter) every chunk is a view of the one WebAssembly.Memory, which is never collected: released
  // ranges go back through madvise instead (test/machine/memory.test.ts checks that).
  const linear = linearByDefault(false) ? 'chunks are views of one linear memory (never collected)' : false;
  test('RAM chunks given back are not kept alive by the fetch, load or store TLB', { skip: linear }, async () => {
    const t = touchThreeChunks();
    const refs = chunkRefs(t);
    assert.equal(t.m.ram.discard(CODE_CHUNK, 3 * CHUNK_SIZE), 3 * CHUNK_SIZE, 'the three chunks were released');
    await collect();
    assert.deepEqual(
      refs.map((r) => r.deref() === undefined),
      [true, true, true],
      'code, load and store chunks collected',
    );
    // The hart still works on fresh (zero) chunks: the program runs again and its callee is gone.
    t.m.ram.write(CODE_CHUNK, new Uint8Array(new Uint32Array([0x0025_0513, 0x0000_8067]).buffer)); // addi a0, a0, 2
    t.hart.pc = t.sym('_start');
    t.reg('a0', 1).run().expectReg('a0', 3).expectReg('t0', 0);
  });

  test('a decode-cache trim leaves no decoded page reachable from the hart', async () => {
    const t = touchThreeChunks();
    const pages = [...decodeCache(t).values()].map((p) => new WeakRef(p));
    assert.ok(pages.length >= 2, 'the program and its callee were decoded');
    t.hart.trimDecodeCache();
    await collect();
    assert.equal(pages.filter((p) => p.deref() !== undefined).length, 0, 'every dropped page was collected');
    t.hart.pc = t.sym('_start');
    t.reg('a0', 5).run().expectReg('a0', 6);
  });

  test('a store into decoded code drops the page without leaving it in the fetch TLB', async () => {
    const t = touchThreeChunks();
    const ppn = (CODE_CHUNK - 0x8000_0000) / 4096;
    const callee = new WeakRef(decodeCache(t).get(ppn)!);
    // ld t0, 0(a1) reads the callee's two instructions and sd t0 writes them back over themselves: a store into
    // a decoded page, which drops the decoded copy. The "call" goes straight to _end, so the callee's page is not
    // decoded again (its fetch TLB slot is not overwritten).
    t.hart.pc = t.sym('_start');
    t.reg('a1', CODE_CHUNK).reg('a2', CODE_CHUNK).reg('a3', t.sym('_end')).reg('a0', 1).run().expectReg('a0', 1);
    assert.notEqual(decodeCache(t).get(ppn), callee.deref(), 'the old decoded page left the cache');
    await collect();
    assert.equal(callee.deref(), undefined, 'and nothing else keeps it');
  });
});
