/**
 * A CPU cap enforced by the VM's own run loop, for hosts where no cgroup is writable: a token bucket over the
 * thread's measured CPU time (/proc/thread-self/schedstat). Credit grows by cap × wall time and shrinks by the
 * CPU time used; when it runs out the loop rests until the credit is back. Credit is bounded, so a VM that
 * idled cannot save up a long burst above its cap.
 */
import { readFileSync } from 'node:fs';

/** At most this much CPU time (at the cap's rate) may be saved up while idle. */
const MAX_CREDIT_MS = 20;
/** Rest at most this long at once, so a cap raised meanwhile takes effect quickly. */
const MAX_REST_MS = 100;

export function threadCpuNs(): number {
  const text = readFileSync('/proc/thread-self/schedstat', 'utf8');
  return Number(text.slice(0, text.indexOf(' ')));
}

export class CpuPacer {
  private lastWallMs: number;
  private lastCpuNs: number;
  private creditNs = 0;

  constructor(
    private capPercent: number,
    private readonly readCpuNs: () => number = threadCpuNs,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.lastWallMs = nowMs();
    this.lastCpuNs = readCpuNs();
  }

  setCap(capPercent: number): void {
    this.capPercent = capPercent;
  }

  /** Milliseconds the loop must rest now (0 = run on). */
  next(): number {
    const wall = this.nowMs();
    const cpu = this.readCpuNs();
    const share = this.capPercent / 100;
    this.creditNs += (wall - this.lastWallMs) * 1e6 * share - (cpu - this.lastCpuNs);
    this.creditNs = Math.min(this.creditNs, MAX_CREDIT_MS * 1e6 * share);
    this.lastWallMs = wall;
    this.lastCpuNs = cpu;
    if (this.creditNs >= 0) return 0;
    return Math.min(MAX_REST_MS, -this.creditNs / share / 1e6);
  }
}
