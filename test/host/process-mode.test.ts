/**
 * Process mode through a real daemon process and the API, with the toy runtime (fast; test/api/process-linux.test.ts
 * has the same evidence with Linux guests): a VM process killed with SIGKILL marks only its VM crashed; a daemon
 * killed with -9 leaves its VM processes running and the next daemon reattaches to them (console, stats, control,
 * paused state); a VM process that died while no daemon ran is recorded crashed with the reason; SIGTERM stops
 * VMs unless --keep-vms-on-exit; each VM process has a memory and pids cgroup of its own (where cgroup v1 is
 * writable). The warm pool: a start runs its VM in the idle pooled process (pool stats count the hit), an idle
 * pooled process holds no VM's file, one that dies idle is replaced, and idle ones end with the daemon (kill -9,
 * SIGTERM with --keep-vms-on-exit) while VM processes run on and are reattached, never mistaken for the pool's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { VM_PROCESS_OVERHEAD_MIB, VM_PROCESS_PIDS_MAX, VmProcessCgroups } from '../../src/host/vm-process-cgroup.js';
import { join } from 'node:path';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { processStartTime } from '../../src/vm/process-identity.js';
import {
  pooledProcesses,
  removeHome,
  startDaemonProcess,
  toyKernel,
  vmProcesses,
  waitFor,
  type DaemonHandle,
} from './daemon-harness.js';

const TIMEOUT = { timeout: 180_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withToyVms(d: DaemonHandle, specs: [name: string, mode: string][]): Promise<void> {
  const k = join(d.kernels, 'k');
  writeFileSync(k, toyKernel());
  for (const [name, mode] of specs) {
    await d.client.json('POST', '/vms', { name, kernel: k, cmdline: `toy=${mode}`, memoryMiB: 32, virtioConsole: true });
    await d.client.json('POST', `/vms/${name}/actions/start`, {});
  }
}

const view = (d: DaemonHandle, name: string) => d.client.json<VmView>('GET', `/vms/${name}?stats=true`);
const instret = async (d: DaemonHandle, name: string) => (await view(d, name)).stats!.instret;

/** Types into a VM's console over the WebSocket and waits for the toy's echo. */
async function consoleEcho(d: DaemonHandle, name: string, text: string): Promise<void> {
  const ws = d.client.websocket(`/vms/${name}/console`);
  let got = '';
  ws.on('message', (b: Buffer) => (got += b.toString('latin1')));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(`${text}\n`);
  await waitFor(`${name} echoes ${text}`, () => (got.includes(`echo: ${text}`) ? true : undefined), 20_000, 50);
  ws.close();
}

test('process mode: SIGKILL of one VM process marks only that VM crashed, with the reason', TIMEOUT, async () => {
  const d = await startDaemonProcess({ vmMode: 'process' });
  try {
    await withToyVms(d, [
      ['a', 'spin'],
      ['b', 'spin'],
      ['c', 'spin'],
    ]);
    const procs = vmProcesses(d.home);
    assert.deepEqual(
      procs.map((p) => p.name),
      ['a', 'b', 'c'],
      'one process per VM',
    );
    assert.equal(new Set(procs.map((p) => p.pid)).size, 3);
    assert.ok(!procs.some((p) => p.pid === d.proc.pid));
    process.kill(procs.find((p) => p.name === 'b')!.pid, 'SIGKILL');
    const b = await waitFor(
      'b crashed',
      async () => {
        const v = await view(d, 'b');
        return v.state === 'crashed' ? v : undefined;
      },
      20_000,
    );
    assert.match(b.stateReason ?? '', /VM process \(pid \d+\) was killed by SIGKILL/);
    for (const n of ['a', 'c']) {
      const before = await instret(d, n);
      await sleep(400);
      assert.equal((await view(d, n)).state, 'running');
      assert.ok((await instret(d, n)) > before, `${n} runs on`);
    }
    // The crashed VM starts again in a new process.
    await d.client.json('POST', '/vms/b/actions/start', {});
    assert.equal((await view(d, 'b')).state, 'running');
    await consoleEcho(d, 'b', 'again');
    assert.equal(await d.stop(), 0);
    assert.deepEqual(vmProcesses(d.home), [], 'SIGTERM stopped every VM process');
  } finally {
    await d.stop();
    removeHome(d.home);
  }
});

