/**
 * The F/D op table. Every op resolves the rounding mode (returning false for reserved ones), reads its operands
 * (binary32 operands must be NaN-boxed, otherwise they read as the canonical NaN), computes an IEEE 754 result
 * for the RISC-V rounding mode and accrues fflags. NaN results are always the canonical NaN.
 */
import { FpState, FpExec, FpOpTable, FFLAG_NV, FFLAG_DZ, FFLAG_NX, RM_RNE, RM_RDN, RM_RUP, RM_RMM } from './state.js';
import { err, G, SUM, T, finishDouble, halfGap, roundToSingle, truncatesMagnitude, twoProduct, twoSumSlots } from './round.js';
import { exactAdd, exactDiv, exactMul, exactOf, exactSqrt, roundExactToDouble } from './slow.js';

const CANON_NAN_S = 0x7fc00000; // canonical single NaN
const CANON_NAN_D_HI = 0x7ff80000; // canonical double NaN, high word (low word 0)

function resolveRm(fs: FpState, rm: number): number {
  if (rm === 7) rm = fs.frm;
  return rm > 4 ? -1 : rm;
}

function isSnanS(fs: FpState, r: number): boolean {
  const b = fs.i32[2 * r];
  return fs.i32[2 * r + 1] === -1 && (b & 0x7fc00000) === 0x7f800000 && (b & 0x003fffff) !== 0;
}
function isSnanD(fs: FpState, r: number): boolean {
  const hi = fs.i32[2 * r + 1];
  return (hi & 0x7ff80000) === 0x7ff00000 && ((hi & 0x7ffff) !== 0 || fs.i32[2 * r] !== 0);
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

/**
 * The source registers of the op being executed. Whether an operand is a signalling NaN matters only once a
 * NaN has been seen, so the ops look it up lazily through these instead of testing every operand up front.
 * Unary and binary ops repeat a register to fill the three slots.
 */
let src1 = 0;
let src2 = 0;
let src3 = 0;
function setSources(rs1: number, rs2: number, rs3: number): void {
  src1 = rs1;
  src2 = rs2;
  src3 = rs3;
}
function signallingS(fs: FpState): boolean {
  return isSnanS(fs, src1) || isSnanS(fs, src2) || isSnanS(fs, src3);
}
function signallingD(fs: FpState): boolean {
  return isSnanD(fs, src1) || isSnanD(fs, src2) || isSnanD(fs, src3);
}

/**
 * Operands handed from the op wrappers to the arithmetic functions (OP[0..2] = rs1, rs2, rs3 values, negations
 * applied). Passing doubles as arguments to a call V8 does not inline boxes them: one allocation per op.
 */
const OP = new Float64Array(3);
const SIGN_S = 0x80000000 | 0; // binary32 sign bit
// An exact zero sum x + y (IEEE 754 §6.3) is -0 when x and y are equal-signed zeros that are negative, or when
// rounding down; otherwise +0. Written inline where needed (a helper taking doubles would box them).

function sign(v: number): number {
  return v > 0 ? 1 : v < 0 ? -1 : 0;
}
function isInf(v: number): boolean {
  return v === Infinity || v === -Infinity;
}
/** Is the exact value r + e (e = error of a round-to-nearest r) a tie? Only RMM needs to know. */
function tieForRmm(fs: FpState, rd: number): boolean {
  const e = G[2]; // the error term (passed in a slot: a double argument would be boxed)
  if (e === 0) return false;
  const r = fs.f64[rd]; // the round-to-nearest result, already written
  G[0] = r;
  halfGap(e > 0 === r > 0);
  return Math.abs(e) === G[1];
}

const TWO_M968 = 2 ** -968; // below this a product's error term may not be representable
const TWO_995 = 2 ** 995; // from here Veltkamp splitting may overflow
const TWO_1020 = 2 ** 1020; // products near the overflow threshold: partial products of the split may overflow
const TWO_M1021 = 2 ** -1021; // results below this may be tiny: left to the exact slow path

// ---- binary32: operands are exact in binary64, so one binary64 operation plus its error sign suffices ----

function addS(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanS(fs, rd, signallingS(fs));
  SUM[0] = a;
  SUM[1] = b;
  twoSumSlots();
  const r = SUM[0];
  if (r !== r) return invalidS(fs, rd); // inf - inf
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  if (r === 0) return writeBitsS(fs, rd, (a === 0 && b === 0 && 1 / a === 1 / b ? 1 / a < 0 : rm === RM_RDN) ? SIGN_S : 0);
  T[0] = r;
  roundToSingle(fs, rd, sign(SUM[1]), rm);
}

function mulS(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanS(fs, rd, signallingS(fs));
  const r = a * b; // exact: 24 x 24 significand bits
  if (r !== r) return invalidS(fs, rd); // inf * 0
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  T[0] = r;
  roundToSingle(fs, rd, 0, rm);
}

function divS(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanS(fs, rd, signallingS(fs));
  if ((a === 0 && b === 0) || (isInf(a) && isInf(b))) return invalidS(fs, rd);
  if (b === 0 && !isInf(a)) fs.fflags |= FFLAG_DZ;
  const r = a / b;
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0); // x/0 or inf/x: exact
  if (r === 0) return writeBitsS(fs, rd, 1 / r < 0 ? SIGN_S : 0); // finite / inf: exact zero
  const p = twoProduct(r, b);
  const rem = a - p - err[0]; // a - r*b, whose sign tells on which side of r the exact quotient lies
  T[0] = r;
  roundToSingle(fs, rd, sign(rem) * sign(b), rm);
}

