/**
 * Random operand generation for the differential tests, biased towards the classes where FP units go wrong:
 * signed zeros, infinities, quiet and signalling NaNs, subnormals, extremes of the exponent range, values with
 * short mantissas (exact results and ties), near-cancellation, and integers around conversion limits.
 */
import type { OpSpec, Vector } from './qemu-harness.js';

import { mulberry32 as makeRng } from '../../helpers/prng.js';
export { makeRng };

const M64 = (1n << 64n) - 1n;
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bitsOfDouble(v: number): bigint {
  f64[0] = v;
  return u64[0];
}
export function doubleOfBits(b: bigint): number {
  u64[0] = b & M64;
  return f64[0];
}
function singleOfBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0];
}
function bitsOfSingle(v: number): number {
  f32[0] = v;
  return u32[0];
}

export class Gen {
  constructor(private readonly rnd: () => number) {}

  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  u32(): number {
    return this.int(0x100000000);
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  /** A mantissa with random bits, or with only a few high bits set (short mantissas give exact results and ties). */
  private mant(bits: number): bigint {
    const full = (1n << BigInt(bits)) - 1n;
    const r = this.int(4);
    if (r === 0) return 0n;
    if (r === 1) return this.u64() & full;
    if (r === 2) return (((this.u64() & full) >> BigInt(this.int(bits))) << BigInt(this.int(bits))) & full;
    // near all-ones or near zero: off by a few ulps
    const k = BigInt(this.int(8));
    return this.int(2) ? full - k : k;
  }

  /** A binary64 bit pattern. */
  double(): bigint {
    const sign = BigInt(this.int(2)) << 63n;
    let exp: number;
    const cls = this.int(16);
    if (cls === 0) return sign; // ±0
    if (cls === 1) return sign | (0x7ffn << 52n); // ±inf
    if (cls === 2) return sign | (0x7ff8n << 48n) | (this.u64() & ((1n << 51n) - 1n)); // qNaN
    if (cls === 3) return sign | (0x7ffn << 52n) | (this.u64() & ((1n << 51n) - 1n) || 1n); // sNaN
    if (cls === 4)
      exp = 0; // subnormal
    else if (cls === 5)
      exp = 1 + this.int(60); // small normals
    else if (cls === 6)
      exp = 0x7fe - this.int(60); // near overflow
    else if (cls === 7) exp = 1 + this.int(0x7fe);
    else if (cls === 8) return sign | bitsOfDouble(this.intLike());
    else exp = 1023 - 40 + this.int(80);
    return sign | (BigInt(exp) << 52n) | this.mant(52);
  }

  /** An integer-valued or half-integer value near conversion boundaries. */
  intLike(): number {
    const bases = [0, 1, 2 ** 23, 2 ** 24, 2 ** 31, 2 ** 32, 2 ** 52, 2 ** 53, 2 ** 63, 2 ** 64, 2 ** 62];
    const base = bases[this.int(bases.length)];
    const off = this.int(3) === 0 ? this.rnd() * 8 - 4 : this.int(9) - 4 + (this.int(4) === 0 ? 0.5 : 0);
    return (this.int(2) ? -1 : 1) * (base + off * (base > 2 ** 53 ? base * 2 ** -52 : 1));
  }

  /** A binary32 bit pattern (low 32 bits). */
  single32(): number {
    const sign = this.int(2) ? 0x80000000 : 0;
    const cls = this.int(16);
    let exp: number;
    const frac = Number(this.mant(23));
    if (cls === 0) return sign >>> 0;
    if (cls === 1) return (sign | 0x7f800000) >>> 0;
    if (cls === 2) return (sign | 0x7fc00000 | (this.u32() & 0x3fffff)) >>> 0;
    if (cls === 3) return (sign | 0x7f800000 | (this.u32() & 0x3fffff || 1)) >>> 0;
    if (cls === 4) exp = 0;
    else if (cls === 5) exp = 1 + this.int(30);
    else if (cls === 6) exp = 0xfe - this.int(30);
    else if (cls === 7) exp = 1 + this.int(0xfe);
    else if (cls === 8) return bitsOfSingle(this.intLike());
    else exp = 127 - 20 + this.int(40);
    return (sign | (exp << 23) | frac) >>> 0;
  }

  /** A NaN-boxed single, or occasionally an improperly boxed one. */
  single(): bigint {
    const hi = this.int(40) === 0 ? BigInt(this.u32()) : 0xffffffffn;
    return (hi << 32n) | BigInt(this.single32());
  }

  /** An integer-register operand for int→FP conversions and moves. */
  integer(): bigint {
    const cls = this.int(6);
    if (cls === 0) return this.u64();
    if (cls === 1) return BigInt.asUintN(64, BigInt(this.int(2001) - 1000));
    if (cls === 2) {
      // near a power of two, either sign
      const p = BigInt(this.int(64));
      const v = (1n << p) + BigInt(this.int(9) - 4);
      return BigInt.asUintN(64, this.int(2) ? v : -v);
    }
    if (cls === 3) return BigInt.asUintN(64, BigInt(this.int(2 ** 31)) << BigInt(this.int(34))); // short mantissas
    if (cls === 4) return (0xffffffffn << 32n) | BigInt(this.u32()); // negative 32-bit, sign-extended
    return BigInt(this.u32());
  }

  /** A second operand, sometimes close to the first (cancellation, equal values, exponent alignment). */
  related(a: bigint, single: boolean): bigint {
    const r = this.int(4);
    if (r === 0) return a;
    if (r === 1) return a ^ (single ? 0x80000000n : 1n << 63n);
    if (single) {
      const lo = Number(a & 0xffffffffn);
      const v = (lo + this.int(9) - 4 + ((this.int(3) - 1) << 23)) >>> 0;
      return (a & ~0xffffffffn) | BigInt(v);
    }
    const d = BigInt(this.int(9) - 4) + (BigInt(this.int(121) - 60) << 52n);
    return BigInt.asUintN(64, a + d);
  }

  /** An FMA addend near -(a*b), to exercise cancellation in the fused sum. */
  fmaAddend(a: bigint, b: bigint, single: boolean): bigint {
    if (single) {
      const p = Math.fround(singleOfBits(Number(a & 0xffffffffn)) * singleOfBits(Number(b & 0xffffffffn)));
      const bits = (bitsOfSingle(-p) + this.int(5) - 2) >>> 0;
      return (0xffffffffn << 32n) | BigInt(bits);
    }
    const p = doubleOfBits(a) * doubleOfBits(b);
    return BigInt.asUintN(64, bitsOfDouble(this.int(2) ? -p : p) + BigInt(this.int(5) - 2));
  }

  /** Replaces the exponent of a finite non-zero pattern with `unbiased` (clamped to the normal range). */
  private withExponent(bits: bigint, unbiased: number, single: boolean): bigint {
    if (single) {
      const e = Math.max(1, Math.min(254, unbiased + 127));
      const lo = Number(bits & 0xffffffffn);
      return (bits & ~0xffffffffn) | BigInt(((lo & 0x807fffff) | (e << 23)) >>> 0);
    }
    const e = BigInt(Math.max(1, Math.min(2046, unbiased + 1023)));
    return (bits & ~(0x7ffn << 52n)) | (e << 52n);
  }
  private exponentOf(bits: bigint, single: boolean): number {
    return single ? Number((bits >> 23n) & 0xffn) - 127 : Number((bits >> 52n) & 0x7ffn) - 1023;
  }

  /**
   * Operands whose product or quotient lands near the underflow threshold, the subnormal range or the overflow
   * threshold, where tininess, UF/OF and mode-dependent overflow results are decided.
   */
  private nearRangeEnds(op: OpSpec, a: bigint, b: bigint): bigint {
    const single = op.single;
    const emin = single ? -126 : -1022;
    const emax = single ? 127 : 1023;
    const mant = single ? 23 : 52;
    const target = this.int(2) ? emin - this.int(mant + 4) + 2 : emax - 1 + this.int(3);
    const ea = this.exponentOf(a, single);
    const isDiv = op.m.startsWith('fdiv');
    return this.withExponent(b, isDiv ? ea - target : target - ea, single);
  }

  vector(opIndex: number, op: OpSpec): Vector {
    const k = this.int(6);
    const rm = op.rm ? (k === 5 ? 7 : k) : 0;
    const frm = this.int(5);
    let a: bigint;
    let b: bigint;
    let c: bigint;
    if (op.shape === 'FX') {
      a = this.integer();
      b = 0n;
      c = 0n;
    } else {
      const operand = (): bigint => (op.single ? this.single() : this.double());
      a = operand();
      b = this.int(3) === 0 ? this.related(a, op.single) : operand();
      c = operand();
      const scalesRange = /^(fmul|fdiv|fmadd|fmsub|fnmsub|fnmadd)/.test(op.m);
      const finite = (v: bigint): boolean =>
        op.single
          ? ((v >> 23n) & 0xffn) !== 0xffn && (v & 0x7fffffffn) !== 0n
          : ((v >> 52n) & 0x7ffn) !== 0x7ffn && ((v << 1n) & M64) !== 0n;
      if (scalesRange && this.int(4) === 0 && finite(a) && finite(b)) {
        b = this.nearRangeEnds(op, a, b);
        if (op.shape === 'FFFF' && this.int(2))
          c = this.withExponent(c, this.exponentOf(a, op.single) + this.exponentOf(b, op.single) - this.int(60), op.single);
      }
      if (op.shape === 'FFFF' && this.int(3) === 0) c = this.fmaAddend(a, b, op.single);
      if (op.m === 'fcvt_s_d' && this.int(3) === 0 && finite(a)) {
        const ends = [-126, -149, -150, 127, 128, -127];
        a = this.withExponent(a, ends[this.int(ends.length)] - this.int(3) + 1, false);
      }
    }
    return { op: opIndex, rm, frm, a, b, c };
  }
}
