/**
 * The F/D op table. Every op resolves the rounding mode (returning false for reserved ones), reads its operands
 * (binary32 operands must be NaN-boxed, otherwise they read as the canonical NaN), computes an IEEE 754 result
 * for the RISC-V rounding mode and accrues fflags. NaN results are always the canonical NaN.
 */
import { FpState, FpExec, FpOpTable, FFLAG_NV, FFLAG_DZ, FFLAG_NX, RM_RDN, RM_RMM } from './state.js';
import { errTerm, finishDouble, halfGap, roundToSingle, truncatesMagnitude, twoProduct, twoSum } from './round.js';
import { exactAdd, exactDiv, exactMul, exactOf, exactSqrt, roundExactToDouble } from './slow.js';

const CANON_NAN_S = 0x7fc00000; // canonical single NaN
const CANON_NAN_D_HI = 0x7ff80000; // canonical double NaN, high word (low word 0)

function resolveRm(fs: FpState, rm: number): number {
  if (rm === 7) rm = fs.frm;
  return rm > 4 ? -1 : rm;
}

function readS(fs: FpState, r: number): number {
  if (fs.i32[2 * r + 1] !== -1) return NaN;
  return fs.f32[2 * r];
}
function isSnanS(fs: FpState, r: number): boolean {
  const b = fs.i32[2 * r];
  return fs.i32[2 * r + 1] === -1 && (b & 0x7fc00000) === 0x7f800000 && (b & 0x003fffff) !== 0;
}
function isSnanD(fs: FpState, r: number): boolean {
  const hi = fs.i32[2 * r + 1];
  return (hi & 0x7ff80000) === 0x7ff00000 && ((hi & 0x7ffff) !== 0 || fs.i32[2 * r] !== 0);
}
function writeS(fs: FpState, rd: number, v: number): void {
  if (v !== v) fs.i32[2 * rd] = CANON_NAN_S;
  else fs.f32[2 * rd] = v;
  fs.i32[2 * rd + 1] = -1;
}
function writeD(fs: FpState, rd: number, v: number): void {
  if (v !== v) {
    fs.i32[2 * rd] = 0;
    fs.i32[2 * rd + 1] = CANON_NAN_D_HI;
  } else fs.f64[rd] = v;
}
function writeX(x: Int32Array, rd: number, lo: number, hi: number): void {
  if (rd === 0) return;
  x[2 * rd] = lo;
  x[2 * rd + 1] = hi;
}

function writeNanS(fs: FpState, rd: number): void {
  fs.i32[2 * rd] = CANON_NAN_S;
  fs.i32[2 * rd + 1] = -1;
}
function writeNanD(fs: FpState, rd: number): void {
  fs.i32[2 * rd] = 0;
  fs.i32[2 * rd + 1] = CANON_NAN_D_HI;
}
function writeBitsS(fs: FpState, rd: number, bits: number): void {
  fs.i32[2 * rd] = bits;
  fs.i32[2 * rd + 1] = -1;
}
/** An invalid operation: NV and the canonical NaN. */
function invalidS(fs: FpState, rd: number): void {
  fs.fflags |= FFLAG_NV;
  writeNanS(fs, rd);
}
function invalidD(fs: FpState, rd: number): void {
  fs.fflags |= FFLAG_NV;
  writeNanD(fs, rd);
}
/** A NaN operand propagates as the canonical NaN; a signalling one also raises NV. */
function nanS(fs: FpState, rd: number, snan: boolean): void {
  if (snan) fs.fflags |= FFLAG_NV;
  writeNanS(fs, rd);
}
function nanD(fs: FpState, rd: number, snan: boolean): void {
  if (snan) fs.fflags |= FFLAG_NV;
  writeNanD(fs, rd);
}

