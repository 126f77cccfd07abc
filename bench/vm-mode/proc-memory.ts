/** Host-side readings of a process for the VM-mode benchmarks: memory (RSS, PSS) and CPU time, from /proc. */
import { readFileSync } from 'node:fs';

export const MiB = 1024 * 1024;

export interface Memory {
  rss: number;
  pss: number;
}

/** RSS and PSS (shared pages split among the processes that map them) from /proc/PID/smaps_rollup, bytes. */
export function memoryOf(pid: number): Memory {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: field('Rss'), pss: field('Pss') };
}

export function sumMemory(ms: Memory[]): Memory {
  return ms.reduce((a, m) => ({ rss: a.rss + m.rss, pss: a.pss + m.pss }), { rss: 0, pss: 0 });
}

const TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process (all its threads) has used. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** The 1, 5 and 15 minute load averages, as printed by uptime. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}
