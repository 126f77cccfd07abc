import * as C from '../csr.js';
import * as K from './constants.js';
import { HartState } from './state.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const {
  CAUSE_FETCH_ACCESS,
  CAUSE_FETCH_PAGE_FAULT,
  CAUSE_LOAD_ACCESS,
  CAUSE_LOAD_PAGE_FAULT,
  CAUSE_STORE_ACCESS,
  CAUSE_STORE_PAGE_FAULT,
  MSTATUS_MPP,
  MSTATUS_MPP_SHIFT,
  MSTATUS_MPRV,
  MSTATUS_MXR,
  MSTATUS_SUM,
  PRV_M,
  PRV_S,
  PRV_U,
  SATP_MODE_BARE,
  SATP_MODE_SV39,
  SATP_MODE_SV48,
} = C;
const { TLB_SIZE, TLB_MASK, FLUSH_PAGES_MAX, DECODED_PAGE_BYTES, ACC_FETCH, ACC_LOAD, ACC_STORE, TWO32, TWO56, SPARE_PAGES } = K;

function pmpRangeNapot(lo: number, hi: number): [number, number] {
  // pmpaddr holds address bits 55:2; trailing ones give the size.
  let ones = 0;
  let v = lo >>> 0;
  while (ones < 32 && v & 1) {
    ones++;
    v >>>= 1;
  }
  if (ones === 32) {
    let h = hi & 0x3fffff;
    while (ones < 54 && h & 1) {
      ones++;
      h >>>= 1;
    }
  }
  const value = (hi & 0x3fffff) * TWO32 + (lo >>> 0);
  const size = 2 ** (ones + 3);
  const base = Math.floor(value / 2 ** (ones + 1)) * 2 ** (ones + 1) * 4;
  return [base, base + size];
}

/**
 * Pages a PTE of each level maps (2^(9 level)): a table, because `2 ** (9 * level)` is a call to the C library's
 * pow on every walk (4 % of a 2-hart Linux workload's CPU, perf with --perf-basic-prof).
 */
const LEVEL_SPAN: readonly number[] = [1, 512, 512 * 512, 512 * 512 * 512];
/** Half of the Sv39 and Sv48 address spaces: valid virtual addresses are in [-half, half). */
const SV39_HALF = 2 ** 38;
const SV48_HALF = 2 ** 47;

/**
 * Address translation: the Sv39/Sv48 page walk (permission checks, A/D bits), PMP, the software TLBs and their
 * flushes (sfence.vma, satp generations, remapped RAM chunks), and the translation context the TLB tags fold in.
 */
