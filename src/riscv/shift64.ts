/**
 * 64-bit shifts on a register held as int32 halves (x[rd] low, x[rd + 1] high), shared by the interpreter and the
 * JIT's helpers so both engines shift the same way.
 */
/** rd = (hi:lo) << s, 0 <= s < 64. */
export function shl(x: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) {
    x[rd] = lo;
    x[rd + 1] = hi;
  } else if (s < 32) {
    x[rd + 1] = (hi << s) | (lo >>> (32 - s));
    x[rd] = lo << s;
  } else {
    x[rd + 1] = lo << (s - 32);
    x[rd] = 0;
  }
}
/** rd = (hi:lo) >>> s (logical). */
export function shr(x: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) {
    x[rd] = lo;
    x[rd + 1] = hi;
  } else if (s < 32) {
    x[rd] = (lo >>> s) | (hi << (32 - s));
    x[rd + 1] = hi >>> s;
  } else {
    x[rd] = hi >>> (s - 32);
    x[rd + 1] = 0;
  }
}
/** rd = (hi:lo) >> s (arithmetic). */
export function sar(x: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) {
    x[rd] = lo;
    x[rd + 1] = hi;
  } else if (s < 32) {
    x[rd] = (lo >>> s) | (hi << (32 - s));
    x[rd + 1] = hi >> s;
  } else {
    x[rd] = hi >> (s - 32);
    x[rd + 1] = hi >> 31;
  }
}
