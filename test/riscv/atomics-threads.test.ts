/**
 * Harts on several threads over one shared WebAssembly.Memory: each worker (atomics-worker.ts) runs a real Hart
 * on bare-metal RV64 code that increments shared counters N times — with amoadd.d, with an LR.D/SC.D retry loop,
 * with amoadd.w — and a fourth with a plain ld/addi/sd. With the cross-thread atomics every atomic total is
 * exact, run after run, on the interpreter and on both block JITs.
 *
 * Negative control: the plain counter, and the same program without atomics, may lose increments (they do on
 * a 2-core machine that runs both threads at once); how many they lost is reported, and only asserted to be no
 * more than expected, since a loaded machine may happen to run the threads one after the other.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseElf } from '../../src/machine/loaders/elf.js';
import type { HartOptions } from '../../src/riscv/hart.js';
import { HART_REGION_BYTES } from '../../src/riscv/jit/wasm/layout.js';
import { runInWorker } from '../helpers/fuzz-worker.js';
import type { HartJob, HartReport } from './atomics-worker.js';
import { buildElf } from './harness.js';

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 1 << 20;
const MAX_HARTS = 4;
/** Past RAM and the harts' JIT state regions. */
const BARRIER_OFF = RAM_SIZE + MAX_HARTS * HART_REGION_BYTES;
const ITERATIONS = 100_000;

/** Every program starts with t1 = its iteration count (`iters`, set by the test). */
const PROLOGUE = `
.option norelax
.globl _start
.text
_start:
  la t0, iters
  ld t1, 0(t0)
`;

/** The stop labels the workers watch for, and the iteration count every program reads first. */
const EPILOGUE = `
.globl _end
_end: j _end
.align 4
.globl _trap
_trap: j _trap
.data
.align 6
iters: .dword 0
`;

const SOURCE = `${PROLOGUE}  la a1, c_amo_d
  la a2, c_lrsc
  la a3, c_amo_w
  la a4, c_plain
  li t2, 1
loop:
  amoadd.d zero, t2, (a1)
retry:
  lr.d t3, (a2)
  addi t3, t3, 1
  sc.d t4, t3, (a2)
  bnez t4, retry
  amoadd.w zero, t2, (a3)
  ld t5, 0(a4)
  addi t5, t5, 1
  sd t5, 0(a4)
  addi t1, t1, -1
  bnez t1, loop
${EPILOGUE}.align 6
c_amo_d: .dword 0
.align 6
c_lrsc: .dword 0
.align 6
c_amo_w: .word 0
.align 6
c_plain: .dword 0
`;

const Wasm = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer } };
  }
).WebAssembly;

interface Totals {
  amoD: number;
  lrsc: number;
  amoW: number;
  plain: number;
  expected: number;
  reports: HartReport[];
}

interface Ran {
  view: DataView;
  at: (name: string) => number;
  reports: HartReport[];
}

/** Loads `source` into a fresh shared memory and runs it on `harts` worker threads (a0 = the hart's id). */
async function runHarts(source: string, harts: number, atomics: boolean, jit: HartOptions['jit']): Promise<Ran> {
  const elf = parseElf(buildElf(source));
  const memory = new Wasm.Memory({ initial: BARRIER_OFF / 65536 + 1, maximum: BARRIER_OFF / 65536 + 1, shared: true });
  const bytes = new Uint8Array(memory.buffer);
  for (const seg of elf.segments) bytes.set(seg.data, seg.paddr - RAM_BASE);
  const at = (name: string): number => {
    const v = elf.symbols.get(name);
    if (v === undefined) throw new Error(`no symbol ${name}`);
    return v - RAM_BASE;
  };
  const view = new DataView(memory.buffer);
  view.setBigUint64(at('iters'), BigInt(ITERATIONS), true);
  const reports = await Promise.all(
    Array.from({ length: harts }, (_, hartId) => {
      const job: HartJob = {
        memory,
        ramBase: RAM_BASE,
        ramSize: RAM_SIZE,
        barrierOff: BARRIER_OFF,
        harts,
        hartId,
        entry: elf.entry,
        end: at('_end') + RAM_BASE,
        trap: at('_trap') + RAM_BASE,
        atomics,
        jit,
      };
      return runInWorker<HartReport>(new URL('./atomics-worker.js', import.meta.url), job);
    }),
  );
  for (const r of reports) {
    assert.equal(r.stop, 'end', `hart ${r.hartId} stopped in a trap (mcause ${r.stop})`);
    assert.equal(r.atomics, atomics);
  }
  return { view, at, reports };
}