export abstract class HartMmu extends HartState {
  /** sfence.vma x0, x0 semantics: forget every translation of every address space. */
  flushTlb(): void {
    this.genSatpHi.fill(-1);
    this.superLo = Infinity;
    this.superHi = -Infinity;
    this.useNewGen();
  }
  /** sfence.vma x0, asid semantics: forget the translations of one address space (-1: of every one). */
  protected flushTlbAsid(asid: number): void {
    if (asid < 0) {
      this.flushTlb();
      return;
    }
    for (let g = 0; g <= this.lastGen; g++) {
      const hi = this.genSatpHi[g]!;
      if (hi !== -1 && ((hi >>> 12) & 0xffff) === asid) this.genSatpHi[g] = -1;
    }
    if (this.genSatpHi[this.tlbGen] === -1) this.useNewGen();
  }
  /** sfence.vma va, asid semantics (`asid` -1: every address space). `va` is signed. */
  flushTlbPage(va: number, asid = -1): void {
    if (va >= this.superLo && va < this.superHi) {
      this.flushTlbAsid(asid);
      return;
    }
    // Every address space's entry for va lives in the same slot.
    const ti = (va >>> 12) & TLB_MASK;
    this.fetchTag[ti] = NaN;
    this.loadTag[ti] = NaN;
    this.storeTag[ti] = NaN;
  }
  /**
   * SBI remote sfence.vma(_asid): a few pages are flushed one by one; a size of 0, -1 or more than
   * FLUSH_PAGES_MAX pages flushes everything. `asid` -1 means every address space.
   */
  flushTlbRange(start: number, size: number, asid: number): void {
    if (!(size > 0 && size <= FLUSH_PAGES_MAX * 4096)) {
      this.flushTlbAsid(asid);
      return;
    }
    for (let va = start - (start & 0xfff); va < start + size; va += 4096) this.flushTlbPage(va, asid);
  }
  /** Switches to the generation of the current satp value, reusing a live one when that satp was seen before. */
  protected selectGen(): void {
    for (let g = this.lastGen; g >= 0; g--) {
      if (this.genSatpHi[g] === this.satpHi && this.genSatpLo[g] === this.satpLo) {
        this.tlbGen = g;
        this.updateContext();
        return;
      }
    }
    this.useNewGen();
  }
  /** Gives the current satp a fresh generation; when all 256 are used, clears the tables and starts over. */
  protected useNewGen(): void {
    if (++this.lastGen > 255) {
      this.lastGen = 0;
      this.clearTlbTables();
      this.genSatpHi.fill(-1);
    }
    this.tlbGen = this.lastGen;
    this.genSatpLo[this.tlbGen] = this.satpLo;
    this.genSatpHi[this.tlbGen] = this.satpHi;
    this.updateContext();
  }
  /**
   * Empties the WebAssembly JIT's jump cache. Its 32 KiB of tags are only cleared when an entry was made since
   * the last clear: a process exit or exec flushes page after page, and a fill per flush showed in profiles.
   */
  protected clearJumpCache(): void {
    if (!this.jumpCacheFilled) return;
    this.jumpCacheFilled = false;
    this.jumpCacheTags!.fill(NaN);
  }
  /** Host bytes the decoded pages hold (each: the decoded slots plus the halfword snapshot). */
  decodeCacheBytes(): number {
    return this.decodeCache.size * DECODED_PAGE_BYTES;
  }

  /** fence.i semantics: decoded code is re-checked against memory before it runs again. */
  flushDecodeCache(): void {
    this.codeEpoch++;
    this.clearFetchTlb();
  }
  /**
   * The pages go with the tags: a fetch entry left behind would keep a page the decode cache dropped (20 KiB,
   * and the RAM chunk it views, which may have been given back) alive for as long as its slot is not reused.
   */
  protected clearFetchTlb(): void {
    this.fetchTag.fill(NaN);
    this.fetchPage.fill(null);
    this.clearJumpCache();
  }
  protected clearTlbTables(): void {
    this.clearFetchTlb();
    this.loadTag.fill(NaN);
    this.storeTag.fill(NaN);
  }
  /**
   * A chunk's backing changed (allocated on first write, or released): forget the TLB entries and decoded
   * pages that point into it, and only those (Linux touches every chunk early on; a full drop each time
   * would re-decode the kernel over and over).
   */
  protected chunkRemapped(chunkIndex: number): void {
    const per = 2 ** (this.bus.chunkShift - 12);
    const lo = chunkIndex * per;
    const hi = lo + per;
    // Entries are cleared along with their tags: a released chunk's buffer must not stay reachable from here.
    for (let i = 0; i < TLB_SIZE; i++) {
      const lp = this.loadPpn[i]!;
      if (lp >= lo && lp < hi) {
        this.loadTag[i] = NaN;
        this.loadView[i] = this.noView;
        this.loadPpn[i] = -1;
      }
      const sp = this.storePpn[i]!;
      if (sp >= lo && sp < hi) {
        this.storeTag[i] = NaN;
        this.storeView[i] = this.noView;
        this.storePpn[i] = -1;
      }
      const fp = this.fetchPage[i];
      if (fp && fp.ppn >= lo && fp.ppn < hi) {
        this.fetchTag[i] = NaN;
        this.fetchPage[i] = null;
      }
    }
    this.clearJumpCache();
    for (let ppn = lo; ppn < hi && ppn < this.codePages.length; ppn++) {
      if (this.codePages[ppn]) {
        this.codePages[ppn] = 0;
        this.decodeCache.delete(ppn);
      }
    }
  }

