/**
 * Rounding helpers shared by the F/D ops. JS arithmetic only rounds to nearest-even, so every op computes the
 * round-to-nearest double result r plus the sign of the exact error (exact - r), and these helpers turn that
 * into the result of any RISC-V rounding mode, with the IEEE flags (tininess detected after rounding).
 * No allocation: module-level scratch arrays and scalars only.
 */
import { FpState, FFLAG_NX, FFLAG_OF, FFLAG_UF, RM_RNE, RM_RTZ, RM_RDN, RM_RUP, RM_RMM } from './state.js';

const scratch = new Float64Array(1);
const scratchI = new Int32Array(scratch.buffer); // [0] low word, [1] high word (little-endian hosts)

/**
 * err[0] is the error term of the last twoProduct call. A typed array rather than a module-level `let`:
 * storing a double into a context variable allocates a heap number on every write.
 */
export const err = new Float64Array(1);

/**
 * Doubles handed to the out-of-line helpers below. V8 boxes a double passed to (or returned from) a call it
 * does not inline, which would allocate on every FP op; typed-array slots carry them without allocating.
 * T[0]: the round-to-nearest result for roundToSingle. G[0]: the value for halfGap, G[1]: its half gap.
 */
export const T = new Float64Array(1);
export const G = new Float64Array(3); // G[2]: a spare slot for callers

/** Slots for twoSumSlots: SUM[0], SUM[1] in; SUM[0] = RN(sum), SUM[1] = its exact error out. */
export const SUM = new Float64Array(2);
/** Knuth's TwoSum on SUM[0..1], so that no double crosses the call (V8 boxes doubles at non-inlined calls). */
export function twoSumSlots(): void {
  const a = SUM[0];
  const b = SUM[1];
  const s = a + b;
  const bb = s - a;
  SUM[1] = a - (s - bb) + (b - bb);
  SUM[0] = s;
}

const SPLITTER = 134217729; // 2^27 + 1, Veltkamp splitting constant
/**
 * Dekker's TwoProduct: returns RN(a*b) and leaves the exact error in err[0]. Exact when |a|,|b| < 2^995 (no
 * overflow while splitting) and the product is at least 2^-968 in magnitude (the error term is representable).
 */
export function twoProduct(a: number, b: number): number {
  const p = a * b;
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  err[0] = ah * bh - p + ah * bl + al * bh + al * bl;
  return p;
}

/** True for the modes that, for a value of this sign, round towards zero (truncate the magnitude). */
export function truncatesMagnitude(rm: number, neg: boolean): boolean {
  return rm === RM_RTZ || (rm === RM_RDN && !neg) || (rm === RM_RUP && neg);
}

/**
 * Whether rounding increments the magnitude q, given the dropped bits rem (compared with half, the weight of the
 * first dropped bit) and dmag, the sign of a further error below the dropped bits (relative to the magnitude).
 */
function incrementsMagnitude(q: number, rem: number, half: number, dmag: number, neg: boolean, rm: number): boolean {
  if (rm === RM_RNE || rm === RM_RMM) {
    if (rem > half || (rem === half && dmag > 0)) return true;
    if (rem === half && dmag === 0) return rm === RM_RMM || q % 2 === 1;
    return false;
  }
  if (truncatesMagnitude(rm, neg)) return false;
  return rem > 0 || dmag > 0;
}

const TWO_M160 = 2 ** -160;
/**
 * Rounds r = T[0] plus a tiny error of sign dsign (at most half an ulp of r in binary64) to binary32 with
 * rounding mode rm, into FP register rd (NaN-boxed). r must be finite. Accrues NX/UF/OF into fs.fflags.
 */
