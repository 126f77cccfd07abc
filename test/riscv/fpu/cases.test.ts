/**
 * Hand-picked F/D cases: signed zeros, infinities, quiet and signalling NaNs, NaN-boxing, subnormals, tininess
 * after rounding, overflow per rounding mode, ties (RNE vs RMM), fused vs unfused rounding, saturating
 * conversions and the classic double-rounding trap of int64 -> binary32. Expected values follow the RISC-V
 * unprivileged spec (F/D chapters) and IEEE 754-2008; each was also checked against qemu-riscv64.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FP_OPS, FpState, type FpMnemonic } from '../../../src/riscv/fpu/index.js';
import { OPS, buildHarness, requireFpTools, runUnderQemu } from './qemu-harness.js';

const RNE = 0;
const RTZ = 1;
const RDN = 2;
const RUP = 3;
const RMM = 4;
const DYN = 7;
const NV = 0x10;
const DZ = 0x08;
const OF = 0x04;
const UF = 0x02;
const NX = 0x01;

/** [op, rm, a, b, c, expected result bits, expected fflags]. Singles are given NaN-boxed. */
type Case = [FpMnemonic, number, bigint, bigint, bigint, bigint, number];
const S = (bits: number): bigint => 0xffffffff00000000n | BigInt(bits >>> 0);
const ONE = 0x3ff0000000000000n;
const MAX = 0x7fefffffffffffffn;
const INF = 0x7ff0000000000000n;
const NINF = 0xfff0000000000000n;
const QNAN = 0x7ff8000000000000n;
const SNAN = 0x7ff0000000000001n;
const PZ = 0n;
const NZ = 0x8000000000000000n;
const MIN_NORMAL = 0x0010000000000000n;

