/**
 * The CPU policies' own clock: every 500 ms it measures each placed VM's CPU (schedstat, no message to the
 * VM) and each host core's idle time (/proc/stat) over the last step and gives the burst policy its decision,
 * so a VM that turns busy at its cap is raised within about a second, faster than the 1 s monitor samples.
 */
import { readCoreCpuTimes, VmCpuMeter, type HostCpuTimes } from './accounting.js';
import type { CpuManager, IdleCapacity } from './manager.js';

export const POLICY_INTERVAL_MS = 500;

export class PolicyLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly meters = new Map<string, VmCpuMeter>();
  private lastCores: (HostCpuTimes | undefined)[] | null = null;
  private running = false;

  constructor(
    private readonly cpu: CpuManager,
    private readonly log: (line: string) => void = () => {},
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.step(), POLICY_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async step(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const now = performance.now();
      const cores = readCoreCpuTimes();
      const before = this.lastCores;
      this.lastCores = cores;
      const cpuPercent = new Map<string, number>();
      const placed = this.cpu.placedThreads();
      for (const name of [...this.meters.keys()]) if (!placed.has(name)) this.meters.delete(name);
      for (const [name, tids] of placed) {
        let meter = this.meters.get(name);
        if (!meter) this.meters.set(name, (meter = new VmCpuMeter()));
        const first = !meter.sampled;
        const r = meter.sample(tids, now, POLICY_INTERVAL_MS * 0.8);
        if (!first) cpuPercent.set(name, r.cpuPercent);
      }
      if (!cores || !before) return;
      const idle = idleShares(before, cores);
      if (idle.size === 0) return;
      await this.cpu.tick(
        now,
        (cpuset) => idleOn(idle, cpuset),
        (name) => cpuPercent.get(name),
      );
    } catch (err) {
      this.log(`cpu policy step failed: ${(err as Error).message}`);
    } finally {
      this.running = false;
    }
  }
}

/** Each core's idle share (0..1) between two readings; cores without a full window are left out. */
export function idleShares(a: (HostCpuTimes | undefined)[], b: (HostCpuTimes | undefined)[]): Map<number, number> {
  const out = new Map<number, number>();
  b.forEach((now, core) => {
    const then = a[core];
    if (!now || !then) return;
    const busy = now.busy - then.busy;
    const idle = now.idle - then.idle;
    if (busy < 0 || idle < 0 || busy + idle <= 0) return;
    out.set(core, idle / (busy + idle));
  });
  return out;
}

/** The idle capacity on a cpuset's cores (every measured core for null). */
export function idleOn(idle: Map<number, number>, cpuset: readonly number[] | null): IdleCapacity {
  let idleCores = 0;
  let cores = 0;
  for (const core of cpuset ?? idle.keys()) {
    const share = idle.get(core);
    if (share === undefined) continue;
    idleCores += share;
    cores++;
  }
  return { idleCores, cores };
}