function sign(v: number): number {
  return v > 0 ? 1 : v < 0 ? -1 : 0;
}
function isInf(v: number): boolean {
  return v === Infinity || v === -Infinity;
}
/**
 * The sign of an exact zero sum a + b (IEEE 754 §6.3): equal-signed zeros keep their sign, anything else is +0,
 * or -0 when rounding down.
 */
function zeroSum(a: number, b: number, rm: number): number {
  if (a === 0 && b === 0 && 1 / a === 1 / b) return a;
  return rm === RM_RDN ? -0 : 0;
}
/** Is the exact value r + e (e = error of a round-to-nearest r) a tie, for the modes that need to know? */
function tieForRmm(r: number, e: number, rm: number): boolean {
  return rm === RM_RMM && e !== 0 && Math.abs(e) === halfGap(r, e > 0 === r > 0);
}

const TWO_M968 = 2 ** -968; // below this a product's error term may not be representable
const TWO_995 = 2 ** 995; // from here Veltkamp splitting may overflow
const TWO_1020 = 2 ** 1020; // products near the overflow threshold: partial products of the split may overflow
const TWO_M1021 = 2 ** -1021; // results below this may be tiny: left to the exact slow path

// ---- binary32: operands are exact in binary64, so one binary64 operation plus its error sign suffices ----

function addS(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanS(fs, rd, snan);
  const r = twoSum(a, b);
  if (r !== r) return invalidS(fs, rd); // inf - inf
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  if (r === 0) return writeBitsS(fs, rd, roundToSingle(fs, zeroSum(a, b, rm), 0, rm));
  writeBitsS(fs, rd, roundToSingle(fs, r, sign(errTerm), rm));
}

function mulS(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanS(fs, rd, snan);
  const r = a * b; // exact: 24 x 24 significand bits
  if (r !== r) return invalidS(fs, rd); // inf * 0
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  writeBitsS(fs, rd, roundToSingle(fs, r, 0, rm));
}

function divS(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanS(fs, rd, snan);
  if ((a === 0 && b === 0) || (isInf(a) && isInf(b))) return invalidS(fs, rd);
  if (b === 0 && !isInf(a)) fs.fflags |= FFLAG_DZ;
  const r = a / b;
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0); // x/0 or inf/x: exact
  if (r === 0) return writeBitsS(fs, rd, roundToSingle(fs, r, 0, rm));
  const p = twoProduct(r, b);
  const rem = a - p - errTerm; // a - r*b, whose sign tells on which side of r the exact quotient lies
  writeBitsS(fs, rd, roundToSingle(fs, r, sign(rem) * sign(b), rm));
}

function sqrtS(fs: FpState, rd: number, a: number, rm: number, snan: boolean): void {
  if (a !== a) return nanS(fs, rd, snan);
  if (a < 0) return invalidS(fs, rd);
  if (a === 0 || a === Infinity) return writeBitsS(fs, rd, a === 0 ? roundToSingle(fs, a, 0, rm) : 0x7f800000);
  const r = Math.sqrt(a);
  const p = twoProduct(r, r);
  writeBitsS(fs, rd, roundToSingle(fs, r, sign(a - p - errTerm), rm));
}

function fmaS(fs: FpState, rd: number, a: number, b: number, c: number, rm: number, snan: boolean): void {
  // inf * 0 is invalid even when the addend is a quiet NaN.
  if ((isInf(a) && b === 0) || (a === 0 && isInf(b))) return invalidS(fs, rd);
  if (a !== a || b !== b || c !== c) return nanS(fs, rd, snan);
  const p = a * b; // exact in binary64
  const r = twoSum(p, c);
  if (r !== r) return invalidS(fs, rd); // inf - inf
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  if (r === 0) return writeBitsS(fs, rd, roundToSingle(fs, zeroSum(p, c, rm), 0, rm));
  writeBitsS(fs, rd, roundToSingle(fs, r, sign(errTerm), rm));
}

// ---- binary64: double-double error terms on the fast path, exact BigInt arithmetic on the rare rest ----

