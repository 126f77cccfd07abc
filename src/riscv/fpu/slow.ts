/**
 * The exact slow path for binary64 results the double-double fast paths cannot decide: results that underflow
 * (tiny or subnormal), operands whose splitting would overflow, and fused multiply-adds whose three-term sum is
 * too close to a rounding boundary. BigInt is confined to this module, which runs only on those rare cases.
 */
import { FpState, FFLAG_NX, FFLAG_OF, FFLAG_UF, RM_RNE, RM_RMM } from './state.js';
import { truncatesMagnitude } from './round.js';

const scratch = new Float64Array(1);
const scratchI = new Int32Array(scratch.buffer);

/** An exact binary value (-1)^neg * mant * 2^exp. */
export interface Exact {
  neg: boolean;
  mant: bigint;
  exp: number;
}

/** Decomposes a finite double exactly. */
export function exactOf(v: number): Exact {
  scratch[0] = v;
  const hi = scratchI[1];
  const biased = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(scratchI[0] >>> 0);
  return biased === 0 ? { neg: hi < 0, mant: frac, exp: -1074 } : { neg: hi < 0, mant: frac | (1n << 52n), exp: biased - 1075 };
}

export function exactMul(a: Exact, b: Exact): Exact {
  return { neg: a.neg !== b.neg, mant: a.mant * b.mant, exp: a.exp + b.exp };
}

/** a + b exactly; a zero sum is reported with mant 0 (its sign is the caller's business). */
export function exactAdd(a: Exact, b: Exact): Exact {
  const exp = Math.min(a.exp, b.exp);
  const va = (a.neg ? -a.mant : a.mant) << BigInt(a.exp - exp);
  const vb = (b.neg ? -b.mant : b.mant) << BigInt(b.exp - exp);
  const s = va + vb;
  return { neg: s < 0n, mant: s < 0n ? -s : s, exp };
}

/** a / b with enough quotient bits, the remainder folded into a sticky lowest bit. b non-zero. */
export function exactDiv(a: Exact, b: Exact): Exact {
  const k = 120;
  const n = a.mant << BigInt(k);
  const q = n / b.mant;
  const sticky = q * b.mant !== n ? 1n : 0n;
  return { neg: a.neg !== b.neg, mant: (q << 1n) | sticky, exp: a.exp - b.exp - k - 1 };
}

function isqrt(n: bigint): bigint {
  // Newton's iteration from above converges monotonically to floor(sqrt(n)).
  let x = BigInt(Math.ceil(Math.sqrt(Number(n)) * (1 + 2 ** -40))) + 1n;
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/** sqrt(a) for a > 0, with a sticky lowest bit. */
export function exactSqrt(a: Exact): Exact {
  let k = 120;
  if ((a.exp - k) % 2 !== 0) k++;
  const n = a.mant << BigInt(k);
  const s = isqrt(n);
  const sticky = s * s !== n ? 1n : 0n;
  return { neg: false, mant: (s << 1n) | sticky, exp: (a.exp - k) / 2 - 1 };
}

function bitLength(n: bigint): number {
  return n.toString(2).length;
}

/** Decides whether dropping `drop` low bits of mant rounds the magnitude up, for mode rm. */
function roundsUp(mant: bigint, drop: number, neg: boolean, rm: number): { q: bigint; up: boolean; inexact: boolean } {
  if (drop <= 0) return { q: mant << BigInt(-drop), up: false, inexact: false };
  const q = mant >> BigInt(drop);
  const rem = mant - (q << BigInt(drop));
  const half = 1n << BigInt(drop - 1);
  let up: boolean;
  if (rm === RM_RNE) up = rem > half || (rem === half && (q & 1n) === 1n);
  else if (rm === RM_RMM) up = rem >= half;
  else up = !truncatesMagnitude(rm, neg) && rem !== 0n;
  return { q, up, inexact: rem !== 0n };
}

/** Rounds a non-zero exact value to binary64 with mode rm, writes it to FP register rd and accrues flags. */
export function roundExactToDouble(fs: FpState, rd: number, v: Exact, rm: number): void {
  const e = v.exp + bitLength(v.mant) - 1; // exponent of the leading bit
  const lsb = Math.max(e - 52, -1074);
  const { q, up, inexact } = roundsUp(v.mant, lsb - v.exp, v.neg, rm);
  let sig = Number(q) + (up ? 1 : 0); // <= 2^53
  let lsbExp = lsb;
  if (sig === 9007199254740992) {
    sig = 4503599627370496;
    lsbExp++;
  }
  let hi: number;
  let lo: number;
  if (sig >= 4503599627370496) {
    const biased = lsbExp + 52 + 1023;
    if (biased >= 2047) {
      fs.fflags |= FFLAG_OF | FFLAG_NX;
      const max = truncatesMagnitude(rm, v.neg);
      fs.i32[2 * rd] = max ? -1 : 0;
      fs.i32[2 * rd + 1] = (v.neg ? 0x80000000 : 0) | (max ? 0x7fefffff : 0x7ff00000);
      return;
    }
    const frac = sig - 4503599627370496;
    hi = biased * 1048576 + Math.floor(frac / 4294967296);
    lo = frac % 4294967296;
  } else {
    hi = Math.floor(sig / 4294967296); // subnormal (or zero)
    lo = sig % 4294967296;
  }
  fs.i32[2 * rd] = lo | 0;
  fs.i32[2 * rd + 1] = (v.neg ? 0x80000000 : 0) | hi;
  if (inexact) {
    fs.fflags |= FFLAG_NX;
    // Tininess after rounding: the value rounded to 53 bits with an unbounded exponent is below 2^-1022.
    let tiny = e < -1022;
    if (e === -1023) {
      const u = roundsUp(v.mant, e - 52 - v.exp, v.neg, rm);
      tiny = !(u.up && u.q === (1n << 53n) - 1n);
    }
    if (tiny) fs.fflags |= FFLAG_UF;
  }
}
