// @exclusive
/**
 * Memory allocation with real Linux guests on a real daemon (issue 12's evidence). Guests fill tmpfs through
 * the guest agent (`exec`), and the host's figures are read from the API (guest RAM chunks held per VM):
 *
 * - reclaim: 300 MiB written then freed in a guest comes back to the host (free page reporting) to within 20 MiB
 *   of where it was, within 10 s;
 * - overcommit: four 512 MiB VMs (floor 64 MiB) on a 1 GiB budget with --overcommit 2: idle they fit (the policy
 *   balloons them down); one fills 400 MiB and the policy moves memory to it from the idle ones, with no guest
 *   OOM kill and the VMs' resident memory under the budget; when it frees the memory the others get theirs back;
 *   no VM ever goes under its floor; events show each step with its reason.
 *
 * Exclusive: it measures a reclaim time, and four guests need the machine to boot in reasonable time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { VmView } from '../../src/host/actions.js';
import type { HostEvent } from '../../src/host/events.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from './daemon-harness.js';

const MIB = 1024 * 1024;
/** POST /vms/:name/exec's answer (output in base64). */
interface ExecAnswer {
  exitCode: number;
  stdout: string;
  stderr: string;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bootGuests(d: DaemonHandle, specs: { name: string; memoryMiB: number; memory?: object }[]): Promise<void> {
  guestArtifacts(); // a missing guest image fails here with the reason
  for (const s of specs)
    await d.client.json('POST', '/vms', { name: s.name, memoryMiB: s.memoryMiB, rootDisk: false, memory: s.memory });
  for (const s of specs) await d.client.json('POST', `/vms/${s.name}/actions/start`, {});
  for (const s of specs) {
    await waitFor(
      `${s.name} guest agent`,
      async () => {
        try {
          const r = await sh(d, s.name, 'echo up', 20_000);
          return r.includes('up') ? true : undefined;
        } catch {
          return undefined;
        }
      },
      900_000,
      2000,
    );
  }
}

async function sh(d: DaemonHandle, name: string, script: string, timeoutMs = 120_000): Promise<string> {
  const r = await d.client.json<ExecAnswer>('POST', `/vms/${name}/exec`, { argv: ['sh', '-c', script], timeoutMs });
  const out = Buffer.from(r.stdout, 'base64').toString('utf8');
  if (r.exitCode !== 0)
    throw new Error(`${name}: '${script}' exited ${r.exitCode}: ${out} ${Buffer.from(r.stderr, 'base64').toString()}`);
  return out;
}

async function vm(d: DaemonHandle, name: string): Promise<VmView> {
  return d.client.json<VmView>('GET', `/vms/${name}`);
}

/** Guest RAM the VM holds on the host, once its balloon stats have arrived. */
async function resident(d: DaemonHandle, name: string): Promise<number> {
  return (await vm(d, name)).stats!.residentBytes;
}

/** The resident set of the process that holds the VM's RAM: its VM process (process mode), else the daemon. */
function hostRss(d: DaemonHandle, name: string): number {
  const pid = vmProcesses(d.home).find((p) => p.name === name)?.pid ?? d.proc.pid;
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

async function oomKills(d: DaemonHandle, name: string): Promise<number> {
  const out = await sh(d, name, 'grep oom_kill /proc/vmstat');
  const m = /oom_kill (\d+)/.exec(out);
  assert.ok(m, `oom_kill in /proc/vmstat of ${name}: ${out}`);
  return Number(m[1]);
}

/** Waits until the VM's resident memory stops moving (within 2 MiB over 3 s). */
async function settled(d: DaemonHandle, name: string, timeoutMs = 120_000): Promise<number> {
  let prev = -1;
  return waitFor(
    `${name} resident memory to settle`,
    async () => {
      const r = await resident(d, name);
      const done = prev >= 0 && Math.abs(r - prev) <= 2 * MIB;
      prev = r;
      return done ? r : undefined;
    },
    timeoutMs,
    3000,
  );
}

describe('reclaim (one real guest)', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemonProcess({ runtime: 'machine', extraArgs: ['--memory-budget', '2G'] });
    await bootGuests(d, [{ name: 'r1', memoryMiB: 512 }]);
  });
  after(async () => {
    await d.stop();
    removeHome(d.home);
  });

