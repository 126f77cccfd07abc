/**
 * Differential test of FP_OPS against qemu-riscv64 (QEMU's softfloat is the reference): tens of thousands of
 * random, edge-biased operand vectors per run over every F/D instruction and every rounding mode (static rm
 * and dynamic rm through frm). Results must match bit for bit, fflags included. Set FPDIFF_SEED to replay.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FP_OPS, FpState } from '../../../src/riscv/fpu/index.js';
import { OPS, buildHarness, requireFpTools, runUnderQemu, type Vector } from './qemu-harness.js';
import { Gen, makeRng } from './vectors.js';

const COUNT = Number(process.env.FPDIFF_COUNT ?? 150000);

function hex(v: bigint): string {
  return '0x' + v.toString(16).padStart(16, '0');
}

/** Executes one vector with FP_OPS the way the harness does: operands in f1..f3 / x5, result in f4 / x10. */
function runOurs(fs: FpState, x: Int32Array, v: Vector): { r: bigint; flags: number } {
  const op = OPS[v.op];
  fs.fflags = 0;
  fs.frm = v.frm;
  const put = (r: number, bits: bigint): void => {
    fs.i32[2 * r] = Number(BigInt.asIntN(32, bits));
    fs.i32[2 * r + 1] = Number(BigInt.asIntN(32, bits >> 32n));
  };
  put(1, v.a);
  put(2, v.b);
  put(3, v.c);
  put(4, 0x5a5a5a5a5a5a5a5an);
  x[10] = 0x5a5a5a5a;
  x[11] = 0x5a5a5a5a;
  x[10 * 2] = 0x5a5a5a5a;
  x[10 * 2 + 1] = 0x5a5a5a5a;
  x[5 * 2] = Number(BigInt.asIntN(32, v.a));
  x[5 * 2 + 1] = Number(BigInt.asIntN(32, v.a >> 32n));
  const xDest = op.shape === 'XF' || op.shape === 'XFF';
  const rd = xDest ? 10 : 4;
  const rs1 = op.shape === 'FX' ? 5 : 1;
  const legal = FP_OPS[op.m](fs, x, rd, rs1, 2, 3, v.rm);
  assert.equal(legal, true, `${op.m} rm=${v.rm} frm=${v.frm} reported illegal`);
  const lo = BigInt(xDest ? x[2 * rd] >>> 0 : fs.i32[2 * rd] >>> 0);
  const hi = BigInt(xDest ? x[2 * rd + 1] >>> 0 : fs.i32[2 * rd + 1] >>> 0);
  return { r: (hi << 32n) | lo, flags: fs.fflags };
}

test('FP_OPS matches qemu-riscv64 bit for bit on random edge-biased vectors', { timeout: 240_000 }, () => {
  requireFpTools();
  const seed = Number(process.env.FPDIFF_SEED ?? Date.now() % 0x7fffffff);
  console.log(`# fpdiff seed=${seed} count=${COUNT} (replay with FPDIFF_SEED=${seed})`);
  const gen = new Gen(makeRng(seed));
  const vectors: Vector[] = [];
  for (let i = 0; i < COUNT; i++) {
    const opIndex = gen.int(OPS.length);
    vectors.push(gen.vector(opIndex, OPS[opIndex]));
  }
  const bin = buildHarness();
  const expected = runUnderQemu(bin, vectors);
  const fs = new FpState();
  const x = new Int32Array(64);
  const failures: string[] = [];
  let mismatches = 0;
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i];
    const got = runOurs(fs, x, v);
    const want = expected[i];
    if (got.r !== want.r || got.flags !== want.flags) {
      mismatches++;
      if (failures.length < 25) {
        failures.push(
          `${OPS[v.op].m} rm=${v.rm} frm=${v.frm} a=${hex(v.a)} b=${hex(v.b)} c=${hex(v.c)}: ` +
            `qemu ${hex(want.r)} flags=${want.flags.toString(2).padStart(5, '0')}, ours ${hex(got.r)} flags=${got.flags.toString(2).padStart(5, '0')}`,
        );
      }
    }
  }
  if (mismatches) {
    const byOp = new Map<string, number>();
    for (let i = 0; i < vectors.length; i++) {
      const got = runOurs(fs, x, vectors[i]);
      if (got.r !== expected[i].r || got.flags !== expected[i].flags) {
        const m = OPS[vectors[i].op].m;
        byOp.set(m, (byOp.get(m) ?? 0) + 1);
      }
    }
    const summary = [...byOp].map(([m, n]) => `${m}:${n}`).join(' ');
    assert.fail(`seed=${seed}: ${mismatches}/${vectors.length} mismatches (${summary})\n${failures.join('\n')}`);
  }
});
