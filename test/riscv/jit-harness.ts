/**
 * What the JIT tests share, whichever backend they test (JS blocks in jit.test.ts, WebAssembly blocks in
 * jit-wasm*.test.ts): the bare-metal programs run on a JIT and on the interpreter with the same checks, instruction
 * encoders for hand-built blocks, and the golden-file comparison of generated code.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildElf, runProgram, PROGRAMS_DIR } from './harness.js';
import { repoRoot } from '../helpers/paths.js';
import type { HartOptions } from '../../src/riscv/hart.js';

const header = readFileSync(join(PROGRAMS_DIR, 'common.h'), 'utf8');

/** The bare-metal programs (test/riscv/programs/*.S). */
export const JIT_PROGRAMS = readdirSync(PROGRAMS_DIR).filter((f) => f.endsWith('.S'));

/** A program's source with its common header in place. */
export function programSource(name: string): string {
  return withCommonHeader(readFileSync(join(PROGRAMS_DIR, name), 'utf8'));
}

/** A generated program's source (which includes "common.h") with the header in place. */
export function withCommonHeader(source: string): string {
  return source.replace('#include "common.h"', header);
}

export interface JitOutcome {
  verdict: string;
  exceptions: string[];
  interrupts: number;
  instret: number;
  regs: string[];
  blocks: number;
  /** WebAssembly JIT: blocks that ran inside a region's function (JitStats.regionSegments). */
  regionSegments: number;
  backend: string | undefined;
}

/** Runs a program with `jit` (false: the interpreter alone) and records what the checks compare. */
export function runWithJit(name: string, jit: HartOptions['jit'], codeShare = false): JitOutcome {
  const exceptions: string[] = [];
  let interrupts = 0;
  const r = runProgram(buildElf(programSource(name)), 20_000_000, {
    jit,
    codeShare,
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
    regionSegments: r.hart.jitStats?.regionSegments ?? 0,
    backend: r.hart.jitStats?.backend,
  };
}

/** Programs whose interrupts arrive at a point that depends on how far each run() slice got. */
const TIMING_DEPENDENT = new Set(['irq.S', 'jit.S']);

/**
 * Runs `name` on the interpreter and with `jit`: both pass, blocks were translated, and the exceptions (cause,
 * epc, tval, in order), interrupts, retired instructions and final registers agree. Returns the JIT's run.
 */
export function assertJitMatchesInterpreter(name: string, jit: HartOptions['jit'], codeShare = false): JitOutcome {
  const ref = runWithJit(name, false);
  const got = runWithJit(name, jit, codeShare);
  assert.equal(ref.verdict, JSON.stringify({ kind: 'pass' }), `${name} passes on the interpreter`);
  assert.equal(got.verdict, ref.verdict, 'verdict');
  assert.ok(got.blocks > 0, 'blocks were translated');
  assert.deepEqual(got.exceptions, ref.exceptions, 'exceptions: cause, epc and tval, in order');
  if (TIMING_DEPENDENT.has(name)) {
    assert.ok(got.interrupts > 0 === ref.interrupts > 0, 'interrupts taken');
    return got;
  }
  assert.equal(got.interrupts, ref.interrupts, 'interrupts');
  assert.equal(got.instret, ref.instret, 'instructions retired');
  assert.deepEqual(got.regs, ref.regs, 'final registers');
  return got;
}

/** RV32/64 instruction words by format (unsigned 32-bit). */
export const enc = {
  r: (f7: number, rs2: number, rs1: number, f3: number, rd: number, op = 0x33): number =>
    ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0,
  i: (imm: number, rs1: number, f3: number, rd: number, op = 0x13): number =>
    (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0,
  s: (imm: number, rs2: number, rs1: number, f3: number): number =>
    ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23) >>> 0,
  b: (imm: number, rs2: number, rs1: number, f3: number): number =>
    ((((imm >> 12) & 1) << 31) |
      (((imm >> 5) & 0x3f) << 25) |
      (rs2 << 20) |
      (rs1 << 15) |
      (f3 << 12) |
      (((imm >> 1) & 0xf) << 8) |
      (((imm >> 11) & 1) << 7) |
      0x63) >>>
    0,
  u: (imm20: number, rd: number, op: number): number => (((imm20 & 0xfffff) << 12) | (rd << 7) | op) >>> 0,
  /** jal rd, offset */
  j: (offset: number, rd = 0): number =>
    ((((offset >> 20) & 1) << 31) |
      (((offset >> 1) & 0x3ff) << 21) |
      (((offset >> 11) & 1) << 20) |
      (((offset >> 12) & 0xff) << 12) |
      (rd << 7) |
      0x6f) >>>
    0,
};

/** Named blocks of 32-bit instructions starting at slot 0 of a page, whose generated code each backend pins. */
export const GOLDEN_BLOCKS: Record<string, number[]> = {
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

/**
 * Compares generated code with its golden file under test/riscv (written when missing, or rewritten with
 * TYPEVISOR_UPDATE_GOLDEN=1).
 */
export function assertGolden(file: string, text: string): void {
  const path = join(repoRoot, 'test/riscv', file);
  if (process.env.TYPEVISOR_UPDATE_GOLDEN === '1' || !existsSync(path)) writeFileSync(path, text);
  assert.equal(text, readFileSync(path, 'utf8'));
}
