/**
 * How a VM's CPU settings reach the host kernel. Every thread that runs guest code is known by its Linux thread
 * id, and a mechanism places those threads under the VM's limits: cgroup v2 (threaded subtree), cgroup v1
 * (per-thread `tasks`), or, where no cgroup is writable, sched_setaffinity + setpriority with the cap enforced by
 * the VM's own run loop. The interface is per thread, so a VM with one thread per vCPU (or a process) fits too.
 */
export const CPU_MECHANISMS = ['cgroup-v2', 'cgroup-v1', 'fallback'] as const;
export type CpuMechanism = (typeof CPU_MECHANISMS)[number];

/** What is in force for a VM right now (the burst policy may have raised the cap). */
export interface EffectiveCpu {
  weight: number;
  capPercent: number | null;
  cpuset: number[] | null;
}

export interface PlacementResult {
  /** A cap the VM's run loop must enforce itself from measured thread CPU time; null when the kernel does it. */
  runLoopCapPercent: number | null;
}

export interface VmCpuPlacement {
  /**
   * Puts threads (Linux tids) under the VM's limits. Asynchronous: the kernel may take a grace period to move a
   * thread between cgroups, and a VM's start must not wait for it.
   */
  addThreads(tids: readonly number[]): Promise<void>;
  apply(s: EffectiveCpu): PlacementResult;
  /** CPU time of the VM's threads per host core (ns), where the mechanism can measure it. */
  perCoreNs(): number[] | null;
  /** Releases what open() created (the threads have exited or are about to). */
  close(): void;
}

export interface CpuEnforcer {
  readonly mechanism: CpuMechanism;
  /** Where it acts, for `typevisor host` (e.g. the cgroup folders). */
  readonly detail: string;
  /** Why a setting cannot be enforced by this mechanism, or null when it can. */
  refuse(s: EffectiveCpu): string | null;
  open(vmName: string): VmCpuPlacement;
  close(): void;
}

export class CpuEnforceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CpuEnforceError';
  }
}

/** The weight on cgroup v1's cpu.shares scale (1024 = the default weight 100), within its 2..262144 range. */
export function weightToShares(weight: number): number {
  return Math.min(262_144, Math.max(2, Math.round((weight * 1024) / 100)));
}

/** CFS bandwidth period used for caps (libvirt and the kernel default). */
export const CFS_PERIOD_US = 100_000;

export function capToQuotaUs(capPercent: number): number {
  return Math.max(1000, Math.round((capPercent / 100) * CFS_PERIOD_US));
}
