/**
 * The WebAssembly block JIT (src/riscv/jit/wasm) against the interpreter on the bare-metal programs (traps,
 * interrupts, PMP, Sv39/Sv48, and programs/jit.S: faults inside looping blocks, self-modifying code, interrupts
 * during long loops, remapped code pages): exceptions (cause, epc, tval, in order), retired-instruction counts
 * and final registers must agree. The harts run on linear RAM, whose memory the blocks import. A golden test pins
 * the module generated for a few blocks (TYPEVISOR_UPDATE_GOLDEN=1 rewrites test/riscv/jit-wasm-golden.txt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildElf, runProgram, PROGRAMS_DIR } from './harness.js';
import { repoRoot } from '../helpers/paths.js';
import { decodedWords, type HartOptions } from '../../src/riscv/hart.js';
import { buildModule, translateBlock, WasmBlockJit } from '../../src/riscv/jit/wasm/index.js';
import { PageBlocks } from '../../src/riscv/jit/index.js';

const header = readFileSync(join(PROGRAMS_DIR, 'common.h'), 'utf8');
const programs = readdirSync(PROGRAMS_DIR).filter((f) => f.endsWith('.S'));

interface Outcome {
  verdict: string;
  exceptions: string[];
  interrupts: number;
  instret: number;
  regs: string[];
  blocks: number;
  backend: string | undefined;
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
    backend: r.hart.jitStats?.backend,
  };
}

const TIMING_DEPENDENT = new Set(['irq.S', 'jit.S']);

for (const name of programs) {
  for (const [label, jit] of [
    ['every block translated on first entry', { threshold: 0, backend: 'wasm' }],
    ['blocks translated when hot', { threshold: 3, backend: 'wasm', batch: 1 }],
    ['every block on first entry, compiled in batches of 8', { threshold: 0, backend: 'wasm', batch: 8 }],
  ] as const) {
    test(`${name}: WebAssembly JIT (${label}) matches the interpreter`, { timeout: 120_000 }, () => {
      const ref = runWith(name, false);
      const got = runWith(name, jit);
      assert.equal(got.backend, 'wasm');
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

test('jit.S: the faulting loop retires the same instruction count under the WebAssembly JIT', { timeout: 120_000 }, () => {
  const ref = runWith('jit.S', false);
  const got = runWith('jit.S', { threshold: 0, backend: 'wasm' });
  assert.equal(got.regs[21], ref.regs[21]);
  assert.notEqual(Number.parseInt(ref.regs[21]!, 16), 0);
});

// ---- golden test of generated modules ----
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

const GOLDEN_BLOCKS: Record<string, number[]> = {
  // bench/cpu's integer loop: add, xor, slli, srli, or, sub, addi, bnez back to the start (the in-block loop)
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
  // ld and sd with the inlined TLB lookup and their slow paths, a CSR read (execSlow helper), then a jalr
  'memory and csr': [enc.i(8, 10, 3, 13, 0x03), enc.s(16, 13, 10, 3), enc.i(0xc00, 0, 2, 5, 0x73), enc.i(0, 1, 0, 0, 0x67)],
  // div (division by zero and overflow cases) and mulhu (the module's multiply-high function), then a jal
  'div and mulhu': [enc.r(1, 11, 10, 4, 12), enc.r(1, 11, 10, 3, 13), 0x0000006f | (8 << 21)],
};

function goldenText(): string {
  const parts: string[] = [];
  for (const [name, insns] of Object.entries(GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const read = (slot: number) => words[slot >>> 1] ?? { w: 1, imm: 0 }; // past the end: PAGE_END
    const block = translateBlock(read, 0, 0x1000000, true);
    parts.push(`== ${name} (${block?.length} instructions, ${block ? buildModule([block]).length : 0} bytes)\n${block?.text}\n`);
  }
  return parts.join('\n');
}

test('generated WebAssembly for a few blocks matches the golden file, and each module compiles', () => {
  for (const insns of Object.values(GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const block = translateBlock((slot) => words[slot >>> 1] ?? { w: 1, imm: 0 }, 0, 0x1000000)!;
    const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
    assert.ok(wasm.validate(buildModule([block])), 'the module validates');
  }
  const path = join(repoRoot, 'test/riscv/jit-wasm-golden.txt');
  const text = goldenText();
  if (process.env.TYPEVISOR_UPDATE_GOLDEN === '1' || !existsSync(path)) writeFileSync(path, text);
  assert.equal(text, readFileSync(path, 'utf8'));
});

test('when the engine refuses a module the guest stays on the interpreter, translating nothing', () => {
  // A state region whose "memory" is not a WebAssembly.Memory: instantiating fails (LinkError).
  const jit = new WasmBlockJit({ memory: {}, buffer: new ArrayBuffer(65536), base: 0 }, { threshold: 0, backend: 'wasm' });
  jit.bind({ region: jit.region, ld: () => 0, st: () => 0, slow: () => 0, fp: () => 0, wrap: () => () => 0 });
  assert.match(jit.failure ?? '', /Memory/);
  const words = GOLDEN_BLOCKS['integer loop']!.map((i) => decodedWords(i));
  const blocks = new PageBlocks();
  assert.equal(
    jit.lookup(blocks, 0, (slot) => words[slot >>> 1] ?? { w: 1, imm: 0 }),
    null,
  );
  assert.equal(jit.stats.blocks, 0);
});
