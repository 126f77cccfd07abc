/**
 * Memory benchmark (issue 12): density, reclaim latency and the policy's reaction time, with real guests on a
 * real daemon, and the qemu-system-riscv64 process per VM as the side-by-side density figure.
 *
 * - density: N idle booted 64 MiB VMs added to a daemon already running one (which pays for what they share:
 *   the default network's worker, modules loaded on first use), each settled (its idle trim done); the daemon's
 *   RSS growth per VM (the whole process: guest RAM, decode caches, worker isolates) and the API's breakdown;
 *   how many such VMs fit in 8 GiB of host RSS. The daemon runs from dist/ (build first), as in production;
 *   --source runs it from TypeScript through tsx, whose loader every worker then carries;
 * - reclaim latency: a 256 MiB guest writes 150 MiB to tmpfs and deletes it; time from the delete to the VM's
 *   resident memory being back within 20 MiB;
 * - policy reaction: two 256 MiB VMs (floor 64 MiB) on a 384 MiB budget; one writes 120 MiB at once; time from
 *   the write to the policy's first 'grow' event for it, and whether any guest OOM-killed.
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/memory/index.ts [--vms N] [--skip-qemu] [--source]
 *     [--only density|reclaim|reaction]
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import type { HostEvent } from '../../src/host/events.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { IDLE_TRIM_COLLECT_BYTES } from '../../src/machine/machine.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../../test/host/daemon-harness.js';
import { repoRoot } from '../../test/helpers/paths.js';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '6' },
    'skip-qemu': { type: 'boolean' },
    /** Run the daemon from the TypeScript sources through tsx (workers load tsx too): not what production runs. */
    source: { type: 'boolean' },
    only: { type: 'string' },
  },
});
const MIB = 1024 * 1024;
const g = guestArtifacts();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const mib = (b: number) => `${(b / MIB).toFixed(1)} MiB`;

async function sh(d: DaemonHandle, name: string, script: string): Promise<string> {
  const r = await d.client.json<{ exitCode: number; stdout: string }>('POST', `/vms/${name}/exec`, {
    argv: ['sh', '-c', script],
    timeoutMs: 120_000,
  });
  if (r.exitCode !== 0) throw new Error(`${name}: ${script}: exit ${r.exitCode}`);
  return Buffer.from(r.stdout, 'base64').toString();
}

async function boot(d: DaemonHandle, specs: { name: string; memoryMiB: number; memory?: object }[]): Promise<void> {
  for (const s of specs)
    await d.client.json('POST', '/vms', { name: s.name, memoryMiB: s.memoryMiB, rootDisk: false, memory: s.memory });
  for (const s of specs) await d.client.json('POST', `/vms/${s.name}/actions/start`, {});
  for (const s of specs)
    await waitFor(
      `${s.name} agent`,
      async () => {
        try {
          return (await sh(d, s.name, 'echo up')).includes('up') || undefined;
        } catch {
          return undefined;
        }
      },
      900_000,
      2000,
    );
}

const vm = (d: DaemonHandle, n: string) => d.client.json<VmView>('GET', `/vms/${n}`);

/** The daemon's own (main isolate) V8 heap, from its /metrics: its growth is not the VMs' and is shown apart. */
async function mainHeapBytes(d: DaemonHandle): Promise<number> {
  const text = (await d.client.text('/metrics')).toString();
  return Number(/^typevisor_daemon_nodejs_heap_size_total_bytes (\S+)$/m.exec(text)?.[1] ?? NaN);
}

const cpuSecondsOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in USER_HZ ticks
};

/**
 * Waits for boot to settle: every VM's idle trim has run (its decode caches are down to the idle loop's pages)
 * and its worker has collected after it, so what is measured is what an idle VM keeps.
 */
async function settle(d: DaemonHandle, names: string[]): Promise<void> {
  await waitFor(
    'the idle trim in every VM',
    async () => {
      const views = await Promise.all(names.map((x) => vm(d, x)));
      return views.every((v) => v.stats!.decodeCacheBytes < IDLE_TRIM_COLLECT_BYTES) || undefined;
    },
    180_000,
    1000,
  );
  await sleep(5000);
}

