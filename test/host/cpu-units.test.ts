/**
 * The CPU allocator's pure parts: settings parsing and checking, the cgroup and nice mappings, schedstat
 * accounting, the run-loop pacer, the burst policy, the history ring and the cgroup mount parsing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCpuPatch,
  CpuSettingsError,
  cpuSettingsFromRecord,
  defaultCpuSettings,
  formatCpuList,
  parseBurst,
  parseCpuList,
} from '../../src/host/cpu/settings.js';
import { capToQuotaUs, weightToShares } from '../../src/host/cpu/enforcer.js';
import { weightToNice } from '../../src/host/cpu/fallback.js';
import { parseCoreCpuTimes, parseSchedstat, VmCpuMeter, type ThreadTimes } from '../../src/host/cpu/accounting.js';
import { idleOn, idleShares } from '../../src/host/cpu/policy-loop.js';
import { CpuPacer } from '../../src/vm/cpu-pacer.js';
import { bootArgs, defaultVmConfig, validateVmConfig } from '../../src/vm/config.js';
import { BurstState } from '../../src/host/cpu/burst.js';
import { CpuManager } from '../../src/host/cpu/manager.js';
import type { CpuEnforcer } from '../../src/host/cpu/enforcer.js';
import type { EngineVm } from '../../src/host/engine.js';
import { Ring } from '../../src/host/monitor/ring.js';
import { parseCgroupMounts, parseProcCgroup } from '../../src/host/cpu/cgroupfs.js';
import { EventBus, type HostEvent } from '../../src/host/events.js';

test('cpu lists parse and print in the kernel format; bad ones are named errors', () => {
  assert.deepEqual(parseCpuList('0'), [0]);
  assert.deepEqual(parseCpuList('0-1'), [0, 1]);
  assert.deepEqual(parseCpuList('3,0-1,1'), [0, 1, 3]);
  assert.equal(formatCpuList([0, 1, 2, 5, 7, 8]), '0-2,5,7-8');
  for (const bad of ['', 'a', '1-', '2-1', '-1', '0,,1', '99999'])
    assert.throws(() => parseCpuList(bad), CpuSettingsError, JSON.stringify(bad));
  assert.deepEqual(parseBurst('80'), { capPercent: 80, seconds: 30 });
  assert.deepEqual(parseBurst('150:5'), { capPercent: 150, seconds: 5 });
  assert.throws(() => parseBurst('x:1'), CpuSettingsError);
});

test('settings patches are checked against the host: weight, cap, cores, burst; the current value is untouched', () => {
  const cur = defaultCpuSettings();
  const next = applyCpuPatch(cur, { weight: 400, capPercent: 25, cpuset: '1', burst: { capPercent: 80, seconds: 5 } }, 2);
  assert.deepEqual(next, { weight: 400, capPercent: 25, cpuset: [1], burst: { capPercent: 80, seconds: 5 } });
  assert.deepEqual(cur, defaultCpuSettings());
  const refused: [object, RegExp, number?][] = [
    [{ weight: 0 }, /weight must be a whole number from 1 to 10000/],
    [{ weight: 10001 }, /weight/],
    [{ weight: 1.5 }, /weight/],
    [{ capPercent: 0 }, /cap must be from 1 to 200/],
    [{ capPercent: -5 }, /cap must be/],
    [{ capPercent: 201 }, /cap must be/],
    [{ cpuset: '2' }, /core 2 does not exist: this host has cores 0-1/],
    [{ cpuset: '0' }, /this host has one core/, 1],
    [{ burst: { capPercent: 50, seconds: 5 } }, /set --cpu-cap first/],
    [{ capPercent: 50, burst: { capPercent: 40, seconds: 5 } }, /must be above the cap/],
    [{ capPercent: 50, burst: { capPercent: 90, seconds: 0 } }, /burst seconds/],
  ];
  for (const [patch, re, cores] of refused) assert.throws(() => applyCpuPatch(cur, patch, cores ?? 2), re, JSON.stringify(patch));
  // Clearing works, and a cap cannot be removed from under a burst.
  assert.equal(applyCpuPatch(next, { burst: null, capPercent: null }, 2).capPercent, null);
  assert.throws(() => applyCpuPatch(next, { capPercent: null }, 2), /set --cpu-cap first/);
});

test('records: missing or hostile cpu fields fall back to safe settings', () => {
  assert.deepEqual(cpuSettingsFromRecord(undefined, 2), defaultCpuSettings());
  assert.deepEqual(cpuSettingsFromRecord({ weight: 'x', capPercent: {}, cpuset: ['a'] }, 2), defaultCpuSettings());
  // A record from a bigger host keeps its weight and cap but loses the cores this host lacks.
  assert.deepEqual(cpuSettingsFromRecord({ weight: 300, capPercent: 50, cpuset: [7], burst: null }, 2), {
    weight: 300,
    capPercent: 50,
    cpuset: null,
    burst: null,
  });
});

test('weights map to cgroup v1 shares and to nice values with the right CFS ratios; caps to CFS quota', () => {
  assert.equal(weightToShares(100), 1024);
  assert.equal(weightToShares(400), 4096);
  assert.equal(weightToShares(1), 10);
  assert.equal(weightToShares(10000), 102400);
  assert.equal(weightToNice(100), 10);
  // Each nice step is ~1.25x: 200 ≈ 3 steps, 400 ≈ 6 steps.
  assert.equal(weightToNice(200), 7);
  assert.equal(weightToNice(400), 4);
  assert.equal(weightToNice(1), 19);
  assert.equal(weightToNice(10000), -10);
  assert.equal(capToQuotaUs(25), 25_000);
  assert.equal(capToQuotaUs(150), 150_000);
  assert.equal(capToQuotaUs(0.1), 1000, 'the kernel minimum');
});

test('schedstat accounting: totals, rates over the window, and threads that come and go', () => {
  assert.deepEqual(parseSchedstat('71800 2713745 2\n'), { cpuNs: 71800, waitNs: 2713745 });
  assert.equal(parseSchedstat('garbage'), null);
  const times = new Map<number, ThreadTimes>([[10, { cpuNs: 1e9, waitNs: 0 }]]);
  const meter = new VmCpuMeter(1, (_pid, tid) => times.get(tid) ?? null);
  meter.sample([10], 0);
  times.set(10, { cpuNs: 1.5e9, waitNs: 0.25e9 });
  const r = meter.sample([10], 1000);
  assert.deepEqual(r, { cpuTimeSeconds: 1.5, stealSeconds: 0.25, cpuPercent: 50, stealPercent: 25 });
  // The thread is replaced by another: the old one's time stays in the totals.
  times.delete(10);
  times.set(11, { cpuNs: 0.5e9, waitNs: 0 });
  const r2 = meter.sample([11], 2000);
  assert.equal(r2.cpuTimeSeconds, 2);
  assert.equal(r2.cpuPercent, 50);
});

test('the run-loop pacer holds a thread to its cap and follows a raised cap', () => {
  // A simulated thread: it burns CPU while running and none while resting.
  let wall = 0;
  let cpu = 0;
  const pacer = new CpuPacer(
    25,
    () => cpu,
    () => wall,
  );
  const run = (ms: number): number => {
    const start = cpu;
    const end = wall + ms;
    while (wall < end) {
      wall += 4;
      cpu += 4e6; // a 4 ms slice of work
      const rest = pacer.next();
      wall += rest;
    }
    return (cpu - start) / 1e6 / ms;
  };
  const share = run(10_000);
  assert.ok(Math.abs(share - 0.25) < 0.01, `share ${share}`);
  pacer.setCap(60);
  const share2 = run(10_000);
  assert.ok(Math.abs(share2 - 0.6) < 0.02, `share ${share2}`);
});

test('burst: granted at the cap on an idle host, taken back on contention or when the time is up', () => {
  const settings = { weight: 100, capPercent: 25, cpuset: null, burst: { capPercent: 80, seconds: 10 } };
  const b = new BurstState();
  assert.equal(b.decide({ nowMs: 0, settings, cpuPercent: 10, cores: 2, idleCores: 1.8 }), null, 'not at its cap');
  assert.equal(b.decide({ nowMs: 0, settings, cpuPercent: 25, cores: 2, idleCores: 0.3 }), null, 'host not idle');
  assert.equal(b.decide({ nowMs: 1000, settings, cpuPercent: 24.5, cores: 2, idleCores: 1.7 })?.action, 'burst-start');
  assert.equal(b.decide({ nowMs: 2000, settings, cpuPercent: 80, cores: 2, idleCores: 1.0 }), null);
  const end = b.decide({ nowMs: 3000, settings, cpuPercent: 60, cores: 2, idleCores: 0.05 });
  assert.equal(end?.action, 'burst-end');
  assert.match(end!.reason, /contended/);
  assert.equal(b.decide({ nowMs: 4000, settings, cpuPercent: 25, cores: 2, idleCores: 1.8 }), null, 'backs off after contention');
  assert.equal(b.decide({ nowMs: 9000, settings, cpuPercent: 25, cores: 2, idleCores: 1.8 })?.action, 'burst-start');
  const timeUp = b.decide({ nowMs: 19_000, settings, cpuPercent: 80, cores: 2, idleCores: 1.0 });
  assert.match(timeUp!.reason, /lasted its 10 s/);
  assert.equal(
    b.decide({ nowMs: 25_000, settings, cpuPercent: 25, cores: 2, idleCores: 1.8 }),
    null,
    'waits as long as it burst',
  );
  assert.equal(b.decide({ nowMs: 29_000, settings, cpuPercent: 25, cores: 2, idleCores: 1.8 })?.action, 'burst-start');
});

test('burst: no grant on samples taken partly before a settings change (a VM that was busy elsewhere)', () => {
  const settings = { weight: 100, capPercent: 25, cpuset: [0], burst: { capPercent: 90, seconds: 60 } };
  const b = new BurstState();
  b.settingsChanged();
  // The VM was busy on its old core until just now: the next two samples still show it.
  const busyElsewhere = { settings, cpuPercent: 100, cores: 1, idleCores: 0.9 };
  assert.equal(b.decide({ nowMs: 0, ...busyElsewhere }), null);
  assert.equal(b.decide({ nowMs: 500, ...busyElsewhere }), null);
  assert.equal(b.decide({ nowMs: 1000, settings, cpuPercent: 2, cores: 1, idleCores: 0.95 }), null, 'at rest now');
  assert.equal(b.decide({ nowMs: 1500, settings, cpuPercent: 25, cores: 1, idleCores: 0.7 })?.action, 'burst-start');
});

test('burst on its own cores: a burst that fills them is no contention; a competitor holding it below its burst is', () => {
  // One core, cap 25 %, burst 90 %: the burst alone leaves < 0.2 idle cores there.
  const settings = { weight: 100, capPercent: 25, cpuset: [0], burst: { capPercent: 90, seconds: 60 } };
  const b = new BurstState();
  assert.equal(b.decide({ nowMs: 0, settings, cpuPercent: 25, cores: 1, idleCores: 0.72 })?.action, 'burst-start');
  assert.equal(b.decide({ nowMs: 500, settings, cpuPercent: 89, cores: 1, idleCores: 0.08 }), null, 'its own burst');
  const end = b.decide({ nowMs: 1000, settings, cpuPercent: 48, cores: 1, idleCores: 0.01 });
  assert.equal(end?.action, 'burst-end', 'a second VM on its core holds it at half');
  assert.match(end!.reason, /contended .*gets 48\.0 % of its 90 % burst cap/);
  // Two cores, burst 90 %: it leaves 1.1 cores, and others taking them is contention even at its burst cap.
  const two = { ...settings, cpuset: null };
  const c = new BurstState();
  assert.equal(c.decide({ nowMs: 0, settings: two, cpuPercent: 25, cores: 2, idleCores: 1.7 })?.action, 'burst-start');
  assert.equal(c.decide({ nowMs: 500, settings: two, cpuPercent: 90, cores: 2, idleCores: 1.0 }), null);
  assert.match(
    c.decide({ nowMs: 1000, settings: two, cpuPercent: 90, cores: 2, idleCores: 0.05 })!.reason,
    /others took the 1\.10 cores/,
  );
});

test('the policy counts idle capacity on the cores a VM may use', () => {
  const stat = (idle0: number, idle1: number) =>
    `cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 0 ${idle0} 0 0 0 0 0 0\ncpu1 100 0 0 ${idle1} 0 0 0 0 0 0\nintr 1 2 3\n`;
  const a = parseCoreCpuTimes(stat(0, 0));
  const b = parseCoreCpuTimes(stat(10, 40)); // core 0: 10 idle of 10; core 1: 40 idle of 40 — then busy 0
  const c = parseCoreCpuTimes(stat(10, 40).replace('cpu0 100', 'cpu0 130'));
  assert.deepEqual(
    [...idleShares(a, b)],
    [
      [0, 1],
      [1, 1],
    ],
  );
  const shares = idleShares(b, parseCoreCpuTimes(stat(15, 40).replace('cpu0 100', 'cpu0 115').replace('cpu1 100', 'cpu1 150')));
  assert.deepEqual(
    [...shares],
    [
      [0, 0.25],
      [1, 0],
    ],
  );
  assert.deepEqual(idleOn(shares, [0]), { idleCores: 0.25, cores: 1 });
  assert.deepEqual(idleOn(shares, null), { idleCores: 0.25, cores: 2 });
  assert.deepEqual(idleOn(shares, [1, 7]), { idleCores: 0, cores: 1 }, 'a core without readings does not count');
  assert.deepEqual([...idleShares(c, parseCoreCpuTimes(stat(10, 50)))], [[1, 1]], 'a counter that went backwards: no window');
});

test('the history ring keeps the newest samples in order', () => {
  const r = new Ring<number>(3);
  assert.deepEqual(r.last(), []);
  for (let i = 1; i <= 5; i++) r.push(i);
  assert.deepEqual(r.last(), [3, 4, 5]);
  assert.deepEqual(r.last(2), [4, 5]);
  assert.equal(r.size, 3);
  assert.throws(() => new Ring(0), RangeError);
});

test('the event bus numbers events, keeps a bounded backlog and isolates listeners', () => {
  const bus = new EventBus(2);
  const seen: HostEvent[] = [];
  bus.subscribe(() => {
    throw new Error('a bad listener');
  });
  const off = bus.subscribe((e) => seen.push(e));
  bus.emit({ type: 'vm-created', vm: 'a', reason: 'created' });
  bus.emit({ type: 'policy', vm: 'a', policy: 'cpu-burst', action: 'burst-start', reason: 'idle host', values: {} });
  off();
  bus.emit({ type: 'vm-deleted', vm: 'a', reason: 'deleted' });
  assert.deepEqual(
    seen.map((e) => e.id),
    [1, 2],
  );
  assert.deepEqual(
    bus.since().map((e) => e.type),
    ['policy', 'vm-deleted'],
  );
  assert.deepEqual(
    bus.since(2).map((e) => e.id),
    [3],
  );
});

test('cgroup mounts and memberships parse from /proc text', () => {
  const mounts = parseCgroupMounts(
    [
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
      '22 1 0:21 / /proc rw - proc proc rw',
    ].join('\n'),
  );
  assert.deepEqual(
    mounts.map((m) => [m.fstype, m.path, m.controllers.filter((c) => c !== 'rw')]),
    [
      ['cgroup', '/sys/fs/cgroup/cpu', ['cpu']],
      ['cgroup', '/sys/fs/cgroup/cpu,cpuacct', ['cpu', 'cpuacct']],
      ['cgroup2', '/sys/fs/cgroup/unified', []],
    ],
  );
  const own = parseProcCgroup('4:memory:/x/y\n3:cpu,cpuacct:/a\n0::/user.slice\n');
  assert.equal(own.get('cpu'), '/a');
  assert.equal(own.get('cpuacct'), '/a');
  assert.equal(own.get(''), '/user.slice');
});

test('shared counters: nothing before the first write, then the last values written', async () => {
  const { createCountersBuffer, readCounters, writeCounters } = await import('../../src/vm/shared-counters.js');
  const { zeroCounters } = await import('../../src/vm/runtime.js');
  const view = new Float64Array(createCountersBuffer());
  assert.equal(readCounters(view), undefined);
  writeCounters(view, { ...zeroCounters(), instret: 123_456_789_012, vcpusOnline: 2, diskReadBytes: 4096 });
  writeCounters(view, { ...zeroCounters(), instret: 123_456_789_999, vcpusOnline: 1, netTxPackets: 7 });
  assert.deepEqual(readCounters(view), { ...zeroCounters(), instret: 123_456_789_999, vcpusOnline: 1, netTxPackets: 7 });
});

test('a kept online vCPU count becomes maxcpus= on the boot command line; a full or bad count adds nothing', () => {
  assert.equal(bootArgs('console=ttyS0', 3, 2), 'console=ttyS0 maxcpus=2');
  assert.equal(bootArgs(undefined, 3, 1), 'maxcpus=1');
  assert.equal(bootArgs('console=ttyS0', 3, 3), 'console=ttyS0');
  assert.equal(bootArgs('console=ttyS0', 3, undefined), 'console=ttyS0');
  for (const bad of [0, 4, 1.5, NaN]) assert.equal(bootArgs('x', 3, bad), 'x');
  assert.deepEqual(validateVmConfig(defaultVmConfig({ cpus: 3, vcpusOnline: 2 })), []);
  assert.match(
    validateVmConfig(defaultVmConfig({ cpus: 3, vcpusOnline: 4 })).join(),
    /vcpusOnline must be an integer from 1 to cpus \(3\)/,
  );
});

test("the manager asks for idle capacity on each VM's own cores, applies the burst cap and emits both actions", async () => {
  const applied: (number | null)[] = [];
  const enforcer: CpuEnforcer = {
    mechanism: 'cgroup-v1',
    detail: 'test',
    refuse: () => null,
    open: () => ({
      async addThreads() {},
      apply(s) {
        applied.push(s.capPercent);
        return { runLoopCapPercent: null };
      },
      perCoreNs: () => null,
      close() {},
    }),
    close() {},
  };
  const vm = { threadIds: () => [1], setRunLoopCap: async () => {} } as unknown as EngineVm;
  const events = new EventBus();
  const m = new CpuManager(enforcer, events);
  const burst = { capPercent: 90, seconds: 60 };
  m.attach('a', vm, { weight: 100, capPercent: 25, cpuset: [0], burst });
  m.attach('b', vm, { weight: 100, capPercent: 25, cpuset: [1], burst });
  // Core 0 is idle, core 1 is taken by others: only a (pinned to core 0) has room.
  const idle = new Map([
    [0, 0.7],
    [1, 0],
  ]);
  const asked: (readonly number[] | null)[] = [];
  const idleOnCores = (cpuset: readonly number[] | null) => (asked.push(cpuset), idleOn(idle, cpuset));
  await m.tick(0, idleOnCores, () => 25);
  assert.deepEqual(asked, [[0], [1]]);
  const started = events.since().filter((e) => e.type === 'policy');
  assert.equal(started.length, 1);
  assert.equal(started[0]!.vm, 'a');
  assert.deepEqual(started[0]!.type === 'policy' && started[0]!.values, {
    capPercent: 90,
    cpuPercent: 25,
    idleCores: 0.7,
    cores: 1,
  });
  assert.equal(applied.at(-1), 90);
  assert.equal(m.view('a', { weight: 100, capPercent: 25, cpuset: [0], burst }).effectiveCapPercent, 90);
  // Bursting alone fills core 0: no contention. A competitor there holds it at a third: taken back.
  idle.set(0, 0.08);
  await m.tick(500, idleOnCores, (name) => (name === 'a' ? 89 : 25));
  assert.equal(events.since().filter((e) => e.type === 'policy').length, 1);
  idle.set(0, 0);
  await m.tick(1000, idleOnCores, (name) => (name === 'a' ? 33 : 25));
  const ended = events
    .since()
    .filter((e) => e.type === 'policy')
    .at(-1)!;
  assert.equal(ended.type === 'policy' && ended.action, 'burst-end');
  assert.match(ended.reason, /contended .*33\.0 % of its 90 % burst cap/);
  assert.equal(applied.at(-1), 25);
  m.closeAll();
});
