/**
 * Chart series kept in the page: each snapshot from live.ts adds one sample per VM and one for the host, and
 * cumulative counters (disk and network bytes) become rates. Rings are bounded (HISTORY_POINTS samples), so a page
 * left open for days uses the same memory as one opened a minute ago.
 */
import { api, ApiError } from './api.js';
import type { Snapshot } from './live.js';
import type { VmStats } from './types.js';

export const HISTORY_POINTS = 300;

export interface Series {
  /** Seconds (uPlot's x axis). */
  t: number[];
  cpu: number[];
  residentMiB: number[];
  balloonMiB: number[];
  diskRead: number[];
  diskWrite: number[];
  netRx: number[];
  netTx: number[];
}

function emptySeries(): Series {
  return { t: [], cpu: [], residentMiB: [], balloonMiB: [], diskRead: [], diskWrite: [], netRx: [], netTx: [] };
}

interface Totals {
  at: number;
  diskRead: number;
  diskWrite: number;
  netRx: number;
  netTx: number;
}

const vmSeries = new Map<string, Series>();
const lastTotals = new Map<string, Totals>();
const hostSeries = emptySeries();
let lastAt = 0;

function push(s: Series, key: string, at: number, st: VmStats | null, cpu: number, resident: number, balloon: number): void {
  const totals: Totals = {
    at,
    diskRead: st?.diskReadBytes ?? 0,
    diskWrite: st?.diskWriteBytes ?? 0,
    netRx: st?.netRxBytes ?? 0,
    netTx: st?.netTxBytes ?? 0,
  };
  const prev = lastTotals.get(key);
  lastTotals.set(key, totals);
  // A counter that went backwards means the VM restarted: that interval has no rate.
  const rate = (k: keyof Omit<Totals, 'at'>): number => {
    if (!prev || totals.at <= prev.at || totals[k] < prev[k]) return 0;
    return ((totals[k] - prev[k]) * 1000) / (totals.at - prev.at);
  };
  s.t.push(at / 1000);
  s.cpu.push(cpu);
  s.residentMiB.push(resident / 2 ** 20);
  s.balloonMiB.push(balloon / 2 ** 20);
  s.diskRead.push(rate('diskRead'));
  s.diskWrite.push(rate('diskWrite'));
  s.netRx.push(rate('netRx'));
  s.netTx.push(rate('netTx'));
  if (s.t.length > HISTORY_POINTS) for (const arr of Object.values(s) as number[][]) arr.shift();
}

/** Adds one snapshot (called once per snapshot by the app, before pages render it). */
export function record(snap: Snapshot): void {
  if (snap.at === lastAt) return;
  lastAt = snap.at;
  const host: VmStats = {
    instret: 0,
    cpuPercent: 0,
    instructionsPerSecond: 0,
    residentBytes: 0,
    memoryBytes: 0,
    balloonBytes: 0,
    diskReadBytes: 0,
    diskWriteBytes: 0,
    diskReadOps: 0,
    diskWriteOps: 0,
    netRxBytes: 0,
    netTxBytes: 0,
    netRxPackets: 0,
    netTxPackets: 0,
    uptimeSeconds: 0,
  };
  const seen = new Set<string>();
  for (const vm of snap.vms) {
    seen.add(vm.name);
    let s = vmSeries.get(vm.name);
    if (!s) vmSeries.set(vm.name, (s = emptySeries()));
    const st = vm.stats;
    push(s, vm.name, snap.at, st, st?.cpuPercent ?? 0, st?.residentBytes ?? 0, st?.balloonBytes ?? 0);
    if (st) {
      host.diskReadBytes += st.diskReadBytes;
      host.diskWriteBytes += st.diskWriteBytes;
      host.netRxBytes += st.netRxBytes;
      host.netTxBytes += st.netTxBytes;
    }
  }
  for (const name of [...vmSeries.keys()]) {
    if (!seen.has(name)) {
      vmSeries.delete(name);
      lastTotals.delete(name);
    }
  }
  // Host CPU: the VMs' busy share of all host cores, in percent of the whole host.
  const hostCpu = snap.host.usage.cpuPercent / Math.max(1, snap.host.cpus);
  push(hostSeries, '\0host', snap.at, host, hostCpu, snap.host.usage.residentBytes, 0);
}