async function density(n: number): Promise<number> {
  const d = await startDaemonProcess({ runtime: 'machine', built: !values.source, extraArgs: ['--memory-budget', '16G'] });
  try {
    await sleep(3000);
    const rss0 = rssOf(d.proc.pid!);
    // The first VM also pays for what every later one shares (the default network's worker, modules the daemon
    // loads on first use): it is booted and settled first, and the figure is the growth per VM after it.
    await boot(d, [{ name: 'first', memoryMiB: 64 }]);
    await settle(d, ['first']);
    const rss1 = rssOf(d.proc.pid!);
    const heap1 = await mainHeapBytes(d);
    const names = Array.from({ length: n }, (_, i) => `idle${i}`);
    const cpu0 = cpuSecondsOf(d.proc.pid!);
    const t0 = performance.now();
    await boot(
      d,
      names.map((name) => ({ name, memoryMiB: 64 })),
    );
    const bootS = (performance.now() - t0) / 1000;
    const bootCpu = (cpuSecondsOf(d.proc.pid!) - cpu0) / n;
    await settle(d, [...names, 'first']);
    const rss2 = rssOf(d.proc.pid!);
    const heap2 = await mainHeapBytes(d);
    const perVm = (rss2 - rss1) / n;
    const views = await Promise.all(names.map((x) => vm(d, x)));
    const avg = (f: (v: VmView) => number) => views.reduce((a, v) => a + f(v), 0) / n;
    const api = avg((v) => v.stats!.residentBytes);
    console.log(
      `density (${n} idle 64 MiB VMs after a first one, daemon from ${values.source ? 'source (tsx)' : 'dist'}, load ${loadavg()[0]!.toFixed(1)}):`,
    );
    console.log(`  boot: ${bootS.toFixed(1)} s for all ${n}, ${bootCpu.toFixed(2)} daemon CPU s per VM`);
    console.log(
      `  daemon RSS ${mib(rss0)} empty, ${mib(rss1)} with the first VM, ${mib(rss2)} with ${n + 1}: ${mib(perVm)} per added idle VM` +
        ` (${mib((rss2 - rss0) / (n + 1))} per VM with the first one's share)`,
    );
    console.log(
      `  daemon's own heap ${mib(heap1)} -> ${mib(heap2)} meanwhile (${mib((heap2 - heap1) / n)} per VM of the figure)`,
    );
    console.log(
      `  API per VM: resident ${mib(api)} = guest RAM ${mib(avg((v) => v.stats!.guestRamBytes))}` +
        ` + decode caches ${mib(avg((v) => v.stats!.decodeCacheBytes))} + worker heap ${mib(avg((v) => v.stats!.workerHeapBytes))};` +
        ` not in it: ${mib(perVm - api)} (the worker thread's isolate outside its heap, stacks, allocator)`,
    );
    console.log(`  idle 64 MiB VMs in 8 GiB of host RSS: ${1 + Math.floor((8 * 1024 * MIB - rss1) / perVm)}`);
    return perVm;
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

/** Host RSS of the daemon and every process under it (VM processes in process mode), from /proc. */
function hostRssBytes(rootPid: number): number {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone meanwhile */
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p && hops < 64; p = parent.get(p), hops++) if (p === rootPid) return true;
    return false;
  };
  let total = 0;
  for (const pid of parent.keys()) {
    if (!inTree(pid)) continue;
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      /* gone meanwhile */
    }
  }
  return total;
}

