/**
 * CLINT (SiFive core-local interruptor, riscv,clint0): per-hart msip and mtimecmp, and the shared mtime.
 * 64-bit registers are reached as two 32-bit halves (the bus splits 8-byte accesses, low half first).
 * mtimecmp is kept as halves because guests write all-ones (2^64-1) to mean "never", which a JS number can't
 * hold exactly; the deadline as a number is only used for comparisons, where the rounding does not matter.
 */
import { checkState, type DeviceState, type MmioDevice, type Stateful } from './device.js';

const MSIP_BASE = 0x0000; // 4 bytes per hart
const MTIMECMP_BASE = 0x4000; // 8 bytes per hart
const MTIME = 0xbff8;

export const MIP_MSIP = 3;
export const MIP_MTIP = 7;

/** How the CLINT drives the harts' MSIP/MTIP bits and reads/sets the shared time. */
export interface ClintHost {
  setHartIrq(hartId: number, mipBit: number, level: boolean): void;
  readTime(): number;
  /** A guest write to mtime: the clock must jump to `ticks`. */
  setTime(ticks: number): void;
}

export interface ClintState {
  msip: number[];
  mtimecmpLo: number[];
  mtimecmpHi: number[];
}

export class Clint implements MmioDevice, Stateful<ClintState> {
  readonly name = 'clint';
  readonly size = 0x1_0000;
  private readonly msip: Uint8Array;
  private readonly cmpLo: Uint32Array;
  private readonly cmpHi: Uint32Array;
  private readonly mtip: Uint8Array;

  constructor(
    readonly harts: number,
    private readonly host: ClintHost,
  ) {
    this.msip = new Uint8Array(harts);
    this.cmpLo = new Uint32Array(harts).fill(0xffff_ffff);
    this.cmpHi = new Uint32Array(harts).fill(0xffff_ffff);
    this.mtip = new Uint8Array(harts);
  }

  read(offset: number, size: number): number {
    if (offset < MSIP_BASE + 4 * this.harts && offset < MTIMECMP_BASE) {
      return offset % 4 === 0 ? this.msip[offset >> 2]! : 0;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * this.harts) {
      const rel = offset - MTIMECMP_BASE;
      const hart = rel >> 3;
      const word = (rel & 7) === 0 ? this.cmpLo[hart]! : this.cmpHi[hart]!;
      return size === 4 ? word : (word >>> ((rel & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
    }
    if (offset === MTIME || offset === MTIME + 4) {
      const t = this.host.readTime();
      return offset === MTIME ? t % 0x1_0000_0000 : Math.floor(t / 0x1_0000_0000);
    }
    return 0;
  }

  write(offset: number, size: number, value: number): void {
    if (offset < MTIMECMP_BASE) {
      const hart = offset >> 2;
      if (hart < this.harts && offset % 4 === 0) this.setMsip(hart, (value & 1) !== 0);
      return;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * this.harts && size === 4 && offset % 4 === 0) {
      const rel = offset - MTIMECMP_BASE;
      const hart = rel >> 3;
      if ((rel & 7) === 0) this.cmpLo[hart] = value >>> 0;
      else this.cmpHi[hart] = value >>> 0;
      this.updateTimer(hart, this.host.readTime());
      return;
    }
    if ((offset === MTIME || offset === MTIME + 4) && size === 4) {
      const t = this.host.readTime();
      const lo = offset === MTIME ? value >>> 0 : t % 0x1_0000_0000;
      const hi = offset === MTIME ? Math.floor(t / 0x1_0000_0000) : value >>> 0;
      this.host.setTime(hi * 0x1_0000_0000 + lo);
      this.updateTimers(this.host.readTime());
    }
  }

  setMsip(hart: number, level: boolean): void {
    this.msip[hart] = level ? 1 : 0;
    this.host.setHartIrq(hart, MIP_MSIP, level);
  }

  /** The mtimecmp of `hart` as a number (approximate above 2^53, which only ever means "far future"). */
  mtimecmp(hart: number): number {
    return this.cmpHi[hart]! * 0x1_0000_0000 + this.cmpLo[hart]!;
  }

  /** Sets mtimecmp from a number (the built-in SBI's set_timer). */
  setMtimecmp(hart: number, value: number): void {
    if (value >= 2 ** 64 || value < 0) {
      this.cmpLo[hart] = 0xffff_ffff;
      this.cmpHi[hart] = 0xffff_ffff;
    } else {
      this.cmpLo[hart] = value % 0x1_0000_0000;
      this.cmpHi[hart] = Math.floor(value / 0x1_0000_0000);
    }
    this.updateTimer(hart, this.host.readTime());
  }

  /** Recomputes MTIP for every hart at time `now`; the machine calls this at slice boundaries. */
  updateTimers(now: number): void {
    for (let h = 0; h < this.harts; h++) this.updateTimer(h, now);
  }

  private updateTimer(hart: number, now: number): void {
    const level = now >= this.mtimecmp(hart) ? 1 : 0;
    if (level !== this.mtip[hart]) {
      this.mtip[hart] = level;
      this.host.setHartIrq(hart, MIP_MTIP, level === 1);
    }
  }

  /** The earliest mtimecmp among harts whose MTIP is not yet raised; Infinity when none is armed. */
  nextDeadline(): number {
    let d = Infinity;
    for (let h = 0; h < this.harts; h++) {
      const cmp = this.mtimecmp(h);
      if (!this.mtip[h] && cmp < 2 ** 53) d = Math.min(d, cmp);
    }
    return d;
  }

  reset(): void {
    this.cmpLo.fill(0xffff_ffff);
    this.cmpHi.fill(0xffff_ffff);
    for (let h = 0; h < this.harts; h++) {
      this.setMsip(h, false);
      if (this.mtip[h]) this.host.setHartIrq(h, MIP_MTIP, false);
      this.mtip[h] = 0;
    }
  }

  saveState(): DeviceState<ClintState> {
    return {
      type: 'clint',
      version: 1,
      data: { msip: [...this.msip], mtimecmpLo: [...this.cmpLo], mtimecmpHi: [...this.cmpHi] },
    };
  }
  loadState(state: DeviceState<ClintState>): void {
    checkState(state, 'clint', 1);
    const d = state.data;
    if (d.msip.length !== this.harts) throw new Error(`clint: state has ${d.msip.length} harts, machine has ${this.harts}`);
    this.cmpLo.set(d.mtimecmpLo);
    this.cmpHi.set(d.mtimecmpHi);
    d.msip.forEach((v, h) => this.setMsip(h, v !== 0));
    this.mtip.fill(0);
    for (let h = 0; h < this.harts; h++) this.host.setHartIrq(h, MIP_MTIP, false);
    this.updateTimers(this.host.readTime());
  }
}