  /** Drops every decoded page and TLB entry (reset, or the cache is full). */
  /**
   * Drops every decoded page. `idle`: nothing is running on them (reset, a restore), so up to SPARE_PAGES of their
   * arrays are kept for the next pages decoded: allocating them (20 KiB each) cost ~65 µs a page early in a
   * process's life, 100 ms of the interpreter warm-up's 200 (it resets the scratch hart for each of its ~1500
   * programs). Not while running: the run loop may still read the current page's code after the cache is full.
   */
  protected dropDecodeCache(idle = false): void {
    for (const p of this.decodeCache.values()) {
      if (p.ppn >= 0 && p.ppn < this.codePages.length) this.codePages[p.ppn] = 0;
      if (idle && this.spareArrays.length < SPARE_PAGES) this.spareArrays.push({ code: p.code, snap: p.snap });
    }
    this.decodeCache = new Map();
    this.clearTlbTables();
  }

  // ---- translation context and MMU ----
  protected updateContext(): void {
    const st = this.mstatus;
    const mprv = this.privLevel === PRV_M && (st & MSTATUS_MPRV) !== 0;
    this.dataPriv = mprv ? (st & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT : this.privLevel;
    const sumMxr = ((st & MSTATUS_SUM) !== 0 ? 4 : 0) | ((st & MSTATUS_MXR) !== 0 ? 8 : 0);
    this.dataCtx = this.dataPriv | sumMxr | (this.tlbGen << 4);
    this.fetchCtx = this.privLevel | (this.tlbGen << 4);
  }

  protected writeSatp(lo: number, hi: number): void {
    const mode = hi >>> 28;
    if (mode !== SATP_MODE_BARE && mode !== SATP_MODE_SV39 && mode !== SATP_MODE_SV48) return;
    this.satpLo = lo;
    this.satpHi = hi;
    this.satpMode = mode;
    this.rootPpn = (hi & 0xfff) * TWO32 + (lo >>> 0);
    this.selectGen();
  }

  protected faultCause(acc: number, page: boolean): number {
    if (page)
      return acc === ACC_FETCH ? CAUSE_FETCH_PAGE_FAULT : acc === ACC_LOAD ? CAUSE_LOAD_PAGE_FAULT : CAUSE_STORE_PAGE_FAULT;
    return acc === ACC_FETCH ? CAUSE_FETCH_ACCESS : acc === ACC_LOAD ? CAUSE_LOAD_ACCESS : CAUSE_STORE_ACCESS;
  }

  /** Virtual → physical for one access of `size` bytes; throws TRAP with the right cause and tval. */
  protected translate(va: number, acc: number, priv: number, size: number): number {
    let pa: number;
    if (priv === PRV_M || this.satpMode === SATP_MODE_BARE) {
      if (!(va >= 0 && va < TWO56)) this.raise(this.faultCause(acc, false), va);
      pa = va;
    } else {
      const levels = this.satpMode === SATP_MODE_SV39 ? 3 : 4;
      const half = levels === 3 ? SV39_HALF : SV48_HALF;
      if (!(va >= -half && va < half)) this.raise(this.faultCause(acc, true), va);
      const vpage = Math.floor(va / 4096);
      let table = this.rootPpn * 4096;
      const st = this.mstatus;
      for (let level = levels - 1; ; level--) {
        const idx = Math.floor(vpage / LEVEL_SPAN[level]!) & 0x1ff;
        const pteAddr = table + idx * 8;
        if (!this.pmpAllows(pteAddr, 8, ACC_LOAD, PRV_S)) this.raise(this.faultCause(acc, false), va);
        const view = this.ramView(pteAddr, false);
        if (!view) this.raise(this.faultCause(acc, false), va);
        const o = (pteAddr - this.bus.ramBase) & this.chunkMask;
        // With harts on other threads the PTE is read in one access, as the kernel writes it (WRITE_ONCE).
        const atomics = this.atomics;
        let lo: number;
        let hi: number;
        if (atomics !== null) {
          lo = atomics.load(8, view.byteOffset + o);
          hi = atomics.oldHi;
        } else {
          lo = view.getInt32(o, true);
          hi = view.getInt32(o + 4, true);
        }
        if ((lo & 1) === 0 || (lo & 6) === 4 || (hi & 0xffc00000) !== 0) this.raise(this.faultCause(acc, true), va);
        const ppn = (hi & 0x3fffff) * 4194304 + (lo >>> 10);
        if ((lo & 0xa) === 0) {
          // Pointer to the next level.
          if (level === 0) this.raise(this.faultCause(acc, true), va);
          table = ppn * 4096;
          continue;
        }
        // Leaf: permissions.
        const user = (lo & 0x10) !== 0;
        if (priv === PRV_U ? !user : user && (acc === ACC_FETCH || (st & MSTATUS_SUM) === 0))
          this.raise(this.faultCause(acc, true), va);
        const ok =
          acc === ACC_FETCH
            ? (lo & 8) !== 0
            : acc === ACC_LOAD
              ? (lo & 2) !== 0 || ((st & MSTATUS_MXR) !== 0 && (lo & 8) !== 0)
              : (lo & 4) !== 0;
        if (!ok) this.raise(this.faultCause(acc, true), va);
        const span = LEVEL_SPAN[level]!;
        if (level > 0) {
          if (ppn % span !== 0) this.raise(this.faultCause(acc, true), va);
          const base = Math.floor(vpage / span) * span * 4096;
          if (base < this.superLo) this.superLo = base;
          if (base + span * 4096 > this.superHi) this.superHi = base + span * 4096;
        }
        // Hardware A/D update (as QEMU does).
        const want = 0x40 | (acc === ACC_STORE ? 0x80 : 0);
        if ((lo & want) !== want) {
          const wview = this.ramView(pteAddr, true);
          if (!wview || !this.pmpAllows(pteAddr, 8, ACC_STORE, PRV_S)) this.raise(this.faultCause(acc, false), va);
          if (atomics !== null) {
            // Compare-and-swap, as the privileged spec requires of the A/D update: a plain write could bring back a
            // PTE another hart cleared or changed meanwhile (an unmap). If it changed, walk again from the root.
            if (!atomics.cas(8, wview.byteOffset + o, lo, hi, lo | want, hi)) return this.translate(va, acc, priv, size);
          } else wview.setInt32(o, lo | want, true);
        }
        pa = (ppn + (vpage - Math.floor(vpage / span) * span)) * 4096 + (va & 0xfff);
        break;
      }
    }
    if (this.pmpActive && !this.pmpAllows(pa, size, acc, priv)) this.raise(this.faultCause(acc, false), va);
    return pa;
  }

  protected ramView(pa: number, forWrite: boolean): DataView | null {
    if (pa < this.bus.ramBase || pa >= this.bus.ramBase + this.bus.ramSize) return null;
    return this.bus.ramChunk(pa, forWrite);
  }

  // ---- PMP ----
  protected updatePmp(): void {
    let prevTop = 0;
    this.pmpActive = false;
    for (let i = 0; i < 16; i++) {
      const cfg = this.pmpcfg[i]!;
      const a = (cfg >>> 3) & 3;
      const lo = this.pmpaddrLo[i]!;
      const hi = this.pmpaddrHi[i]!;
      const addr = ((hi & 0x3fffff) * TWO32 + (lo >>> 0)) * 4;
      let start = 0;
      let end = 0;
      if (a === 1) {
        start = prevTop;
        end = addr;
      } else if (a === 2) {
        start = addr;
        end = addr + 4;
      } else if (a === 3) {
        [start, end] = pmpRangeNapot(lo, hi);
      }
      this.pmpLo[i] = start;
      this.pmpHi[i] = end;
      if (a !== 0) this.pmpActive = true;
      prevTop = addr;
    }
    this.flushTlb();
  }

  /** PMP check for [pa, pa+size). Partial matches fail; no active entry allows everything (as QEMU). */
  protected pmpAllows(pa: number, size: number, acc: number, priv: number): boolean {
    if (!this.pmpActive) return true;
    const end = pa + size;
    for (let i = 0; i < 16; i++) {
      const cfg = this.pmpcfg[i]!;
      if ((cfg & 0x18) === 0) continue;
      const lo = this.pmpLo[i]!;
      const hi = this.pmpHi[i]!;
      if (end <= lo || pa >= hi) continue;
      if (pa < lo || end > hi) return false; // partial match
      if (priv === PRV_M && (cfg & 0x80) === 0) return true;
      const bit = acc === ACC_FETCH ? 4 : acc === ACC_LOAD ? 1 : 2;
      return (cfg & bit) !== 0;
    }
    return priv === PRV_M;
  }
}
