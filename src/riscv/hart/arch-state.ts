import * as C from '../csr.js';
import type { HartArchState } from '../hart-state.js';
import { HartCsrs } from './csrs.js';
import * as K from './constants.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const { PRV_M, PRV_S, PRV_U, SATP_MODE_BARE } = C;
const { RES_VALID } = K;

/**
 * The hart as a whole: reset, and the architectural state saved to and loaded from snapshots (the one place
 * that knows which fields are architectural; see hart-state.ts).
 */
export abstract class HartArch extends HartCsrs {
  /** Resets to M-mode at `pc` with architectural reset values. */
  reset(pc: number): void {
    this.x.fill(0);
    this.fp.i32.fill(0);
    this.fp.fflags = 0;
    this.fp.frm = 0;
    this.privLevel = PRV_M;
    this.mstatus = 0;
    this.medeleg = this.mideleg = this.mie = this.mipSw = 0;
    this.mcounteren = this.scounteren = this.senvcfg = this.mcountinhibit = 0;
    this.menvcfgLo = this.menvcfgHi = 0;
    this.csr64.fill(0);
    this.satpLo = this.satpHi = 0;
    this.stimecmpLo = this.stimecmpHi = -1;
    this.pmpcfg.fill(0);
    this.pmpaddrLo.fill(0);
    this.pmpaddrHi.fill(0);
    this.updatePmp();
    this.writeSatp(0, 0);
    this.waiting = false;
    this.res[RES_VALID] = 0;
    this.pcValue = pc;
    this.updateContext();
    this.dropDecodeCache(true);
  }

  // ---- snapshots: the one place that knows which fields are architectural (see hart-state.ts) ----

  /** The architectural state, copied (the hart may keep running afterwards). */
  saveArchState(): HartArchState {
    return {
      x: this.x.slice(0, 64),
      f: this.fp.i32.slice(),
      fflags: this.fp.fflags,
      frm: this.fp.frm,
      pc: this.pcValue,
      priv: this.privLevel,
      waiting: this.waiting,
      instret: this.instret,
      mstatus: this.mstatus,
      medeleg: this.medeleg,
      mideleg: this.mideleg,
      mie: this.mie,
      mipSw: this.mipSw,
      mipHw: this.mipHw,
      mcounteren: this.mcounteren,
      scounteren: this.scounteren,
      menvcfgLo: this.menvcfgLo,
      menvcfgHi: this.menvcfgHi,
      senvcfg: this.senvcfg,
      mcountinhibit: this.mcountinhibit,
      csr64: this.csr64.slice(),
      satpLo: this.satpLo,
      satpHi: this.satpHi,
      stimecmpLo: this.stimecmpLo,
      stimecmpHi: this.stimecmpHi,
      cycleOffset: this.cycleOffset,
      instretOffset: this.instretOffset,
      pmpcfg: this.pmpcfg.slice(),
      pmpaddrLo: this.pmpaddrLo.slice(),
      pmpaddrHi: this.pmpaddrHi.slice(),
      resValid: this.res[RES_VALID] !== 0,
      resAddr: this.resAddr[0]! + this.bus.ramBase,
    };
  }

  /**
   * Replaces the architectural state and rebuilds everything derived from it (translation, PMP ranges, interrupt
   * summary); TLBs and decoded code start empty. Throws a RangeError on a state of the wrong shape.
   */
  loadArchState(s: HartArchState): void {
    const sizes: [ArrayLike<number>, number, string][] = [
      [s.x, 64, 'x'],
      [s.f, 64, 'f'],
      [s.csr64, this.csr64.length, 'csr64'],
      [s.pmpcfg, 16, 'pmpcfg'],
      [s.pmpaddrLo, 16, 'pmpaddrLo'],
      [s.pmpaddrHi, 16, 'pmpaddrHi'],
    ];
    for (const [a, n, name] of sizes)
      if (a.length !== n) throw new RangeError(`hart state: ${name} has ${a.length} entries, expected ${n}`);
    if (s.priv !== PRV_U && s.priv !== PRV_S && s.priv !== PRV_M) throw new RangeError(`hart state: privilege ${s.priv}`);
    this.x.set(s.x);
    this.x[0] = this.x[1] = 0;
    this.fp.i32.set(s.f);
    this.fp.fflags = s.fflags & 0x1f;
    this.fp.frm = s.frm & 7;
    this.pcValue = s.pc;
    this.privLevel = s.priv;
    this.waiting = s.waiting;
    this.instret = s.instret;
    this.mstatus = s.mstatus | 0;
    this.medeleg = s.medeleg | 0;
    this.mideleg = s.mideleg | 0;
    this.mie = s.mie | 0;
    this.mipSw = s.mipSw | 0;
    this.mipHw = s.mipHw | 0;
    this.mcounteren = s.mcounteren | 0;
    this.scounteren = s.scounteren | 0;
    this.menvcfgLo = s.menvcfgLo | 0;
    this.menvcfgHi = s.menvcfgHi | 0;
    this.senvcfg = s.senvcfg | 0;
    this.mcountinhibit = s.mcountinhibit | 0;
    this.csr64.set(s.csr64);
    this.stimecmpLo = s.stimecmpLo | 0;
    this.stimecmpHi = s.stimecmpHi | 0;
    this.cycleOffset = s.cycleOffset;
    this.instretOffset = s.instretOffset;
    this.pmpcfg.set(s.pmpcfg);
    this.pmpaddrLo.set(s.pmpaddrLo);
    this.pmpaddrHi.set(s.pmpaddrHi);
    this.res[RES_VALID] = s.resValid ? 1 : 0;
    this.resAddr[0] = s.resAddr - this.bus.ramBase;
    this.exitRequested = false;
    this.updatePmp(); // also flushes the TLB
    this.genSatpHi.fill(-1);
    this.lastGen = 0;
    this.satpLo = this.satpHi = 0;
    this.satpMode = SATP_MODE_BARE;
    this.writeSatp(s.satpLo | 0, s.satpHi | 0);
    this.dropDecodeCache(true);
    this.updateContext();
    this.updateIrq();
  }
}
