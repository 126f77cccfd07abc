/**
 * Guest RAM as one WebAssembly.Memory (see LinearRamBacking in src/machine/memory.ts): the layout a WebAssembly
 * JIT and harts on several threads need, with the two properties the 2 MiB chunks have. Untouched pages cost the
 * host nothing (anonymous memory), and a released range goes back to the host at once: madvise(MADV_DONTNEED)
 * through koffi, after which it reads as zeros (bench/cpu/wasm-memory-probe.ts measures both).
 *
 * Where that cannot be had (not Linux, koffi cannot load libc, RAM above the 4 GiB a memory can hold, or the
 * self-check below fails) it returns null and the machine keeps its chunks.
 */
import { libcFunction } from '../host/libc.js';
import type { LinearRamBacking } from '../machine/memory.js';

const MADV_DONTNEED = 4;
const WASM_PAGE = 65536;
const MAX_PAGES = 65536;

type Madvise = (addr: Uint8Array, length: number, advice: number) => number;

const Wasm = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
  }
).WebAssembly;

function loadMadvise(): Madvise | null {
  return process.platform === 'linux' ? libcFunction<Madvise>('int madvise(void *addr, size_t len, int advice)') : null;
}

/**
 * Whether new VMs' RAM is linear: opt-in (TYPEVISOR_RAM=linear) for now. Building a board on a 256 MiB memory
 * costs ~10 ms more than on chunks inside a VM worker (bench/snapshot's `buildMachine.board`: 0.7 → 7-17 ms), which
 * a restore pays on its critical path; the cause is not found yet, and nothing uses the linear layout yet.
 */
export function linearRamWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TYPEVISOR_RAM === 'linear';
}

/**
 * Bytes reserved past RAM for the WebAssembly JIT's hart state (src/riscv/jit/wasm/layout.ts, one 64 KiB page
 * per hart): only when TYPEVISOR_JIT asks for that JIT. Untouched reserved pages cost nothing.
 */
export function wasmJitReserveBytes(env: NodeJS.ProcessEnv = process.env): number {
  return env.TYPEVISOR_JIT?.startsWith('wasm') ? 16 * WASM_PAGE : 0;
}

/**
 * One WebAssembly.Memory of at least `sizeBytes` (plus `reserveBytes` past RAM, see wasmJitReserveBytes) whose
 * released ranges go back to the host; or null.
 */
export function createLinearRam(sizeBytes: number, reserveBytes = wasmJitReserveBytes()): LinearRamBacking | null {
  const pages = Math.ceil(sizeBytes / WASM_PAGE) + Math.ceil(reserveBytes / WASM_PAGE);
  if (pages > MAX_PAGES) return null;
  const advise = loadMadvise();
  if (!advise) return null;
  let memory: { buffer: ArrayBuffer };
  try {
    memory = new Wasm.Memory({ initial: pages, maximum: pages });
  } catch {
    return null; // no address space for it: chunks allocate as the guest goes
  }
  const buffer = memory.buffer;
  const release = (offset: number, length: number): boolean => {
    // madvise works on whole pages: the chunks are 2 MiB aligned, and anything else is zeroed by the caller.
    if (offset % 4096 !== 0 || length % 4096 !== 0) return false;
    return advise(new Uint8Array(buffer, offset, length), length, MADV_DONTNEED) === 0;
  };
  // The released range must read as zeros (private anonymous memory): check once on the first page.
  const first = new Uint8Array(buffer, 0, 4096);
  first[0] = 0xa5;
  if (!release(0, 4096) || first[0] !== 0) {
    first[0] = 0;
    return null;
  }
  return { buffer, release, ...(reserveBytes > 0 ? { memory } : {}) };
}
