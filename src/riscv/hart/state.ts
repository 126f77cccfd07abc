import type { Bus } from '../bus.js';
import type { GuestAtomics } from '../atomics.js';
import { FpState } from '../fpu/state.js';
import * as C from '../csr.js';
import { BlockJit, jitFromEnv, type BlockTranslator, type JitOptions, type JitStats } from '../jit/index.js';
import { WasmBlockJit } from '../jit/wasm/index.js';
import * as L from '../jit/wasm/layout.js';
import type { Hart, DecodedPage } from '../hart.js';

/** A decoded page's arrays, kept for reuse (see HartMmu.dropDecodeCache). */
export interface SpareArrays {
  readonly code: Int32Array;
  readonly snap: Uint16Array;
}
import * as K from './constants.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const { CAUSE_ILLEGAL_INSTRUCTION, PRV_M } = C;
const { TLB_SIZE, TWO32, TRAP } = K;

export interface HartOptions {
  hartId: number;
  /** mtime in ticks (10 MHz); read by the time CSR and for Sstc. */
  readTime: () => number;
  /** Block translation (default: from TYPEVISOR_JIT, off when unset); false runs the interpreter alone. */
  jit?: JitOptions | false;
}

/** The hart's state: registers, CSR fields, TLB tables and run-loop flags, with the register accessors. */
export abstract class HartState {
  readonly hartId: number;
  /**
   * Integer registers as int32 halves (see the header); 66 entries, the last two are the x0 write sink. With the
   * WebAssembly JIT they (and the load/store TLB tags and page numbers) live in its state region (jit/wasm/layout.ts).
   */
  readonly x: Int32Array;
  readonly fp: FpState;
  protected pcValue = 0;
  protected privLevel = PRV_M;
  /** True after WFI until an enabled interrupt becomes pending (mip & mie != 0). */
  waiting = false;
  /** Instructions retired since construction. */
  instret = 0;
  /** Called on ECALL from S-mode before trapping; returning true retires the ecall (pc += 4). */
  ecallHandler?: (hart: Hart) => boolean;
  /** Debug hook: called for every trap taken (interrupt = cause has bit 63 set). */
  onTrap?: (hart: Hart, cause: number, interrupt: boolean, tval: number, epc: number) => void;

  // ---- CSR state. 64-bit data CSRs are kept as int32 halves. ----
  mstatus = 0; // low word; the high word is constant UXL/SXL plus SD (derived from FS)
  medeleg = 0;
  mideleg = 0;
  mie = 0;
  /** Software-writable mip bits (SSIP, STIP when Sstc is off, SEIP). */
  mipSw = 0;
  /** Hardware-driven mip bits (MSIP, MTIP, MEIP, SEIP from the PLIC, STIP from Sstc). */
  mipHw = 0;
  mcounteren = 0;
  scounteren = 0;
  menvcfgLo = 0;
  menvcfgHi = 0;
  senvcfg = 0;
  mcountinhibit = 0;
  protected readonly csr64 = new Int32Array(2 * 16);
  satpLo = 0;
  satpHi = 0;
  protected stimecmpLo = -1;
  protected stimecmpHi = -1;
  protected cycleOffset = 0;
  protected instretOffset = 0;
  readonly pmpcfg = new Uint8Array(16);
  readonly pmpaddrLo = new Int32Array(16);
  readonly pmpaddrHi = new Int32Array(16);
  protected readonly pmpLo = new Float64Array(16);
  protected readonly pmpHi = new Float64Array(16);
  protected pmpActive = false;

