/**
 * Enforcement where no cgroup is writable: the affinity of each thread through sched_setaffinity (libc via
 * koffi, which Node lacks), the weight as a nice value through setpriority (per thread on Linux), and the cap
 * in the VM's own run loop from its measured thread CPU time (src/vm/cpu-pacer.ts).
 *
 * A VM process (process mode) leads a session of its own, and with the kernel's autogroup (sched(7), on by
 * default) every session outside a cpu cgroup is a scheduling group of its own whose weight is the group's nice,
 * whatever its threads' nice values: three VM processes at nice 10, 7 and 4 would share a core equally. So the
 * weight's nice value goes to the VM process's autogroup too (/proc/<pid>/autogroup); its threads' nice values
 * still order them within it. Worker threads share the daemon's group, where their nice values compare directly.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { cpus } from 'node:os';
import { libcFunction } from '../libc.js';
import { CpuEnforceError, type CpuEnforcer, type EffectiveCpu, type PlacementResult, type VmCpuPlacement } from './enforcer.js';

/** The niceness of a VM thread at the default weight (below the daemon's 0, as before this mechanism existed). */
export const BASE_NICE = 10;
/** CFS gives each nice step ~1.25x the weight of the next (kernel sched_prio_to_weight). */
const NICE_STEP = 1.25;

/** The nice value whose CFS weight relative to BASE_NICE is closest to weight/100, clamped to -10..19. */
export function weightToNice(weight: number): number {
  const n = BASE_NICE - Math.round(Math.log(weight / 100) / Math.log(NICE_STEP));
  return Math.min(19, Math.max(-10, n));
}

type Affinity = (tid: number, size: number, mask: Uint8Array) => number;

function schedSetaffinity(): Affinity | null {
  return libcFunction<Affinity>('int sched_setaffinity(int pid, size_t size, const uint8_t *mask)');
}

const MASK_BYTES = 128; // cpu_set_t: 1024 cores

export function setThreadAffinity(tid: number, cores: readonly number[]): void {
  const fn = schedSetaffinity();
  if (!fn) throw new CpuEnforceError('sched_setaffinity is unavailable (koffi could not load libc)');
  const mask = new Uint8Array(MASK_BYTES);
  for (const c of cores) mask[c >> 3]! |= 1 << (c & 7);
  if (fn(tid, MASK_BYTES, mask) !== 0) throw new CpuEnforceError(`sched_setaffinity(${tid}) failed`);
}

/** Sets the autogroup nice of `tid` when it is the main thread of another process leading its own session. */
function setAutogroupNice(tid: number, nice: number): void {
  if (tid === process.pid) return;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${tid}/stat`, 'utf8');
  } catch {
    return; // gone; the caller's setpriority reports it
  }
  // After the command name: state, ppid, pgrp, session.
  const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
  if (session !== tid) return; // in the daemon's session (or another's): that session's group
  try {
    writeFileSync(`/proc/${tid}/autogroup`, String(nice));
  } catch (err) {
    // A kernel without autogroup has no such file, and then the threads' nice values already compare.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CpuEnforceError(`setting the autogroup nice of process ${tid} failed: ${(err as Error).message}`);
  }
}

export class FallbackEnforcer implements CpuEnforcer {
  readonly mechanism = 'fallback' as const;
  readonly detail: string;
  private readonly hostCores = cpus().length;

  constructor(reason: string) {
    this.detail = `sched_setaffinity + setpriority per thread (and a VM process's autogroup), caps in the run loop (${reason})`;
  }

  refuse(s: EffectiveCpu): string | null {
    if (s.cpuset && !schedSetaffinity()) return 'a cpuset needs sched_setaffinity, which could not be loaded (koffi)';
    if (weightToNice(s.weight) < 0 && process.getuid?.() !== 0)
      return `weight ${s.weight} needs a negative nice value, which only root may set in the fallback mode`;
    return null;
  }

  open(): VmCpuPlacement {
    const tids: number[] = [];
    let current: EffectiveCpu | null = null;
    const hostCores = this.hostCores;
    const place = (tid: number, s: EffectiveCpu): void => {
      try {
        setPriority(tid, weightToNice(s.weight));
      } catch (err) {
        throw new CpuEnforceError(`setpriority(${tid}) failed: ${(err as Error).message}`);
      }
      setAutogroupNice(tid, weightToNice(s.weight));
      setThreadAffinity(tid, s.cpuset ?? Array.from({ length: hostCores }, (_, i) => i));
    };
    return {
      async addThreads(list) {
        for (const tid of list) {
          if (!tids.includes(tid)) tids.push(tid);
          if (current) place(tid, current);
        }
      },
      apply(s): PlacementResult {
        for (const tid of tids) place(tid, s);
        current = s;
        return { runLoopCapPercent: s.capPercent };
      },
      perCoreNs: () => null,
      close() {
        tids.length = 0;
      },
    };
  }

  close(): void {}
}