test('process mode: kill -9 of the daemon leaves VMs running; the next daemon reattaches to them', TIMEOUT, async () => {
  const a = await startDaemonProcess({ vmMode: 'process' });
  const home = a.home;
  let b: DaemonHandle | undefined;
  try {
    await withToyVms(a, [
      ['run1', 'spin'],
      ['run2', 'idle'],
      ['held', 'spin'],
    ]);
    await a.client.json('POST', '/vms/held/actions/pause', {});
    await consoleEcho(a, 'run2', 'before');
    await sleep(500);
    const before = await view(a, 'run1');
    const pids = vmProcesses(home);
    await a.stop('SIGKILL');
    // The VMs run on without a daemon.
    await sleep(300);
    assert.deepEqual(vmProcesses(home), pids, 'the VM processes outlived the daemon');

    b = await startDaemonProcess({ home, vmMode: 'process' });
    const after = await view(b, 'run1');
    assert.equal(after.state, 'running');
    assert.match(after.stateReason ?? '', /reattached/);
    assert.ok(after.stats!.instret > before.stats!.instret, 'the guest went on running');
    assert.ok(after.stats!.uptimeSeconds >= before.stats!.uptimeSeconds, 'uptime continues: no reboot');
    assert.equal((await view(b, 'held')).state, 'paused', 'a paused VM stays paused');
    const held = await instret(b, 'held');
    await sleep(300);
    assert.equal(await instret(b, 'held'), held);
    // Console, stats and control are back.
    await consoleEcho(b, 'run2', 'after');
    const s1 = await instret(b, 'run1');
    await sleep(400);
    assert.ok((await instret(b, 'run1')) > s1, 'stats advance');
    const cpu = await b.client.json<{ cpu: { threads: number[] } }>('GET', '/vms/run1');
    assert.deepEqual(cpu.cpu.threads, [pids.find((p) => p.name === 'run1')!.pid], 'CPU placement has its thread again');
    await b.client.json('POST', '/vms/held/actions/resume', {});
    await sleep(300);
    assert.ok((await instret(b, 'held')) > held, 'resume works');
    const ran = await b.client.json<{ stdout: string }>('POST', '/vms/run2/exec', { argv: ['echo', 'hi', 'there'] });
    assert.equal(Buffer.from(ran.stdout, 'base64').toString(), 'hi there\n', 'exec works');
    await b.client.json('POST', '/vms/run1/actions/stop', {});
    assert.equal((await view(b, 'run1')).state, 'stopped');
    assert.deepEqual(
      vmProcesses(home).map((p) => p.name),
      ['held', 'run2'],
    );
    const log = (await b.client.text('/vms/run2/console.log')).toString('latin1');
    assert.match(log, /echo: before[\s\S]*echo: after/);
  } finally {
    await b?.stop();
    await a.stop();
    removeHome(home);
  }
});

test('process mode: a VM process that died while no daemon ran is recorded crashed, with the reason', TIMEOUT, async () => {
  const a = await startDaemonProcess({ vmMode: 'process' });
  const home = a.home;
  let b: DaemonHandle | undefined;
  try {
    await withToyVms(a, [
      ['gone', 'idle'],
      ['stays', 'idle'],
    ]);
    await a.stop('SIGKILL');
    const gone = vmProcesses(home).find((p) => p.name === 'gone')!;
    process.kill(gone.pid, 'SIGKILL');
    await waitFor('the VM process gone', () => (vmProcesses(home).some((p) => p.name === 'gone') ? undefined : true), 10_000);
    b = await startDaemonProcess({ home, vmMode: 'process' });
    const v = await view(b, 'gone');
    assert.equal(v.state, 'crashed');
    assert.match(v.stateReason ?? '', new RegExp(`VM process \\(pid ${gone.pid}\\) ended while the daemon was down`));
    assert.equal((await view(b, 'stays')).state, 'running');
    const rec = JSON.parse(readFileSync(join(home, 'vms', 'gone', 'vm.json'), 'utf8')) as { state: string };
    assert.equal(rec.state, 'crashed');
  } finally {
    await b?.stop();
    await a.stop();
    removeHome(home);
  }
});

