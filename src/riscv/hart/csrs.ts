import * as C from '../csr.js';
import * as K from './constants.js';
import { HartTraps } from './traps.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const {
  CSR_CYCLE,
  CSR_FCSR,
  CSR_FFLAGS,
  CSR_FRM,
  CSR_INSTRET,
  CSR_MARCHID,
  CSR_MCAUSE,
  CSR_MCONFIGPTR,
  CSR_MCOUNTEREN,
  CSR_MCOUNTINHIBIT,
  CSR_MCYCLE,
  CSR_MEDELEG,
  CSR_MENVCFG,
  CSR_MEPC,
  CSR_MHARTID,
  CSR_MIDELEG,
  CSR_MIE,
  CSR_MIMPID,
  CSR_MINSTRET,
  CSR_MIP,
  CSR_MISA,
  CSR_MSCRATCH,
  CSR_MSTATUS,
  CSR_MTINST,
  CSR_MTVAL,
  CSR_MTVAL2,
  CSR_MTVEC,
  CSR_MVENDORID,
  CSR_PMPADDR0,
  CSR_PMPCFG0,
  CSR_PMPCFG2,
  CSR_SATP,
  CSR_SCAUSE,
  CSR_SCOUNTEREN,
  CSR_SENVCFG,
  CSR_SEPC,
  CSR_SIE,
  CSR_SIP,
  CSR_SSCRATCH,
  CSR_SSTATUS,
  CSR_STIMECMP,
  CSR_STVAL,
  CSR_STVEC,
  CSR_TIME,
  ENVCFG_FIOM,
  MENVCFG_HI_STCE,
  MIP_SEIP,
  MIP_SSIP,
  MIP_STIP,
  MISA_EXTENSIONS,
  MISA_HI,
  MSTATUS_FS,
  MSTATUS_HI_SD,
  MSTATUS_HI_UXL_SXL,
  MSTATUS_MIE,
  MSTATUS_MPIE,
  MSTATUS_MPP,
  MSTATUS_MPP_SHIFT,
  MSTATUS_MPRV,
  MSTATUS_MXR,
  MSTATUS_SIE,
  MSTATUS_SPIE,
  MSTATUS_SPP,
  MSTATUS_SUM,
  MSTATUS_TSR,
  MSTATUS_TVM,
  MSTATUS_TW,
  MSTATUS_UBE,
  MSTATUS_VS,
  MSTATUS_XS,
  PRV_M,
  PRV_S,
  PRV_U,
} = C;
const { TWO32, S_MSCRATCH, S_MEPC, S_MCAUSE, S_MTVAL, S_MTVEC, S_SSCRATCH, S_SEPC, S_SCAUSE, S_STVAL, S_STVEC } = K;

const SSTATUS_MASK =
  MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_UBE | MSTATUS_SPP | MSTATUS_VS | MSTATUS_FS | MSTATUS_XS | MSTATUS_SUM | MSTATUS_MXR;
const SSTATUS_WMASK = MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR;
const MSTATUS_WMASK =
  SSTATUS_WMASK | MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR;

/**
 * The CSR file: reads and writes of every CSR by number, with their access checks (privilege, counter enables,
 * FS) and the side effects of writes (translation, PMP, interrupt state).
 */
export abstract class HartCsrs extends HartTraps {
  protected counterAllowed(csr: number): boolean {
    const bit = csr & 31;
    if (this.privLevel < PRV_M && ((this.mcounteren >>> bit) & 1) === 0) return false;
    if (this.privLevel === PRV_U && ((this.scounteren >>> bit) & 1) === 0) return false;
    return true;
  }

  protected setVal(v: number): void {
    this.valLo = v | 0;
    this.valHi = Math.floor(v / TWO32) | 0;
  }

  protected fsOn(): boolean {
    return (this.mstatus & MSTATUS_FS) !== 0;
  }