function addD(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanD(fs, rd, snan);
  const r = twoSum(a, b);
  if (r !== r) return invalidD(fs, rd);
  if (r - r !== 0) {
    if (a - a !== 0 || b - b !== 0) fs.f64[rd] = r;
    else if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactAdd(exactOf(a), exactOf(b)), rm);
    else finishDouble(fs, rd, r, 1, false, rm); // overflow
    return;
  }
  if (r === 0) {
    fs.f64[rd] = zeroSum(a, b, rm);
    return;
  }
  // A sum is inexact only when |r| >= 2^-1021, so no underflow here.
  const e = errTerm;
  finishDouble(fs, rd, r, sign(e), tieForRmm(r, e, rm), rm);
}

function mulD(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanD(fs, rd, snan);
  const r = a * b;
  if (r !== r) return invalidD(fs, rd);
  if (r - r !== 0) {
    if (a - a !== 0 || b - b !== 0) fs.f64[rd] = r;
    else if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactMul(exactOf(a), exactOf(b)), rm);
    else finishDouble(fs, rd, r, 1, false, rm); // overflow
    return;
  }
  if (a === 0 || b === 0) {
    fs.f64[rd] = r;
    return;
  }
  const ar = Math.abs(r);
  if (ar >= TWO_M968 && ar < TWO_1020 && Math.abs(a) < TWO_995 && Math.abs(b) < TWO_995) {
    twoProduct(a, b);
    const e = errTerm;
    finishDouble(fs, rd, r, sign(e), tieForRmm(r, e, rm), rm);
    return;
  }
  roundExactToDouble(fs, rd, exactMul(exactOf(a), exactOf(b)), rm);
}

function divD(fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean): void {
  if (a !== a || b !== b) return nanD(fs, rd, snan);
  if ((a === 0 && b === 0) || (isInf(a) && isInf(b))) return invalidD(fs, rd);
  if (b === 0 && !isInf(a)) fs.fflags |= FFLAG_DZ;
  const r = a / b;
  if (a === 0 || b === 0 || isInf(a) || isInf(b)) {
    fs.f64[rd] = r;
    return;
  }
  if (r - r !== 0) {
    if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactDiv(exactOf(a), exactOf(b)), rm);
    else finishDouble(fs, rd, r, 1, false, rm); // overflow
    return;
  }
  const ar = Math.abs(r);
  const aa = Math.abs(a);
  if (ar >= TWO_M968 && ar < TWO_995 && Math.abs(b) < TWO_995 && aa >= TWO_M968 && aa < TWO_1020) {
    const p = twoProduct(r, b);
    const rem = a - p - errTerm; // a - p is exact (Sterbenz), so rem has the sign of a - r*b
    // A quotient of normal doubles is never exactly halfway between two doubles: no ties.
    finishDouble(fs, rd, r, sign(rem) * sign(b), false, rm);
    return;
  }
  roundExactToDouble(fs, rd, exactDiv(exactOf(a), exactOf(b)), rm);
}

function sqrtD(fs: FpState, rd: number, a: number, rm: number, snan: boolean): void {
  if (a !== a) return nanD(fs, rd, snan);
  if (a < 0) return invalidD(fs, rd);
  if (a === 0 || a === Infinity) {
    fs.f64[rd] = a;
    return;
  }
  if (a >= TWO_M968 && a < TWO_1020) {
    const r = Math.sqrt(a);
    const p = twoProduct(r, r);
    finishDouble(fs, rd, r, sign(a - p - errTerm), false, rm); // square roots are never ties
    return;
  }
  roundExactToDouble(fs, rd, exactSqrt(exactOf(a)), rm);
}

