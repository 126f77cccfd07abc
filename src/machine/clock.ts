/**
 * The machine's mtime source (10 MHz). Real-time mode: the host monotonic clock minus a per-VM offset, so
 * pausing freezes guest time and resuming continues it without a jump. Deterministic mode: derived from
 * retired instructions (plus idle skips), so a run is reproducible.
 */
import { TIMEBASE_HZ } from './layout.js';

const TICKS_PER_MS = TIMEBASE_HZ / 1000;
/** Deterministic mode: one tick per this many retired instructions (a nominal 100 MIPS hart). */
export const INSNS_PER_TICK = 10;

export class MachineClock {
  private offsetMs = 0;
  private pausedAt: number | null = null;
  private skipTicks = 0;

  constructor(
    readonly deterministic: boolean,
    private readonly hostNowMs: () => number,
    private readonly retired: () => number,
  ) {
    this.offsetMs = hostNowMs();
  }

  /** Current mtime in ticks (an integer). */
  now(): number {
    if (this.deterministic) return Math.floor(this.retired() / INSNS_PER_TICK) + this.skipTicks;
    const ms = (this.pausedAt ?? this.hostNowMs()) - this.offsetMs;
    return Math.floor(ms * TICKS_PER_MS) + this.skipTicks;
  }

  /** A guest write to mtime. */
  set(ticks: number): void {
    this.skipTicks += ticks - this.now();
  }

  /** Deterministic idle: jump straight to the next deadline instead of sleeping. */
  advanceTo(ticks: number): void {
    if (ticks > this.now()) this.skipTicks += ticks - this.now();
  }

  pause(): void {
    if (this.pausedAt === null) this.pausedAt = this.hostNowMs();
  }
  resume(): void {
    if (this.pausedAt === null) return;
    this.offsetMs += this.hostNowMs() - this.pausedAt;
    this.pausedAt = null;
  }

  /** What now() counts from (real-time mode): the host ms of tick 0 and the ticks skipped since; for hart threads. */
  base(): { offsetMs: number; skipTicks: number } {
    return { offsetMs: this.offsetMs, skipTicks: this.skipTicks };
  }

  /** Host milliseconds until mtime reaches `ticks`. */
  msUntil(ticks: number): number {
    return Math.max(0, (ticks - this.now()) / TICKS_PER_MS);
  }
}
