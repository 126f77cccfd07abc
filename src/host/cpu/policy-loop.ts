/**
 * The CPU policies' own clock: every 500 ms it measures each placed VM's CPU (schedstat, no message to the
 * VM) and the host's idle capacity (/proc/stat) over the last step and gives the burst policy its decision,
 * so a VM that turns busy at its cap is raised within about a second, faster than the 1 s monitor samples.
 */
import { cpus } from 'node:os';
import { readHostCpuTimes, VmCpuMeter, type HostCpuTimes } from './accounting.js';
import type { CpuManager } from './manager.js';

export const POLICY_INTERVAL_MS = 500;

export class PolicyLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly meters = new Map<string, VmCpuMeter>();
  private lastHost: HostCpuTimes | null = null;
  private running = false;
  private readonly cores = cpus().length;

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
      const host = readHostCpuTimes();
      const before = this.lastHost;
      this.lastHost = host;
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
      if (!host || !before) return;
      const busy = host.busy - before.busy;
      const idle = host.idle - before.idle;
      if (busy + idle <= 0) return;
      await this.cpu.tick(now, (idle / (busy + idle)) * this.cores, (name) => cpuPercent.get(name));
    } catch (err) {
      this.log(`cpu policy step failed: ${(err as Error).message}`);
    } finally {
      this.running = false;
    }
  }
}
