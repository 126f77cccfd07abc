/**
 * Process mode against thread mode: a real daemon per mode starts N Linux VMs (default 3, 128 MiB, the default
 * image) one after the other, and reports for each mode
 *   - start request → reply (the VM's worker or process exists and its machine was built),
 *   - start → the guest's ready marker on the console,
 *   - host memory per booted VM: thread mode, the daemon's RSS growth / N; process mode, the VM processes' RSS
 *     plus the daemon's growth, / N. Guest RAM actually allocated is shown too (the same in both modes).
 *
 *   npx tsx bench/vm-mode/index.ts [--count N] [--memory MIB] [--modes process,thread]
 *   (or node dist/bench/vm-mode/index.js after a build, which runs VM processes from dist/ without tsx)
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor } from '../../test/host/daemon-harness.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '3' },
    memory: { type: 'string', default: '128' },
    modes: { type: 'string', default: 'process,thread' },
  },
});
const COUNT = Number(values.count);
const MEMORY = Number(values.memory);
const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

interface ModeResult {
  mode: string;
  replyMs: number[];
  markerMs: number[];
  perVmBytes: number;
  guestRamPerVm: number;
}

async function measure(mode: 'process' | 'thread'): Promise<ModeResult> {
  const d = await startDaemonProcess({ runtime: 'machine', vmMode: mode, startTimeoutMs: 60_000 });
  try {
    const idle = rssOf(d.proc.pid!);
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
    await new Promise((r) => setTimeout(r, 3000)); // let the boot's garbage be collected
    const daemonGrowth = rssOf(d.proc.pid!) - idle;
    const procs = vmProcesses(d.home);
    const vmRss = procs.reduce((sum, p) => sum + rssOf(p.pid), 0);
    for (let i = 0; i < COUNT; i++)
      guestRam += (await d.client.json<VmView>('GET', `/vms/m${i}?stats=true`)).stats!.guestRamBytes;
    return {
      mode,
      replyMs,
      markerMs,
      perVmBytes: (Math.max(0, daemonGrowth) + vmRss) / COUNT,
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
console.log(
  `${COUNT} VMs of ${MEMORY} MiB started one after the other; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
);
console.log('| mode | start → reply | start → ready marker | host memory per VM | of which guest RAM |');
console.log('| ---- | ------------- | -------------------- | ------------------ | ------------------ |');
for (const r of results)
  console.log(
    `| ${r.mode} | ${r.replyMs.map((m) => m.toFixed(0)).join(' / ')} ms | ${fmt(r.markerMs)} | ${(r.perVmBytes / MiB).toFixed(1)} MiB | ${(r.guestRamPerVm / MiB).toFixed(1)} MiB |`,
  );
