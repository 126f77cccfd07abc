// First, straightforward F/D op table: round-to-nearest arithmetic via JS doubles. Rounding modes and
// flags are refined in later revisions; the table's shape is the stable contract.
import { FpState, FpExec, FpOpTable, FFLAG_NV, FFLAG_DZ, FFLAG_NX } from './state.js';

const CANON_NAN_S = 0x7fc00000; // canonical single NaN
const CANON_NAN_D_HI = 0x7ff80000; // canonical double NaN, high word (low word 0)

const sc64 = new Float64Array(1);
const sc32i = new Int32Array(sc64.buffer);
const sc32f = new Float32Array(sc64.buffer);

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

type Bin = (a: number, b: number) => number;
function binS(f: Bin): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const a = readS(fs, rs1);
    const b = readS(fs, rs2);
    if (isSnanS(fs, rs1) || isSnanS(fs, rs2)) fs.fflags |= FFLAG_NV;
    const r = Math.fround(f(a, b));
    if (r !== r && a === a && b === b) fs.fflags |= FFLAG_NV;
    writeS(fs, rd, r);
    return true;
  };
}
function binD(f: Bin): FpExec {
  return (fs, _x, rd, rs1, rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const a = fs.f64[rs1];
    const b = fs.f64[rs2];
    if (isSnanD(fs, rs1) || isSnanD(fs, rs2)) fs.fflags |= FFLAG_NV;
    const r = f(a, b);
    if (r !== r && a === a && b === b) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, r);
    return true;
  };
}

function div(a: number, b: number, fs?: FpState): number {
  if (fs && b === 0 && a === a && a !== 0 && Math.abs(a) !== Infinity) fs.fflags |= FFLAG_DZ;
  return a / b;
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
  return (fs, x, rd, rs1, rs2) =>
    cmp(fs, x, rd, readS(fs, rs1), readS(fs, rs2), isSnanS(fs, rs1) || isSnanS(fs, rs2), kind);
}
function cmpD(kind: number): FpExec {
  return (fs, x, rd, rs1, rs2) =>
    cmp(fs, x, rd, fs.f64[rs1], fs.f64[rs2], isSnanD(fs, rs1) || isSnanD(fs, rs2), kind);
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
/** fcvt to integer: width 32 or 64, signed or not. Writes the (sign-extended) result. */
function toInt(fs: FpState, x: Int32Array, rd: number, v: number, rm: number, width: number, signed: boolean): void {
  let lo: number;
  let hi: number;
  const min = signed ? -(2 ** (width - 1)) : 0;
  const max = signed ? 2 ** (width - 1) - 1 : 2 ** width - 1;
  let r: number;
  if (v !== v) {
    r = max;
    fs.fflags |= FFLAG_NV;
  } else {
    r = roundInt(v, rm);
    if (r < min || r > max) {
      fs.fflags |= FFLAG_NV;
      r = r < min ? min : max;
    } else if (r !== v) fs.fflags |= FFLAG_NX;
  }
  if (width === 32) {
    lo = r | 0;
    hi = lo >> 31;
  } else {
    if (r === max && max > 2 ** 53) {
      lo = -1;
      hi = signed ? 0x7fffffff : -1;
    } else {
      const h = Math.floor(r / TWO32);
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

function intValue(x: Int32Array, rs1: number, width: number, signed: boolean): number {
  if (width === 32) return signed ? x[2 * rs1] : x[2 * rs1] >>> 0;
  const hi = signed ? x[2 * rs1 + 1] : x[2 * rs1 + 1] >>> 0;
  return hi * TWO32 + (x[2 * rs1] >>> 0);
}
function cvtFromIntS(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const v = intValue(x, rs1, width, signed);
    const r = Math.fround(v);
    if (r !== v) fs.fflags |= FFLAG_NX;
    writeS(fs, rd, r);
    return true;
  };
}
function cvtFromIntD(width: number, signed: boolean): FpExec {
  return (fs, x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    writeD(fs, rd, intValue(x, rs1, width, signed));
    return true;
  };
}

function fmaS(negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    if (isSnanS(fs, rs1) || isSnanS(fs, rs2) || isSnanS(fs, rs3)) fs.fflags |= FFLAG_NV;
    const a = readS(fs, rs1);
    const b = readS(fs, rs2);
    const c = readS(fs, rs3);
    const p = negProd ? -(a * b) : a * b;
    const r = Math.fround(negAdd ? p - c : p + c);
    if (r !== r && !(a !== a || b !== b || c !== c)) fs.fflags |= FFLAG_NV;
    writeS(fs, rd, r);
    return true;
  };
}
function fmaD(negProd: boolean, negAdd: boolean): FpExec {
  return (fs, _x, rd, rs1, rs2, rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    if (isSnanD(fs, rs1) || isSnanD(fs, rs2) || isSnanD(fs, rs3)) fs.fflags |= FFLAG_NV;
    const a = fs.f64[rs1];
    const b = fs.f64[rs2];
    const c = fs.f64[rs3];
    const p = negProd ? -(a * b) : a * b;
    const r = negAdd ? p - c : p + c;
    if (r !== r && !(a !== a || b !== b || c !== c)) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, r);
    return true;
  };
}

export const FP_OPS: FpOpTable = {
  fadd_s: binS((a, b) => a + b),
  fsub_s: binS((a, b) => a - b),
  fmul_s: binS((a, b) => a * b),
  fdiv_s: (fs, x, rd, rs1, rs2, rs3, rm) => {
    div(readS(fs, rs1), readS(fs, rs2), fs);
    return binS((a, b) => a / b)(fs, x, rd, rs1, rs2, rs3, rm);
  },
  fsqrt_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const a = readS(fs, rs1);
    if (isSnanS(fs, rs1) || a < 0) fs.fflags |= FFLAG_NV;
    writeS(fs, rd, Math.fround(Math.sqrt(a)));
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
  fmadd_s: fmaS(false, false),
  fmsub_s: fmaS(false, true),
  fnmsub_s: fmaS(true, false),
  fnmadd_s: fmaS(true, true),
  fadd_d: binD((a, b) => a + b),
  fsub_d: binD((a, b) => a - b),
  fmul_d: binD((a, b) => a * b),
  fdiv_d: (fs, x, rd, rs1, rs2, rs3, rm) => {
    div(fs.f64[rs1], fs.f64[rs2], fs);
    return binD((a, b) => a / b)(fs, x, rd, rs1, rs2, rs3, rm);
  },
  fsqrt_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const a = fs.f64[rs1];
    if (isSnanD(fs, rs1) || a < 0) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, Math.sqrt(a));
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
  fmadd_d: fmaD(false, false),
  fmsub_d: fmaD(false, true),
  fnmsub_d: fmaD(true, false),
  fnmadd_d: fmaD(true, true),
  fcvt_s_d: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    const a = fs.f64[rs1];
    if (isSnanD(fs, rs1)) fs.fflags |= FFLAG_NV;
    const r = Math.fround(a);
    if (r !== a && a === a) fs.fflags |= FFLAG_NX;
    writeS(fs, rd, r);
    return true;
  },
  fcvt_d_s: (fs, _x, rd, rs1, _rs2, _rs3, rm) => {
    if (resolveRm(fs, rm) < 0) return false;
    if (isSnanS(fs, rs1)) fs.fflags |= FFLAG_NV;
    writeD(fs, rd, readS(fs, rs1));
    return true;
  },
};

void sc32i;
void sc32f;