const cases: Case[] = [
  // fadd.d: ties at 1 + 2^-53 in every mode
  ['fadd_d', RNE, ONE, 0x3ca0000000000000n, 0n, ONE, NX],
  ['fadd_d', RMM, ONE, 0x3ca0000000000000n, 0n, ONE + 1n, NX],
  ['fadd_d', RUP, ONE, 0x3ca0000000000000n, 0n, ONE + 1n, NX],
  ['fadd_d', RDN, ONE, 0x3ca0000000000000n, 0n, ONE, NX],
  ['fadd_d', RTZ, ONE, 0x3ca0000000000000n, 0n, ONE, NX],
  ['fadd_d', RNE, ONE + 1n, 0x3ca0000000000000n, 0n, ONE + 2n, NX], // tie to even, upwards
  ['fadd_d', RTZ, ONE + 1n, 0x3ca0000000000000n, 0n, ONE + 1n, NX],
  ['fadd_d', RDN, 0xbff0000000000000n, 0xbca0000000000000n, 0n, 0xbff0000000000001n, NX],
  ['fadd_d', RUP, 0xbff0000000000000n, 0xbca0000000000000n, 0n, 0xbff0000000000000n, NX],
  ['fadd_d', RMM, 0xbff0000000000000n, 0xbca0000000000000n, 0n, 0xbff0000000000001n, NX],
  // exact zeros: x + (-x) is +0, or -0 rounding down; equal-signed zeros keep their sign
  ['fadd_d', RNE, ONE, 0xbff0000000000000n, 0n, PZ, 0],
  ['fadd_d', RDN, ONE, 0xbff0000000000000n, 0n, NZ, 0],
  ['fadd_d', RNE, NZ, NZ, 0n, NZ, 0],
  ['fadd_d', RNE, PZ, NZ, 0n, PZ, 0],
  ['fadd_d', RDN, PZ, NZ, 0n, NZ, 0],
  ['fsub_d', RUP, PZ, PZ, 0n, PZ, 0],
  // invalid and NaN propagation
  ['fadd_d', RNE, INF, NINF, 0n, QNAN, NV],
  ['fadd_d', RNE, SNAN, ONE, 0n, QNAN, NV],
  ['fadd_d', RNE, 0x7ff8000000000123n, ONE, 0n, QNAN, 0],
  ['fadd_d', RNE, INF, ONE, 0n, INF, 0],
  // overflow results per mode
  ['fadd_d', RNE, MAX, MAX, 0n, INF, OF | NX],
  ['fadd_d', RTZ, MAX, MAX, 0n, MAX, OF | NX],
  ['fadd_d', RDN, MAX, MAX, 0n, MAX, OF | NX],
  ['fadd_d', RUP, MAX, MAX, 0n, INF, OF | NX],
  ['fadd_d', RMM, MAX, MAX, 0n, INF, OF | NX],
  ['fadd_d', RDN, MAX | NZ, MAX | NZ, 0n, NINF, OF | NX],
  ['fadd_d', RUP, MAX | NZ, MAX | NZ, 0n, MAX | NZ, OF | NX],
  ['fadd_d', RUP, MAX, 0x3ff0000000000000n, 0n, INF, OF | NX], // MAX + 1 is just above MAX
  ['fadd_d', RNE, 1n, 1n, 0n, 2n, 0], // exact subnormal sum: no underflow flag
  // fmul.d: subnormal results and tininess after rounding
  ['fmul_d', RNE, MIN_NORMAL, 0x3fe0000000000000n, 0n, 0x0008000000000000n, 0],
  ['fmul_d', RNE, 1n, 0x3fe0000000000000n, 0n, PZ, UF | NX], // 2^-1075: tie to even (zero)
  ['fmul_d', RMM, 1n, 0x3fe0000000000000n, 0n, 1n, UF | NX],
  ['fmul_d', RUP, 1n, 0x3fe0000000000000n, 0n, 1n, UF | NX],
  ['fmul_d', RDN, 1n | NZ, 0x3fe0000000000000n, 0n, 1n | NZ, UF | NX],
  ['fmul_d', RTZ, 1n | NZ, 0x3fe0000000000000n, 0n, NZ, UF | NX],
  // (1-2^-53) * 2^-1022 = 2^-1022 - 2^-1075: rounds to MIN_NORMAL but is tiny with an unbounded exponent
  ['fmul_d', RNE, 0x3fefffffffffffffn, MIN_NORMAL, 0n, MIN_NORMAL, UF | NX],
  // (1-2^-52)(1+2^-52) * 2^-1022 = 2^-1022 (1 - 2^-104): rounds to MIN_NORMAL and is not tiny
  ['fmul_d', RNE, 0x3feffffffffffffen, MIN_NORMAL + 1n, 0n, MIN_NORMAL, NX],
  ['fmul_d', RTZ, 0x3feffffffffffffen, MIN_NORMAL + 1n, 0n, MIN_NORMAL - 1n, UF | NX],
  ['fmul_d', RNE, INF, PZ, 0n, QNAN, NV],
  ['fmul_d', RNE, NZ, ONE, 0n, NZ, 0],
  // fdiv.d
  ['fdiv_d', RNE, ONE, PZ, 0n, INF, DZ],
  ['fdiv_d', RNE, ONE | NZ, PZ, 0n, NINF, DZ],
  ['fdiv_d', RNE, INF, PZ, 0n, INF, 0],
  ['fdiv_d', RNE, PZ, PZ, 0n, QNAN, NV],
  ['fdiv_d', RNE, INF, NINF, 0n, QNAN, NV],
  ['fdiv_d', RNE, ONE, 0x4008000000000000n, 0n, 0x3fd5555555555555n, NX],
  ['fdiv_d', RUP, ONE, 0x4008000000000000n, 0n, 0x3fd5555555555556n, NX],
  ['fdiv_d', RDN, ONE, 0x4008000000000000n, 0n, 0x3fd5555555555555n, NX],
  ['fdiv_d', RMM, ONE, 0x4008000000000000n, 0n, 0x3fd5555555555555n, NX],
  // fsqrt.d
  ['fsqrt_d', RNE, 0xbff0000000000000n, 0n, 0n, QNAN, NV],
  ['fsqrt_d', RNE, NZ, 0n, 0n, NZ, 0],
  ['fsqrt_d', RNE, 0x4000000000000000n, 0n, 0n, 0x3ff6a09e667f3bcdn, NX],
  ['fsqrt_d', RUP, 0x4000000000000000n, 0n, 0n, 0x3ff6a09e667f3bcdn, NX],
  ['fsqrt_d', RTZ, 0x4000000000000000n, 0n, 0n, 0x3ff6a09e667f3bccn, NX],
  ['fsqrt_d', RNE, 0x4010000000000000n, 0n, 0n, 0x4000000000000000n, 0],
  ['fsqrt_d', RNE, 1n, 0n, 0n, 0x1e60000000000000n, 0], // sqrt(2^-1074) = 2^-537
  // fused multiply-add: one rounding
  ['fmadd_d', RNE, ONE + 1n, 0x3fefffffffffffffn, 0xbff0000000000000n, 0x3c9ffffffffffffen, 0],
  ['fmadd_d', RNE, INF, PZ, QNAN, QNAN, NV], // inf*0 is invalid even with a quiet NaN addend
  ['fmadd_d', RNE, ONE, ONE, SNAN, QNAN, NV],
  ['fmadd_d', RNE, INF, ONE, NINF, QNAN, NV],
  ['fnmadd_d', RNE, ONE, ONE, ONE, 0xc000000000000000n, 0], // -(1*1) - 1
  ['fnmsub_d', RNE, ONE, ONE, ONE, PZ, 0], // -(1*1) + 1
  ['fnmsub_d', RDN, ONE, ONE, ONE, NZ, 0],
  ['fmsub_d', RDN, ONE, ONE, ONE, NZ, 0],
  ['fmadd_d', RNE, PZ | NZ, ONE, NZ, NZ, 0], // (-0)(1) + (-0)
  ['fmadd_d', RTZ, MAX, 0x4000000000000000n, MAX | NZ, MAX, 0], // 2 MAX - MAX = MAX exactly
  // fmin/fmax (minimumNumber/maximumNumber)
  ['fmin_d', RNE, NZ, PZ, 0n, NZ, 0],
  ['fmin_d', RNE, PZ, NZ, 0n, NZ, 0],
  ['fmax_d', RNE, NZ, PZ, 0n, PZ, 0],
  ['fmin_d', RNE, QNAN, ONE, 0n, ONE, 0],
  ['fmax_d', RNE, ONE, SNAN, 0n, ONE, NV],
  ['fmin_d', RNE, QNAN, 0x7ff8000000000001n, 0n, QNAN, 0],
  ['fmax_d', RNE, SNAN, SNAN, 0n, QNAN, NV],
  // compares: feq is quiet, flt/fle signal on any NaN
  ['feq_d', RNE, QNAN, ONE, 0n, 0n, 0],
  ['feq_d', RNE, SNAN, ONE, 0n, 0n, NV],
  ['flt_d', RNE, QNAN, ONE, 0n, 0n, NV],
  ['fle_d', RNE, NZ, PZ, 0n, 1n, 0],
  ['feq_d', RNE, NZ, PZ, 0n, 1n, 0],
  ['flt_d', RNE, NZ, PZ, 0n, 0n, 0],
  // fclass.d, every class
  ['fclass_d', RNE, NINF, 0n, 0n, 1n << 0n, 0],
  ['fclass_d', RNE, ONE | NZ, 0n, 0n, 1n << 1n, 0],
  ['fclass_d', RNE, 1n | NZ, 0n, 0n, 1n << 2n, 0],
  ['fclass_d', RNE, NZ, 0n, 0n, 1n << 3n, 0],
  ['fclass_d', RNE, PZ, 0n, 0n, 1n << 4n, 0],
  ['fclass_d', RNE, 1n, 0n, 0n, 1n << 5n, 0],
  ['fclass_d', RNE, ONE, 0n, 0n, 1n << 6n, 0],
  ['fclass_d', RNE, INF, 0n, 0n, 1n << 7n, 0],
  ['fclass_d', RNE, SNAN, 0n, 0n, 1n << 8n, 0],
  ['fclass_d', RNE, QNAN, 0n, 0n, 1n << 9n, 0],
  ['fclass_s', RNE, 0x7fc00000n, 0n, 0n, 1n << 9n, 0], // not NaN-boxed: the canonical NaN
  ['fclass_s', RNE, S(0x80000001), 0n, 0n, 1n << 2n, 0],
  // fcvt to integers: rounding, saturation, NaN, sign extension of 32-bit results
  ['fcvt_w_d', RNE, 0x4004000000000000n, 0n, 0n, 2n, NX], // 2.5
  ['fcvt_w_d', RMM, 0x4004000000000000n, 0n, 0n, 3n, NX],
  ['fcvt_w_d', RMM, 0xc004000000000000n, 0n, 0n, 0xfffffffffffffffdn, NX],
  ['fcvt_w_d', RDN, 0xc004000000000000n, 0n, 0n, 0xfffffffffffffffdn, NX],
  ['fcvt_w_d', RUP, 0xc004000000000000n, 0n, 0n, 0xfffffffffffffffen, NX],
  ['fcvt_w_d', RTZ, 0xc004000000000000n, 0n, 0n, 0xfffffffffffffffen, NX],
  ['fcvt_w_d', RNE, QNAN, 0n, 0n, 0x7fffffffn, NV],
  ['fcvt_w_d', RNE, INF, 0n, 0n, 0x7fffffffn, NV],
  ['fcvt_w_d', RNE, NINF, 0n, 0n, 0xffffffff80000000n, NV],
  ['fcvt_w_d', RNE, 0x41e0000000000000n, 0n, 0n, 0x7fffffffn, NV], // 2^31
  ['fcvt_w_d', RNE, 0xc1e0000000000000n, 0n, 0n, 0xffffffff80000000n, 0], // -2^31
  ['fcvt_w_d', RNE, 0x41dfffffffe00000n, 0n, 0n, 0x7fffffffn, NV], // 2^31 - 0.5 rounds to 2^31
  ['fcvt_w_d', RTZ, 0x41dfffffffe00000n, 0n, 0n, 0x7fffffffn, NX],
  ['fcvt_wu_d', RTZ, 0xbfe0000000000000n, 0n, 0n, 0n, NX], // -0.5 truncates to 0: inexact, not invalid
  ['fcvt_wu_d', RNE, 0xbfe0000000000000n, 0n, 0n, 0n, NX],
  ['fcvt_wu_d', RNE, 0xbfe6666666666666n, 0n, 0n, 0n, NV], // -0.7 rounds to -1
  ['fcvt_wu_d', RNE, 0x41e65a0bc0000000n, 0n, 0n, 0xffffffffb2d05e00n, 0], // 3e9, sign-extended
  ['fcvt_wu_d', RNE, QNAN, 0n, 0n, 0xffffffffffffffffn, NV],
  ['fcvt_wu_d', RTZ, 0x41efffffffffc000n, 0n, 0n, 0xffffffffffffffffn, NX], // 2^32 - 0.5
  ['fcvt_l_d', RNE, 0x43e0000000000000n, 0n, 0n, 0x7fffffffffffffffn, NV], // 2^63
  ['fcvt_l_d', RNE, 0xc3e0000000000000n, 0n, 0n, 0x8000000000000000n, 0],
  ['fcvt_l_d', RNE, NINF, 0n, 0n, 0x8000000000000000n, NV],
  ['fcvt_lu_d', RNE, 0x43f0000000000000n, 0n, 0n, 0xffffffffffffffffn, NV], // 2^64
  ['fcvt_lu_d', RNE, 0x43e0000000000000n, 0n, 0n, 0x8000000000000000n, 0],
  ['fcvt_lu_d', RNE, 0xbff0000000000000n, 0n, 0n, 0n, NV],
  ['fcvt_lu_s', RNE, S(0x5f800000), 0n, 0n, 0xffffffffffffffffn, NV], // 2^64 as a single
  // integer -> FP
  ['fcvt_d_l', RNE, 0x7fffffffffffffffn, 0n, 0n, 0x43e0000000000000n, NX],
  ['fcvt_d_l', RTZ, 0x7fffffffffffffffn, 0n, 0n, 0x43dfffffffffffffn, NX],
  ['fcvt_d_l', RUP, 0x7fffffffffffffffn, 0n, 0n, 0x43e0000000000000n, NX],
  ['fcvt_d_l', RNE, 0x0020000000000001n, 0n, 0n, 0x4340000000000000n, NX], // 2^53 + 1: tie
  ['fcvt_d_l', RMM, 0x0020000000000001n, 0n, 0n, 0x4340000000000001n, NX],
  ['fcvt_d_l', RNE, 0x8000000000000000n, 0n, 0n, 0xc3e0000000000000n, 0],
  ['fcvt_d_lu', RNE, 0xffffffffffffffffn, 0n, 0n, 0x43f0000000000000n, NX],
  ['fcvt_d_lu', RTZ, 0xffffffffffffffffn, 0n, 0n, 0x43efffffffffffffn, NX],
  ['fcvt_d_wu', RNE, 0xffffffff80000000n, 0n, 0n, 0x41e0000000000000n, 0], // only the low 32 bits count
  ['fcvt_s_w', RNE, 16777217n, 0n, 0n, S(0x4b800000), NX],
  ['fcvt_s_w', RMM, 16777217n, 0n, 0n, S(0x4b800001), NX],
  ['fcvt_s_w', RUP, 16777217n, 0n, 0n, S(0x4b800001), NX],
  ['fcvt_s_l', RNE, 0x7fffffffffffffffn, 0n, 0n, S(0x5f000000), NX],
  ['fcvt_s_l', RTZ, 0x7fffffffffffffffn, 0n, 0n, S(0x5effffff), NX],
  // 2^55 + 2^31 + 1: rounding through binary64 first would make a false tie and round to even (down)
  ['fcvt_s_l', RNE, 0x0080000080000001n, 0n, 0n, S(0x5b000001), NX],
  // FP <-> FP
  ['fcvt_s_d', RNE, 0x3ff0000010000000n, 0n, 0n, S(0x3f800000), NX], // 1 + 2^-24: tie
  ['fcvt_s_d', RMM, 0x3ff0000010000000n, 0n, 0n, S(0x3f800001), NX],
  ['fcvt_s_d', RNE, MAX, 0n, 0n, S(0x7f800000), OF | NX],
  ['fcvt_s_d', RTZ, MAX, 0n, 0n, S(0x7f7fffff), OF | NX],
  ['fcvt_s_d', RNE, 0x3690000000000000n, 0n, 0n, S(0), UF | NX], // 2^-150
  ['fcvt_s_d', RUP, 0x3690000000000000n, 0n, 0n, S(1), UF | NX],
  ['fcvt_s_d', RNE, SNAN, 0n, 0n, S(0x7fc00000), NV],
  ['fcvt_s_d', RNE, 0xfff8000000000abcn, 0n, 0n, S(0x7fc00000), 0],
  ['fcvt_d_s', RNE, S(0x7f800001), 0n, 0n, QNAN, NV],
  ['fcvt_d_s', RNE, 0x000000003f800000n, 0n, 0n, QNAN, 0], // not NaN-boxed
  ['fcvt_d_s', RNE, S(0x00000001), 0n, 0n, 0x36a0000000000000n, 0], // 2^-149
  // binary32 arithmetic and NaN-boxing
  ['fadd_s', RNE, 0x000000003f800000n, S(0x3f800000), 0n, S(0x7fc00000), 0],
  ['fadd_s', RNE, S(0x7f800001), S(0x3f800000), 0n, S(0x7fc00000), NV],
  ['fdiv_s', RNE, S(0x3f800000), S(0x40400000), 0n, S(0x3eaaaaab), NX],
  ['fdiv_s', RDN, S(0x3f800000), S(0x40400000), 0n, S(0x3eaaaaaa), NX],
  ['fdiv_s', RNE, S(0x3f800000), S(0x80000000), 0n, S(0xff800000), DZ],
  ['fmul_s', RNE, S(0x00800000), S(0x3f000000), 0n, S(0x00400000), 0],
  ['fmul_s', RNE, S(0x3f7fffff), S(0x00800000), 0n, S(0x00800000), UF | NX],
  ['fmul_s', RUP, S(0x7f7fffff), S(0x40000000), 0n, S(0x7f800000), OF | NX],
  ['fmul_s', RTZ, S(0x7f7fffff), S(0x40000000), 0n, S(0x7f7fffff), OF | NX],
  ['fmadd_s', RNE, S(0x3f800001), S(0x3f7fffff), S(0xbf800000), S(0x337ffffe), 0],
  ['fsqrt_s', RNE, S(0x40000000), 0n, 0n, S(0x3fb504f3), NX],
  ['fsqrt_s', RUP, S(0x40000000), 0n, 0n, S(0x3fb504f4), NX],
  ['fmin_s', RNE, S(0x80000000), S(0x00000000), 0n, S(0x80000000), 0],
  ['fmax_s', RNE, 0x1234567800000000n, S(0x3f800000), 0n, S(0x3f800000), 0], // unboxed = qNaN
  ['feq_s', RNE, S(0x7fc00000), S(0x7fc00000), 0n, 0n, 0],
  ['flt_s', RNE, S(0x3f800000), S(0x40000000), 0n, 1n, 0],
  // sign injection (unboxed input = canonical NaN) and moves
  ['fsgnj_s', RNE, 0x000000003f800000n, S(0x80000000), 0n, S(0xffc00000), 0],
  ['fsgnjn_s', RNE, S(0x3f800000), S(0x3f800000), 0n, S(0xbf800000), 0],
  ['fsgnjx_s', RNE, S(0xbf800000), S(0x80000000), 0n, S(0x3f800000), 0],
  ['fsgnj_d', RNE, SNAN, NZ, 0n, SNAN | NZ, 0], // no NaN canonicalisation, no flags
  ['fsgnjn_d', RNE, ONE, ONE, 0n, ONE | NZ, 0],
  ['fsgnjx_d', RNE, ONE | NZ, NZ, 0n, ONE, 0],
  ['fmv_x_w', RNE, 0x0000000080000000n, 0n, 0n, 0xffffffff80000000n, 0],
  ['fmv_x_d', RNE, SNAN, 0n, 0n, SNAN, 0],
  ['fmv_w_x', RNE, 0x123456789abcdef0n, 0n, 0n, 0xffffffff9abcdef0n, 0],
  ['fmv_d_x', RNE, 0x123456789abcdef0n, 0n, 0n, 0x123456789abcdef0n, 0],
];

