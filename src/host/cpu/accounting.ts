/**
 * True CPU accounting from the kernel's per-thread scheduler statistics: /proc/<pid>/task/<tid>/schedstat holds
 * the time the thread ran on a CPU and the time it waited runnable (what a guest would see as steal), in ns.
 * Wall-clock "busy" measures (event-loop utilisation) overstate a VM's share under contention; these do not.
 */
import { readFileSync } from 'node:fs';

export interface ThreadTimes {
  /** ns on a CPU. */
  cpuNs: number;
  /** ns runnable but waiting for a CPU. */
  waitNs: number;
}

/** Parses schedstat text ("<run ns> <wait ns> <timeslices>"). */
export function parseSchedstat(text: string): ThreadTimes | null {
  const m = /^(\d+) (\d+) \d+/.exec(text.trim());
  return m ? { cpuNs: Number(m[1]), waitNs: Number(m[2]) } : null;
}

export function readThreadTimes(pid: number, tid: number): ThreadTimes | null {
  try {
    return parseSchedstat(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8'));
  } catch {
    return null; // the thread has exited
  }
}

/** The host core a thread last ran on (field 39 of /proc/<pid>/task/<tid>/stat). */
export function lastCpuOf(pid: number, tid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces and parentheses: count from the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[39 - 3]);
    return Number.isInteger(v) ? v : null;
  } catch {
    return null;
  }
}

export interface CpuRates {
  /** Totals since the VM started. */
  cpuTimeSeconds: number;
  stealSeconds: number;
  /** Over the last window: percent of one host core used, and percent of the window spent waiting runnable. */
  cpuPercent: number;
  stealPercent: number;
}

/**
 * Accumulates the times of a VM's threads. Threads come and go (a restarted worker); totals never go backwards
 * because each thread's last reading is kept once it disappears.
 */
export class VmCpuMeter {
  private readonly last = new Map<number, ThreadTimes>();
  private retired: ThreadTimes = { cpuNs: 0, waitNs: 0 };
  private window: { at: number; cpuNs: number; waitNs: number } | null = null;
  private rates = { cpuPercent: 0, stealPercent: 0 };

  constructor(
    private readonly pid: number = process.pid,
    private readonly read: (pid: number, tid: number) => ThreadTimes | null = readThreadTimes,
  ) {}

  /** True once a first reading exists (rates need two). */
  get sampled(): boolean {
    return this.window !== null;
  }

  /** Reads every thread now; rates are over the time since the previous call at least minWindowMs ago. */
  sample(tids: readonly number[], nowMs = performance.now(), minWindowMs = 200): CpuRates {
    for (const tid of [...this.last.keys()]) {
      if (!tids.includes(tid)) {
        const t = this.last.get(tid)!;
        this.retired = { cpuNs: this.retired.cpuNs + t.cpuNs, waitNs: this.retired.waitNs + t.waitNs };
        this.last.delete(tid);
      }
    }
    for (const tid of tids) {
      const t = this.read(this.pid, tid);
      if (t) this.last.set(tid, t);
    }
    let cpuNs = this.retired.cpuNs;
    let waitNs = this.retired.waitNs;
    for (const t of this.last.values()) {
      cpuNs += t.cpuNs;
      waitNs += t.waitNs;
    }
    const w = this.window;
    if (!w) this.window = { at: nowMs, cpuNs, waitNs };
    else if (nowMs - w.at >= minWindowMs) {
      const wallNs = (nowMs - w.at) * 1e6;
      this.rates = {
        cpuPercent: round1(((cpuNs - w.cpuNs) / wallNs) * 100),
        stealPercent: round1(((waitNs - w.waitNs) / wallNs) * 100),
      };
      this.window = { at: nowMs, cpuNs, waitNs };
    }
    return { cpuTimeSeconds: round3(cpuNs / 1e9), stealSeconds: round3(waitNs / 1e9), ...this.rates };
  }
}

function round1(v: number): number {
  return Math.round(Math.max(0, v) * 10) / 10;
}
function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Whole-host CPU from /proc/stat: busy and idle jiffies over all cores. */
export interface HostCpuTimes {
  busy: number;
  idle: number;
}

export function readHostCpuTimes(): HostCpuTimes | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return { busy, idle };
  } catch {
    return null;
  }
}