function fmaD(fs: FpState, rd: number, a: number, b: number, c: number, rm: number, snan: boolean): void {
  if ((isInf(a) && b === 0) || (a === 0 && isInf(b))) return invalidD(fs, rd);
  if (a !== a || b !== b || c !== c) return nanD(fs, rd, snan);
  if (isInf(a) || isInf(b)) {
    const r = a * b + c; // an infinite product plus c (which only matters when it is the opposite infinity)
    if (r !== r) return invalidD(fs, rd);
    fs.f64[rd] = r;
    return;
  }
  if (isInf(c)) {
    fs.f64[rd] = c; // a finite product (however large) plus an infinity
    return;
  }
  if (a === 0 || b === 0) {
    const p = a * b;
    fs.f64[rd] = c === 0 ? zeroSum(p, c, rm) : c;
    return;
  }
  if (c === 0) return mulD(fs, rd, a, b, rm, false);
  const p = a * b;
  const ap = Math.abs(p);
  if (ap >= TWO_M968 && ap < TWO_1020 && Math.abs(c) < TWO_1020 && Math.abs(a) < TWO_995 && Math.abs(b) < TWO_995) {
    // exact = p + pe + c = s + t + pe = s + w + we = r + re + we = r + d + de, all terms exact.
    twoProduct(a, b);
    const pe = errTerm;
    const s = twoSum(p, c);
    const t = errTerm;
    const w = twoSum(t, pe);
    const we = errTerm;
    const r = twoSum(s, w);
    const re = errTerm;
    const d = twoSum(re, we);
    const de = errTerm;
    if (d === 0) {
      if (r !== 0) {
        fs.f64[rd] = r;
        return;
      }
      fs.f64[rd] = rm === RM_RDN ? -0 : 0; // exact cancellation of non-zero terms
      return;
    }
    if (Math.abs(r) >= TWO_M1021) {
      const h = halfGap(r, d > 0 === r > 0);
      const ad = Math.abs(d);
      if (ad < h || (ad === h && de !== 0 && de > 0 !== d > 0)) return finishDouble(fs, rd, r, sign(d), false, rm);
      if (ad === h && de === 0) return finishDouble(fs, rd, r, sign(d), true, rm);
    }
  }
  const v = exactAdd(exactMul(exactOf(a), exactOf(b)), exactOf(c));
  if (v.mant === 0n) fs.f64[rd] = rm === RM_RDN ? -0 : 0;
  else roundExactToDouble(fs, rd, v, rm);
}

/** Binary op wrappers: resolve the rounding mode, read and NaN-unbox the operands. */
type BinS = (fs: FpState, rd: number, a: number, b: number, rm: number, snan: boolean) => void;
function opS(f: BinS, negB: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const b = readS(fs, rs2);
    f(fs, rd, readS(fs, rs1), negB ? -b : b, m, isSnanS(fs, rs1) || isSnanS(fs, rs2));
    return true;
  };
}
function opD(f: BinS, negB: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const b = fs.f64[rs2];
    f(fs, rd, fs.f64[rs1], negB ? -b : b, m, isSnanD(fs, rs1) || isSnanD(fs, rs2));
    return true;
  };
}
/** fmadd/fmsub/fnmsub/fnmadd: the negations are exact, so they apply to the operands before the single rounding. */
function fmaOpS(negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const a = readS(fs, rs1);
    const c = readS(fs, rs3);
    const snan = isSnanS(fs, rs1) || isSnanS(fs, rs2) || isSnanS(fs, rs3);
    fmaS(fs, rd, negProd ? -a : a, readS(fs, rs2), negAdd ? -c : c, m, snan);
    return true;
  };
}
function fmaOpD(negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const a = fs.f64[rs1];
    const c = fs.f64[rs3];
    const snan = isSnanD(fs, rs1) || isSnanD(fs, rs2) || isSnanD(fs, rs3);
    fmaD(fs, rd, negProd ? -a : a, fs.f64[rs2], negAdd ? -c : c, m, snan);
    return true;
  };
}
function sgnjBits(a: number, b: number, kind: number): number {
  const sb = kind === 0 ? b : kind === 1 ? ~b : a ^ b;
  return (a & 0x7fffffff) | (sb & 0x80000000);
}
function readSBits(fs: FpState, r: number): number {
  return fs.i32[2 * r + 1] === -1 ? fs.i32[2 * r] : CANON_NAN_S;
}
function sgnjS(kind: number): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    fs.i32[2 * rd] = sgnjBits(readSBits(fs, rs1), readSBits(fs, rs2), kind);
    fs.i32[2 * rd + 1] = -1;
    return true;
  };
}
function sgnjD(kind: number): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    const lo = fs.i32[2 * rs1];
    fs.i32[2 * rd + 1] = sgnjBits(fs.i32[2 * rs1 + 1], fs.i32[2 * rs2 + 1], kind);
    fs.i32[2 * rd] = lo;
    return true;
  };
}