function run(op: FpMnemonic, rm: number, a: bigint, b: bigint, c: bigint, frm = 0) {
  const spec = OPS.find((o) => o.m === op);
  assert.ok(spec, op);
  const fs = new FpState();
  const x = new Int32Array(64);
  fs.frm = frm;
  const put = (r: number, v: bigint): void => {
    fs.i32[2 * r] = Number(BigInt.asIntN(32, v));
    fs.i32[2 * r + 1] = Number(BigInt.asIntN(32, v >> 32n));
  };
  put(1, a);
  put(2, b);
  put(3, c);
  x[10] = Number(BigInt.asIntN(32, a));
  x[11] = Number(BigInt.asIntN(32, a >> 32n));
  const xDest = spec.shape === 'XF' || spec.shape === 'XFF';
  const rd = xDest ? 7 : 4;
  const legal = FP_OPS[op](fs, x, rd, spec.shape === 'FX' ? 5 : 1, 2, 3, rm);
  const lo = BigInt((xDest ? x[2 * rd] : fs.i32[2 * rd]) >>> 0);
  const hi = BigInt((xDest ? x[2 * rd + 1] : fs.i32[2 * rd + 1]) >>> 0);
  return { legal, r: (hi << 32n) | lo, flags: fs.fflags };
}

const hex = (v: bigint): string => '0x' + v.toString(16);

