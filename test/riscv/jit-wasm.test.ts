/**
 * The WebAssembly block JIT (src/riscv/jit/wasm) against the interpreter on the bare-metal programs (traps,
 * interrupts, PMP, Sv39/Sv48, and programs/jit.S: faults inside looping blocks, self-modifying code, interrupts
 * during long loops, remapped code pages): exceptions (cause, epc, tval, in order), retired-instruction counts
 * and final registers must agree. The harts run on linear RAM, whose memory the blocks import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildElf, runProgram, PROGRAMS_DIR } from './harness.js';
import { type HartOptions } from '../../src/riscv/hart.js';

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
    ['blocks translated when hot', { threshold: 3, backend: 'wasm' }],
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
