/**
 * Guest RAM for a WebAssembly JIT or for harts on several threads needs one linear memory (a WebAssembly.Memory,
 * shared between threads for parallel harts) instead of today's separate 2 MiB ArrayBuffer chunks, which are given
 * back to the host by dropping them (src/machine/memory.ts). This probe checks that such a memory keeps both of
 * the properties the chunks have: untouched pages cost nothing (the kernel's zero page), and released pages
 * really go back to the host: madvise(MADV_DONTNEED) through koffi (already a dependency) on a range of the
 * memory's buffer, after which the range reads as zeros. It prints RSS at each step, private and shared memory.
 *
 *   npx tsx bench/cpu/wasm-memory-probe.ts [MiB to touch, default 512]
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const koffi = require('koffi') as { load(lib: string): { func(sig: string): (...args: unknown[]) => number } };
const madvise = koffi.load('libc.so.6').func('int madvise(void *addr, size_t len, int advice)');
const MADV_DONTNEED = 4;
const MIB = 2 ** 20;
const TOUCH_MIB = Number(process.argv[2] ?? 512);

const Wasm = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared?: boolean }) => { buffer: ArrayBuffer } };
  }
).WebAssembly;

const rssMiB = () => Math.round(process.memoryUsage().rss / MIB);

for (const shared of [false, true]) {
  const pages = (TOUCH_MIB * 2 * MIB) / 65536;
  const mem = new Wasm.Memory({ initial: pages, maximum: pages, shared });
  const bytes = new Uint8Array(mem.buffer);
  const start = rssMiB();
  for (let i = 0; i < bytes.length; i += 4096) if (bytes[i] !== 0) throw new Error('fresh memory is not zero');
  const afterRead = rssMiB();
  for (let i = 0; i < TOUCH_MIB * MIB; i += 4096) bytes[i] = 1;
  const touched = rssMiB();
  const half = (TOUCH_MIB / 2) * MIB;
  const t0 = performance.now();
  const rc = madvise(new Uint8Array(mem.buffer, half, half), half, MADV_DONTNEED);
  const ms = performance.now() - t0;
  const released = rssMiB();
  const zero = bytes[half] === 0 && bytes[TOUCH_MIB * MIB - 4096] === 0 && bytes[0] === 1;
  console.log(
    `${shared ? 'shared' : 'private'} WebAssembly.Memory of ${TOUCH_MIB * 2} MiB: RSS ${start} MiB at start, ${afterRead} after reading ` +
      `all of it, ${touched} after writing ${TOUCH_MIB} MiB; madvise(DONTNEED) of ${TOUCH_MIB / 2} MiB -> ${rc} in ` +
      `${ms.toFixed(1)} ms, RSS ${released} MiB; released range reads zero: ${zero}`,
  );
}
