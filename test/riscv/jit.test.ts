/**
 * The block JIT (src/riscv/jit) against the interpreter, the reference: every bare-metal program (traps,
 * interrupts, PMP, Sv39/Sv48, and programs/jit.S for faults inside looping blocks, self-modifying code,
 * interrupts during long loops and remapped code pages) runs on both engines, and the exceptions taken
 * (cause, epc, tval, in order), the retired-instruction count and the final registers must agree. Golden tests
 * pin the code generated for a few blocks (TYPEVISOR_UPDATE_GOLDEN=1 rewrites test/riscv/jit-golden.txt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildElf, loadElf, makeMachine, runProgram, PROGRAMS_DIR } from './harness.js';
import { parseElf } from '../../src/machine/loaders/elf.js';
import { Htif } from '../../src/riscv/htif.js';
import { repoRoot } from '../helpers/paths.js';
import { decodedWords, type HartOptions } from '../../src/riscv/hart.js';
import { generateBlock } from '../../src/riscv/jit/index.js';

const header = readFileSync(join(PROGRAMS_DIR, 'common.h'), 'utf8');
const programs = readdirSync(PROGRAMS_DIR).filter((f) => f.endsWith('.S'));

interface Outcome {
  verdict: string;
  exceptions: string[];
  interrupts: number;
  instret: number;
  regs: string[];
  blocks: number;
}

function runWith(name: string, jit: HartOptions['jit']): Outcome {
  const src = readFileSync(join(PROGRAMS_DIR, name), 'utf8').replace('#include "common.h"', header);
  const exceptions: string[] = [];
  let interrupts = 0;
  const r = runProgram(buildElf(src), 20_000_000, {
    jit,
    setup: (m) => {
      m.hart.onTrap = (_h, cause, interrupt, tval, epc) => {
        if (interrupt) interrupts++;
        else exceptions.push(`cause ${cause} epc 0x${epc.toString(16)} tval 0x${tval.toString(16)}`);
      };
    },
  });
  const regs: string[] = [];
  for (let i = 1; i < 32; i++) regs.push(r.hart.getXHex(i));
  return {
    verdict: JSON.stringify(r.result),
    exceptions,
    interrupts,
    instret: r.hart.instret,
    regs,
    blocks: r.hart.jitStats?.blocks ?? 0,
  };
}

/** Programs whose interrupts arrive at a point that depends on how far each run() slice got. */
const TIMING_DEPENDENT = new Set(['irq.S', 'jit.S']);

for (const name of programs) {
  for (const [label, jit] of [
    ['every block translated on first entry', { threshold: 0 }],
    ['blocks translated when hot', { threshold: 3 }],
  ] as const) {
    test(`${name}: JIT (${label}) matches the interpreter`, { timeout: 120_000 }, () => {
      const ref = runWith(name, false);
      const got = runWith(name, jit);
      assert.equal(ref.verdict, JSON.stringify({ kind: 'pass' }), `${name} passes on the interpreter`);
      assert.equal(got.verdict, ref.verdict, 'verdict');
      assert.ok(got.blocks > 0, 'blocks were translated');
      assert.deepEqual(got.exceptions, ref.exceptions, 'exceptions: cause, epc and tval, in order');
      if (TIMING_DEPENDENT.has(name)) {
        assert.ok(got.interrupts > 0 === ref.interrupts > 0, 'interrupts taken');
        return;
      }
      assert.equal(got.interrupts, ref.interrupts, 'interrupts');
      assert.equal(got.instret, ref.instret, 'instructions retired');
      assert.deepEqual(got.regs, ref.regs, 'final registers');
    });
  }
}

test('jit.S: the faulting loop retires the same instruction count on both engines', { timeout: 120_000 }, () => {
  // s6 (x22) holds minstret across the loop with its one fault, read by the guest itself.
  const ref = runWith('jit.S', false);
  const got = runWith('jit.S', { threshold: 0 });
  assert.equal(got.regs[21], ref.regs[21]);
  assert.notEqual(Number.parseInt(ref.regs[21]!, 16), 0);
});