test(
  'process mode: SIGTERM with --keep-vms-on-exit leaves the VMs for the next daemon; thread mode reattaches them too',
  TIMEOUT,
  async () => {
    const a = await startDaemonProcess({ vmMode: 'process', extraArgs: ['--keep-vms-on-exit'] });
    const home = a.home;
    let b: DaemonHandle | undefined;
    try {
      await withToyVms(a, [['kept', 'spin']]);
      const pid = vmProcesses(home)[0]!.pid;
      assert.equal(await a.stop('SIGTERM'), 0);
      assert.deepEqual(
        vmProcesses(home).map((p) => p.pid),
        [pid],
      );
      const rec = JSON.parse(readFileSync(join(home, 'vms', 'kept', 'vm.json'), 'utf8')) as { state: string };
      assert.equal(rec.state, 'running', 'the record still says running');
      // A daemon whose new VMs are threads still takes over the VM processes it finds.
      b = await startDaemonProcess({ home, vmMode: 'thread' });
      assert.equal((await view(b, 'kept')).state, 'running');
      await consoleEcho(b, 'kept', 'still');
      assert.equal(await b.stop('SIGTERM'), 0);
      assert.deepEqual(vmProcesses(home), [], 'without the flag SIGTERM stops them');
    } finally {
      await b?.stop();
      await a.stop();
      removeHome(home);
    }
  },
);

test(
  'process mode: each VM process gets a memory and pids cgroup of its own, kept across a daemon restart',
  TIMEOUT,
  async (t) => {
    const probe = VmProcessCgroups.probe();
    if (typeof probe === 'string') {
      // Needs writable cgroup v1 memory and pids hierarchies (root); the daemon runs VMs without them otherwise.
      t.skip(`no writable cgroup v1 memory/pids here: ${probe}`);
      return;
    }
    const a = await startDaemonProcess({ vmMode: 'process' });
    const home = a.home;
    let b: DaemonHandle | undefined;
    try {
      await withToyVms(a, [['lim', 'idle']]);
      const pid = vmProcesses(home)[0]!.pid;
      const g = probe.groups('lim', join(home, 'vms', 'lim'));
      const inGroup = (dir: string) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid));
      assert.ok(inGroup(g.memory) && inGroup(g.pids), 'the VM process sits in its own groups');
      assert.equal(
        readFileSync(join(g.memory, 'memory.limit_in_bytes'), 'utf8').trim(),
        String((32 + VM_PROCESS_OVERHEAD_MIB) * 1024 * 1024),
      );
      assert.equal(readFileSync(join(g.pids, 'pids.max'), 'utf8').trim(), String(VM_PROCESS_PIDS_MAX));
      assert.ok(!inGroup(g.memory.replace(/\/[^/]+$/, '')), 'not in the daemon group any more');
      await a.stop('SIGKILL');
      b = await startDaemonProcess({ home, vmMode: 'process' });
      assert.equal((await view(b, 'lim')).state, 'running');
      assert.ok(inGroup(g.memory) && inGroup(g.pids), 'a reattached VM keeps its limits');
      await b.client.json('POST', '/vms/lim/actions/stop', {});
      // An ended process stays in its groups until it is reaped (here by init: the VM outlived the daemon that
      // started it), so the daemon removes them after the stop, trying again every 300 ms (release()).
      await waitFor(
        'the groups to go with the process',
        () => (!existsSync(g.memory) && !existsSync(g.pids)) || undefined,
        5_000,
      );
    } finally {
      await b?.stop();
      await a.stop();
      removeHome(home);
    }
  },
);

