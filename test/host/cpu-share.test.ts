// @exclusive: measures the CPU share each VM thread gets; another test file running beside it would skew it
/**
 * The CPU allocation evidence with real Linux guests running busy loops (`while :; do :; done` started and
 * killed with `typevisor exec`), measured from the host through /proc/<tid>/task/<tid>/schedstat and cpuacct:
 *   weights 100:200:400 pinned to one core give 1:2:4 within 10 % (20 % in the fallback mode);
 *   unpinned, the three are work-conserving (the host has no idle time left while they are busy);
 *   a cap of 25 % holds (25 ± 3 %; 25 ± 5 % with the run-loop cap of the fallback mode), a live change to 60 %
 *   acts within 2 s; --cpuset 1 shows in Cpus_allowed_list and in the per-core time; a capped VM that turns busy
 *   on an idle host is raised within 2 s and gives the burst back when a second VM gets busy on its core, both
 *   as events with their reasons (GET /events and `typevisor events`); the API p99 stays < 50 ms.
 * Shares are ratios between our VMs (the host is shared): under contention from other processes a VM may get
 * less than its cap, which the cap checks allow only when the VM measurably waited for a core (steal).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { VmView } from '../../src/host/actions.js';
import type { HostEvent } from '../../src/host/events.js';
import { latencyPercentiles, removeHome, startDaemonProcess } from './daemon-harness.js';
import { hostIdleJiffies, IDLE_GUEST_SHARE, Rig, sleep } from './cpu-rig.js';
import { runCli } from '../helpers/cli.js';

function assertRatios(shares: Map<string, { used: number }>, weights: Record<string, number>, tolerance: number): string {
  const names = Object.keys(weights);
  const base = shares.get(names[0]!)!.used / weights[names[0]!]!;
  const out: string[] = [];
  for (const n of names) {
    const normalised = shares.get(n)!.used / weights[n]! / base;
    out.push(`${n} ${(shares.get(n)!.used * 100).toFixed(1)} %`);
    assert.ok(
      Math.abs(normalised - 1) <= tolerance,
      `${n}: share/weight is ${normalised.toFixed(3)} of ${names[0]}'s (${out.join(', ')})`,
    );
  }
  return out.join(', ');
}

/**
 * A cap holds: never above cap + tol; below cap - tol only when the host had no idle capacity meanwhile
 * (other processes took it). The VM's own wait time is no evidence: a cgroup cap's throttling counts as wait.
 */
function assertCap(m: { used: number; waited: number }, capPercent: number, tol: number, hostIdle: number): void {
  const used = m.used * 100;
  assert.ok(used <= capPercent + tol, `capped at ${capPercent} %, used ${used.toFixed(1)} %`);
  if (used < capPercent - tol)
    assert.ok(
      hostIdle < 0.05,
      `used ${used.toFixed(1)} % < ${capPercent} % while the host was ${(hostIdle * 100).toFixed(0)} % idle`,
    );
}

/** Measures one VM and the host's idle share over the same window. */
async function measureCapped(rig: Rig, name: string, ms: number): Promise<{ m: { used: number; waited: number }; idle: number }> {
  const a = hostIdleJiffies();
  const m = (await rig.measure([name], ms)).get(name)!;
  const b = hostIdleJiffies();
  return { m, idle: (b.idle - a.idle) / (b.total - a.total) };
}

const WEIGHTS = { w100: 100, w200: 200, w400: 400 };