  test(
    '300 MiB filled then freed in the guest goes back to the host within 10 s, to within 20 MiB',
    { timeout: 900_000 },
    async () => {
      const v = await waitFor(
        'balloon statistics',
        async () => ((await vm(d, 'r1')).stats?.guestStatsUpdates ? vm(d, 'r1') : undefined),
        60_000,
        500,
      );
      assert.equal(v.stats!.balloonDeflateOnOom, true, 'deflate-on-OOM negotiated');
      assert.ok(v.stats!.guestAvailableBytes! > 300 * MIB, `guest available ${v.stats!.guestAvailableBytes}`);
      const baseline = await settled(d, 'r1');
      await sh(
        d,
        'r1',
        'mkdir -p /fill && mount -t tmpfs -o size=320m tmpfs /fill && dd if=/dev/zero of=/fill/f bs=1M count=300 2>&1',
      );
      const filled = await resident(d, 'r1');
      const filledRss = hostRss(d, 'r1');
      assert.ok(filled - baseline >= 290 * MIB, `resident grew by ${(filled - baseline) / MIB} MiB`);
      const full = await waitFor(
        'guest stats to see the fill',
        async () => {
          const s = (await vm(d, 'r1')).stats!;
          return s.guestAvailableBytes !== null && s.guestAvailableBytes < v.stats!.guestAvailableBytes! - 250 * MIB
            ? s
            : undefined;
        },
        30_000,
        250,
      );
      assert.ok(full.guestAvailableBytes! < v.stats!.guestAvailableBytes!);

      await sh(d, 'r1', 'rm /fill/f && umount /fill');
      const freedAt = performance.now();
      const back = await waitFor(
        'host resident memory to come back',
        async () => ((await resident(d, 'r1')) <= baseline + 20 * MIB ? performance.now() - freedAt : undefined),
        30_000,
        200,
      );
      console.log(
        `reclaim: baseline ${(baseline / MIB).toFixed(0)} MiB, filled ${(filled / MIB).toFixed(0)} MiB, back within 20 MiB after ${(back / 1000).toFixed(1)} s`,
      );
      assert.ok(back <= 10_000, `took ${back} ms`);
      // The process holding the VM gives the memory back to the host, not only the API's count.
      const rssDrop = await waitFor(
        'the RSS of the process holding the VM to drop',
        () => (filledRss - hostRss(d, 'r1') >= 250 * MIB ? filledRss - hostRss(d, 'r1') : undefined),
        10_000,
        200,
      );
      console.log(`reclaim: the RSS of the process holding the VM fell by ${(rssDrop / MIB).toFixed(0)} MiB`);
      assert.equal(await oomKills(d, 'r1'), 0);
    },
  );
});

