import * as C from '../csr.js';
import * as K from './constants.js';
import { HartMemory } from './memory.js';
import type { Hart } from '../hart.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const {
  IRQ_MEI,
  IRQ_MSI,
  IRQ_MTI,
  IRQ_SEI,
  IRQ_SSI,
  IRQ_STI,
  MENVCFG_HI_STCE,
  MIP_STIP,
  MSTATUS_MIE,
  MSTATUS_MPIE,
  MSTATUS_MPP,
  MSTATUS_MPP_SHIFT,
  MSTATUS_SIE,
  MSTATUS_SPIE,
  MSTATUS_SPP,
  PRV_M,
  PRV_S,
} = C;
const { TWO32, S_MEPC, S_MCAUSE, S_MTVAL, S_MTVEC, S_SEPC, S_SCAUSE, S_STVAL, S_STVEC } = K;

/** Architectural priority of the interrupts a hart can take: MEI, MSI, MTI, SEI, SSI, STI. */
const PRIORITY = [IRQ_MEI, IRQ_MSI, IRQ_MTI, IRQ_SEI, IRQ_SSI, IRQ_STI];

/**
 * Interrupts and traps: the pending-interrupt summary and its selection, Sstc's timer interrupt, trap entry
 * (delegation, xtvec), and the privilege level whose changes update the translation context.
 */
export abstract class HartTraps extends HartMemory {
  /** Current privilege: 0 U, 1 S, 3 M. Setting it (e.g. a firmware entering S-mode) updates the translation context. */
  get priv(): number {
    return this.privLevel;
  }
  set priv(p: number) {
    this.privLevel = p;
    this.updateContext();
    this.updateIrq();
  }
  /** Drives a hardware interrupt line into mip (MSIP, MTIP, SEIP, MEIP). */
  setPending(mipBit: number, level: boolean): void {
    const mask = 1 << mipBit;
    if (level) this.mipHw |= mask;
    else this.mipHw &= ~mask;
    this.updateIrq();
  }

  /** Sstc deadline as an unsigned number (2^64-1 when disabled reads as 1.8e19). */
  get stimecmp(): number {
    return (this.stimecmpHi >>> 0) * TWO32 + (this.stimecmpLo >>> 0);
  }
  /** True when menvcfg.STCE enables stimecmp. */
  get sstcEnabled(): boolean {
    return (this.menvcfgHi & MENVCFG_HI_STCE) !== 0;
  }
  /** mip as the guest reads it. */
  get mip(): number {
    return this.mipHw | this.mipSw;
  }

  // ---- interrupts ----
  protected updateIrq(): void {
    this.irqPending = ((this.mipHw | this.mipSw) & this.mie) !== 0;
  }
  /** Recomputes STIP from time and stimecmp when Sstc is enabled. */
  protected updateSstc(): void {
    if (!this.sstcEnabled) {
      this.mipHw &= ~MIP_STIP;
      this.updateIrq();
      return;
    }
    const fire = this.opts.readTime() >= this.stimecmp;
    if (fire) this.mipHw |= MIP_STIP;
    else this.mipHw &= ~MIP_STIP;
    this.updateIrq();
  }
  /** The interrupt to take now (cause), or -1. Architectural priority: MEI, MSI, MTI, SEI, SSI, STI. */
  protected pendingInterrupt(): number {
    const pending = (this.mipHw | this.mipSw) & this.mie;
    if (pending === 0) return -1;
    const mEnabled = this.privLevel < PRV_M || (this.mstatus & MSTATUS_MIE) !== 0;
    const sEnabled = this.privLevel < PRV_S || (this.privLevel === PRV_S && (this.mstatus & MSTATUS_SIE) !== 0);
    const m = mEnabled ? pending & ~this.mideleg : 0;
    const s = sEnabled ? pending & this.mideleg : 0;
    const pick = m !== 0 ? m : s;
    if (pick === 0) return -1;
    for (const cause of PRIORITY) if (pick & (1 << cause)) return cause;
    return -1;
  }

  /** Enters the trap handler for an exception (or interrupt) raised at `epc`. */
  takeTrap(cause: number, interrupt: boolean, tval: number, epc: number): void {
    const from = this.privLevel;
    const deleg = from <= PRV_S && (((interrupt ? this.mideleg : this.medeleg) >>> cause) & 1) !== 0;
    const hi = interrupt ? 0x80000000 | 0 : 0;
    let st = this.mstatus;
    if (deleg) {
      this.set64(S_SCAUSE, cause, hi);
      this.setNum(S_SEPC, epc);
      this.setNum(S_STVAL, tval);
      st =
        (st & ~(MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SIE)) |
        (st & MSTATUS_SIE ? MSTATUS_SPIE : 0) |
        (from === PRV_S ? MSTATUS_SPP : 0);
      this.privLevel = PRV_S;
      this.pcValue = this.tvecTarget(S_STVEC, interrupt, cause);
    } else {
      this.set64(S_MCAUSE, cause, hi);
      this.setNum(S_MEPC, epc);
      this.setNum(S_MTVAL, tval);
      st =
        (st & ~(MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MIE)) | (st & MSTATUS_MIE ? MSTATUS_MPIE : 0) | (from << MSTATUS_MPP_SHIFT);
      this.privLevel = PRV_M;
      this.pcValue = this.tvecTarget(S_MTVEC, interrupt, cause);
    }
    this.mstatus = st;
    this.waiting = false;
    this.updateContext();
    this.updateIrq();
    // Hart is the one concrete class of this chain, so `this` is always a Hart.
    this.onTrap?.(this as unknown as Hart, cause, interrupt, tval, epc);
  }

  protected tvecTarget(slot: number, interrupt: boolean, cause: number): number {
    const lo = this.csr64[slot * 2]!;
    const base = this.get64(slot) - (lo & 3);
    return interrupt && (lo & 3) === 1 ? base + 4 * cause : base;
  }

  protected afterPrivChange(): void {
    this.updateContext();
    this.updateIrq();
  }
}