describe('cgroup enforcement with real guests', { timeout: 1_200_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = new Rig(await startDaemonProcess({ runtime: 'machine' }));
    await rig.boot(Object.entries(WEIGHTS).map(([name, weight]) => ({ name, cpu: { weight, cpuset: '0' } })));
  });
  after(async () => {
    await rig.d.stop();
    removeHome(rig.d.home);
  });

  test('weights 100:200:400 on one core give 1:2:4 within 10 %, and the API stays responsive', async (t) => {
    const mech = (await rig.d.client.json<{ cpuControl: { mechanism: string } }>('GET', '/host')).cpuControl.mechanism;
    assert.match(mech, /^cgroup-v[12]$/, 'this host offers writable cgroups');
    await Promise.all(Object.keys(WEIGHTS).map((n) => rig.busy(n)));
    await sleep(2000);
    const [shares, latency] = await Promise.all([
      rig.measure(Object.keys(WEIGHTS), 30_000),
      latencyPercentiles(() => rig.d.client.json('GET', '/vms?stats=true'), 300),
    ]);
    t.diagnostic(`${mech}, pinned to core 0 over 30 s: ${assertRatios(shares, WEIGHTS, 0.1)}`);
    t.diagnostic(`GET /vms?stats=true meanwhile: ${latency.rounds.join('; ')}`);
    assert.ok(latency.p99 < 50, `API p99 ${latency.p99.toFixed(1)} ms`);
  });

  test('unpinned on every core the busy VMs leave no core idle (work-conserving)', async (t) => {
    for (const n of Object.keys(WEIGHTS)) await rig.set(n, { cpuset: null });
    await sleep(1000);
    const a = hostIdleJiffies();
    const shares = await rig.measure(Object.keys(WEIGHTS), 10_000);
    const b = hostIdleJiffies();
    const idle = (b.idle - a.idle) / (b.total - a.total);
    const sum = [...shares.values()].reduce((s, v) => s + v.used, 0);
    t.diagnostic(`sum of the three VMs: ${sum.toFixed(2)} cores; host idle ${(idle * 100).toFixed(1)} %`);
    assert.ok(idle < 0.1, `the host was ${(idle * 100).toFixed(1)} % idle while three VMs were busy`);
  });

  test('a 25 % cap holds; a live change to 60 % acts within 2 s', async (t) => {
    await rig.idle('w200');
    await rig.idle('w400');
    await rig.set('w100', { capPercent: 25 });
    await sleep(1500);
    const { m, idle } = await measureCapped(rig, 'w100', 10_000);
    t.diagnostic(
      `cap 25 %: used ${(m.used * 100).toFixed(1)} %, waited ${(m.waited * 100).toFixed(1)} %, host idle ${(idle * 100).toFixed(0)} %`,
    );
    assertCap(m, 25, 3, idle);

    await rig.set('w100', { capPercent: 60 });
    const t0 = performance.now();
    // Half-second windows: the change has acted once a window shows well above the old cap. On a host with no
    // idle capacity no cap is what limits the VM and no window can show the change: there the check is that
    // the new cap is in force within the same 2 s.
    let actedAfter = Infinity;
    let how = '';
    while (performance.now() - t0 < 5000) {
      const { m: w, idle } = await measureCapped(rig, 'w100', 500);
      if (w.used > 0.4) how = `used ${(w.used * 100).toFixed(1)} %`;
      else if (idle < 0.05 && (await rig.d.client.json<VmView>('GET', '/vms/w100')).cpu.effectiveCapPercent === 60)
        how = `the host is busy (idle ${(idle * 100).toFixed(0)} %, VM used ${(w.used * 100).toFixed(1)} %): the cap is in force`;
      if (how) {
        actedAfter = (performance.now() - t0) / 1000;
        break;
      }
    }
    t.diagnostic(`the 60 % cap acted within ${actedAfter.toFixed(2)} s (${how})`);
    assert.ok(actedAfter <= 2, `took ${actedAfter} s`);
    const c60 = await measureCapped(rig, 'w100', 5000);
    t.diagnostic(`cap 60 %: used ${(c60.m.used * 100).toFixed(1)} %`);
    assertCap(c60.m, 60, 5, c60.idle);
  });

  test('--cpuset 1 shows in Cpus_allowed_list and in the per-core time', async (t) => {
    const vm = await rig.set('w100', { capPercent: null, cpuset: '1' });
    const tid = rig.guests.get('w100')!.tid;
    assert.match(readFileSync(`/proc/${tid}/task/${tid}/status`, 'utf8'), /^Cpus_allowed_list:\s*1$/m);
    await sleep(500);
    const a = (await rig.d.client.json<VmView>('GET', '/vms/w100')).cpu.perCoreNs;
    assert.ok(a, `per-core time is measured by ${vm.cpu.mechanism}`);
    await sleep(3000);
    const b = (await rig.d.client.json<VmView>('GET', '/vms/w100')).cpu.perCoreNs!;
    const delta = b.map((v, i) => v - a[i]!);
    t.diagnostic(`per-core ns over 3 s: ${delta.join(', ')}`);
    assert.ok(delta[1]! > 0, 'it ran on core 1');
    assert.equal(delta[0], 0, 'and never on core 0');
  });

  test('a capped VM that turns busy on an idle host is raised within 2 s, gives the burst back when a second VM gets busy, and both actions are events with reasons', async (t) => {
    // w100 and w200 share core 0: the burst is room on that core and w200's busy loop there is the contention,
    // whatever the host's other cores do and however many it has.
    await rig.idle('w100');
    await rig.set('w100', { cpuset: '0', capPercent: 25, burst: { capPercent: 90, seconds: 60 } });
    await rig.set('w200', { cpuset: '0' });
    const names = Object.keys(WEIGHTS);
    const rest = await rig.measure(names, 2000);
    t.diagnostic(`at rest: ${[...rest].map(([n, m]) => `${n} ${(m.used * 100).toFixed(1)} %`).join(', ')} of a core`);
    for (const [n, m] of rest) assert.ok(m.used < IDLE_GUEST_SHARE, `${n} uses ${(m.used * 100).toFixed(1)} % of a core at rest`);

    // The evidence is about an idle host: core 0 has room for the burst before w100 turns busy.
    const room = await waitForIdleCore(0, 0.8, 60_000);
    t.diagnostic(`core 0 before: ${(room * 100).toFixed(0)} % idle`);

    const since = (await rig.d.client.json<{ events: HostEvent[] }>('GET', '/events?follow=false')).events.at(-1)?.id ?? 0;
    const policyEvents = async () =>
      (await rig.d.client.json<{ events: HostEvent[] }>('GET', `/events?follow=false&vm=w100&after=${since}`)).events.filter(
        (e): e is Extract<HostEvent, { type: 'policy' }> => e.type === 'policy' && e.policy === 'cpu-burst',
      );
    // What core 0 and w100 did since w100 was told to turn busy, for the failure messages: a VM that never
    // reaches its cap (other load holds it below 25 %) is not held back by the cap, and no burst is due.
    const core0 = coreIdleMeter(0);
    const w100Before = rig.times('w100').cpu;
    // t0 is taken before `typevisor exec` is sent: the 2 s include the time the command takes to start the loop.
    const t0 = performance.now();
    const meanwhile = () =>
      `core 0 ${core0()}, w100 used ${(((rig.times('w100').cpu - w100Before) / ((performance.now() - t0) * 1e6)) * 100).toFixed(1)} % of a core`;
    await rig.busy('w100');
    const execMs = performance.now() - t0;
    const start = await waitForPolicy(policyEvents, 'burst-start', 10_000, meanwhile);
    const raisedAfter = (start.at - t0) / 1000;
    t.diagnostic(
      `burst granted ${raisedAfter.toFixed(2)} s after w100 was told to turn busy (exec ${execMs.toFixed(0)} ms): ${start.event.reason}`,
    );
    assert.ok(raisedAfter <= 2, `raised after ${raisedAfter.toFixed(2)} s (${meanwhile()})`);
    const raised = await rig.d.client.json<VmView>('GET', '/vms/w100');
    assert.equal(raised.cpu.bursting, true);
    assert.equal(raised.cpu.effectiveCapPercent, 90);
    const burst = (await rig.measure(['w100'], 2000)).get('w100')!;
    t.diagnostic(`bursting: w100 uses ${(burst.used * 100).toFixed(1)} % of core 0`);
    assert.ok(burst.used > 0.5, `bursting: ${(burst.used * 100).toFixed(1)} % (core 0 ${core0()})`);
    const early = (await policyEvents()).find((e) => e.action === 'burst-end');
    assert.equal(early, undefined, `the burst ended before a second VM got busy: ${early?.reason}`);

    const t1 = performance.now();
    await rig.busy('w200');
    const end = await waitForPolicy(policyEvents, 'burst-end', 10_000, meanwhile);
    t.diagnostic(`burst taken back ${((end.at - t1) / 1000).toFixed(2)} s after w200 was told to turn busy: ${end.event.reason}`);
    assert.match(end.event.reason, /contended/);
    const lowered = await rig.d.client.json<VmView>('GET', '/vms/w100');
    assert.equal(lowered.cpu.bursting, false);
    assert.equal(lowered.cpu.effectiveCapPercent, 25);

    // `typevisor events` shows both actions with their reasons.
    const cli = await runCli(rig.d.home, ['events', 'w100', '--json']);
    assert.equal(cli.status, 0, cli.stderr);
    const listed = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as HostEvent)
      .filter((e) => e.id > since && e.type === 'policy' && e.policy === 'cpu-burst');
    assert.deepEqual(
      listed.map((e) => [e.type === 'policy' && e.action, e.reason]),
      [
        ['burst-start', start.event.reason],
        ['burst-end', end.event.reason],
      ],
    );
    await Promise.all([rig.idle('w100'), rig.idle('w200')]);
    await rig.set('w100', { cpuset: null, capPercent: null, burst: null });
    await rig.set('w200', { cpuset: null });
  });
});

