/**
 * Where a hart keeps the state its WebAssembly blocks use, inside the guest RAM's WebAssembly.Memory (a region
 * reserved after RAM, one per hart): the integer registers (the hart's `x`, so register i is the little-endian
 * i64 at X + 8i) and the load/store TLB tags and RAM page numbers (the hart's own loadTag/loadPpn/storeTag/
 * storePpn arrays live here, so the interpreter's fills and flushes are the only ones: there is no second copy).
 * With linear RAM, RAM offset r is byte r of the memory, so an entry's page starts at ppn * 4096.
 */
import { TLB_SIZE } from '../../hart/constants.js';

/** Bytes reserved per hart (four WebAssembly pages). */
export const HART_REGION_BYTES = 4 * 65536;

/** Offsets inside a hart's region. */
export const X_OFF = 0;
/** The pc a block leaves at (f64), written by the block or its helpers. */
export const PC_OFF = 512;
/** The running block's page base (f64) and RAM page number (i32), for the helpers. */
export const PB_OFF = 520;
export const PPN_OFF = 528;
/** Non-zero when the last block left through a helper that ended it (MMIO, trap-free control transfer...). */
export const STOP_OFF = 532;
/**
 * What the blocks' own FP paths may assume, kept by the hart before every block call and after every helper
 * (i32): FP_FS_DIRTY when mstatus.FS is Dirty (FP loads and sign moves need nothing more), FP_FS_ON when it is
 * not Off (FP stores need nothing more), FP_ARITH_FAST
 * when frm is round-to-nearest-even and fflags already holds NX (a finite normal result of +, -, *, / or sqrt
 * then raises nothing new). Otherwise the op goes to the hart.
 */
export const FP_FAST_OFF = 536;
export const FP_FS_DIRTY = 1;
export const FP_ARITH_FAST = 2;
/**
 * mstatus.FS is not Off: enough for FP stores, which change no FP state (so they never make FS Dirty; with FS
 * Clean, as Linux leaves it after each context switch, setjmp's twelve fsd took the slow path on every call).
 */
export const FP_FS_ON = 4;
/**
 * The same word also carries frm (at FP_FRM_SHIFT, 3 bits) and fflags (at FP_FFLAGS_SHIFT, 5 bits), so blocks read
 * them (frrm, frflags, frcsr) without a call: glibc's strtod and printf ask for the rounding mode per number, and
 * `seq | sort -rn` did ~480 000 of those calls per run.
 */
export const FP_FRM_SHIFT = 8;
export const FP_FFLAGS_SHIFT = 16;
/** Non-zero when the hart's bus has cross-thread atomics (i32): SC then compares-and-swaps against LR's value. */
export const ATOMICS_OFF = 540;
/**
 * The LR reservation, shared by the interpreter and the blocks' own LR/SC: valid (i32), the reserved address as
 * an offset into RAM (f64: physical address minus RAM base), and the value LR read (i64).
 */
export const RES_VALID_OFF = 544;
export const RES_ADDR_OFF = 552;
export const RES_VALUE_OFF = 560;
export const LOAD_TAG_OFF = 1024;
export const STORE_TAG_OFF = LOAD_TAG_OFF + TLB_SIZE * 8;
export const LOAD_PPN_OFF = STORE_TAG_OFF + TLB_SIZE * 8;
export const STORE_PPN_OFF = LOAD_PPN_OFF + TLB_SIZE * 4;
/** The fetch TLB's tags, and the RAM page number of the decoded page behind each entry. */
export const FETCH_TAG_OFF = STORE_PPN_OFF + TLB_SIZE * 4;
export const FETCH_PPN_OFF = FETCH_TAG_OFF + TLB_SIZE * 8;
/**
 * The jump cache: pc → the block starting there, so the dispatcher runs block after block without returning to
 * JS. Entries are filled by the hart's block wrapper. The dispatcher takes an entry only while the fetch TLB maps
 * its pc, in the current fetch context, to the page the entry was made on, so an sfence.vma, which only drops
 * fetch TLB entries, leaves the cache alone (Linux issues one after every page fault). The tag is the pc alone:
 * that check already ties an entry to the context, and a block, translated from a RAM page, is the same code in
 * every address space that maps the page there. With the context in the tag, processes running the same code at
 * the same addresses (the kernel's, a shared binary's) evicted each other's entries at every context switch:
 * three quarters of the dispatcher's returns to JS in 4 sha256sum pipelines on one hart were for blocks the
 * cache had just held. What changes decoded code (fence.i, a store to a code page) and remapped RAM clear it.
 * 8192 entries: with 4096, hot blocks of ash's loop still evicted each other, and the dispatcher went back to JS
 * ~530 000 times a second for a block that was translated (counted with a temporary counter; ~190 000 with 8192,
 * ~90 000 with 16 384).
 */
export const JC_SIZE = 8192;
/**
 * The jump cache slot of `pc`: its halfword index mixed with bits above 2 KiB, so hot blocks a multiple of the
 * cache's span apart do not evict each other (with 512 slots indexed by pc / 2, a shell's hot loop had blocks
 * that did, and left the dispatcher every 30 instructions). The dispatcher computes the same in WebAssembly.
 */
export const jumpCacheSlot = (pc: number): number => ((pc >>> 1) ^ (pc >>> 11)) & (JC_SIZE - 1);
export const JC_TAG_OFF = FETCH_PPN_OFF + TLB_SIZE * 4;
export const JC_INDEX_OFF = JC_TAG_OFF + JC_SIZE * 8;
export const JC_PPN_OFF = JC_INDEX_OFF + JC_SIZE * 4;
/** The FP registers (the hart's FpState: register r is the f64 at FP_OFF + 8r). */
export const FP_OFF = JC_PPN_OFF + JC_SIZE * 4;
if (FP_OFF + 32 * 8 > HART_REGION_BYTES) throw new Error('wasm jit: hart region too small');

/** The WebAssembly.Memory behind linear guest RAM and the hart state region reserved in it. */
export interface WasmStateRegion {
  /** The WebAssembly.Memory object (imported by every block module). */
  readonly memory: object;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Byte offset of this hart's region (HART_REGION_BYTES long, 8-aligned). */
  readonly base: number;
}