export function roundToSingle(fs: FpState, rd: number, dsign: number, rm: number): void {
  // The pattern is stored, never returned: an int32 with the sign bit set is not a small integer, and returning
  // one from a call V8 does not inline boxes it (allocating).
  fs.i32[2 * rd + 1] = -1; // NaN-boxed
  const r = T[0];
  if (r === 0) {
    // An exact zero (callers never pass r = 0 with a non-zero error).
    fs.i32[2 * rd] = 1 / r < 0 ? 0x80000000 | 0 : 0;
    return;
  }
  const neg = r < 0;
  const a = neg ? -r : r;
  const signBit = neg ? 0x80000000 | 0 : 0;
  const dmag = neg ? 0 - dsign : dsign; // not -dsign: -0 is not a small integer and would be boxed
  if (a < TWO_M160) {
    // Far below half the smallest subnormal: rounds to 0 or to the smallest subnormal.
    fs.fflags |= FFLAG_NX | FFLAG_UF;
    fs.i32[2 * rd] = signBit | (rm === RM_RNE || rm === RM_RMM || truncatesMagnitude(rm, neg) ? 0 : 1);
    return;
  }
  scratch[0] = a;
  const e = ((scratchI[1] >>> 20) & 0x7ff) - 1023; // a >= 2^-160 is a normal binary64
  const m = (scratchI[1] & 0xfffff) * 4294967296 + (scratchI[0] >>> 0) + 4503599627370496; // 53-bit significand
  // lsb of the binary32 result: 2^(e-23) for normals, 2^-149 for subnormals; m's lsb is 2^(e-52).
  const normal = e >= -126;
  const dropped = normal ? 29 : 29 + (-126 - e);
  const scale = 2 ** dropped;
  const q = Math.floor(m / scale);
  const rem = m - q * scale;
  const half = scale / 2;
  const inexact = rem !== 0 || dmag !== 0;
  let bits = (normal ? (e + 126) * 8388608 : 0) + q;
  if (incrementsMagnitude(q, rem, half, dmag, neg, rm)) bits++;
  else if (rem === 0 && dmag < 0 && truncatesMagnitude(rm, neg)) bits--; // exact value just below a grid point
  if (bits >= 0x7f800000) {
    fs.fflags |= FFLAG_OF | FFLAG_NX;
    fs.i32[2 * rd] = signBit | (truncatesMagnitude(rm, neg) ? 0x7f7fffff : 0x7f800000);
    return;
  }
  if (inexact) {
    fs.fflags |= FFLAG_NX;
    // Tininess after rounding: would the result, rounded to 24 bits with an unbounded exponent, be < 2^-126?
    let tiny: boolean;
    if (normal) tiny = bits < 0x00800000;
    else if (e < -127) tiny = true;
    else {
      const q24 = Math.floor(m / 536870912); // e = -127: 24-bit rounding drops 29 bits
      tiny = !(q24 === 0xffffff && incrementsMagnitude(q24, m - q24 * 536870912, 268435456, dmag, neg, rm));
    }
    if (tiny) fs.fflags |= FFLAG_UF;
  }
  fs.i32[2 * rd] = signBit | bits;
}

/** Steps the magnitude of the double in FP register rd by delta (-1 or +1) ulps, on its bit pattern. */
function writeStepped(fs: FpState, rd: number, delta: number): void {
  let lo = fs.i32[2 * rd];
  let hi = fs.i32[2 * rd + 1];
  if (delta > 0) {
    lo = (lo + 1) | 0;
    if (lo === 0) hi = (hi + 1) | 0;
  } else if (delta < 0) {
    if (lo === 0) hi = (hi - 1) | 0;
    lo = (lo - 1) | 0;
  }
  fs.i32[2 * rd] = lo;
  fs.i32[2 * rd + 1] = hi;
}

/** G[1] = half the distance from |G[0]| to its neighbour of larger (up) or smaller magnitude. G[0] finite, non-zero. */
export function halfGap(up: boolean): void {
  const r = G[0];
  const a = r < 0 ? -r : r;
  scratch[0] = a;
  if (up) {
    scratchI[0] = (scratchI[0] + 1) | 0;
    if (scratchI[0] === 0) scratchI[1] = (scratchI[1] + 1) | 0;
  } else {
    if (scratchI[0] === 0) scratchI[1] = (scratchI[1] - 1) | 0;
    scratchI[0] = (scratchI[0] - 1) | 0;
  }
  const n = scratch[0];
  G[1] = (up ? n - a : a - n) / 2;
}

/** Is the double r's significand odd? */
function isOdd(r: number): boolean {
  scratch[0] = r;
  return (scratchI[0] & 1) === 1;
}

/**
 * Finishes a binary64 result in place. r = f[rd] is the round-to-nearest result of the exact value (r = ±Infinity when that
 * overflowed), dsign the sign of exact - r, and tie says the exact value lies exactly halfway between r and its
 * neighbour in the direction of dsign. The caller guarantees |r| >= 2^-1021 (no underflow) when inexact, and
 * passes r = ±Infinity only for modes that do not truncate.
 */
export function finishDouble(fs: FpState, rd: number, dsign: number, tie: boolean, rm: number): void {
  const r = fs.f64[rd];
  if (dsign === 0 && r - r === 0) return;
  const neg = r < 0;
  if (r - r !== 0) {
    // Round-to-nearest overflowed: the exact value is at least MAX + half an ulp, so every mode that does not
    // truncate overflows to infinity. (Truncating modes overflow only from 2^1024 up: callers decide those exactly.)
    fs.fflags |= FFLAG_OF | FFLAG_NX;
    fs.f64[rd] = truncatesMagnitude(rm, neg) ? (neg ? -Number.MAX_VALUE : Number.MAX_VALUE) : r;
    return;
  }
  fs.fflags |= FFLAG_NX;
  const dmag = neg ? 0 - dsign : dsign; // not -dsign: -0 is not a small integer and would be boxed
  let delta = 0;
  if (rm === RM_RNE) {
    if (tie && isOdd(r)) delta = dmag;
  } else if (rm === RM_RMM) {
    if (tie && dmag > 0) delta = 1; // a tie towards the smaller magnitude already has r, the larger one
  } else if (truncatesMagnitude(rm, neg)) {
    if (dmag < 0) delta = -1;
  } else if (dmag > 0) delta = 1;
  if (delta === 0) return;
  writeStepped(fs, rd, delta);
  if ((fs.i32[2 * rd + 1] & 0x7fffffff) === 0x7ff00000) fs.fflags |= FFLAG_OF;
}
