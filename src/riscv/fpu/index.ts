/**
 * The RV64 F/D floating-point unit: one function per instruction, keyed by mnemonic. The hart decodes an
 * OP-FP / FMADD-family instruction, picks `FP_OPS[mnemonic]` and calls it with the register fields:
 *
 *   if (!FP_OPS.fadd_d(fpState, xRegs, rd, rs1, rs2, rs3, rm)) raiseIllegalInstruction();
 *
 * rm is the raw 3-bit field (7 = dynamic, resolved from fpState.frm); a reserved mode returns false before
 * anything is written. Results follow IEEE 754 and the RISC-V F/D chapters bit for bit as qemu-riscv64 does
 * (test/riscv/fpu/qemu-diff.test.ts): all rounding modes, fflags accrued into fpState.fflags (tininess after
 * rounding), canonical NaNs, NaN-boxed singles, fused multiply-add with one rounding. The hart owns mstatus.FS
 * (mark it dirty after an op that returned true) and the fcsr/frm/fflags CSRs, which are FpState's fields.
 * No allocation on the common paths; BigInt only on a rare exact slow path (src/riscv/fpu/slow.ts).
 */
export { FP_OPS } from './ops.js';
export {
  FpState,
  FP_MNEMONICS,
  FFLAG_NX,
  FFLAG_UF,
  FFLAG_OF,
  FFLAG_DZ,
  FFLAG_NV,
  RM_RNE,
  RM_RTZ,
  RM_RDN,
  RM_RUP,
  RM_RMM,
  RM_DYN,
} from './state.js';
export type { FpExec, FpMnemonic, FpOpTable } from './state.js';