/** Waits for a policy event with this action; fails with what the host did meanwhile when none comes. */
async function waitForPolicy(
  events: () => Promise<Extract<HostEvent, { type: 'policy' }>[]>,
  action: string,
  timeoutMs: number,
  meanwhile: () => string,
): Promise<{ event: Extract<HostEvent, { type: 'policy' }>; at: number }> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const event = (await events()).find((e) => e.action === action);
    if (event) return { event, at: performance.now() };
    if (performance.now() > end) assert.fail(`no ${action} within ${timeoutMs / 1000} s (${meanwhile()})`);
    await sleep(100);
  }
}

function coreTimes(core: number): { idle: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) throw new Error(`no core ${core} in /proc/stat`);
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3]! + f[4]!, total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** A core's idle share since the call, as text for messages. */
function coreIdleMeter(core: number): () => string {
  const a = coreTimes(core);
  return () => {
    const b = coreTimes(core);
    return `${(((b.idle - a.idle) / Math.max(1, b.total - a.total)) * 100).toFixed(0)} % idle`;
  };
}

/**
 * Waits until a 1 s window shows the core at least `share` idle, and returns that share. Where other processes
 * keep it busy the whole time, the precondition of the check is missing and the test fails saying so.
 */
async function waitForIdleCore(core: number, share: number, timeoutMs: number): Promise<number> {
  const end = performance.now() + timeoutMs;
  let best = 0;
  for (;;) {
    const a = coreTimes(core);
    await sleep(1000);
    const b = coreTimes(core);
    const idle = (b.idle - a.idle) / Math.max(1, b.total - a.total);
    if (idle >= share) return idle;
    best = Math.max(best, idle);
    if (performance.now() > end)
      assert.fail(
        `core ${core} was never ${share * 100} % idle for 1 s within ${timeoutMs / 1000} s (at best ${(best * 100).toFixed(0)} %): ` +
          'other processes keep the host busy, and the burst evidence needs an idle host',
      );
  }
}