function sqrtS(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  if (a !== a) return nanS(fs, rd, signallingS(fs));
  if (a < 0) return invalidS(fs, rd);
  if (a === 0 || a === Infinity) return writeBitsS(fs, rd, a === 0 ? (1 / a < 0 ? SIGN_S : 0) : 0x7f800000);
  const r = Math.sqrt(a);
  const p = twoProduct(r, r);
  T[0] = r;
  roundToSingle(fs, rd, sign(a - p - err[0]), rm);
}

function fmaS(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  const c = OP[2];
  // inf * 0 is invalid even when the addend is a quiet NaN.
  if ((isInf(a) && b === 0) || (a === 0 && isInf(b))) return invalidS(fs, rd);
  if (a !== a || b !== b || c !== c) return nanS(fs, rd, signallingS(fs));
  const p = a * b; // exact in binary64
  SUM[0] = p;
  SUM[1] = c;
  twoSumSlots();
  const r = SUM[0];
  if (r !== r) return invalidS(fs, rd); // inf - inf
  if (r - r !== 0) return writeBitsS(fs, rd, r > 0 ? 0x7f800000 : 0xff800000 | 0);
  if (r === 0) return writeBitsS(fs, rd, (p === 0 && c === 0 && 1 / p === 1 / c ? 1 / p < 0 : rm === RM_RDN) ? SIGN_S : 0);
  T[0] = r;
  roundToSingle(fs, rd, sign(SUM[1]), rm);
}

// ---- binary64: double-double error terms on the fast path, exact BigInt arithmetic on the rare rest ----

function addD(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanD(fs, rd, signallingD(fs));
  SUM[0] = a;
  SUM[1] = b;
  twoSumSlots();
  const r = SUM[0];
  if (r !== r) return invalidD(fs, rd);
  if (r - r !== 0) {
    if (a - a !== 0 || b - b !== 0) fs.f64[rd] = r;
    else if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactAdd(exactOf(a), exactOf(b)), rm);
    else {
      fs.f64[rd] = r; // overflow
      finishDouble(fs, rd, 1, false, rm);
    }
    return;
  }
  if (r === 0) {
    fs.f64[rd] = (a === 0 && b === 0 && 1 / a === 1 / b ? 1 / a < 0 : rm === RM_RDN) ? -0 : 0;
    return;
  }
  // A sum is inexact only when |r| >= 2^-1021, so no underflow here.
  const e = SUM[1];
  fs.f64[rd] = r;
  if (rm === RM_RNE) {
    if (e !== 0) fs.fflags |= FFLAG_NX; // the JS operation already rounded to nearest-even
    return;
  }
  G[2] = e; // for tieForRmm
  finishDouble(fs, rd, sign(e), rm === RM_RMM && tieForRmm(fs, rd), rm);
}