function minMax(a: number, b: number, isMax: boolean): number {
  if (a !== a) return b;
  if (b !== b) return a;
  if (a === b) {
    // -0 < +0
    const aNeg = Object.is(a, -0);
    return isMax ? (aNeg ? b : a) : aNeg ? a : b;
  }
  return isMax ? (a > b ? a : b) : a < b ? a : b;
}
function minMaxS(isMax: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    if (isSnanS(fs, rs1) || isSnanS(fs, rs2)) fs.fflags |= FFLAG_NV;
    writeS(fs, rd, minMax(readS(fs, rs1), readS(fs, rs2), isMax));
    return true;
  };
}
function minMaxD(isMax: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    if (isSnanD(fs, rs1) || isSnanD(fs, rs2)) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, minMax(fs.f64[rs1], fs.f64[rs2], isMax));
    return true;
  };
}

const CMP_EQ = 0;
const CMP_LT = 1;
const CMP_LE = 2;
function cmp(fs: FpState, x: Int32Array, rd: number, a: number, b: number, snan: boolean, kind: number): boolean {
  const anyNan = a !== a || b !== b;
  if (snan || (anyNan && kind !== CMP_EQ)) fs.fflags |= FFLAG_NV;
  const r = kind === CMP_EQ ? a === b : kind === CMP_LT ? a < b : a <= b;
  writeX(x, rd, r ? 1 : 0, 0);
  return true;
}
function cmpS(kind: number): FpExec {
  return (fs, x, rd, rs1, rs2) => cmp(fs, x, rd, readS(fs, rs1), readS(fs, rs2), isSnanS(fs, rs1) || isSnanS(fs, rs2), kind);
}
function cmpD(kind: number): FpExec {
  return (fs, x, rd, rs1, rs2) => cmp(fs, x, rd, fs.f64[rs1], fs.f64[rs2], isSnanD(fs, rs1) || isSnanD(fs, rs2), kind);
}

function classify(neg: boolean, expAllOnes: boolean, expZero: boolean, fracZero: boolean, quietBit: boolean): number {
  if (expAllOnes) {
    if (fracZero) return neg ? 1 << 0 : 1 << 7;
    return quietBit ? 1 << 9 : 1 << 8;
  }
  if (expZero) {
    if (fracZero) return neg ? 1 << 3 : 1 << 4;
    return neg ? 1 << 2 : 1 << 5;
  }
  return neg ? 1 << 1 : 1 << 6;
}

/** Rounds a double to an integer value with a rounding mode; sets NX via the returned flag. */
function roundInt(v: number, rm: number): number {
  const t = Math.trunc(v);
  const f = v - t;
  if (f === 0) return t;
  switch (rm) {
    case 1:
      return t;
    case 2:
      return f < 0 ? t - 1 : t;
    case 3:
      return f > 0 ? t + 1 : t;
    case 4:
      return Math.abs(f) >= 0.5 ? t + Math.sign(f) : t;
    default: {
      const af = Math.abs(f);
      if (af > 0.5 || (af === 0.5 && t % 2 !== 0)) return t + Math.sign(f);
      return t;
    }
  }
}

