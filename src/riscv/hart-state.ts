/**
 * The architectural state of one hart, as machine snapshots store it (Hart.saveArchState / loadArchState).
 * Only what the guest can observe is here: TLBs, decode caches, the PMP lookup ranges and the translation
 * context are derived state and are rebuilt on load.
 */
export const HART_STATE_TYPE = 'rv64-hart';
export const HART_STATE_VERSION = 1;

export interface HartArchState {
  /** x0..x31 as int32 halves (x[2i] low, x[2i+1] high). */
  x: Int32Array;
  /** f0..f31 bit patterns as int32 halves. */
  f: Int32Array;
  fflags: number;
  frm: number;
  pc: number;
  priv: number;
  waiting: boolean;
  instret: number;
  mstatus: number;
  medeleg: number;
  mideleg: number;
  mie: number;
  mipSw: number;
  mipHw: number;
  mcounteren: number;
  scounteren: number;
  menvcfgLo: number;
  menvcfgHi: number;
  senvcfg: number;
  mcountinhibit: number;
  /** mscratch, mepc, mcause, mtval, mtvec, sscratch, sepc, scause, stval, stvec as int32 halves. */
  csr64: Int32Array;
  satpLo: number;
  satpHi: number;
  stimecmpLo: number;
  stimecmpHi: number;
  cycleOffset: number;
  instretOffset: number;
  pmpcfg: Uint8Array;
  pmpaddrLo: Int32Array;
  pmpaddrHi: Int32Array;
  /** LR/SC reservation. */
  resValid: boolean;
  resAddr: number;
}