function mulD(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanD(fs, rd, signallingD(fs));
  const r = a * b;
  if (r !== r) return invalidD(fs, rd);
  if (r - r !== 0) {
    if (a - a !== 0 || b - b !== 0) fs.f64[rd] = r;
    else if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactMul(exactOf(a), exactOf(b)), rm);
    else {
      fs.f64[rd] = r; // overflow
      finishDouble(fs, rd, 1, false, rm);
    }
    return;
  }
  if (a === 0 || b === 0) {
    fs.f64[rd] = r;
    return;
  }
  const ar = Math.abs(r);
  if (ar >= TWO_M968 && ar < TWO_1020 && Math.abs(a) < TWO_995 && Math.abs(b) < TWO_995) {
    twoProduct(a, b);
    const e = err[0];
    fs.f64[rd] = r;
    if (rm === RM_RNE) {
      if (e !== 0) fs.fflags |= FFLAG_NX; // the JS operation already rounded to nearest-even
      return;
    }
    G[2] = e; // for tieForRmm
    finishDouble(fs, rd, sign(e), rm === RM_RMM && tieForRmm(fs, rd), rm);
    return;
  }
  roundExactToDouble(fs, rd, exactMul(exactOf(a), exactOf(b)), rm);
}

function divD(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  if (a !== a || b !== b) return nanD(fs, rd, signallingD(fs));
  if ((a === 0 && b === 0) || (isInf(a) && isInf(b))) return invalidD(fs, rd);
  if (b === 0 && !isInf(a)) fs.fflags |= FFLAG_DZ;
  const r = a / b;
  if (a === 0 || b === 0 || isInf(a) || isInf(b)) {
    fs.f64[rd] = r;
    return;
  }
  if (r - r !== 0) {
    if (truncatesMagnitude(rm, r < 0)) roundExactToDouble(fs, rd, exactDiv(exactOf(a), exactOf(b)), rm);
    else {
      fs.f64[rd] = r; // overflow
      finishDouble(fs, rd, 1, false, rm);
    }
    return;
  }
  const ar = Math.abs(r);
  const aa = Math.abs(a);
  if (ar >= TWO_M968 && ar < TWO_995 && Math.abs(b) < TWO_995 && aa >= TWO_M968 && aa < TWO_1020) {
    const p = twoProduct(r, b);
    const rem = a - p - err[0]; // a - p is exact (Sterbenz), so rem has the sign of a - r*b
    // A quotient of normal doubles is never exactly halfway between two doubles: no ties.
    fs.f64[rd] = r;
    if (rm === RM_RNE) {
      if (rem !== 0) fs.fflags |= FFLAG_NX; // the JS operation already rounded to nearest-even
      return;
    }
    finishDouble(fs, rd, sign(rem) * sign(b), false, rm);
    return;
  }
  roundExactToDouble(fs, rd, exactDiv(exactOf(a), exactOf(b)), rm);
}

function sqrtD(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  if (a !== a) return nanD(fs, rd, signallingD(fs));
  if (a < 0) return invalidD(fs, rd);
  if (a === 0 || a === Infinity) {
    fs.f64[rd] = a;
    return;
  }
  if (a >= TWO_M968 && a < TWO_1020) {
    const r = Math.sqrt(a);
    const p = twoProduct(r, r);
    fs.f64[rd] = r;
    if (rm === RM_RNE) {
      if (a - p - err[0] !== 0) fs.fflags |= FFLAG_NX; // the JS operation already rounded to nearest-even
      return;
    }
    finishDouble(fs, rd, sign(a - p - err[0]), false, rm); // square roots are never ties
    return;
  }
  roundExactToDouble(fs, rd, exactSqrt(exactOf(a)), rm);
}

/**
 * The double-double fused multiply-add of OP[0] * OP[1] + OP[2] (finite, non-zero, no overflow or underflow in
 * sight). exact = p + pe + c = s + t + pe = s + w + we = r + re + we = r + d + de, every step exact; r is the
 * answer when d + de is provably within half an ulp of it. Returns false when the exact slow path must decide.
 * The TwoSum steps are written out so that no double crosses a (possibly not inlined) call.
 */