const TWO32 = 4294967296;
/**
 * fcvt to integer: rounds v with mode rm, saturates out-of-range values and NaN (NV, no NX), and writes the
 * result sign-extended from `width` bits (fcvt.wu too: the 32-bit result is sign-extended).
 */
function toInt(fs: FpState, x: Int32Array, rd: number, v: number, rm: number, width: number, signed: boolean): void {
  const min = signed ? (width === 32 ? -2147483648 : -9223372036854775808) : 0;
  const limit = width === 32 ? (signed ? 2147483648 : 4294967296) : signed ? 9223372036854775808 : 18446744073709551616;
  const r = v === v ? roundInt(v, rm) : limit; // NaN saturates like +inf
  let lo: number;
  let hi: number;
  if (r < min || r >= limit) {
    fs.fflags |= FFLAG_NV;
    const high = r >= limit;
    if (width === 32) {
      lo = high ? (signed ? 0x7fffffff : -1) : signed ? 0x80000000 | 0 : 0;
      hi = lo >> 31;
    } else {
      lo = high ? -1 : 0;
      hi = high ? (signed ? 0x7fffffff : -1) : signed ? 0x80000000 | 0 : 0;
    }
  } else {
    if (r !== v) fs.fflags |= FFLAG_NX;
    if (width === 32) {
      lo = r | 0;
      hi = lo >> 31;
    } else {
      const h = Math.floor(r / TWO32); // exact: r is an integer-valued double
      lo = (r - h * TWO32) | 0;
      hi = h | 0;
    }
  }
  writeX(x, rd, lo, hi);
}

function cvtToIntS(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    toInt(fs, x, rd, readS(fs, rs1), m, width, signed);
    return true;
  };
}
function cvtToIntD(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    toInt(fs, x, rd, fs.f64[rs1], m, width, signed);
    return true;
  };
}

/** The integer operand of fcvt.{s,d}.{w,wu,l,lu} as its two halves' contribution: hiPart + lo, both exact. */
let convLo = 0;
function intHiPart(x: Int32Array, rs1: number, width: number, signed: boolean): number {
  if (width === 32) {
    convLo = 0;
    return signed ? x[2 * rs1] : x[2 * rs1] >>> 0;
  }
  convLo = x[2 * rs1] >>> 0;
  return (signed ? x[2 * rs1 + 1] : x[2 * rs1 + 1] >>> 0) * TWO32;
}
function cvtFromIntS(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const r = twoSum(intHiPart(x, rs1, width, signed), convLo); // r + errTerm is the exact integer
    writeBitsS(fs, rd, roundToSingle(fs, r, sign(errTerm), m));
    return true;
  };
}
function cvtFromIntD(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const r = twoSum(intHiPart(x, rs1, width, signed), convLo);
    const e = errTerm;
    finishDouble(fs, rd, r, sign(e), tieForRmm(r, e, m), m);
    return true;
  };
}