async function reclaim(): Promise<void> {
  const d = await startDaemonProcess({ runtime: 'machine', built: !values.source, extraArgs: ['--memory-budget', '2G'] });
  try {
    await boot(d, [{ name: 'r', memoryMiB: 256 }]);
    await sleep(8000);
    const base = (await vm(d, 'r')).stats!.residentBytes;
    const hostBase = hostRssBytes(d.proc.pid!);
    await sh(
      d,
      'r',
      'mkdir -p /fill && mount -t tmpfs -o size=200m tmpfs /fill && dd if=/dev/zero of=/fill/f bs=1M count=150 2>/dev/null',
    );
    const filled = (await vm(d, 'r')).stats!.residentBytes;
    const hostFilled = hostRssBytes(d.proc.pid!);
    const t0 = performance.now();
    await sh(d, 'r', 'rm /fill/f');
    const ms = await waitFor(
      'reclaim',
      async () => ((await vm(d, 'r')).stats!.residentBytes <= base + 20 * MIB ? performance.now() - t0 : undefined),
      60_000,
      100,
    );
    // The host's own figure (the bookkeeping above counts allocated chunks): settle, then read RSS again.
    await sleep(3000);
    const hostAfter = hostRssBytes(d.proc.pid!);
    console.log(
      `reclaim: resident ${mib(base)} -> ${mib(filled)} after writing 150 MiB; back within 20 MiB ${(ms / 1000).toFixed(2)} s after the delete`,
    );
    console.log(
      `reclaim, host RSS (daemon and VM processes): ${mib(hostBase)} -> ${mib(hostFilled)} after writing -> ${mib(hostAfter)} 3 s after back`,
    );
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

async function reaction(): Promise<void> {
  const d = await startDaemonProcess({
    runtime: 'machine',
    built: !values.source,
    extraArgs: ['--memory-budget', '384M', '--overcommit', '2'],
  });
  try {
    await boot(
      d,
      ['p1', 'p2'].map((name) => ({ name, memoryMiB: 256, memory: { minMiB: 64 } })),
    );
    await waitFor(
      'the policy to size the idle guests',
      async () => ((await vm(d, 'p1')).memory.sizeMiB! < 256 ? true : undefined),
      120_000,
      1000,
    );
    await sleep(5000);
    const { events: before } = await d.client.json<{ events: HostEvent[] }>('GET', '/events?follow=false');
    const after = before.at(-1)?.id ?? 0;
    const t0 = performance.now();
    const size0 = (await vm(d, 'p1')).memory.sizeMiB!;
    void sh(
      d,
      'p1',
      'mkdir -p /fill && mount -t tmpfs -o size=200m tmpfs /fill && dd if=/dev/zero of=/fill/f bs=1M count=120 2>/dev/null',
    );
    const grow = await waitFor(
      'a grow event',
      async () => {
        const { events } = await d.client.json<{ events: HostEvent[] }>('GET', `/events?follow=false&after=${after}`);
        return events.find((e) => e.type === 'policy' && e.vm === 'p1' && e.action === 'grow');
      },
      60_000,
      100,
    );
    const ms = performance.now() - t0;
    await sleep(10_000);
    const oom = await sh(d, 'p1', 'grep oom_kill /proc/vmstat');
    console.log(
      `policy reaction: p1 at ${size0} MiB writes 120 MiB; first grow event after ${(ms / 1000).toFixed(2)} s (${grow.reason})`,
    );
    console.log(
      `  p1 now ${(await vm(d, 'p1')).memory.sizeMiB} MiB, p2 ${(await vm(d, 'p2')).memory.sizeMiB} MiB; guest ${oom.trim()}`,
    );
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

/** qemu-system-riscv64 -m 64 booted to the marker and left idle: its RSS. */
function qemuIdleRss(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'qemu-system-riscv64',
      [
        '-M',
        'virt',
        '-m',
        '64',
        '-smp',
        '1',
        '-nographic',
        '-kernel',
        g.kernel,
        '-initrd',
        g.initramfs,
        '-append',
        'console=ttyS0',
      ],
      { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('qemu: no marker'));
    }, 300_000);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      if (out.includes(g.marker)) {
        clearTimeout(timer);
        out = '';
        setTimeout(() => {
          const rss = rssOf(child.pid!);
          child.kill('SIGKILL');
          resolve(rss);
        }, 15_000);
      }
    });
  });
}

const only = values.only;
if (only && !['density', 'reclaim', 'reaction'].includes(only)) throw new Error(`--only density|reclaim|reaction, not ${only}`);
if (!only || only === 'density') {
  const perVm = await density(Number(values.vms));
  if (!values['skip-qemu']) {
    const q = await qemuIdleRss();
    console.log(`qemu-system-riscv64 -m 64, idle after boot: RSS ${mib(q)} per VM; typevisor/qemu ${(perVm / q).toFixed(2)}x`);
  }
}
if (!only || only === 'reclaim') await reclaim();
if (!only || only === 'reaction') await reaction();