  // ---- translation state ----
  protected satpMode = 0;
  protected rootPpn = 0;
  protected fetchCtx = 0;
  protected dataCtx = 0;
  protected dataPriv = PRV_M;
  protected readonly fetchTag: Float64Array;
  /** RAM page number of each fetch entry's decoded page (the WebAssembly dispatcher checks jump cache entries by it). */
  protected readonly fetchPpn: Int32Array;
  protected readonly fetchPage: (DecodedPage | null)[] = new Array<DecodedPage | null>(TLB_SIZE).fill(null);
  protected readonly loadTag: Float64Array;
  protected readonly loadView: DataView[];
  /** What an empty load/store entry views (never read: its tag never matches). */
  protected readonly noView = new DataView(new ArrayBuffer(8));
  protected readonly loadOff = new Int32Array(TLB_SIZE);
  protected readonly storeTag: Float64Array;
  protected readonly storeView: DataView[];
  protected readonly storeOff = new Int32Array(TLB_SIZE);
  /** RAM page number (from ramBase) behind each load/store entry, so a remapped chunk drops only its own. */
  protected readonly loadPpn: Int32Array;
  protected readonly storePpn: Int32Array;
  protected decodeCache = new Map<number, DecodedPage>();
  /** Arrays of decoded pages dropped by reset or a restore, reused by the next pages decoded (at most SPARE_PAGES). */
  protected readonly spareArrays: SpareArrays[] = [];
  /** One byte per RAM page: 1 when the page has a decoded-code entry (stores to it go the slow way). */
  protected readonly codePages: Uint8Array;
  /** Bumped by fence.i: decoded pages from an older epoch are re-validated against memory before use. */
  protected codeEpoch = 0;
  /**
   * TLB generation of the current address space, folded into every tag. Each satp value in use gets its own
   * generation, so switching back to an address space finds its entries again (ASID-tagged, as the spec
   * allows: a satp write flushes nothing); fences retire generations instead of clearing the tables.
   */
  protected tlbGen = 0;
  /** Highest generation handed out since the tables were last cleared (8 bits fit in the tag's context). */
  protected lastGen = 0;
  /** The satp value each live generation belongs to; satp hi -1 (mode 15, never accepted) marks a retired one. */
  protected readonly genSatpLo = new Int32Array(256);
  protected readonly genSatpHi = new Int32Array(256).fill(-1);
  /**
   * Virtual range covered by superpage translations since the last full flush. TLB entries hold 4 KiB slices,
   * so a one-page sfence.vma inside this range flushes everything (as QEMU's large-page range does).
   */
  protected superLo = Infinity;
  protected superHi = -Infinity;
  protected readonly chunkMask: number;

  // ---- run-loop state ----
  protected irqPending = false;
  protected exitRequested = false;
  protected trapCause = 0;
  protected trapTval = 0;
  /**
   * The LR reservation: `res[RES_VALID]` non-zero while valid, `res[RES_LO]`/`res[RES_HI]` the value LR read (which
   * SC compares-and-swaps against when the bus has atomics, as QEMU's TCG does), and `resAddr[0]` the reserved
   * physical address minus the RAM base. In the WebAssembly JIT's state region when there is one (its blocks do
   * LR/SC too, jit/wasm/layout.ts), else in a buffer of the hart's own.
   */
  protected readonly res: Int32Array;
  protected readonly resAddr: Float64Array;
  /** The bus's cross-thread atomics, or null on one thread (plain reads and writes then). */
  protected readonly atomics: GuestAtomics | null;
  /** Result pair for slow loads and CSR reads. */
  protected valLo = 0;
  protected valHi = 0;
  /** Set by MMIO accesses so the run loop re-checks exit requests and interrupts right after them. */
  protected mmioTouched = false;
  /** Instructions retired in the current run() before the instruction in execSlow. */
  protected retiredInRun = 0;
  /** The WebAssembly JIT's jump cache tags (jit/wasm/layout.ts), cleared with the fetch TLB; null without it. */
  protected readonly jumpCacheTags: Float64Array | null;
  /** An entry went into the jump cache since it was last cleared (see clearJumpCache). */
  protected jumpCacheFilled = false;
  /** Block translator, or null when the interpreter runs alone. */
  protected readonly jit: BlockTranslator | null;
  /** Set by translated code before anything that can trap: the pc and the run()-relative count retired before it. */
  protected jitPc = 0;
  protected jitN = 0;
  constructor(
    readonly bus: Bus,
    protected readonly opts: HartOptions,
  ) {
    this.hartId = opts.hartId;
    this.atomics = bus.atomics ?? null;
    this.loadView = new Array<DataView>(TLB_SIZE).fill(this.noView);
    this.storeView = new Array<DataView>(TLB_SIZE).fill(this.noView);
    this.codePages = new Uint8Array(Math.ceil(bus.ramSize / 4096));
    this.chunkMask = 2 ** bus.chunkShift - 1;
    const jitOptions = opts.jit === undefined ? jitFromEnv() : opts.jit || null;
    // The WebAssembly JIT needs its state region in the RAM's memory; without one the interpreter runs alone.
    const area = jitOptions?.backend === 'wasm' ? bus.wasmState : undefined;
    const base = area?.reserve(L.HART_REGION_BYTES) ?? null;
    const buf = area !== undefined && base !== null ? area.buffer : null;
    this.x = buf ? new Int32Array(buf, base! + L.X_OFF, 66) : new Int32Array(66);
    this.loadTag = (buf ? new Float64Array(buf, base! + L.LOAD_TAG_OFF, TLB_SIZE) : new Float64Array(TLB_SIZE)).fill(NaN);
    this.storeTag = (buf ? new Float64Array(buf, base! + L.STORE_TAG_OFF, TLB_SIZE) : new Float64Array(TLB_SIZE)).fill(NaN);
    this.loadPpn = (buf ? new Int32Array(buf, base! + L.LOAD_PPN_OFF, TLB_SIZE) : new Int32Array(TLB_SIZE)).fill(-1);
    this.storePpn = (buf ? new Int32Array(buf, base! + L.STORE_PPN_OFF, TLB_SIZE) : new Int32Array(TLB_SIZE)).fill(-1);
    this.fetchTag = (buf ? new Float64Array(buf, base! + L.FETCH_TAG_OFF, TLB_SIZE) : new Float64Array(TLB_SIZE)).fill(NaN);
    this.fetchPpn = (buf ? new Int32Array(buf, base! + L.FETCH_PPN_OFF, TLB_SIZE) : new Int32Array(TLB_SIZE)).fill(-1);
    if (buf) this.x.fill(0);
    this.fp = buf ? new FpState(buf, base! + L.FP_OFF) : new FpState();
    this.fp.i32.fill(0);
    this.jumpCacheTags = buf ? new Float64Array(buf, base! + L.JC_TAG_OFF, L.JC_SIZE).fill(NaN) : null;
    const resBuf = buf ?? new ArrayBuffer(L.RES_VALUE_OFF + 8);
    const resAt = buf ? base! : 0;
    this.res = new Int32Array(resBuf, resAt + L.RES_VALID_OFF, (L.RES_VALUE_OFF + 8 - L.RES_VALID_OFF) / 4).fill(0);
    this.resAddr = new Float64Array(resBuf, resAt + L.RES_ADDR_OFF, 1);
    if (jitOptions?.backend === 'wasm') {
      this.jit = buf
        ? new WasmBlockJit({ memory: area!.memory, buffer: buf, base: base! }, jitOptions, area!.joinCodeShare?.() ?? null)
        : null;
    } else {
      this.jit = jitOptions
        ? new BlockJit(
            {
              loadTag: this.loadTag,
              loadView: this.loadView,
              loadOff: this.loadOff,
              storeTag: this.storeTag,
              storeView: this.storeView,
              storeOff: this.storeOff,
              codePages: this.codePages,
            },
            jitOptions,
          )
        : null;
    }
  }

