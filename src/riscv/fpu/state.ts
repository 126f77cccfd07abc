/**
 * The contract between the hart (src/riscv) and the FPU (src/riscv/fpu).
 *
 * FP registers are raw bit patterns in one 256-byte buffer with three aliased views, so arithmetic can use
 * Float64Array/Float32Array while moves, NaN-boxing and sign injection work on the integer halves.
 * Register r: f64[r]; its low 32 bits are i32[2r] (and f32[2r]); its high 32 bits are i32[2r+1].
 * A single is NaN-boxed when i32[2r+1] === -1.
 */
export class FpState {
  readonly f64: Float64Array;
  readonly f32: Float32Array;
  readonly i32: Int32Array;
  /**
   * The registers live in 256 bytes at `byteOffset` of `buffer` (a fresh buffer by default): the WebAssembly JIT
   * puts them in its hart state region so its blocks do FP loads, stores and arithmetic themselves.
   */
  constructor(buffer: ArrayBufferLike = new ArrayBuffer(32 * 8), byteOffset = 0) {
    this.f64 = new Float64Array(buffer, byteOffset, 32);
    this.f32 = new Float32Array(buffer, byteOffset, 64);
    this.i32 = new Int32Array(buffer, byteOffset, 64);
  }
  /** Accrued exception flags, fcsr[4:0]: NV DZ OF UF NX. */
  fflags = 0;
  /** Dynamic rounding mode, fcsr[7:5]. */
  frm = 0;
}

export const FFLAG_NX = 0x01; // inexact
export const FFLAG_UF = 0x02; // underflow
export const FFLAG_OF = 0x04; // overflow
export const FFLAG_DZ = 0x08; // divide by zero
export const FFLAG_NV = 0x10; // invalid operation

export const RM_RNE = 0; // round to nearest, ties to even
export const RM_RTZ = 1; // round towards zero
export const RM_RDN = 2; // round down (towards -inf)
export const RM_RUP = 3; // round up (towards +inf)
export const RM_RMM = 4; // round to nearest, ties to max magnitude
export const RM_DYN = 7; // use frm

/**
 * One FP operation. `x` is the integer register file (x[2i] low half, x[2i+1] high half of register i);
 * an op whose destination is an integer register must leave x0 (x[0], x[1]) untouched when rd === 0.
 * `rm` is the instruction's raw rm field (0..7); the op resolves RM_DYN from fs.frm. Ops that have no rounding
 * mode (sign injection, min/max, compares, moves, fclass) ignore it.
 * Returns false when the instruction is illegal (a reserved rounding mode): the hart then raises an
 * illegal-instruction exception and nothing has been written.
 */
export type FpExec = (fs: FpState, x: Int32Array, rd: number, rs1: number, rs2: number, rs3: number, rm: number) => boolean;

export const FP_MNEMONICS = [
  'fadd_s',
  'fsub_s',
  'fmul_s',
  'fdiv_s',
  'fsqrt_s',
  'fsgnj_s',
  'fsgnjn_s',
  'fsgnjx_s',
  'fmin_s',
  'fmax_s',
  'fcvt_w_s',
  'fcvt_wu_s',
  'fcvt_l_s',
  'fcvt_lu_s',
  'fmv_x_w',
  'feq_s',
  'flt_s',
  'fle_s',
  'fclass_s',
  'fcvt_s_w',
  'fcvt_s_wu',
  'fcvt_s_l',
  'fcvt_s_lu',
  'fmv_w_x',
  'fmadd_s',
  'fmsub_s',
  'fnmsub_s',
  'fnmadd_s',
  'fadd_d',
  'fsub_d',
  'fmul_d',
  'fdiv_d',
  'fsqrt_d',
  'fsgnj_d',
  'fsgnjn_d',
  'fsgnjx_d',
  'fmin_d',
  'fmax_d',
  'fcvt_w_d',
  'fcvt_wu_d',
  'fcvt_l_d',
  'fcvt_lu_d',
  'fmv_x_d',
  'feq_d',
  'flt_d',
  'fle_d',
  'fclass_d',
  'fcvt_d_w',
  'fcvt_d_wu',
  'fcvt_d_l',
  'fcvt_d_lu',
  'fmv_d_x',
  'fmadd_d',
  'fmsub_d',
  'fnmsub_d',
  'fnmadd_d',
  'fcvt_s_d',
  'fcvt_d_s',
] as const;
export type FpMnemonic = (typeof FP_MNEMONICS)[number];
export type FpOpTable = Record<FpMnemonic, FpExec>;
