/**
 * The Node/V8 flags a VM process (process mode) is started with, after its old-space limit.
 *
 * Measured by bench/vm-mode/process-memory.ts (docs/performance.md, "VM modes"): an idle VM process's private
 * memory is its guest RAM plus the emulator's heap and code, and only ~6 MiB of it is the Node runtime itself
 * (the node binary's ~34 MiB of text is shared by every VM process and the daemon, so it counts in RSS, not
 * PSS). --v8-pool-size=1, --single-threaded-gc and MALLOC_ARENA_MAX=2 each moved it by less than the run-to-run
 * noise (~±1.5 MiB), so none of them is set. JIT-less or lite modes are out: the emulator lives on optimised code.
 */

/** Replaces the tuned flags (space-separated), to measure alternatives; the old-space limit stays. */
export const VM_PROCESS_FLAGS_ENV = 'TYPEVISOR_VM_PROCESS_FLAGS';

export const VM_PROCESS_V8_FLAGS: readonly string[] = [
  // The same small young generation as a VM worker (VM_WORKER_LIMITS): an idle VM's scavenge space stays small.
  '--max-semi-space-size=1',
];

/** The node arguments before the entry module. */
export function vmProcessNodeFlags(maxOldSpaceMb: number, env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[VM_PROCESS_FLAGS_ENV];
  const tuned = override !== undefined ? override.split(/\s+/).filter((f) => f.startsWith('--')) : VM_PROCESS_V8_FLAGS;
  return [`--max-old-space-size=${maxOldSpaceMb}`, ...tuned];
}
