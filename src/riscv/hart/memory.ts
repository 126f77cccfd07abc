import * as C from '../csr.js';
import * as K from './constants.js';
import { HartMmu } from './mmu.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const { CAUSE_LOAD_ACCESS, CAUSE_MISALIGNED_LOAD, CAUSE_MISALIGNED_STORE, CAUSE_STORE_ACCESS } = C;
const { TLB_MASK, ACC_LOAD, ACC_STORE } = K;

/**
 * Guest memory accesses off the TLB fast path: loads and stores that miss (or cross a page, or reach MMIO), the
 * store TLB fill, atomics' address checks, and the physical reads and writes behind them.
 */
export abstract class HartMemory extends HartMmu {
  /** Reads `size` bytes (zero-extended into valLo/valHi) at virtual `va` with the data privilege. */
  protected loadRaw(va: number, size: number): void {
    const off = va & 0xfff;
    if (off + size > 4096) {
      // Crosses a page: byte by byte (each byte translated; faults report the first faulting byte's page).
      let lo = 0;
      let hi = 0;
      for (let i = 0; i < size; i++) {
        this.loadRaw(va + i, 1);
        if (i < 4) lo |= this.valLo << (8 * i);
        else hi |= this.valLo << (8 * (i - 4));
      }
      this.valLo = lo;
      this.valHi = hi;
      return;
    }
    // Callers that have no TLB probe of their own (FP loads, whose registers C code saves and restores on the
    // stack with setjmp) hit here as often as the interpreter's inline path does.
    const ti = (va >>> 12) & TLB_MASK;
    if (this.loadTag[ti] === va - off + this.dataCtx) {
      this.readView(this.loadView[ti]!, this.loadOff[ti]! + off, size);
      return;
    }
    const pa = this.translate(va, ACC_LOAD, this.dataPriv, size);
    const view = this.ramView(pa, false);
    if (view) {
      const o = (pa - this.bus.ramBase) & this.chunkMask;
      if (this.pmpAllows(pa - off, 4096, ACC_LOAD, this.dataPriv)) {
        this.loadTag[ti] = va - off + this.dataCtx;
        this.loadView[ti] = view;
        this.loadOff[ti] = o - off;
        this.loadPpn[ti] = Math.floor((pa - this.bus.ramBase) / 4096);
      }
      this.readView(view, o, size);
      return;
    }
    // MMIO: 8-byte accesses are two 4-byte ones, low half first.
    this.mmioTouched = true;
    if (size === 8) {
      const a = this.bus.mmioRead(pa, 4);
      const b = a === undefined ? undefined : this.bus.mmioRead(pa + 4, 4);
      if (a === undefined || b === undefined) this.raise(CAUSE_LOAD_ACCESS, va);
      this.valLo = a | 0;
      this.valHi = b | 0;
      return;
    }
    const v = this.bus.mmioRead(pa, size as 1 | 2 | 4);
    if (v === undefined) this.raise(CAUSE_LOAD_ACCESS, va);
    this.valLo = size === 4 ? v | 0 : v & (size === 1 ? 0xff : 0xffff);
    this.valHi = 0;
  }