export function seriesFor(vm: string): Series {
  return vmSeries.get(vm) ?? emptySeries();
}

export function hostHistory(): Series {
  return hostSeries;
}

/**
 * The daemon's own history ring, where it has one (GET /host/stats and GET /vms/NAME/stats with ?history=SECONDS,
 * one sample a second; src/host/monitor/samples.ts on daemons that keep it): a page opened now starts with the last
 * minutes instead of an empty chart. Where the daemon answers 404 the charts fill from live snapshots only.
 */
interface RateFields {
  /** ms since the epoch. */
  t: number;
  diskReadBytesPerSecond: number;
  diskWriteBytesPerSecond: number;
  netRxBytesPerSecond: number;
  netTxBytesPerSecond: number;
}
interface VmHistorySample extends RateFields {
  cpuPercent: number;
  residentBytes: number;
  balloonBytes: number;
}
interface HostHistorySample extends RateFields {
  /** The VMs' CPU summed, 100 = one core. */
  vmCpuPercent: number;
  vmResidentBytes: number;
}
interface HistoryAnswer<S> {
  samples: S[];
}

const seeded = new Set<string>();

/** Puts `older` (oldest first) in front of what the live snapshots already collected. */
function prepend(s: Series, older: Series): void {
  const first = s.t[0] ?? Infinity;
  const keep = older.t.findIndex((t) => t >= first);
  const n = keep === -1 ? older.t.length : keep;
  for (const k of Object.keys(s) as (keyof Series)[]) s[k].unshift(...older[k].slice(0, n));
  const extra = s.t.length - HISTORY_POINTS;
  if (extra > 0) for (const k of Object.keys(s) as (keyof Series)[]) s[k].splice(0, extra);
}

function finite(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

async function fetchHistory<S>(key: string, path: string): Promise<S[] | undefined> {
  if (seeded.has(key)) return undefined;
  seeded.add(key);
  try {
    const answer = await api<HistoryAnswer<S>>('GET', `${path}?history=${HISTORY_POINTS}`);
    return Array.isArray(answer.samples) ? answer.samples.slice(-HISTORY_POINTS) : undefined;
  } catch (err) {
    if (err instanceof ApiError && err.status !== 404) seeded.delete(key); // try again on a later page visit
    return undefined;
  }
}

/** Seeds the host charts from GET /host/stats; `cpus` turns the VMs' summed CPU into a share of the host. */
export async function seedHostHistory(cpus: number): Promise<void> {
  const samples = await fetchHistory<HostHistorySample>('\0host', '/host/stats');
  if (!samples) return;
  const older = emptySeries();
  for (const x of samples) {
    older.t.push(finite(x.t) / 1000);
    older.cpu.push(finite(x.vmCpuPercent) / Math.max(1, cpus));
    older.residentMiB.push(finite(x.vmResidentBytes) / 2 ** 20);
    older.balloonMiB.push(0);
    older.diskRead.push(finite(x.diskReadBytesPerSecond));
    older.diskWrite.push(finite(x.diskWriteBytesPerSecond));
    older.netRx.push(finite(x.netRxBytesPerSecond));
    older.netTx.push(finite(x.netTxBytesPerSecond));
  }
  prepend(hostSeries, older);
}

/** Seeds one VM's charts from GET /vms/NAME/stats. */
export async function seedVmHistory(name: string): Promise<void> {
  const samples = await fetchHistory<VmHistorySample>(name, `/vms/${encodeURIComponent(name)}/stats`);
  if (!samples) return;
  const older = emptySeries();
  for (const x of samples) {
    older.t.push(finite(x.t) / 1000);
    older.cpu.push(finite(x.cpuPercent));
    older.residentMiB.push(finite(x.residentBytes) / 2 ** 20);
    older.balloonMiB.push(finite(x.balloonBytes) / 2 ** 20);
    older.diskRead.push(finite(x.diskReadBytesPerSecond));
    older.diskWrite.push(finite(x.diskWriteBytesPerSecond));
    older.netRx.push(finite(x.netRxBytesPerSecond));
    older.netTx.push(finite(x.netTxBytesPerSecond));
  }
  let s = vmSeries.get(name);
  if (!s) vmSeries.set(name, (s = emptySeries()));
  prepend(s, older);
}