function fmaFastD(fs: FpState, rd: number, rm: number): boolean {
  const p = twoProduct(OP[0], OP[1]);
  const pe = err[0];
  const c = OP[2];
  const s = p + c;
  let bb = s - p;
  const t = p - (s - bb) + (c - bb);
  const w = t + pe;
  bb = w - t;
  const we = t - (w - bb) + (pe - bb);
  const r = s + w;
  bb = r - s;
  const re = s - (r - bb) + (w - bb);
  const d = re + we;
  bb = d - re;
  const de = re - (d - bb) + (we - bb);
  if (d === 0) {
    fs.f64[rd] = r !== 0 ? r : rm === RM_RDN ? -0 : 0; // exact; a zero is an exact cancellation of non-zero terms
    return true;
  }
  if (Math.abs(r) < TWO_M1021) return false; // may underflow
  G[0] = r;
  halfGap(d > 0 === r > 0);
  const h = G[1];
  const ad = Math.abs(d);
  if (ad < h || (ad === h && de !== 0 && de > 0 !== d > 0)) {
    fs.f64[rd] = r;
    if (rm === RM_RNE) {
      fs.fflags |= FFLAG_NX; // |d + de| < half a gap: r is the nearest
      return true;
    }
    finishDouble(fs, rd, sign(d), false, rm);
    return true;
  }
  if (ad === h && de === 0) {
    fs.f64[rd] = r;
    finishDouble(fs, rd, sign(d), true, rm); // an exact tie
    return true;
  }
  return false;
}

function fmaD(fs: FpState, rd: number, rm: number): void {
  const a = OP[0];
  const b = OP[1];
  const c = OP[2];
  if ((isInf(a) && b === 0) || (a === 0 && isInf(b))) return invalidD(fs, rd);
  if (a !== a || b !== b || c !== c) return nanD(fs, rd, signallingD(fs));
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
    fs.f64[rd] = c === 0 ? ((p === 0 && c === 0 && 1 / p === 1 / c ? 1 / p < 0 : rm === RM_RDN) ? -0 : 0) : c;
    return;
  }
  if (c === 0) return mulD(fs, rd, rm); // OP[0], OP[1] are a, b
  const ap = Math.abs(a * b);
  if (ap >= TWO_M968 && ap < TWO_1020 && Math.abs(c) < TWO_1020 && Math.abs(a) < TWO_995 && Math.abs(b) < TWO_995) {
    if (fmaFastD(fs, rd, rm)) return;
  }
  const v = exactAdd(exactMul(exactOf(a), exactOf(b)), exactOf(c));
  if (v.mant === 0n) fs.f64[rd] = rm === RM_RDN ? -0 : 0;
  else roundExactToDouble(fs, rd, v, rm);
}

// Op wrappers, one closure per instruction so that every call site inside stays monomorphic.
type Arith = (fs: FpState, rd: number, rm: number) => void;
/** OP[slot] = the NaN-unboxed single in register r, negated if asked (negation is exact). */
function loadS(fs: FpState, r: number, slot: number, negate: boolean): void {
  // Branches, not ?: - a phi of a float load and a constant made V8 box the value (allocating per op).
  if (fs.i32[2 * r + 1] === -1) {
    if (negate) OP[slot] = -fs.f32[2 * r];
    else OP[slot] = fs.f32[2 * r];
  } else OP[slot] = NaN;
}
function loadD(fs: FpState, r: number, slot: number, negate: boolean): void {
  if (negate) OP[slot] = -fs.f64[r];
  else OP[slot] = fs.f64[r];
}
function binS(f: Arith, negB: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs2, rs2);
    loadS(fs, rs1, 0, false);
    loadS(fs, rs2, 1, negB);
    f(fs, rd, m);
    return true;
  };
}
function binD(f: Arith, negB: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs2, rs2);
    loadD(fs, rs1, 0, false);
    loadD(fs, rs2, 1, negB);
    f(fs, rd, m);
    return true;
  };
}
/** fmadd/fmsub/fnmsub/fnmadd: the negations are exact, so they apply to the operands before the single rounding. */
function fusedS(f: Arith, negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs2, rs3);
    loadS(fs, rs1, 0, negProd);
    loadS(fs, rs2, 1, false);
    loadS(fs, rs3, 2, negAdd);
    f(fs, rd, m);
    return true;
  };
}
function fusedD(f: Arith, negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs2, rs3);
    loadD(fs, rs1, 0, negProd);
    loadD(fs, rs2, 1, false);
    loadD(fs, rs3, 2, negAdd);
    f(fs, rd, m);
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

