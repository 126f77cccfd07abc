/**
 * The burst policy (in the spirit of Xen credit's BOOST and VMware's idle-capacity reclaim, but bounded): a VM
 * running at its cap is raised to its burst cap while the host has idle capacity, for at most the burst's
 * duration, and lowered again as soon as the host is contended or the time is up. After a burst it waits as
 * long as the burst lasted before the next one, so bursting cannot become a permanently higher cap.
 */
import type { CpuSettings } from './settings.js';

export interface BurstInput {
  nowMs: number;
  settings: CpuSettings;
  /** The VM's CPU over the last sample. */
  cpuPercent: number;
  /** Idle host capacity over the last sample, in cores. */
  hostIdleCores: number;
}

export type BurstDecision = { action: 'burst-start' | 'burst-end'; reason: string } | null;

/** At or above this fraction of its cap a VM counts as held back by the cap. */
export const AT_CAP = 0.9;
/** Idle cores needed to grant a burst. */
export const IDLE_TO_GRANT = 0.5;
/** Below this many idle cores the host is contended and a burst is taken back. */
export const IDLE_CONTENDED = 0.2;
/** After a burst is taken back for contention, wait this long before granting another. */
const CONTENDED_BACKOFF_MS = 5000;

export class BurstState {
  active = false;
  private since = 0;
  private notBefore = 0;

  decide(i: BurstInput): BurstDecision {
    const { burst, capPercent } = i.settings;
    if (this.active) {
      if (!burst || capPercent === null) {
        this.active = false;
        return { action: 'burst-end', reason: 'the burst policy was removed' };
      }
      const elapsed = (i.nowMs - this.since) / 1000;
      if (elapsed >= burst.seconds) {
        this.end(i.nowMs, burst.seconds * 1000);
        return { action: 'burst-end', reason: `the burst lasted its ${burst.seconds} s` };
      }
      if (i.hostIdleCores < IDLE_CONTENDED) {
        this.end(i.nowMs, CONTENDED_BACKOFF_MS);
        return {
          action: 'burst-end',
          reason: `the host is contended (${i.hostIdleCores.toFixed(2)} idle cores < ${IDLE_CONTENDED})`,
        };
      }
      return null;
    }
    if (!burst || capPercent === null || i.nowMs < this.notBefore) return null;
    if (i.cpuPercent < AT_CAP * capPercent || i.hostIdleCores < IDLE_TO_GRANT) return null;
    this.active = true;
    this.since = i.nowMs;
    return {
      action: 'burst-start',
      reason: `at its cap (${i.cpuPercent.toFixed(1)} % of ${capPercent} %) with ${i.hostIdleCores.toFixed(2)} idle cores`,
    };
  }

  private end(nowMs: number, backoffMs: number): void {
    this.active = false;
    this.notBefore = nowMs + backoffMs;
  }

  reset(): void {
    this.active = false;
    this.since = 0;
    this.notBefore = 0;
  }
}
