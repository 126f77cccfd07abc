/**
 * The RV64 F/D floating-point unit: one function per instruction, keyed by mnemonic. The hart decodes an
 * OP-FP / FMADD-family instruction, picks `FP_OPS[mnemonic]` and calls it with the register fields.
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