export const FP_OPS: FpOpTable = {
  fadd_s: opS(addS, false),
  fsub_s: opS(addS, true),
  fmul_s: opS(mulS, false),
  fdiv_s: opS(divS, false),
  fsqrt_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    sqrtS(fs, rd, readS(fs, rs1), m, isSnanS(fs, rs1));
    return true;
  },
  fsgnj_s: sgnjS(0),
  fsgnjn_s: sgnjS(1),
  fsgnjx_s: sgnjS(2),
  fmin_s: minMaxS(false),
  fmax_s: minMaxS(true),
  fcvt_w_s: cvtToIntS(32, true),
  fcvt_wu_s: cvtToIntS(32, false),
  fcvt_l_s: cvtToIntS(64, true),
  fcvt_lu_s: cvtToIntS(64, false),
  fmv_x_w: (fs, x, rd, rs1) => {
    const v = fs.i32[2 * rs1];
    writeX(x, rd, v, v >> 31);
    return true;
  },
  feq_s: cmpS(CMP_EQ),
  flt_s: cmpS(CMP_LT),
  fle_s: cmpS(CMP_LE),
  fclass_s: (fs, x, rd, rs1) => {
    const b = readSBits(fs, rs1);
    const e = (b >>> 23) & 0xff;
    writeX(x, rd, classify(b < 0, e === 0xff, e === 0, (b & 0x7fffff) === 0, (b & 0x400000) !== 0), 0);
    return true;
  },
  fcvt_s_w: cvtFromIntS(32, true),
  fcvt_s_wu: cvtFromIntS(32, false),
  fcvt_s_l: cvtFromIntS(64, true),
  fcvt_s_lu: cvtFromIntS(64, false),
  fmv_w_x: (fs, x, rd, rs1) => {
    fs.i32[2 * rd] = x[2 * rs1];
    fs.i32[2 * rd + 1] = -1;
    return true;
  },
  fmadd_s: fmaOpS(false, false),
  fmsub_s: fmaOpS(false, true),
  fnmsub_s: fmaOpS(true, false),
  fnmadd_s: fmaOpS(true, true),
  fadd_d: opD(addD, false),
  fsub_d: opD(addD, true),
  fmul_d: opD(mulD, false),
  fdiv_d: opD(divD, false),
  fsqrt_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    sqrtD(fs, rd, fs.f64[rs1], m, isSnanD(fs, rs1));
    return true;
  },
  fsgnj_d: sgnjD(0),
  fsgnjn_d: sgnjD(1),
  fsgnjx_d: sgnjD(2),
  fmin_d: minMaxD(false),
  fmax_d: minMaxD(true),
  fcvt_w_d: cvtToIntD(32, true),
  fcvt_wu_d: cvtToIntD(32, false),
  fcvt_l_d: cvtToIntD(64, true),
  fcvt_lu_d: cvtToIntD(64, false),
  fmv_x_d: (fs, x, rd, rs1) => {
    writeX(x, rd, fs.i32[2 * rs1], fs.i32[2 * rs1 + 1]);
    return true;
  },
  feq_d: cmpD(CMP_EQ),
  flt_d: cmpD(CMP_LT),
  fle_d: cmpD(CMP_LE),
  fclass_d: (fs, x, rd, rs1) => {
    const hi = fs.i32[2 * rs1 + 1];
    const e = (hi >>> 20) & 0x7ff;
    const fracZero = (hi & 0xfffff) === 0 && fs.i32[2 * rs1] === 0;
    writeX(x, rd, classify(hi < 0, e === 0x7ff, e === 0, fracZero, (hi & 0x80000) !== 0), 0);
    return true;
  },
  fcvt_d_w: cvtFromIntD(32, true),
  fcvt_d_wu: cvtFromIntD(32, false),
  fcvt_d_l: cvtFromIntD(64, true),
  fcvt_d_lu: cvtFromIntD(64, false),
  fmv_d_x: (fs, x, rd, rs1) => {
    fs.i32[2 * rd] = x[2 * rs1];
    fs.i32[2 * rd + 1] = x[2 * rs1 + 1];
    return true;
  },
  fmadd_d: fmaOpD(false, false),
  fmsub_d: fmaOpD(false, true),
  fnmsub_d: fmaOpD(true, false),
  fnmadd_d: fmaOpD(true, true),
  fcvt_s_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const a = fs.f64[rs1];
    if (a !== a) nanS(fs, rd, isSnanD(fs, rs1));
    else if (isInf(a)) writeBitsS(fs, rd, a > 0 ? 0x7f800000 : 0xff800000 | 0);
    else writeBitsS(fs, rd, roundToSingle(fs, a, 0, m));
    return true;
  },
  fcvt_d_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    if (isSnanS(fs, rs1)) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, readS(fs, rs1));
    return true;
  },
};
