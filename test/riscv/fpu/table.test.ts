import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FP_OPS, FP_MNEMONICS, FpState } from '../../../src/riscv/fpu/index.js';

test('FP_OPS implements every mnemonic of the contract', () => {
  for (const m of FP_MNEMONICS) assert.equal(typeof FP_OPS[m], 'function', m);
});

test('fadd.d and fadd.s compute and NaN-box', () => {
  const fs = new FpState();
  const x = new Int32Array(64);
  fs.f64[1] = 1.5;
  fs.f64[2] = 2.25;
  assert.equal(FP_OPS.fadd_d(fs, x, 3, 1, 2, 0, 0), true);
  assert.equal(fs.f64[3], 3.75);
  fs.f32[2] = 1.5;
  fs.i32[3] = -1;
  fs.f32[4] = 2.25;
  fs.i32[5] = -1;
  FP_OPS.fadd_s(fs, x, 3, 1, 2, 0, 0);
  assert.equal(fs.f32[6], 3.75);
  assert.equal(fs.i32[7], -1);
});

test('reserved rounding modes are illegal', () => {
  const fs = new FpState();
  const x = new Int32Array(64);
  assert.equal(FP_OPS.fadd_d(fs, x, 3, 1, 2, 0, 5), false);
  fs.frm = 6;
  assert.equal(FP_OPS.fadd_d(fs, x, 3, 1, 2, 0, 7), false);
});
