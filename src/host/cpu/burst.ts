/**
 * The burst policy (in the spirit of Xen credit's BOOST and VMware's idle-capacity reclaim, but bounded): a VM
 * running at its cap is raised to its burst cap while the cores it may run on (its cpuset, or every core) have
 * idle capacity, for at most the burst's duration, and lowered again as soon as those cores are contended or
 * the time is up. After a burst it waits as long as the burst lasted before the next one, so bursting cannot
 * become a permanently higher cap.
 *
 * Idle capacity is counted on the VM's own cores: idle time on a core it may not use is no room for it, and
 * a competitor on its cores is contention even while another core idles. A bursting VM's own use is not
 * contention: on a single core, a burst to 90 % leaves < 0.2 idle cores by itself, so low idle time means
 * contention only when the burst leaves room that others have taken, or when something holds the VM below its
 * burst cap.
 */
import type { CpuSettings } from './settings.js';

export interface BurstInput {
  nowMs: number;
  settings: CpuSettings;
  /** The VM's CPU over the last sample. */
  cpuPercent: number;
  /** Idle capacity over the last sample on the cores the VM may run on, in cores. */
  idleCores: number;
  /** How many cores the VM may run on. */
  cores: number;
}

export type BurstDecision = { action: 'burst-start' | 'burst-end'; reason: string } | null;

/** At or above this fraction of its cap a VM counts as held back by the cap. */
export const AT_CAP = 0.9;
/** Idle cores needed to grant a burst. */
export const IDLE_TO_GRANT = 0.5;
/** Below this many idle cores the host is contended and a burst is taken back. */
export const IDLE_CONTENDED = 0.2;
/** After a settings change, this many policy steps pass (one sample each) before a burst may be granted. */
const SETTLE_STEPS = 2;
/** After a burst is taken back for contention, wait this long before granting another. */
const CONTENDED_BACKOFF_MS = 5000;

/** Why a running burst's cores are contended, or null when they are not. */
function contended(i: BurstInput, burstCapPercent: number): string | null {
  if (i.idleCores >= IDLE_CONTENDED) return null;
  const idle = `${i.idleCores.toFixed(2)} idle cores < ${IDLE_CONTENDED} on the ${i.cores} it may use`;
  if (i.cpuPercent < AT_CAP * burstCapPercent)
    return `its cores are contended (${idle}; it gets ${i.cpuPercent.toFixed(1)} % of its ${burstCapPercent} % burst cap)`;
  const leftToOthers = i.cores - burstCapPercent / 100;
  if (leftToOthers >= 2 * IDLE_CONTENDED)
    return `its cores are contended (${idle}; others took the ${leftToOthers.toFixed(2)} cores its burst leaves)`;
  return null; // the VM alone fills its cores, at its burst cap
}

export class BurstState {
  active = false;
  private since = 0;
  private notBefore = 0;
  /** Steps still to pass after a settings change before a burst may be granted. */
  private settling = 0;

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
      const contention = contended(i, burst.capPercent);
      if (contention) {
        this.end(i.nowMs, CONTENDED_BACKOFF_MS);
        return { action: 'burst-end', reason: contention };
      }
      return null;
    }
    if (this.settling > 0) {
      this.settling--;
      return null;
    }
    if (!burst || capPercent === null || i.nowMs < this.notBefore) return null;
    if (i.cpuPercent < AT_CAP * capPercent || i.idleCores < IDLE_TO_GRANT) return null;
    this.active = true;
    this.since = i.nowMs;
    return {
      action: 'burst-start',
      reason: `at its cap (${i.cpuPercent.toFixed(1)} % of ${capPercent} %) with ${i.idleCores.toFixed(2)} idle cores of the ${i.cores} it may use`,
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
    this.settling = 0;
  }

  /**
   * New settings: no burst is granted on a sample taken partly under the old ones. (A VM just moved to a
   * fresh cpuset, with a fresh cap, would otherwise be judged by the CPU it used on its old cores.)
   */
  settingsChanged(): void {
    if (!this.active) this.settling = SETTLE_STEPS;
  }
}
