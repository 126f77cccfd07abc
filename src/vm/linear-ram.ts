/**
 * Guest RAM as one WebAssembly.Memory (see LinearRamBacking in src/machine/memory.ts): the layout a WebAssembly
 * JIT and harts on several threads need, with the two properties the 2 MiB chunks have. Untouched pages cost the
 * host nothing (anonymous memory), and a released range goes back to the host at once: madvise(MADV_DONTNEED)
 * through koffi, after which it reads as zeros (bench/cpu/wasm-memory-probe.ts measures both).
 *
 * The memory is a shared one (its buffer a SharedArrayBuffer; a WebAssembly module imports it as `shared`). V8
 * counts a non-shared memory's whole size as the isolate's external memory when it is made, and above half the
 * old generation's limit (128 MiB in a VM worker, VM_WORKER_LIMITS) that forces a full, memory-reducing collection
 * on the spot: 4-17 ms on a restore's critical path for a 256 MiB guest (bench/memory/linear-board-probe.ts, under
 * --trace-gc: "Mark-Compact (reduce) ... external memory pressure"). A shared memory is not counted per isolate,
 * and is made in ~0.02 ms. Since no collection is pushed by its size, a board that is done with gives its pages
 * back itself (GuestRam.dispose).
 *
 * Where that cannot be had (not Linux, koffi cannot load libc, RAM above the 4 GiB a memory can hold, or the
 * self-check below fails) it returns null and the machine keeps its chunks.
 */
import { libcFunction } from '../host/libc.js';
import type { LinearRamBacking } from '../machine/memory.js';
import { parseJitSetting } from '../riscv/jit/index.js';
import { HART_REGION_BYTES } from '../riscv/jit/wasm/layout.js';

const MADV_DONTNEED = 4;
const WASM_PAGE = 65536;
const MAX_PAGES = 65536;

interface Madvise {
  (addr: Uint8Array, length: number, advice: number): number;
  /** koffi's call on libuv's thread pool: the callback gets madvise's result. */
  async(addr: Uint8Array, length: number, advice: number, done: (err: unknown, result: number) => void): void;
}

const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer };
    };
  }
).WebAssembly;

function loadMadvise(): Madvise | null {
  return process.platform === 'linux' ? libcFunction<Madvise>('int madvise(void *addr, size_t len, int advice)') : null;
}

/**
 * Whether new VMs' RAM is linear: yes unless TYPEVISOR_RAM=chunks (createLinearRam still falls back to chunks
 * where a linear memory cannot be had). It costs a restore, a board and a boot no more than chunks do since the
 * memory is a shared one (see above; docs/performance.md, "JIT": linear RAM), and it is the layout a WebAssembly
 * JIT needs.
 */
export function linearRamWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TYPEVISOR_RAM !== 'chunks';
}

/**
 * Bytes reserved past RAM for the WebAssembly JIT's hart state (src/riscv/jit/wasm/layout.ts, HART_REGION_BYTES,
 * 256 KiB per hart, 32 regions: a board's harts take one each, and their threads when harts run on threads one
 * more; harts past that run the interpreter): whenever TYPEVISOR_JIT selects that JIT, which is the default.
 * Untouched reserved pages cost nothing.
 */
export function wasmJitReserveBytes(env: NodeJS.ProcessEnv = process.env): number {
  return parseJitSetting(env.TYPEVISOR_JIT)?.backend === 'wasm' ? 32 * HART_REGION_BYTES : 0;
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
  let memory: { buffer: SharedArrayBuffer };
  try {
    memory = new Wasm.Memory({ initial: pages, maximum: pages, shared: true });
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
  const releaseOffThread = (offset: number, length: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (offset % 4096 !== 0 || length % 4096 !== 0) return resolve(false);
      const range = new Uint8Array(buffer, offset, length);
      advise.async(range, length, MADV_DONTNEED, (err, result) => resolve(!err && result === 0));
    });
  return { buffer, release, releaseOffThread, sharedMemory: memory, ...(reserveBytes > 0 ? { memory } : {}) };
}
