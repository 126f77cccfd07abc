/**
 * Numbers the hart's layers share: the decoded-page and TLB geometry, access kinds, the csr64 slots of the
 * 64-bit CSRs, and the trap token. The hart's files copy them into module constants (see hart.ts).
 */

/** rd = x0 is decoded as this offset into x, a write sink that the run loop clears. */
export const SINK = 64;

export const PAGE_SLOTS = 2048;
export const TLB_BITS = 11;
export const TLB_SIZE = 1 << TLB_BITS;
export const TLB_MASK = TLB_SIZE - 1;
/** Larger remote sfence.vma ranges flush the whole TLB rather than page by page. */
export const FLUSH_PAGES_MAX = 64;
/** Flushes everything once the decode cache holds this many pages (16 KiB each). */
export const DECODE_CACHE_LIMIT = 2048;
/** Dropped decoded pages whose arrays a hart keeps for reuse (HartMmu.dropDecodeCache). */
export const SPARE_PAGES = 64;
/** DecodedPage's typed arrays: code ((PAGE_SLOTS + 2) × 2 int32) and snap (PAGE_SLOTS uint16). */
export const DECODED_PAGE_BYTES = (PAGE_SLOTS + 2) * 2 * 4 + PAGE_SLOTS * 2;

export const ACC_FETCH = 0;
export const ACC_LOAD = 1;
export const ACC_STORE = 2;

export const TWO32 = 4294967296;
export const TWO56 = 2 ** 56;

/** Thrown (never allocated per trap) to unwind from a faulting instruction to the run loop. */
export const TRAP = { trap: true };

// Slots in csr64 for CSRs holding full 64-bit data.
export const S_MSCRATCH = 0;
export const S_MEPC = 1;
export const S_MCAUSE = 2;
export const S_MTVAL = 3;
export const S_MTVEC = 4;
export const S_SSCRATCH = 5;
export const S_SEPC = 6;
export const S_SCAUSE = 7;
export const S_STVAL = 8;
export const S_STVEC = 9;

/** Indices into the hart's `res` words (the LR reservation, laid out as at RES_VALID_OFF in jit/wasm/layout.ts). */
export const RES_VALID = 0;
export const RES_LO = 4;
export const RES_HI = 5;
