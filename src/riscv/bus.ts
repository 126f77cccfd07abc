/**
 * The hart's view of the physical address space. The machine implements it; the CPU never imports the
 * machine (data flows machine → riscv), so this interface is the whole contract between them.
 *
 * RAM is reached through chunk DataViews so the TLB can cache a direct reference and the fast path is one
 * tag compare plus a DataView access. Everything that is not RAM is MMIO and goes through mmioRead/mmioWrite.
 */
import type { GuestAtomics } from './atomics.js';
import type { CodeShare } from './jit/wasm/share.js';

export interface Bus {
  /** First physical address of RAM. */
  readonly ramBase: number;
  /** Bytes of RAM. */
  readonly ramSize: number;
  /** log2 of the chunk size; the offset of `paddr` inside its chunk is `(paddr - ramBase) & ((1 << chunkShift) - 1)`. */
  readonly chunkShift: number;

  /**
   * The chunk backing RAM address `paddr`, or null when `paddr` is not RAM.
   * With `forWrite`, the chunk is allocated if it was untouched. Without it, an untouched chunk is returned as a
   * shared all-zero view that must never be written through (never install it in a store TLB).
   */
  ramChunk(paddr: number, forWrite: boolean): DataView | null;

  /** An MMIO load of 1, 2 or 4 bytes (8-byte accesses are split into two 4-byte ones, low half first). Undefined = access fault. */
  mmioRead(paddr: number, size: 1 | 2 | 4): number | undefined;
  /** An MMIO store of 1, 2 or 4 bytes. False = access fault. */
  mmioWrite(paddr: number, size: 1 | 2 | 4, value: number): boolean;

  /**
   * Registers a callback run whenever a chunk's backing changes (allocated on first write, or released back to
   * the host). Harts use it to flush TLB entries that point at the old backing.
   */
  onRamRemap(listener: (chunkIndex: number) => void): void;

  /**
   * Present when RAM is one WebAssembly.Memory with room reserved after it (linear RAM): RAM offset r is byte r
   * of `buffer`, and `reserve` hands out a zeroed, 8-aligned region past RAM (null when none is left). The
   * WebAssembly block JIT keeps a hart's registers and TLB there.
   */
  readonly wasmState?: WasmStateArea;

  /**
   * Present when other threads run harts on the same RAM: AMOs and LR/SC on RAM then go through these hardware
   * atomics (src/riscv/atomics.ts), which work on byte `paddr - ramBase` of their shared memory (RAM must be
   * that memory, linear from offset 0). Absent or null: they are plain reads and writes, as on one thread.
   */
  readonly atomics?: GuestAtomics | null;
}

export interface WasmStateArea {
  /** The WebAssembly.Memory. */
  readonly memory: object;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  reserve(bytes: number): number | null;
  /**
   * A hart's end of the channel over which the harts of this RAM share the blocks they compile
   * (src/riscv/jit/wasm/share.ts); absent: each hart compiles its own.
   */
  joinCodeShare?(): CodeShare;
}
