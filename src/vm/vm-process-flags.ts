/**
 * The Node/V8 flags and environment a VM process (process mode) is started with. Each VM process is a whole
 * Node runtime, so what it costs per VM is mostly V8's heap reservations and glibc's per-thread arenas; the
 * defaults here are the ones bench/vm-mode/process-memory.ts measured to lower an idle VM process's RSS and PSS
 * without slowing the guest (docs/performance.md, "VM modes"). JIT-less or lite modes are not among them: the
 * emulator lives on optimised code.
 */

/** Replaces the tuned V8 flags (space-separated), for measuring alternatives; the old-space limit stays. */
export const VM_PROCESS_FLAGS_ENV = 'TYPEVISOR_VM_PROCESS_FLAGS';

/** The tuned V8 flags, after the old-space limit. */
export const VM_PROCESS_V8_FLAGS: readonly string[] = [
  // The same small young generation as a VM worker (VM_WORKER_LIMITS): an idle VM's scavenge space stays small.
  '--max-semi-space-size=1',
];

/** Environment for a VM process: the daemon's, plus the tuned allocator settings unless the daemon's sets them. */
export const VM_PROCESS_ENV: Readonly<Record<string, string>> = {};

/** The node arguments before the entry module. */
export function vmProcessNodeFlags(maxOldSpaceMb: number, env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[VM_PROCESS_FLAGS_ENV];
  const tuned = override !== undefined ? override.split(/\s+/).filter((f) => f.startsWith('--')) : VM_PROCESS_V8_FLAGS;
  return [`--max-old-space-size=${maxOldSpaceMb}`, ...tuned];
}

/** The environment of a VM process. */
export function vmProcessEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const [k, v] of Object.entries(VM_PROCESS_ENV)) if (out[k] === undefined) out[k] = v;
  return out;
}
