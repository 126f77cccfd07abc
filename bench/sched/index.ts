/**
 * CPU allocation benchmark: three Linux guests in busy loops on a typevisor daemon, measured from the host
 * (schedstat of each VM thread), for each enforcement mechanism:
 *   fairness  — weight mixes pinned to core 0: the largest relative error of a VM's share against its ideal
 *               (total × weight / Σ weights);
 *   cap       — one busy VM capped at 25 % and 50 %: measured share and the error against the cap (with the
 *               time it waited runnable, which says whether the host, not the cap, held it back);
 *   overhead  — guest instructions/s of one busy VM with no limit vs limits that do not bind (cap 200 %, a
 *               cpuset of every core, weight 10000);
 *   reaction  — how long a cap change takes: the PATCH round trip, and until the thread's use crosses the
 *               middle between the old and the new cap (25 % → 60 %).
 *
 *   npx tsx bench/sched/index.ts [--mechanism cgroup-v1|cgroup-v2|fallback|all] [--seconds N]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import type { VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess } from '../../test/host/daemon-harness.js';
import { Rig, sleep } from '../../test/host/cpu-rig.js';

const { values } = parseArgs({
  options: { mechanism: { type: 'string', default: 'all' }, seconds: { type: 'string', default: '15' } },
});
const mechanisms = values.mechanism === 'all' ? ['cgroup-v1', 'fallback'] : [values.mechanism!];
const seconds = Number(values.seconds);
const NAMES = ['a', 'b', 'c'];
const MIXES = [
  [100, 100, 100],
  [100, 200, 400],
  [100, 300, 900],
];

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

async function instretRate(rig: Rig, name: string, ms: number): Promise<number> {
  const a = (await rig.d.client.json<VmView>('GET', `/vms/${name}`)).stats!.instret;
  const t0 = performance.now();
  await sleep(ms);
  const b = (await rig.d.client.json<VmView>('GET', `/vms/${name}`)).stats!.instret;
  return (b - a) / ((performance.now() - t0) / 1000);
}

for (const mechanism of mechanisms) {
  console.log(`\n== ${mechanism} (load average ${loadavg()[0]!.toFixed(1)})`);
  const rig = new Rig(await startDaemonProcess({ runtime: 'machine', extraArgs: ['--cpu-mechanism', mechanism] }));
  try {
    await rig.boot(NAMES.map((name) => ({ name, cpu: { cpuset: '0' } })));
    for (const n of NAMES) rig.busy(n);
    await sleep(2000);

    console.log('fairness (3 busy VMs pinned to core 0):');
    for (const mix of MIXES) {
      for (const [i, n] of NAMES.entries()) await rig.set(n, { weight: mix[i] });
      await sleep(1000);
      const m = await rig.measure(NAMES, seconds * 1000);
      const used = NAMES.map((n) => m.get(n)!.used);
      const total = used.reduce((a, b) => a + b, 0);
      const wsum = mix.reduce((a, b) => a + b, 0);
      const errors = NAMES.map((_, i) => used[i]! / ((total * mix[i]!) / wsum) - 1);
      const worst = Math.max(...errors.map(Math.abs));
      console.log(
        `  weights ${mix.join(':').padEnd(12)} shares ${used.map(pct).join(' / ')} (sum ${pct(total)}), worst error ${(worst * 100).toFixed(1)} %`,
      );
    }

    for (const n of ['b', 'c']) rig.idle(n);
    for (const n of NAMES) await rig.set(n, { weight: 100, cpuset: null });
    console.log('caps (one busy VM):');
    for (const cap of [25, 50]) {
      await rig.set('a', { capPercent: cap });
      await sleep(1500);
      const m = (await rig.measure(['a'], seconds * 1000)).get('a')!;
      console.log(
        `  cap ${cap} %: used ${pct(m.used)}, error ${(m.used * 100 - cap).toFixed(1)} points, waited runnable ${pct(m.waited)}`,
      );
    }

    console.log('reaction (cap 25 % -> 60 %):');
    await rig.set('a', { capPercent: 25 });
    await sleep(2000);
    const t0 = performance.now();
    await rig.set('a', { capPercent: 60 });
    const patchMs = performance.now() - t0;
    let crossed = NaN;
    while (performance.now() - t0 < 5000) {
      const w = (await rig.measure(['a'], 250)).get('a')!;
      if (w.used > 0.425) {
        crossed = performance.now() - t0;
        break;
      }
    }
    console.log(
      `  PATCH answered in ${patchMs.toFixed(1)} ms; use crossed 42.5 % after ${Number.isNaN(crossed) ? 'never (within 5 s)' : `${crossed.toFixed(0)} ms`} (250 ms windows)`,
    );

    console.log('overhead (guest instructions/s of one busy VM):');
    await rig.set('a', { capPercent: null, weight: 100, cpuset: null });
    await sleep(1000);
    const free = await instretRate(rig, 'a', seconds * 1000);
    await rig.set('a', { capPercent: 200, weight: 10000, cpuset: '0-1' });
    await sleep(1000);
    const limited = await instretRate(rig, 'a', seconds * 1000);
    console.log(
      `  no limits ${(free / 1e6).toFixed(1)} M/s, non-binding limits ${(limited / 1e6).toFixed(1)} M/s (ratio ${(limited / free).toFixed(3)})`,
    );
    for (const n of NAMES) rig.idle(n);
  } finally {
    rig.close();
    await rig.d.stop();
    removeHome(rig.d.home);
  }
}