test(
  'an idle trim drops every translation (they were kept for good), and the program runs on alike',
  { timeout: 120_000 },
  () => {
    const src = readFileSync(join(PROGRAMS_DIR, 'vm.S'), 'utf8').replace('#include "common.h"', header);
    const elf = parseElf(buildElf(src));
    const run = (jit: HartOptions['jit'], trimEvery: number) => {
      const m = makeMachine(undefined, jit);
      loadElf(m, elf);
      const htif = Htif.fromSymbols(elf.symbols, m.ram);
      let heldBeforeTrim = 0;
      let slices = 0;
      let result;
      while (!result && m.hart.instret < 20_000_000) {
        const n = m.hart.run(1000);
        m.clint.time += n === 0 ? 1000 : Math.max(1, Math.floor(n / 100));
        m.clint.update();
        result = htif?.poll();
        if (trimEvery > 0 && ++slices % trimEvery === 0) {
          heldBeforeTrim = Math.max(heldBeforeTrim, m.hart.jitTranslationsHeld);
          m.hart.trimDecodeCache();
          assert.equal(m.hart.jitTranslationsHeld, 0, 'no translation is held after the trim');
        }
      }
      const regs: string[] = [];
      for (let i = 1; i < 32; i++) regs.push(m.hart.getXHex(i));
      return { verdict: JSON.stringify(result), instret: m.hart.instret, regs, heldBeforeTrim };
    };
    const ref = run(false, 0);
    const got = run({ threshold: 0 }, 1);
    assert.equal(ref.verdict, JSON.stringify({ kind: 'pass' }));
    assert.ok(got.heldBeforeTrim > 0, 'translations were held before a trim');
    assert.equal(got.verdict, ref.verdict);
    assert.equal(got.instret, ref.instret);
    assert.deepEqual(got.regs, ref.regs);
  },
);

// ---- golden tests of generated code ----
const enc = {
  r: (f7: number, rs2: number, rs1: number, f3: number, rd: number, op = 0x33) =>
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op,
  i: (imm: number, rs1: number, f3: number, rd: number, op = 0x13) =>
    ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op,
  s: (imm: number, rs2: number, rs1: number, f3: number) =>
    (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23,
  b: (imm: number, rs2: number, rs1: number, f3: number) =>
    (((imm >> 12) & 1) << 31) |
    (((imm >> 5) & 0x3f) << 25) |
    (rs2 << 20) |
    (rs1 << 15) |
    (f3 << 12) |
    (((imm >> 1) & 0xf) << 8) |
    (((imm >> 11) & 1) << 7) |
    0x63,
};

/** Named blocks of 32-bit instructions starting at slot 0 of a page. */
const GOLDEN_BLOCKS: Record<string, number[]> = {
  // bench/cpu's integer loop: add, xor, slli, srli, or, sub, addi, bnez back to the start
  'integer loop': [
    enc.r(0, 12, 10, 0, 10),
    enc.r(0, 11, 10, 4, 13),
    enc.i(7, 13, 1, 14),
    enc.i(9, 13, 5, 15),
    enc.r(0, 15, 14, 6, 14),
    enc.r(0x20, 14, 10, 0, 10),
    enc.i(-1, 11, 0, 11),
    enc.b(-28, 0, 11, 1),
  ],
  // ld, sd with the inlined TLB lookup, then a CSR read (the hart's slow path) and a jalr
  'memory and csr': [enc.i(8, 10, 3, 13, 0x03), enc.s(16, 13, 10, 3), enc.i(0xc00, 0, 2, 5, 0x73), enc.i(0, 1, 0, 0, 0x67)],
};

function goldenText(): string {
  const parts: string[] = [];
  for (const [name, insns] of Object.entries(GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const read = (slot: number) => words[slot >>> 1] ?? { w: 1, imm: 0 }; // past the end: PAGE_END
    const src = generateBlock(read, 0);
    parts.push(`== ${name} (${src?.length} instructions)\n${src?.body}\n`);
  }
  return parts.join('\n');
}

test('generated code for a few blocks matches the golden file', () => {
  const path = join(repoRoot, 'test/riscv/jit-golden.txt');
  const text = goldenText();
  if (process.env.TYPEVISOR_UPDATE_GOLDEN === '1' || !existsSync(path)) writeFileSync(path, text);
  assert.equal(text, readFileSync(path, 'utf8'));
});
