/**
 * Process mode against thread mode: a real daemon per mode starts N Linux VMs (default 3, 128 MiB, the default
 * image) one after the other, and reports for each mode
 *   - start request → reply (the VM's worker or process exists and its machine was built),
 *   - start → the guest's ready marker on the console,
 *   - host memory per booted VM, RSS and PSS (/proc/PID/smaps_rollup; PSS splits pages shared among processes,
 *     e.g. the node binary's text that every VM process maps, so it is what one more VM costs): thread mode, the
 *     daemon's growth / N; process mode, the VM processes' memory plus the daemon's growth, / N; and the VMs
 *     per GiB that PSS allows. Guest RAM actually allocated is shown too (the same in both modes).
 *
 *   npx tsx bench/vm-mode/index.ts [--count N] [--memory MIB] [--modes process,thread] [--rest SECONDS]
 *   (or node dist/bench/vm-mode/index.js after a build, which runs VM processes from dist/ without tsx)
 */
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor } from '../../test/host/daemon-harness.js';
import { loadAverage, memoryOf, MiB, sumMemory, type Memory } from './proc-memory.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '3' },
    memory: { type: 'string', default: '128' },
    modes: { type: 'string', default: 'process,thread' },
    rest: { type: 'string', default: '10' },
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
    const all = sumMemory([memoryOf(d.proc.pid!), ...vmProcesses(d.home).map((p) => memoryOf(p.pid))]);
    for (let i = 0; i < COUNT; i++)
      guestRam += (await d.client.json<VmView>('GET', `/vms/m${i}?stats=true`)).stats!.guestRamBytes;
    return {
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
  '| mode | start → reply | start → ready marker | host memory per VM (RSS / PSS) | VMs per GiB (PSS) | of which guest RAM |',
);
console.log(
  '| ---- | ------------- | -------------------- | ------------------------------ | ----------------- | ------------------ |',
);
for (const r of results)
  console.log(
    `| ${r.mode} | ${r.replyMs.map((m) => m.toFixed(0)).join(' / ')} ms | ${fmt(r.markerMs)} | ${(r.perVm.rss / MiB).toFixed(1)} / ${(r.perVm.pss / MiB).toFixed(1)} MiB | ${(1024 / (r.perVm.pss / MiB)).toFixed(1)} | ${(r.guestRamPerVm / MiB).toFixed(1)} MiB |`,
  );