  get pc(): number {
    return this.pcValue;
  }
  set pc(v: number) {
    this.pcValue = v;
  }

  // ---- register helpers ----
  getX(i: number): number {
    return this.x[2 * i + 1]! * TWO32 + (this.x[2 * i]! >>> 0);
  }
  getXLo(i: number): number {
    return this.x[2 * i]!;
  }
  getXHi(i: number): number {
    return this.x[2 * i + 1]!;
  }
  /** The register as 16 hex digits (two's complement), exact for every value. */
  getXHex(i: number): string {
    return (this.x[2 * i + 1]! >>> 0).toString(16).padStart(8, '0') + (this.x[2 * i]! >>> 0).toString(16).padStart(8, '0');
  }
  /** Sets register i from a safe integer (negative values are two's complement). */
  setX(i: number, value: number): void {
    if (i === 0) return;
    this.x[2 * i] = value | 0;
    this.x[2 * i + 1] = Math.floor(value / TWO32) | 0;
  }
  setXHalves(i: number, lo: number, hi: number): void {
    if (i === 0) return;
    this.x[2 * i] = lo;
    this.x[2 * i + 1] = hi;
  }

  /** Blocks translated so far and the instructions in them, or null when the JIT is off. */
  get jitStats(): JitStats | null {
    return this.jit ? { ...this.jit.stats } : null;
  }

  /** Distinct block translations this hart holds now (0 when the JIT is off). */
  get jitTranslationsHeld(): number {
    return this.jit?.heldTranslations ?? 0;
  }

  /** Makes run() return at the next block boundary. */
  requestExit(): void {
    this.exitRequested = true;
  }

  /** Instructions retired so far, including the current run() slice (for the counter CSRs). */
  protected retiredNow(): number {
    return this.instret + this.retiredInRun;
  }

  // ---- traps ----
  protected raise(cause: number, tval: number): never {
    this.trapCause = cause;
    this.trapTval = tval;
    throw TRAP;
  }

  protected illegal(insnBits: number): never {
    this.raise(CAUSE_ILLEGAL_INSTRUCTION, insnBits >>> 0);
  }

  // ---- 64-bit CSR storage ----
  protected get64(slot: number): number {
    return this.csr64[slot * 2 + 1]! * TWO32 + (this.csr64[slot * 2]! >>> 0);
  }
  protected set64(slot: number, lo: number, hi: number): void {
    this.csr64[slot * 2] = lo;
    this.csr64[slot * 2 + 1] = hi;
  }
  protected setNum(slot: number, v: number): void {
    this.csr64[slot * 2] = v | 0;
    this.csr64[slot * 2 + 1] = Math.floor(v / TWO32) | 0;
  }
}
