/**
 * The daemon's hold on glibc's allocator, so memory the VMs give up leaves the process:
 *
 * - Guest RAM chunks are 2 MiB ArrayBuffers. glibc serves the first through mmap, but freeing one raises its
 *   dynamic mmap threshold past 2 MiB, so later chunks come from malloc arenas, whose freed memory stays in the
 *   process: a chunk the balloon gave back would never leave the daemon's RSS. Fixing the threshold (mallopt
 *   M_MMAP_THRESHOLD, which also turns the dynamic adjustment off) keeps every chunk an mmap that munmap returns.
 *   Measured: 300 MiB freed in a guest took the daemon's RSS from 423 to 131 MiB; without it, it stayed at 447.
 * - Smaller blocks (a VM's decoded pages, 16 and 4 KiB each, V8's compiler zones) come from the malloc arena of
 *   the thread that made them. Freed in the middle of an arena, they stay resident: glibc only gives back the
 *   arena's top on its own. malloc_trim(0) gives back every whole free page of every arena (MADV_DONTNEED), so
 *   the daemon calls it now and then. Measured: 4 idle VMs after their idle trim, 26.5 MiB (6.6 MiB per VM) in
 *   2.8 ms.
 */
import { libcFunction } from '../libc.js';

const M_MMAP_THRESHOLD = -3;
/** glibc's default threshold: every chunk (and anything else that large) is its own mapping. */
const THRESHOLD_BYTES = 128 * 1024;
/** How often startMallocTrim trims: a VM's idle trim runs on 10 s windows, so its garbage waits at most this. */
export const MALLOC_TRIM_PERIOD_MS = 10_000;

interface Libc {
  mallopt(param: number, value: number): number;
  mallocTrim(pad: number): number;
}

let libc: Libc | null | undefined;

/** glibc's functions through koffi; null where they cannot be loaded (not glibc, no koffi). */
function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  const mallopt = libcFunction<(param: number, value: number) => number>('int mallopt(int param, int value)');
  const trim = libcFunction<(pad: number) => number>('int malloc_trim(size_t pad)');
  libc = mallopt && trim ? { mallopt: (p, v) => mallopt(p, v), mallocTrim: (pad) => trim(pad) } : null;
  return libc;
}

/** True when the threshold was set (glibc through koffi); false elsewhere (the reason is not fatal). */
export function fixMmapThreshold(): boolean {
  const c = loadLibc();
  return c !== null && c.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) === 1;
}

/** Gives every arena's free pages back now; false where malloc_trim is not available. */
export function trimMalloc(): boolean {
  const c = loadLibc();
  if (!c) return false;
  c.mallocTrim(0);
  return true;
}

/** Trims every `periodMs` (the timer does not keep the process alive); returns its stop, or null where unavailable. */
export function startMallocTrim(periodMs = MALLOC_TRIM_PERIOD_MS): (() => void) | null {
  if (!loadLibc()) return null;
  const timer = setInterval(trimMalloc, periodMs);
  timer.unref();
  return () => clearInterval(timer);
}
