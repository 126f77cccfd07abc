/**
 * 64-bit integer helpers over int32 halves, for the M extension and Zbb. Results are returned through the
 * module-level `r` pair (lo, hi) so nothing allocates. Division uses BigInt only when an operand does not fit
 * in 32 bits (design.md §2 allows it on this rare path).
 */
export const r = new Int32Array(2);

/** Low 64 bits of a*b. */
export function mul64(alo: number, ahi: number, blo: number, bhi: number): void {
  const a0 = alo & 0xffff;
  const a1 = alo >>> 16;
  const b0 = blo & 0xffff;
  const b1 = blo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33
  const low = a0 * b0 + (mid % 65536) * 65536; // < 2^33
  const lo = low >>> 0;
  const carry = Math.floor(low / 4294967296);
  const hiOfLoLo = a1 * b1 + Math.floor(mid / 65536) + carry;
  r[0] = lo;
  r[1] = (hiOfLoLo + Math.imul(ahi, blo) + Math.imul(alo, bhi)) | 0;
}

const limbsA = new Uint32Array(4);
const limbsB = new Uint32Array(4);
const prod = new Float64Array(8);

/** High 64 bits of the unsigned 128-bit product a*b. */
export function mulhu64(alo: number, ahi: number, blo: number, bhi: number): void {
  limbsA[0] = alo & 0xffff;
  limbsA[1] = alo >>> 16;
  limbsA[2] = ahi & 0xffff;
  limbsA[3] = ahi >>> 16;
  limbsB[0] = blo & 0xffff;
  limbsB[1] = blo >>> 16;
  limbsB[2] = bhi & 0xffff;
  limbsB[3] = bhi >>> 16;
  prod.fill(0);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) prod[i + j]! += limbsA[i]! * limbsB[j]!;
  let carry = 0;
  for (let k = 0; k < 8; k++) {
    const v = prod[k]! + carry;
    prod[k] = v % 65536;
    carry = Math.floor(v / 65536);
  }
  r[0] = prod[4]! | (prod[5]! << 16);
  r[1] = prod[6]! | (prod[7]! << 16);
}

/** High 64 bits of the signed×signed product. */
export function mulh64(alo: number, ahi: number, blo: number, bhi: number): void {
  mulhu64(alo, ahi, blo, bhi);
  let lo = r[0]!;
  let hi = r[1]!;
  if (ahi < 0) [lo, hi] = sub(lo, hi, blo, bhi);
  if (bhi < 0) [lo, hi] = sub(lo, hi, alo, ahi);
  r[0] = lo;
  r[1] = hi;
}

/** High 64 bits of signed a × unsigned b. */
export function mulhsu64(alo: number, ahi: number, blo: number, bhi: number): void {
  mulhu64(alo, ahi, blo, bhi);
  if (ahi < 0) {
    const [lo, hi] = sub(r[0]!, r[1]!, blo, bhi);
    r[0] = lo;
    r[1] = hi;
  }
}

function sub(alo: number, ahi: number, blo: number, bhi: number): [number, number] {
  const lo = (alo - blo) | 0;
  const borrow = alo >>> 0 < blo >>> 0 ? 1 : 0;
  return [lo, (ahi - bhi - borrow) | 0];
}

const toBig = (lo: number, hi: number): bigint => (BigInt(hi) << 32n) | BigInt(lo >>> 0);
const toBigU = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
function fromBig(v: bigint): void {
  r[0] = Number(BigInt.asIntN(32, v));
  r[1] = Number(BigInt.asIntN(32, v >> 32n));
}

const fitsInt32 = (lo: number, hi: number): boolean => hi === lo >> 31;

/** RISC-V division by zero (signed or not): the quotient is all ones, the remainder is the dividend. */
function divideByZero(alo: number, ahi: number, rem: boolean): void {
  r[0] = rem ? alo : -1;
  r[1] = rem ? ahi : -1;
}

/** Signed 64-bit division (or remainder) with the RISC-V rules for /0 and overflow. */
export function div64(alo: number, ahi: number, blo: number, bhi: number, rem: boolean): void {
  if (blo === 0 && bhi === 0) {
    divideByZero(alo, ahi, rem);
    return;
  }
  if (fitsInt32(alo, ahi) && fitsInt32(blo, bhi)) {
    // Both fit in 32 bits, so the quotient is exact in a double (only -2^31 / -1 exceeds int32).
    const v = rem ? alo % blo : Math.trunc(alo / blo);
    r[0] = v | 0;
    r[1] = v < 0 ? -1 : v >= 2147483648 ? 0 : v >> 31;
    if (v === 2147483648) {
      r[0] = -2147483648;
      r[1] = 0;
    }
    return;
  }
  const a = toBig(alo, ahi);
  const b = toBig(blo, bhi);
  if (a === -(1n << 63n) && b === -1n) {
    r[0] = rem ? 0 : alo;
    r[1] = rem ? 0 : ahi;
    return;
  }
  fromBig(rem ? a % b : a / b);
}

/** Unsigned 64-bit division (or remainder). */
export function divu64(alo: number, ahi: number, blo: number, bhi: number, rem: boolean): void {
  if (blo === 0 && bhi === 0) {
    divideByZero(alo, ahi, rem);
    return;
  }
  if (ahi === 0 && bhi === 0) {
    const a = alo >>> 0;
    const b = blo >>> 0;
    r[0] = rem ? a % b : Math.floor(a / b);
    r[1] = 0;
    return;
  }
  const a = toBigU(alo, ahi);
  const b = toBigU(blo, bhi);
  fromBig(rem ? a % b : a / b);
}

export function clz32x2(lo: number, hi: number): number {
  return hi !== 0 ? Math.clz32(hi) : 32 + Math.clz32(lo);
}
export function ctz32(v: number): number {
  return v === 0 ? 32 : 31 - Math.clz32(v & -v);
}
export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
