/**
 * The monitor: once a second it samples every running VM and the host into history rings (HISTORY_SECONDS at
 * 1 s). It never touches a VM itself; the host hands it the figures. (The CPU policies run on their own,
 * faster clock: src/host/cpu/policy-loop.ts.)
 */
import { freemem, totalmem, cpus } from 'node:os';
import type { VmStats } from '../engine.js';
import { readHostCpuTimes, type HostCpuTimes } from '../cpu/accounting.js';
import { Ring } from './ring.js';
import { HISTORY_SECONDS, SAMPLE_INTERVAL_MS, type HostSample, type VmSample } from './samples.js';

export interface MonitoredVm {
  name: string;
  state: string;
  stats: VmStats | null;
  weight: number;
  capPercent: number | null;
}

interface Prev {
  t: number;
  stats: VmStats;
}

export class Monitor {
  private readonly vmRings = new Map<string, Ring<VmSample>>();
  private readonly prev = new Map<string, Prev>();
  readonly host = new Ring<HostSample>(HISTORY_SECONDS);
  private timer: NodeJS.Timeout | undefined;
  private lastHost: { t: number; times: HostCpuTimes } | undefined;
  private running = false;
  private readonly cores = cpus().length;
  /** Idle host capacity (cores) over the last interval. */
  idleCores = this.cores;

  constructor(
    private readonly collect: () => Promise<MonitoredVm[]>,
    private readonly log: (line: string) => void = () => {},
    private readonly intervalMs = SAMPLE_INTERVAL_MS,
    /** Policies that act on the monitor's samples (memory) run after each one. */
    private readonly afterSample: (samples: ReadonlyMap<string, VmSample>) => Promise<void> = async () => {},
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The VM's history, oldest first (the newest `seconds` samples). */
  vmHistory(name: string, seconds = HISTORY_SECONDS): VmSample[] {
    return this.vmRings.get(name)?.last(seconds) ?? [];
  }

  hostHistory(seconds = HISTORY_SECONDS): HostSample[] {
    return this.host.last(seconds);
  }

  forget(name: string): void {
    this.vmRings.delete(name);
    this.prev.delete(name);
  }

  /** One sample of everything (exposed for tests; the timer calls it). */
  async tick(): Promise<void> {
    if (this.running) return; // a slow sample must not pile up behind itself
    this.running = true;
    try {
      const t = Date.now();
      const vms = await this.collect();
      const samples = new Map<string, VmSample>();
      for (const vm of vms) {
        if (!vm.stats) {
          this.prev.delete(vm.name);
          continue;
        }
        const s = this.vmSample(vm, t);
        samples.set(vm.name, s);
        let ring = this.vmRings.get(vm.name);
        if (!ring) this.vmRings.set(vm.name, (ring = new Ring<VmSample>(HISTORY_SECONDS)));
        ring.push(s);
      }
      this.hostSample(t, [...samples.values()]);
      await this.afterSample(samples);
    } catch (err) {
      this.log(`monitor: sample failed: ${(err as Error).message}`);
    } finally {
      this.running = false;
    }
  }

  private vmSample(vm: MonitoredVm, t: number): VmSample {
    const s = vm.stats!;
    const p = this.prev.get(vm.name);
    this.prev.set(vm.name, { t, stats: s });
    const secs = p ? Math.max(0.001, (t - p.t) / 1000) : 0;
    const rate = (now: number, before: number | undefined): number =>
      p && before !== undefined && now >= before ? Math.round((now - before) / secs) : 0;
    return {
      t,
      state: vm.state,
      cpuPercent: s.cpuPercent,
      stealPercent: s.stealPercent,
      instructionsPerSecond: s.instructionsPerSecond,
      capPercent: vm.capPercent,
      weight: vm.weight,
      residentBytes: s.residentBytes,
      overheadBytes: s.decodeCacheBytes + s.workerHeapBytes,
      balloonBytes: s.balloonBytes,
      guestAvailableBytes: s.guestAvailableBytes,
      guestFreeBytes: s.guestFreeBytes,
      guestCachesBytes: s.guestCachesBytes,
      guestMajorFaults: s.guestMajorFaults,
      guestMinorFaults: s.guestMinorFaults,
      guestSwapInBytes: s.guestSwapInBytes,
      guestSwapOutBytes: s.guestSwapOutBytes,
      guestOomKills: s.guestOomKills,
      diskReadBytesPerSecond: rate(s.diskReadBytes, p?.stats.diskReadBytes),
      diskWriteBytesPerSecond: rate(s.diskWriteBytes, p?.stats.diskWriteBytes),
      netRxBytesPerSecond: rate(s.netRxBytes, p?.stats.netRxBytes),
      netTxBytesPerSecond: rate(s.netTxBytes, p?.stats.netTxBytes),
    };
  }

  private hostSample(t: number, vms: VmSample[]): void {
    const times = readHostCpuTimes();
    let cpuPercent = 0;
    if (times && this.lastHost) {
      const busy = times.busy - this.lastHost.times.busy;
      const idle = times.idle - this.lastHost.times.idle;
      const total = busy + idle;
      if (total > 0) {
        cpuPercent = Math.round((busy / total) * this.cores * 1000) / 10;
        this.idleCores = Math.round((idle / total) * this.cores * 100) / 100;
      }
    }
    if (times) this.lastHost = { t, times };
    const sum = (f: (v: VmSample) => number): number => vms.reduce((a, v) => a + f(v), 0);
    this.host.push({
      t,
      cpuPercent,
      idleCores: this.idleCores,
      vmCpuPercent: Math.round(sum((v) => v.cpuPercent) * 10) / 10,
      vmStealPercent: Math.round(sum((v) => v.stealPercent) * 10) / 10,
      memoryUsedBytes: totalmem() - freemem(),
      vmResidentBytes: sum((v) => v.residentBytes),
      diskReadBytesPerSecond: sum((v) => v.diskReadBytesPerSecond),
      diskWriteBytesPerSecond: sum((v) => v.diskWriteBytesPerSecond),
      netRxBytesPerSecond: sum((v) => v.netRxBytesPerSecond),
      netTxBytesPerSecond: sum((v) => v.netTxBytesPerSecond),
    });
  }
}
