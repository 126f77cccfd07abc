/**
 * Process mode against thread mode: a real daemon per mode starts N Linux VMs (default 3, 128 MiB, the default
 * image) one after the other, and reports for each mode
 *   - start request → reply (the VM's worker or process exists and its machine was built),
 *   - start → the guest's ready marker on the console,
 *   - host memory per booted VM, RSS and PSS (/proc/PID/smaps_rollup; PSS splits pages shared among processes,
 *     e.g. the node binary's text that every VM process maps, so it is what one more VM costs): thread mode, the
 *     daemon's growth / N; process mode, the VM processes' and the idle warm process's memory plus the daemon's
 *     growth, / N; and the VMs
 *     per GiB that PSS allows. Guest RAM actually allocated is shown too (the same in both modes).
 * Before each start it waits (up to 60 s) for the daemon's warm pool (--warm-workers, default 1) to have a VM
 * process or worker ready, as a daemon that has been up a moment has, and reports the pool's hits and misses;
 * --no-pool-wait starts at once (a start right after another may then find the pool still refilling).
 *
 *   npx tsx bench/vm-mode/index.ts [--count N] [--memory MIB] [--modes process,thread] [--rest SECONDS]
 *   (or node dist/bench/vm-mode/index.js after a build, which runs VM processes from dist/ without tsx)
 */
import { parseArgs } from 'node:util';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { pooledProcesses, removeHome, startDaemonProcess, vmProcesses, waitFor } from '../../test/host/daemon-harness.js';
import { loadAverage, memoryOf, MiB, sumMemory, type Memory } from './proc-memory.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '3' },
    memory: { type: 'string', default: '128' },
    modes: { type: 'string', default: 'process,thread' },
    rest: { type: 'string', default: '10' },
    'no-pool-wait': { type: 'boolean', default: false },
  },
});
const COUNT = Number(values.count);
const MEMORY = Number(values.memory);

interface ModeResult {
  mode: string;
  replyMs: number[];
  markerMs: number[];
  perVm: Memory;
  guestRamPerVm: number;
  pool: string;
}

async function measure(mode: 'process' | 'thread'): Promise<ModeResult> {
  const d = await startDaemonProcess({ runtime: 'machine', vmMode: mode, startTimeoutMs: 60_000 });
  try {
    const idle = memoryOf(d.proc.pid!);
    const replyMs: number[] = [];
    const markerMs: number[] = [];
    let guestRam = 0;
    for (let i = 0; i < COUNT; i++) {
      const name = `m${i}`;
      await d.client.json('POST', '/vms', { name, memoryMiB: MEMORY });
      const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
      if (!values['no-pool-wait'])
        await waitFor(
          'a warm VM process or worker',
          async () => {
            const pool = (await d.client.json<HostInfo>('GET', '/host')).daemon.warmPool;
            return !pool || pool.size === 0 || pool.idle > 0 ? true : undefined;
          },
          60_000,
          50,
        ).catch(() => {});
      const t0 = performance.now();
      await d.client.json('POST', `/vms/${name}/actions/start`, {});
      replyMs.push(performance.now() - t0);
      await waitFor(
        `${name} boot`,
        async () => ((await d.client.text(`/vms/${name}/console.log`)).toString('latin1').includes(marker) ? true : undefined),
        900_000,
        100,
      );
      markerMs.push(performance.now() - t0);
    }
    await new Promise((r) => setTimeout(r, Number(values.rest) * 1000)); // let the boot's garbage be collected
    // Process mode's idle warm process counts, as thread mode's idle warm worker counts in the daemon's memory.
    const all = sumMemory([
      memoryOf(d.proc.pid!),
      ...vmProcesses(d.home).map((p) => memoryOf(p.pid)),
      ...pooledProcesses(d.proc.pid!).map(memoryOf),
    ]);
    for (let i = 0; i < COUNT; i++)
      guestRam += (await d.client.json<VmView>('GET', `/vms/m${i}?stats=true`)).stats!.guestRamBytes;
    const pool = (await d.client.json<HostInfo>('GET', '/host')).daemon.warmPool;
    return {
      pool: pool ? `${pool.hits} / ${pool.misses}` : 'off',
      mode,
      replyMs,
      markerMs,
      perVm: { rss: (all.rss - idle.rss) / COUNT, pss: (all.pss - idle.pss) / COUNT },
      guestRamPerVm: guestRam / COUNT,
    };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

const fmt = (ms: number[]) => ms.map((m) => (m / 1000).toFixed(1)).join(' / ') + ' s';
const results: ModeResult[] = [];
for (const mode of values.modes.split(',') as ('process' | 'thread')[]) results.push(await measure(mode));
console.log(`${COUNT} VMs of ${MEMORY} MiB started one after the other; load average ${loadAverage()}`);
console.log(
  '| mode | warm pool hits / misses | start → reply | start → ready marker | host memory per VM (RSS / PSS) | VMs per GiB (PSS) | of which guest RAM |',
);
console.log(
  '| ---- | ----------------------- | ------------- | -------------------- | ------------------------------ | ----------------- | ------------------ |',
);
for (const r of results)
  console.log(
    `| ${r.mode} | ${r.pool} | ${r.replyMs.map((m) => m.toFixed(0)).join(' / ')} ms | ${fmt(r.markerMs)} | ${(r.perVm.rss / MiB).toFixed(1)} / ${(r.perVm.pss / MiB).toFixed(1)} MiB | ${(1024 / (r.perVm.pss / MiB)).toFixed(1)} | ${(r.guestRamPerVm / MiB).toFixed(1)} MiB |`,
  );
