/**
 * Telling a VM process apart from whatever later reuses its pid: Linux numbers processes from a small space, so a
 * pid alone may name another process by the time a daemon restarts. A process is its pid plus its start time
 * (field 22 of /proc/<pid>/stat, clock ticks since boot), which never repeats for one pid within a boot.
 */
import { readFileSync } from 'node:fs';

/** The start time of `pid` (clock ticks since boot), or undefined when no such process exists. */
export function processStartTime(pid: number): number | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (comm) may hold spaces and parentheses: count from the last ')'; field 3 (state) comes next.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined; // a zombie runs nothing any more
  const v = Number(rest[22 - 3]);
  return Number.isInteger(v) ? v : undefined;
}

/** True when the process `pid` that started at `startTime` still exists. */
export function sameProcessAlive(pid: number, startTime: number): boolean {
  return processStartTime(pid) === startTime;
}

/** Resident memory of a process (VmRSS), in bytes, or undefined when it is gone. */
export function processRssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