test('hand-picked F/D cases give the architectural result and fflags', () => {
  const failures: string[] = [];
  for (const [op, rm, a, b, c, want, wantFlags] of cases) {
    const got = run(op, rm, a, b, c);
    if (!got.legal || got.r !== want || got.flags !== wantFlags) {
      failures.push(
        `${op} rm=${rm} ${hex(a)} ${hex(b)} ${hex(c)}: want ${hex(want)}/${wantFlags}, got ${hex(got.r)}/${got.flags}`,
      );
    }
  }
  assert.deepEqual(failures, []);
});

test('the hand-picked expectations agree with qemu-riscv64', { timeout: 120_000 }, () => {
  requireFpTools();
  const vectors = cases.map(([op, rm, a, b, c]) => ({ op: OPS.findIndex((o) => o.m === op), rm, frm: 0, a, b, c }));
  const got = runUnderQemu(buildHarness(), vectors);
  const failures: string[] = [];
  cases.forEach(([op, rm, a, b, c, want, wantFlags], i) => {
    if (got[i].r !== want || got[i].flags !== wantFlags) {
      failures.push(
        `${op} rm=${rm} ${hex(a)} ${hex(b)} ${hex(c)}: want ${hex(want)}/${wantFlags}, qemu ${hex(got[i].r)}/${got[i].flags}`,
      );
    }
  });
  assert.deepEqual(failures, []);
});