describe('fallback enforcement (no cgroup) with real guests', { timeout: 1_200_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = new Rig(await startDaemonProcess({ runtime: 'machine', extraArgs: ['--cpu-mechanism', 'fallback'] }));
    await rig.boot(Object.entries(WEIGHTS).map(([name, weight]) => ({ name, cpu: { weight, cpuset: '0' } })));
  });
  after(async () => {
    await rig.d.stop();
    removeHome(rig.d.home);
  });

  test('weights as nice values give 1:2:4 within 20 % on one core; the run-loop cap holds 25 ± 5 %', async (t) => {
    await Promise.all(Object.keys(WEIGHTS).map((n) => rig.busy(n)));
    await sleep(2000);
    const shares = await rig.measure(Object.keys(WEIGHTS), 20_000);
    t.diagnostic(`fallback, pinned to core 0 over 20 s: ${assertRatios(shares, WEIGHTS, 0.2)}`);
    await rig.idle('w200');
    await rig.idle('w400');
    await rig.set('w100', { capPercent: 25, cpuset: null });
    await sleep(1500);
    const { m, idle } = await measureCapped(rig, 'w100', 10_000);
    t.diagnostic(
      `run-loop cap 25 %: used ${(m.used * 100).toFixed(1)} %, waited ${(m.waited * 100).toFixed(1)} %, host idle ${(idle * 100).toFixed(0)} %`,
    );
    assertCap(m, 25, 5, idle);
    await rig.idle('w100');
  });
});