const PICK_A = 0;
const PICK_B = 1;
const PICK_NAN = 2;
/**
 * fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber, as RISC-V F 2.2 requires) on OP[0], OP[1]: -0 < +0, a
 * single NaN operand yields the other one, two NaNs the canonical NaN. Returns which operand is the result.
 */
function minMaxPick(isMax: boolean): number {
  const a = OP[0];
  const b = OP[1];
  if (a !== a) return b !== b ? PICK_NAN : PICK_B;
  if (b !== b) return PICK_A;
  if (a === b) return 1 / a < 0 !== isMax ? PICK_A : PICK_B; // equal, or ±0: choose by sign
  return a < b !== isMax ? PICK_A : PICK_B;
}
function minMaxS(isMax: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    if (isSnanS(fs, rs1) || isSnanS(fs, rs2)) fs.fflags |= FFLAG_NV;
    loadS(fs, rs1, 0, false);
    loadS(fs, rs2, 1, false);
    const pick = minMaxPick(isMax);
    if (pick === PICK_NAN) writeNanS(fs, rd);
    else writeBitsS(fs, rd, fs.i32[2 * (pick === PICK_A ? rs1 : rs2)]);
    return true;
  };
}
function minMaxD(isMax: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2) => {
    if (isSnanD(fs, rs1) || isSnanD(fs, rs2)) fs.fflags |= FFLAG_NV;
    loadD(fs, rs1, 0, false);
    loadD(fs, rs2, 1, false);
    const pick = minMaxPick(isMax);
    if (pick === PICK_NAN) {
      writeNanD(fs, rd);
      return true;
    }
    const r = pick === PICK_A ? rs1 : rs2;
    const lo = fs.i32[2 * r];
    fs.i32[2 * rd + 1] = fs.i32[2 * r + 1];
    fs.i32[2 * rd] = lo;
    return true;
  };
}

const CMP_EQ = 0;
const CMP_LT = 1;
const CMP_LE = 2;
/** feq is a quiet comparison (NV only for signalling NaNs); flt/fle signal on any NaN. Compares OP[0], OP[1]. */
function cmp(fs: FpState, x: Int32Array, rd: number, snan: boolean, kind: number): boolean {
  const a = OP[0];
  const b = OP[1];
  const anyNan = a !== a || b !== b;
  if (snan || (anyNan && kind !== CMP_EQ)) fs.fflags |= FFLAG_NV;
  const r = kind === CMP_EQ ? a === b : kind === CMP_LT ? a < b : a <= b;
  writeX(x, rd, r ? 1 : 0, 0);
  return true;
}
function cmpS(kind: number): FpExec {
  return (fs, x, rd, rs1, rs2) => {
    loadS(fs, rs1, 0, false);
    loadS(fs, rs2, 1, false);
    return cmp(fs, x, rd, isSnanS(fs, rs1) || isSnanS(fs, rs2), kind);
  };
}
function cmpD(kind: number): FpExec {
  return (fs, x, rd, rs1, rs2) => {
    loadD(fs, rs1, 0, false);
    loadD(fs, rs2, 1, false);
    return cmp(fs, x, rd, isSnanD(fs, rs1) || isSnanD(fs, rs2), kind);
  };
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

const TWO32 = 4294967296;
/**
 * fcvt to integer: rounds v with mode rm, saturates out-of-range values and NaN (NV, no NX), and writes the
 * result sign-extended from `width` bits (fcvt.wu too: the 32-bit result is sign-extended).
 */
function toInt(fs: FpState, x: Int32Array, rd: number, rm: number, width: number, signed: boolean): void {
  const v = OP[0];
  const min = signed ? (width === 32 ? -2147483648 : -9223372036854775808) : 0;
  const limit = width === 32 ? (signed ? 2147483648 : 4294967296) : signed ? 9223372036854775808 : 18446744073709551616;
  let r = limit; // NaN saturates like +inf
  if (v === v) {
    // Round to an integer: t truncates, f (exact) is the dropped fraction.
    const t = Math.trunc(v);
    const f = v - t;
    r = t;
    if (f !== 0) {
      const af = f < 0 ? -f : f;
      const away = f < 0 ? t - 1 : t + 1;
      if (rm === RM_RDN) r = f < 0 ? away : t;
      else if (rm === RM_RUP) r = f > 0 ? away : t;
      else if (rm === RM_RMM) r = af >= 0.5 ? away : t;
      else if (rm === RM_RNE) r = af > 0.5 || (af === 0.5 && t % 2 !== 0) ? away : t;
    }
  }
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
    loadS(fs, rs1, 0, false);
    toInt(fs, x, rd, m, width, signed);
    return true;
  };
}
function cvtToIntD(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    loadD(fs, rs1, 0, false);
    toInt(fs, x, rd, m, width, signed);
    return true;
  };
}