  /** Reads a CSR into valLo/valHi; false if it does not exist or is not accessible. `rmw`: read for csrrs/csrrc. */
  readCsr(csr: number, rmw = false): boolean {
    this.valHi = 0;
    switch (csr) {
      case CSR_FFLAGS:
        if (!this.fsOn()) return false;
        this.valLo = this.fp.fflags & 0x1f;
        return true;
      case CSR_FRM:
        if (!this.fsOn()) return false;
        this.valLo = this.fp.frm & 7;
        return true;
      case CSR_FCSR:
        if (!this.fsOn()) return false;
        this.valLo = (this.fp.fflags & 0x1f) | ((this.fp.frm & 7) << 5);
        return true;
      case CSR_CYCLE:
      case CSR_MCYCLE:
        if (csr === CSR_CYCLE && !this.counterAllowed(csr)) return false;
        this.setVal(this.retiredNow() + this.cycleOffset);
        return true;
      case CSR_INSTRET:
      case CSR_MINSTRET:
        if (csr === CSR_INSTRET && !this.counterAllowed(csr)) return false;
        this.setVal(this.retiredNow() + this.instretOffset);
        return true;
      case CSR_TIME:
        if (!this.counterAllowed(csr)) return false;
        this.setVal(this.opts.readTime());
        return true;
      case CSR_SSTATUS: {
        const st = this.mstatus & SSTATUS_MASK;
        this.valLo = st;
        this.valHi = 0x2 | ((this.mstatus & MSTATUS_FS) === MSTATUS_FS ? MSTATUS_HI_SD : 0);
        return true;
      }
      case CSR_SIE:
        this.valLo = this.mie & this.mideleg;
        return true;
      case CSR_SIP:
        this.valLo = (rmw ? this.mipSw | (this.mipHw & ~MIP_SEIP) : this.mipHw | this.mipSw) & this.mideleg;
        return true;
      case CSR_STVEC:
        return this.readSlot(S_STVEC);
      case CSR_SSCRATCH:
        return this.readSlot(S_SSCRATCH);
      case CSR_SEPC:
        return this.readSlot(S_SEPC);
      case CSR_SCAUSE:
        return this.readSlot(S_SCAUSE);
      case CSR_STVAL:
        return this.readSlot(S_STVAL);
      case CSR_SCOUNTEREN:
        this.valLo = this.scounteren;
        return true;
      case CSR_SENVCFG:
        this.valLo = this.senvcfg;
        return true;
      case CSR_STIMECMP:
        if (this.privLevel < PRV_M && (!this.sstcEnabled || (this.mcounteren & 2) === 0)) return false;
        this.valLo = this.stimecmpLo;
        this.valHi = this.stimecmpHi;
        return true;
      case CSR_SATP:
        if (this.privLevel === PRV_S && this.mstatus & MSTATUS_TVM) return false;
        this.valLo = this.satpLo;
        this.valHi = this.satpHi;
        return true;
      case CSR_MVENDORID:
      case CSR_MARCHID:
      case CSR_MIMPID:
      case CSR_MCONFIGPTR:
        this.valLo = 0;
        return true;
      case CSR_MHARTID:
        this.valLo = this.hartId;
        return true;
      case CSR_MSTATUS:
        this.valLo = this.mstatus;
        this.valHi = MSTATUS_HI_UXL_SXL | ((this.mstatus & MSTATUS_FS) === MSTATUS_FS ? MSTATUS_HI_SD : 0);
        return true;
      case CSR_MISA:
        this.valLo = MISA_EXTENSIONS;
        this.valHi = MISA_HI;
        return true;
      case CSR_MEDELEG:
        this.valLo = this.medeleg;
        return true;
      case CSR_MIDELEG:
        this.valLo = this.mideleg;
        return true;
      case CSR_MIE:
        this.valLo = this.mie;
        return true;
      case CSR_MIP:
        this.valLo = rmw ? this.mipSw | (this.mipHw & ~MIP_SEIP) : this.mipHw | this.mipSw;
        return true;
      case CSR_MTVEC:
        return this.readSlot(S_MTVEC);
      case CSR_MCOUNTEREN:
        this.valLo = this.mcounteren;
        return true;
      case CSR_MENVCFG:
        this.valLo = this.menvcfgLo;
        this.valHi = this.menvcfgHi;
        return true;
      case CSR_MCOUNTINHIBIT:
        this.valLo = this.mcountinhibit;
        return true;
      case CSR_MSCRATCH:
        return this.readSlot(S_MSCRATCH);
      case CSR_MEPC:
        return this.readSlot(S_MEPC);
      case CSR_MCAUSE:
        return this.readSlot(S_MCAUSE);
      case CSR_MTVAL:
        return this.readSlot(S_MTVAL);
      case CSR_MTINST:
      case CSR_MTVAL2:
        this.valLo = 0;
        return true;
      case CSR_PMPCFG0:
      case CSR_PMPCFG2: {
        const base = csr === CSR_PMPCFG0 ? 0 : 8;
        const p = this.pmpcfg;
        this.valLo = p[base]! | (p[base + 1]! << 8) | (p[base + 2]! << 16) | (p[base + 3]! << 24);
        this.valHi = p[base + 4]! | (p[base + 5]! << 8) | (p[base + 6]! << 16) | (p[base + 7]! << 24);
        return true;
      }
      default:
        if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 16) {
          const i = csr - CSR_PMPADDR0;
          this.valLo = this.pmpaddrLo[i]!;
          this.valHi = this.pmpaddrHi[i]!;
          return true;
        }
        if (csr >= CSR_PMPADDR0 + 16 && csr < CSR_PMPADDR0 + 64) {
          this.valLo = 0; // pmpaddr16..63: not implemented, read-only zero
          return true;
        }
        // hpmcounter3..31 (U), mhpmcounter3..31, mhpmevent3..31: present, read zero.
        if (csr >= 0xc03 && csr <= 0xc1f) {
          if (!this.counterAllowed(csr)) return false;
          this.valLo = 0;
          return true;
        }
        if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) {
          this.valLo = 0;
          return true;
        }
        return false;
    }
  }

  protected readSlot(slot: number): boolean {
    this.valLo = this.csr64[slot * 2]!;
    this.valHi = this.csr64[slot * 2 + 1]!;
    return true;
  }

  /** Writes a CSR (WARL-legalised); false if the CSR can't be written. */
  writeCsr(csr: number, lo: number, hi: number): boolean {
    switch (csr) {
      case CSR_FFLAGS:
        this.fp.fflags = lo & 0x1f;
        this.mstatus |= MSTATUS_FS;
        return true;
      case CSR_FRM:
        this.fp.frm = lo & 7;
        this.mstatus |= MSTATUS_FS;
        return true;
      case CSR_FCSR:
        this.fp.fflags = lo & 0x1f;
        this.fp.frm = (lo >>> 5) & 7;
        this.mstatus |= MSTATUS_FS;
        return true;
      case CSR_MCYCLE:
        this.cycleOffset = (hi >>> 0) * TWO32 + (lo >>> 0) - this.retiredNow() - 1;
        return true;
      case CSR_MINSTRET:
        // The write happens before this instruction retires, which then increments the counter.
        this.instretOffset = (hi >>> 0) * TWO32 + (lo >>> 0) - this.retiredNow() - 1;
        return true;
      case CSR_SSTATUS:
        this.setMstatus((this.mstatus & ~SSTATUS_WMASK) | (lo & SSTATUS_WMASK));
        return true;
      case CSR_SIE:
        this.mie = (this.mie & ~this.mideleg) | (lo & this.mideleg & 0x222);
        this.updateIrq();
        return true;
      case CSR_SIP: {
        const m = this.mideleg & MIP_SSIP;
        this.mipSw = (this.mipSw & ~m) | (lo & m);
        this.updateIrq();
        return true;
      }
      case CSR_STVEC:
        this.set64(S_STVEC, lo & ~2, hi);
        return true;
      case CSR_SSCRATCH:
        this.set64(S_SSCRATCH, lo, hi);
        return true;
      case CSR_SEPC:
        this.set64(S_SEPC, lo & ~1, hi);
        return true;
      case CSR_SCAUSE:
        this.set64(S_SCAUSE, lo, hi);
        return true;
      case CSR_STVAL:
        this.set64(S_STVAL, lo, hi);
        return true;
      case CSR_SCOUNTEREN:
        this.scounteren = lo;
        return true;
      case CSR_SENVCFG:
        this.senvcfg = lo & ENVCFG_FIOM;
        return true;
      case CSR_STIMECMP:
        this.stimecmpLo = lo;
        this.stimecmpHi = hi;
        this.updateSstc();
        return true;
      case CSR_SATP:
        this.writeSatp(lo, hi);
        return true;
      case CSR_MSTATUS:
        this.setMstatus((this.mstatus & ~MSTATUS_WMASK) | (lo & MSTATUS_WMASK));
        return true;
      case CSR_MISA:
        return true; // read-only in this implementation (WARL: writes ignored)
      case CSR_MEDELEG:
        this.medeleg = lo & 0xb3ff;
        return true;
      case CSR_MIDELEG:
        this.mideleg = lo & 0x222;
        this.updateIrq();
        return true;
      case CSR_MIE:
        this.mie = lo & 0xaaa;
        this.updateIrq();
        return true;
      case CSR_MIP: {
        const m = MIP_SSIP | MIP_SEIP | (this.sstcEnabled ? 0 : MIP_STIP);
        this.mipSw = (this.mipSw & ~m) | (lo & m);
        this.updateIrq();
        return true;
      }
      case CSR_MTVEC:
        this.set64(S_MTVEC, lo & ~2, hi);
        return true;
      case CSR_MCOUNTEREN:
        this.mcounteren = lo;
        return true;
      case CSR_MENVCFG:
        this.menvcfgLo = lo & ENVCFG_FIOM;
        this.menvcfgHi = hi & MENVCFG_HI_STCE;
        if (this.sstcEnabled) this.mipSw &= ~MIP_STIP;
        this.updateSstc();
        this.updateIrq();
        return true;
      case CSR_MCOUNTINHIBIT:
        this.mcountinhibit = lo & ~2;
        return true;
      case CSR_MSCRATCH:
        this.set64(S_MSCRATCH, lo, hi);
        return true;
      case CSR_MEPC:
        this.set64(S_MEPC, lo & ~1, hi);
        return true;
      case CSR_MCAUSE:
        this.set64(S_MCAUSE, lo, hi);
        return true;
      case CSR_MTVAL:
        this.set64(S_MTVAL, lo, hi);
        return true;
      case CSR_MTINST:
      case CSR_MTVAL2:
        return true;
      case CSR_PMPCFG0:
      case CSR_PMPCFG2: {
        const base = csr === CSR_PMPCFG0 ? 0 : 8;
        for (let i = 0; i < 8; i++) {
          if (this.pmpcfg[base + i]! & 0x80) continue; // locked
          let b = (i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4))) & 0xff & 0x9f;
          if ((b & 3) === 2) b &= ~3; // R=0,W=1 is reserved
          this.pmpcfg[base + i] = b;
        }
        this.updatePmp();
        return true;
      }
      default:
        if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 16) {
          const i = csr - CSR_PMPADDR0;
          const locked = (this.pmpcfg[i]! & 0x80) !== 0 || (i < 15 && (this.pmpcfg[i + 1]! & 0x98) === 0x88);
          if (!locked) {
            this.pmpaddrLo[i] = lo;
            this.pmpaddrHi[i] = hi & 0x3fffff;
            this.updatePmp();
          }
          return true;
        }
        if (csr >= CSR_PMPADDR0 + 16 && csr < CSR_PMPADDR0 + 64) return true;
        if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return true;
        return false;
    }
  }

  protected setMstatus(v: number): void {
    // MPP is WARL: the reserved value 2 becomes U.
    if ((v & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT === 2) v &= ~MSTATUS_MPP;
    this.mstatus = v;
    this.updateContext();
    this.updateIrq();
  }
}
