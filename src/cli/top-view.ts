/**
 * `typevisor top`'s screen, as a pure function of the figures: a host summary, then one row per VM sorted by
 * a key, in the style of virt-top/htop. Disk and net rates come from counter deltas between two refreshes.
 */
import type { HostInfo, VmView } from '../host/actions.js';
import { bytes, si } from './format.js';

export const SORT_KEYS = {
  c: 'cpu',
  s: 'steal',
  m: 'mem',
  i: 'ips',
  d: 'disk',
  w: 'net',
  n: 'name',
} as const;
export type SortKey = (typeof SORT_KEYS)[keyof typeof SORT_KEYS];
export const SORT_NAMES = Object.values(SORT_KEYS) as SortKey[];

export interface Rates {
  diskRead: number;
  diskWrite: number;
  netRx: number;
  netTx: number;
}

interface Row {
  vm: VmView;
  rates: Rates;
}

const zero: Rates = { diskRead: 0, diskWrite: 0, netRx: 0, netTx: 0 };

function sortValue(r: Row, key: SortKey): number | string {
  const s = r.vm.stats;
  switch (key) {
    case 'cpu':
      return s?.cpuPercent ?? -1;
    case 'steal':
      return s?.stealPercent ?? -1;
    case 'mem':
      return s?.residentBytes ?? -1;
    case 'ips':
      return s?.instructionsPerSecond ?? -1;
    case 'disk':
      return r.rates.diskRead + r.rates.diskWrite;
    case 'net':
      return r.rates.netRx + r.rates.netTx;
    case 'name':
      return r.vm.name;
  }
}

/** Per-second disk and net rates between two samples of the same VM. */
export function ratesBetween(prev: VmView | undefined, cur: VmView, seconds: number): Rates {
  const a = prev?.stats;
  const b = cur.stats;
  if (!a || !b || seconds <= 0) return zero;
  const r = (x: number, y: number) => (y >= x ? (y - x) / seconds : 0);
  return {
    diskRead: r(a.diskReadBytes, b.diskReadBytes),
    diskWrite: r(a.diskWriteBytes, b.diskWriteBytes),
    netRx: r(a.netRxBytes, b.netRxBytes),
    netTx: r(a.netTxBytes, b.netTxBytes),
  };
}

export function renderTop(
  host: HostInfo,
  hostCpu: { cpuPercent: number; idleCores: number } | undefined,
  vms: VmView[],
  rates: Map<string, Rates>,
  sort: SortKey,
  now: Date,
  width = 160,
): string {
  const rows: Row[] = vms.map((vm) => ({ vm, rates: rates.get(vm.name) ?? zero }));
  rows.sort((x, y) => {
    const a = sortValue(x, sort);
    const b = sortValue(y, sort);
    if (typeof a === 'string' || typeof b === 'string') return String(a).localeCompare(String(b));
    return b - a || x.vm.name.localeCompare(y.vm.name);
  });
  const running = vms.filter((v) => v.state === 'running').length;
  const vmCpu = vms.reduce((a, v) => a + (v.stats?.cpuPercent ?? 0), 0);
  const vmSteal = vms.reduce((a, v) => a + (v.stats?.stealPercent ?? 0), 0);
  const header = [
    `typevisor top - ${now.toLocaleTimeString()}  ${host.hostname}: ${host.cpus} cores, cpu control ${host.cpuControl.mechanism}`,
    `VMs: ${vms.length} total, ${running} running   host CPU ${hostCpu ? `${hostCpu.cpuPercent.toFixed(0)} %` : '-'} (idle ${hostCpu ? hostCpu.idleCores.toFixed(2) : '-'} cores)   VMs CPU ${vmCpu.toFixed(1)} %, steal ${vmSteal.toFixed(1)} %`,
    `memory ${bytes(host.memoryBytes - host.freeMemoryBytes)} used of ${bytes(host.memoryBytes)}, VMs resident ${bytes(host.usage.residentBytes)}${host.memory ? ` of budget ${bytes(host.memory.budgetBytes)}` : ''}   sort: ${sort} (keys: ${Object.entries(
      SORT_KEYS,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}, q quits)`,
    '',
  ];
  const cols = [
    'NAME',
    'STATE',
    'CPU%',
    'STEAL%',
    'WEIGHT',
    'CAP',
    'CPUSET',
    'INSTR/S',
    'RESIDENT',
    'SIZE',
    'AVAIL',
    'MAJFLT',
    'DISK R/W /s',
    'NET RX/TX /s',
    'CPU TIME',
  ];
  const cells = rows.map(({ vm, rates: r }) => {
    const s = vm.stats;
    const cap = vm.cpu.effectiveCapPercent === null ? '-' : `${vm.cpu.effectiveCapPercent}%${vm.cpu.bursting ? '*' : ''}`;
    return [
      vm.name,
      vm.state,
      s ? s.cpuPercent.toFixed(1) : '-',
      s ? s.stealPercent.toFixed(1) : '-',
      String(vm.cpu.weight),
      cap,
      vm.cpu.cpuset ? vm.cpu.cpuset.join(',') : 'all',
      s ? si(s.instructionsPerSecond) : '-',
      s ? bytes(s.residentBytes) : '-',
      vm.memory?.sizeMiB != null ? `${vm.memory.sizeMiB}M` : '-',
      s && s.guestAvailableBytes !== null ? bytes(s.guestAvailableBytes) : '-',
      s && s.guestMajorFaults !== null ? si(s.guestMajorFaults) : '-',
      s ? `${bytes(r.diskRead)}/${bytes(r.diskWrite)}` : '-',
      s ? `${bytes(r.netRx)}/${bytes(r.netTx)}` : '-',
      s ? `${s.cpuTimeSeconds.toFixed(1)}s` : '-',
    ];
  });
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const right = new Set([2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14]);
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
      .slice(0, width);
  return [...header.map((l) => l.slice(0, width)), fmt(cols), ...cells.map(fmt)].join('\n');
}