/** OP[0] + OP[1] = the integer operand of fcvt.{s,d}.{w,wu,l,lu}: its high half (scaled) and low half, both exact. */
function loadInt(x: Int32Array, rs1: number, width: number, signed: boolean): void {
  if (width === 32) {
    OP[0] = signed ? x[2 * rs1] : x[2 * rs1] >>> 0;
    OP[1] = 0;
  } else {
    OP[0] = (signed ? x[2 * rs1 + 1] : x[2 * rs1 + 1] >>> 0) * TWO32;
    OP[1] = x[2 * rs1] >>> 0;
  }
}
function cvtFromIntS(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    loadInt(x, rs1, width, signed);
    SUM[0] = OP[0];
    SUM[1] = OP[1];
    twoSumSlots();
    const r = SUM[0];
    T[0] = r;
    roundToSingle(fs, rd, sign(SUM[1]), m);
    return true;
  };
}
function cvtFromIntD(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    loadInt(x, rs1, width, signed);
    SUM[0] = OP[0];
    SUM[1] = OP[1];
    twoSumSlots();
    const r = SUM[0];
    const e = SUM[1];
    fs.f64[rd] = r;
    if (m === RM_RNE) {
      if (e !== 0) fs.fflags |= FFLAG_NX; // the JS operation already rounded to nearest-even
      return true;
    }
    G[2] = e; // for tieForRmm
    finishDouble(fs, rd, sign(e), m === RM_RMM && tieForRmm(fs, rd), m);
    return true;
  };
}

export const FP_OPS: FpOpTable = {
  fadd_s: binS(addS, false),
  fsub_s: binS(addS, true),
  fmul_s: binS(mulS, false),
  fdiv_s: binS(divS, false),
  fsqrt_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs1, rs1);
    loadS(fs, rs1, 0, false);
    sqrtS(fs, rd, m);
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
  fmadd_s: fusedS(fmaS, false, false),
  fmsub_s: fusedS(fmaS, false, true),
  fnmsub_s: fusedS(fmaS, true, false),
  fnmadd_s: fusedS(fmaS, true, true),
  fadd_d: binD(addD, false),
  fsub_d: binD(addD, true),
  fmul_d: binD(mulD, false),
  fdiv_d: binD(divD, false),
  fsqrt_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    setSources(rs1, rs1, rs1);
    loadD(fs, rs1, 0, false);
    sqrtD(fs, rd, m);
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
  fmadd_d: fusedD(fmaD, false, false),
  fmsub_d: fusedD(fmaD, false, true),
  fnmsub_d: fusedD(fmaD, true, false),
  fnmadd_d: fusedD(fmaD, true, true),
  fcvt_s_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    const m = resolveRm(fs, rm);
    if (m < 0) return false;
    const a = fs.f64[rs1];
    if (a !== a) nanS(fs, rd, isSnanD(fs, rs1));
    else if (isInf(a)) writeBitsS(fs, rd, a > 0 ? 0x7f800000 : 0xff800000 | 0);
    else {
      T[0] = a;
      roundToSingle(fs, rd, 0, m);
    }
    return true;
  },
  fcvt_d_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    loadS(fs, rs1, 0, false);
    const v = OP[0];
    if (v !== v) nanD(fs, rd, isSnanS(fs, rs1));
    else fs.f64[rd] = v; // exact
    return true;
  },
};