describe('overcommit under policy (four real guests)', () => {
  let d: DaemonHandle;
  const names = ['o1', 'o2', 'o3', 'o4'];
  const BUDGET = 1024 * MIB;
  let minSizeSeen = Infinity;
  let maxResidentSeen = 0;
  let watching = true;
  let watcher: Promise<void>;

  before(async () => {
    d = await startDaemonProcess({ runtime: 'machine', extraArgs: ['--memory-budget', '1G', '--overcommit', '2'] });
    await bootGuests(
      d,
      names.map((name) => ({ name, memoryMiB: 512, memory: { minMiB: 64 } })),
    );
    // Floors and the budget are watched all along, not just at the checkpoints.
    watcher = (async () => {
      while (watching) {
        const { vms } = await d.client.json<{ vms: VmView[] }>('GET', '/vms?stats=true');
        let sum = 0;
        for (const v of vms) {
          if (v.memory.sizeMiB !== null) minSizeSeen = Math.min(minSizeSeen, v.memory.sizeMiB);
          sum += v.stats?.residentBytes ?? 0;
        }
        maxResidentSeen = Math.max(maxResidentSeen, sum);
        await sleep(500);
      }
    })();
  });
  after(async () => {
    watching = false;
    await watcher;
    await d.stop();
    removeHome(d.home);
  });

  const sizes = async () => new Map(await Promise.all(names.map(async (n) => [n, (await vm(d, n)).memory.sizeMiB!] as const)));

  test('idle, they fit: the policy balloons them down to share the pool', { timeout: 600_000 }, async () => {
    const s = await waitFor(
      'the policy to size the idle guests',
      async () => {
        const s = await sizes();
        return [...s.values()].reduce((a, b) => a + b, 0) <= 870 ? s : undefined;
      },
      180_000,
      1000,
    );
    for (const [n, size] of s) assert.ok(size >= 64 && size < 512, `${n}: ${size} MiB`);
  });

  test(
    'one fills 400 MiB: memory moves to it from the idle ones, no OOM kill, resident under the budget',
    { timeout: 900_000 },
    async () => {
      const before = await sizes();
      await sh(d, 'o1', 'mkdir -p /fill && mount -t tmpfs -o size=450m tmpfs /fill');
      // 20 MiB at a time, as a growing application would: the policy reacts within a sample or two.
      for (let i = 0; i < 20; i++) {
        await sh(d, 'o1', `dd if=/dev/zero of=/fill/f${i} bs=1M count=20 2>/dev/null`);
        await sleep(1500);
      }
      const after = await waitFor(
        'the filled guest to hold its data',
        async () => {
          const s = await sizes();
          return s.get('o1')! >= 420 ? s : undefined;
        },
        60_000,
        1000,
      );
      assert.ok(after.get('o1')! > before.get('o1')!, `o1 grew ${before.get('o1')} -> ${after.get('o1')} MiB`);
      for (const n of names.slice(1))
        assert.ok(after.get(n)! <= before.get(n)!, `${n} gave: ${before.get(n)} -> ${after.get(n)}`);
      assert.ok((await resident(d, 'o1')) >= 400 * MIB);
      for (const n of names) assert.equal(await oomKills(d, n), 0, `${n} had no OOM kill`);
      assert.ok(maxResidentSeen <= BUDGET, `VMs' resident memory peaked at ${maxResidentSeen / MIB} MiB`);
    },
  );

  test(
    'it frees the memory: the others get theirs back; floors held throughout; events show each step',
    { timeout: 600_000 },
    async () => {
      const before = await sizes();
      await sh(d, 'o1', 'rm -f /fill/f* && umount /fill');
      const after = await waitFor(
        'the idle guests to get memory back',
        async () => {
          const s = await sizes();
          return names.slice(1).every((n) => s.get(n)! > before.get(n)!) ? s : undefined;
        },
        120_000,
        1000,
      );
      assert.ok(after.get('o1')! < before.get('o1')!, `o1 shrank back: ${before.get('o1')} -> ${after.get('o1')}`);
      assert.ok(minSizeSeen >= 64, `smallest size seen ${minSizeSeen} MiB`);
      assert.ok(maxResidentSeen <= BUDGET, `VMs' resident memory peaked at ${maxResidentSeen / MIB} MiB`);
      const { events } = await d.client.json<{ events: HostEvent[] }>('GET', '/events?follow=false');
      const policy = events.filter(
        (e): e is Extract<HostEvent, { type: 'policy' }> => e.type === 'policy' && e.policy === 'memory',
      );
      for (const action of ['reclaim', 'grow', 'return'])
        assert.ok(
          policy.some((e) => e.action === action),
          `a ${action} event: ${policy.map((e) => `${e.vm} ${e.reason}`).join('\n')}`,
        );
      assert.ok(policy.some((e) => e.vm === 'o1' && e.action === 'grow'));
      for (const e of policy) assert.match(e.reason, /MiB/);
      console.log(policy.map((e) => `${e.time} ${e.vm} ${e.reason}`).join('\n'));
    },
  );
});