/** Runs the counter program (SOURCE) on `harts` threads and reads the counters. */
async function race(harts: number, atomics: boolean, jit: HartOptions['jit']): Promise<Totals> {
  const { view, at, reports } = await runHarts(SOURCE, harts, atomics, jit);
  return {
    amoD: Number(view.getBigUint64(at('c_amo_d'), true)),
    lrsc: Number(view.getBigUint64(at('c_lrsc'), true)),
    amoW: view.getUint32(at('c_amo_w'), true),
    plain: Number(view.getBigUint64(at('c_plain'), true)),
    expected: harts * ITERATIONS,
    reports,
  };
}

const lost = (t: Totals): string =>
  `lost: amoadd.d ${t.expected - t.amoD}, lr/sc ${t.expected - t.lrsc}, amoadd.w ${t.expected - t.amoW}, plain ${t.expected - t.plain} of ${t.expected}`;

for (const [name, jit, harts, runs] of [
  ['interpreter, 2 harts', false, 2, 3],
  ['interpreter, 4 harts', false, 4, 2],
  ['JS block JIT, 2 harts', { threshold: 0 }, 2, 2],
  ['WebAssembly block JIT, 2 harts', { threshold: 0, backend: 'wasm' }, 2, 2],
] as const) {
  test(`with atomics, every atomic increment lands (${name}, ${runs} runs)`, { timeout: 300_000 }, async (t) => {
    for (let run = 0; run < runs; run++) {
      const totals = await race(harts, true, jit);
      t.diagnostic(`run ${run}: ${lost(totals)} (the plain counter shows whether the harts overlapped)`);
      assert.equal(totals.amoD, totals.expected, 'amoadd.d');
      assert.equal(totals.lrsc, totals.expected, 'lr.d/sc.d');
      assert.equal(totals.amoW, totals.expected, 'amoadd.w');
      assert.ok(totals.plain <= totals.expected);
      if (jit)
        assert.ok(
          totals.reports.every((r) => r.jitBlocks > 0),
          'blocks were translated',
        );
    }
  });
}

test('negative control: without atomics the same harts may lose increments', { timeout: 300_000 }, async (t) => {
  for (let run = 0; run < 2; run++) {
    const totals = await race(2, false, false);
    t.diagnostic(`run ${run}: ${lost(totals)}`);
    for (const v of [totals.amoD, totals.lrsc, totals.amoW, totals.plain]) assert.ok(v > 0 && v <= totals.expected);
  }
});

/**
 * Aligned 8-byte loads and stores are single-copy atomic (RVWMO): hart 0 stores 0 and -1 in turn, the others load
 * the word and count values that are neither (half of one store, half of the other). The interpreter, the JS
 * block JIT and the JIT's slow paths used to move 8 bytes as two 4-byte halves, which let a reader see
 * 0x00000000ffffffff; with harts on threads they now make one access.
 */
const TEAR_SOURCE = `${PROLOGUE}  la a1, c_word
  la a2, c_torn
  li s0, 0
  li s1, -1
  bnez a0, reader
writer:
  sd s0, 0(a1)
  sd s1, 0(a1)
  addi t1, t1, -1
  bnez t1, writer
  j _end
reader:
  li t3, 0
rloop:
  ld t2, 0(a1)
  beq t2, s0, seen
  beq t2, s1, seen
  addi t3, t3, 1
seen:
  addi t1, t1, -1
  bnez t1, rloop
  amoadd.d zero, t3, (a2)
${EPILOGUE}.align 6
c_word: .dword 0
.align 6
c_torn: .dword 0
`;

for (const [name, jit, atomics] of [
  ['interpreter', false, true],
  ['JS block JIT', { threshold: 0 }, true],
  ['interpreter without cross-thread atomics (control)', false, false],
] as const) {
  test(`an aligned 8-byte load never sees half of another hart's store (${name})`, { timeout: 300_000 }, async (t) => {
    for (let run = 0; run < 2; run++) {
      const { view, at } = await runHarts(TEAR_SOURCE, 2, atomics, jit);
      const torn = Number(view.getBigUint64(at('c_torn'), true));
      t.diagnostic(`run ${run}: ${torn} torn reads of ${ITERATIONS}`);
      if (atomics) assert.equal(torn, 0);
      else assert.ok(torn <= ITERATIONS);
    }
  });
}