test('dynamic rounding mode follows frm; static rm overrides it', () => {
  const tie: [bigint, bigint] = [ONE, 0x3ca0000000000000n];
  assert.equal(run('fadd_d', DYN, ...tie, 0n, RMM).r, ONE + 1n);
  assert.equal(run('fadd_d', DYN, ...tie, 0n, RNE).r, ONE);
  assert.equal(run('fadd_d', RNE, ...tie, 0n, RMM).r, ONE);
});

test('reserved rounding modes (rm 5/6, or dyn with frm 5-7) make rounding instructions illegal', () => {
  for (const op of ['fadd_s', 'fmul_d', 'fsqrt_d', 'fmadd_s', 'fcvt_w_d', 'fcvt_d_w', 'fcvt_s_d', 'fcvt_d_s'] as const) {
    for (const rm of [5, 6]) assert.equal(run(op, rm, ONE, ONE, ONE).legal, false, `${op} rm=${rm}`);
    for (const frm of [5, 6, 7]) assert.equal(run(op, DYN, ONE, ONE, ONE, frm).legal, false, `${op} frm=${frm}`);
    assert.equal(run(op, DYN, ONE, ONE, ONE, RUP).legal, true);
  }
  // Ops without a rounding mode ignore the field (it encodes the operation).
  assert.equal(run('fsgnj_d', 6, ONE, ONE, 0n).legal, true);
});

test('an illegal op writes nothing and raises no flag', () => {
  const fs = new FpState();
  const x = new Int32Array(64);
  fs.f64[1] = 1;
  fs.f64[2] = 3;
  fs.f64[4] = 42;
  assert.equal(FP_OPS.fdiv_d(fs, x, 4, 1, 2, 0, 5), false);
  assert.equal(fs.f64[4], 42);
  assert.equal(fs.fflags, 0);
});

test('integer destination x0 is never written', () => {
  const fs = new FpState();
  const x = new Int32Array(64);
  fs.f64[1] = -1;
  for (const op of ['fcvt_l_d', 'fmv_x_d', 'fclass_d', 'feq_d'] as const) {
    FP_OPS[op](fs, x, 0, 1, 1, 0, 0);
    assert.equal(x[0] | x[1], 0, op);
  }
});