test('process mode: stats sampled while a VM process starts never reach it before its hello', TIMEOUT, async () => {
  // The daemon samples every running VM (API reads, the monitor): a sample sent on a new connection before the
  // hello made the VM process close it, and the start or restore failed ("broke its channel").
  const d = await startDaemonProcess({ vmMode: 'process' });
  let polling = true;
  let samples = 0;
  const poller = (async () => {
    while (polling) {
      await d.client.json('GET', '/vms?stats=true').catch(() => undefined);
      samples++;
    }
  })();
  try {
    await withToyVms(d, [['a', 'idle']]);
    for (let i = 0; i < 25; i++) {
      await d.client.json('POST', '/vms/a/actions/stop', {});
      await d.client.json('POST', '/vms/a/actions/start', {});
      assert.equal((await view(d, 'a')).state, 'running', `start ${i + 1}`);
    }
    assert.ok(samples > 25, `the VMs were sampled throughout (${samples} samples)`);
  } finally {
    polling = false;
    await poller;
    await d.stop();
    removeHome(d.home);
  }
});

const poolOf = async (d: DaemonHandle) => (await d.client.json<HostInfo>('GET', '/host')).daemon.warmPool!;

/** The daemon's one idle pooled process, once the pool says it is ready (and, if given, it is not `not`). */
const idlePooled = (d: DaemonHandle, not?: number): Promise<number> =>
  waitFor(
    'an idle pooled VM process',
    async () => {
      const pids = pooledProcesses(d.proc.pid!).filter((p) => p !== not);
      return pids.length === 1 && (await poolOf(d)).idle === 1 ? pids[0] : undefined;
    },
    120_000,
  );

const gone = (pid: number) =>
  waitFor(`process ${pid} gone`, () => (processStartTime(pid) === undefined ? true : undefined), 20_000, 50);

function openFiles(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
    } catch {
      return [];
    }
  });
}

test(
  'process mode: a start runs its VM in a warm pooled process; idle pooled processes end with the daemon',
  TIMEOUT,
  async () => {
    const a = await startDaemonProcess({ vmMode: 'process' });
    const home = a.home;
    let b: DaemonHandle | undefined;
    try {
      const first = await idlePooled(a);
      assert.deepEqual(vmProcesses(home), [], 'an idle pooled process is no VM process');
      const files = openFiles(first);
      assert.ok(
        !files.some((f) => f.startsWith(join(home, 'vms'))),
        `an idle pooled process holds no VM's file: ${files.join(', ')}`,
      );
      // One that dies idle is dropped and replaced.
      process.kill(first, 'SIGKILL');
      const second = await idlePooled(a, first);
      assert.deepEqual(await poolOf(a), { size: 1, idle: 1, starting: false, hits: 0, misses: 0 });

      await withToyVms(a, [['p1', 'idle']]);
      const [vm] = vmProcesses(home);
      assert.equal(vm?.pid, second, 'the VM runs in the pooled process');
      assert.equal((await poolOf(a)).hits, 1);
      assert.match(readFileSync(join(home, 'vms', 'p1', 'vm-process.log'), 'utf8'), /hosting p1 .*\(a pooled process, adopted\)/);
      await consoleEcho(a, 'p1', 'pooled');
      assert.equal((await view(a, 'p1')).state, 'running');

      // kill -9 of the daemon: the idle process it had started again ends with it; the VM process runs on.
      const third = await idlePooled(a, second);
      await a.stop('SIGKILL');
      await gone(third);
      assert.deepEqual(vmProcesses(home), [vm]);

      // The next daemon reattaches the VM, and its own idle process is not taken for one.
      b = await startDaemonProcess({ home, vmMode: 'process', extraArgs: ['--keep-vms-on-exit'] });
      assert.equal((await view(b, 'p1')).state, 'running');
      await consoleEcho(b, 'p1', 'again');
      const fourth = await idlePooled(b);
      assert.deepEqual(vmProcesses(home), [vm]);
      // SIGTERM with --keep-vms-on-exit: VM processes stay, the idle one does not.
      assert.equal(await b.stop('SIGTERM'), 0);
      await gone(fourth);
      assert.deepEqual(vmProcesses(home), [vm]);
    } finally {
      await b?.stop();
      await a.stop();
      removeHome(home);
    }
  },
);