  /**
   * Store through the store TLB, else through translation (as loadRaw, for callers without a probe of their own).
   * Pages holding decoded code are invalidated and never enter the store TLB.
   */
  protected storeSlow(va: number, size: number, lo: number, hi: number): void {
    const off = va & 0xfff;
    if (off + size > 4096) {
      // Check every byte's translation first so a fault leaves memory untouched.
      for (let i = 0; i < size; i++) this.translate(va + i, ACC_STORE, this.dataPriv, 1);
      for (let i = 0; i < size; i++) this.storeSlow(va + i, 1, i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4)), 0);
      return;
    }
    const ti = (va >>> 12) & TLB_MASK;
    if (this.storeTag[ti] === va - off + this.dataCtx) {
      this.writeView(this.storeView[ti]!, this.storeOff[ti]! + off, size, lo, hi);
      return;
    }
    const pa = this.translate(va, ACC_STORE, this.dataPriv, size);
    const view = this.ramView(pa, true);
    if (view) {
      const o = (pa - this.bus.ramBase) & this.chunkMask;
      const ppn = Math.floor((pa - this.bus.ramBase) / 4096);
      if (this.codePages[ppn]) this.invalidateCode(ppn);
      else this.fillStoreTlb(va, pa, view);
      this.writeView(view, o, size, lo, hi);
      return;
    }
    this.mmioTouched = true;
    if (size === 8) {
      if (!this.bus.mmioWrite(pa, 4, lo >>> 0) || !this.bus.mmioWrite(pa + 4, 4, hi >>> 0)) this.raise(CAUSE_STORE_ACCESS, va);
      return;
    }
    const v = size === 4 ? lo >>> 0 : lo & (size === 1 ? 0xff : 0xffff);
    if (!this.bus.mmioWrite(pa, size as 1 | 2 | 4, v)) this.raise(CAUSE_STORE_ACCESS, va);
  }

  /** `size` bytes at `o` of `view`, zero-extended into valLo/valHi. */
  private readView(view: DataView, o: number, size: number): void {
    if (size === 8) {
      this.read8(view, o);
      return;
    }
    this.valLo = size === 1 ? view.getUint8(o) : size === 2 ? view.getUint16(o, true) : view.getInt32(o, true);
    this.valHi = 0;
  }

  private writeView(view: DataView, o: number, size: number, lo: number, hi: number): void {
    if (size === 1) view.setUint8(o, lo & 0xff);
    else if (size === 2) view.setUint16(o, lo & 0xffff, true);
    else if (size === 4) view.setInt32(o, lo, true);
    else this.write8(view, o, lo, hi);
  }

  /**
   * 8 bytes of RAM at `o` of `view` into valLo/valHi. With harts on other threads an aligned access is one atomic
   * load (RVWMO: aligned loads and stores are single-copy atomic; two halves could mix two stores of another
   * hart). A RAM view's byte offset is its RAM offset: with atomics the bus is a hart thread's, whose RAM joins the
   * board's shared chunk table and hands out views of the one shared memory only (never the shared zero chunk).
   */
  protected read8(view: DataView, o: number): void {
    const atomics = this.atomics;
    if (atomics !== null && (o & 7) === 0) {
      this.valLo = atomics.load(8, view.byteOffset + o);
      this.valHi = atomics.oldHi;
      return;
    }
    this.valLo = view.getInt32(o, true);
    this.valHi = view.getInt32(o + 4, true);
  }

  /** 8 bytes into RAM at `o` of `view`: one atomic store when aligned with harts on other threads (see read8). */
  protected write8(view: DataView, o: number, lo: number, hi: number): void {
    const atomics = this.atomics;
    if (atomics !== null && (o & 7) === 0) {
      atomics.store64(view.byteOffset + o, lo, hi);
      return;
    }
    view.setInt32(o, lo, true);
    view.setInt32(o + 4, hi, true);
  }

  /** A store hit a page with decoded code: drop the decoded copy (fence.i semantics are then automatic). */
  protected invalidateCode(ppn: number): void {
    this.codePages[ppn] = 0;
    this.decodeCache.delete(ppn);
    this.clearFetchTlb();
  }

  /** Enters a translated RAM page into the store TLB, unless it holds decoded code or PMP limits the page. */
  protected fillStoreTlb(va: number, pa: number, view: DataView): void {
    const off = va & 0xfff;
    const rel = pa - this.bus.ramBase;
    const ppn = Math.floor(rel / 4096);
    if (this.codePages[ppn] || !this.pmpAllows(pa - off, 4096, ACC_STORE, this.dataPriv)) return;
    const ti = (va >>> 12) & TLB_MASK;
    this.storeTag[ti] = va - off + this.dataCtx;
    this.storeView[ti] = view;
    this.storeOff[ti] = (rel & this.chunkMask) - off;
    this.storePpn[ti] = ppn;
  }

  /**
   * Physical address for an AMO/LR/SC after alignment and translation checks (store permission; LR needs load).
   * Kernels run atomics constantly (locks, refcounts), so they go through the store TLB: an aligned access
   * stays in its page, and a store entry already proves write (hence read) permission, D set and PMP.
   */
  protected amoAddress(va: number, size: number, isLoad: boolean): number {
    if ((va & (size - 1)) !== 0) this.raise(isLoad ? CAUSE_MISALIGNED_LOAD : CAUSE_MISALIGNED_STORE, va);
    const off = va & 0xfff;
    const ti = (va >>> 12) & TLB_MASK;
    if (this.storeTag[ti] === va - off + this.dataCtx) return this.bus.ramBase + this.storePpn[ti]! * 4096 + off;
    const pa = this.translate(va, isLoad ? ACC_LOAD : ACC_STORE, this.dataPriv, size);
    if (!isLoad) {
      const view = this.ramView(pa, true);
      if (view) this.fillStoreTlb(va, pa, view);
    }
    return pa;
  }

  protected physRead(pa: number, size: number, va: number, cause: number): void {
    const view = this.ramView(pa, false);
    if (view) {
      const o = (pa - this.bus.ramBase) & this.chunkMask;
      if (size === 8) this.read8(view, o);
      else {
        this.valLo = view.getInt32(o, true);
        this.valHi = this.valLo >> 31;
      }
      return;
    }
    const a = this.bus.mmioRead(pa, 4);
    const b = size === 8 && a !== undefined ? this.bus.mmioRead(pa + 4, 4) : 0;
    if (a === undefined || b === undefined) this.raise(cause, va);
    this.valLo = a | 0;
    this.valHi = size === 8 ? b | 0 : this.valLo >> 31;
  }

  protected physWrite(pa: number, size: number, lo: number, hi: number, va: number): void {
    const view = this.ramView(pa, true);
    if (view) {
      const ppn = Math.floor((pa - this.bus.ramBase) / 4096);
      if (this.codePages[ppn]) this.invalidateCode(ppn);
      const o = (pa - this.bus.ramBase) & this.chunkMask;
      if (size === 8) this.write8(view, o, lo, hi);
      else view.setInt32(o, lo, true);
      return;
    }
    if (!this.bus.mmioWrite(pa, 4, lo >>> 0) || (size === 8 && !this.bus.mmioWrite(pa + 4, 4, hi >>> 0)))
      this.raise(CAUSE_STORE_ACCESS, va);
  }
}
