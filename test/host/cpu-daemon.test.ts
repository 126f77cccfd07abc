/**
 * CPU settings through a real daemon and CLI, with toy guests (the host plumbing, not the guest): the settings
 * reach the kernel (cgroup v1 files, or nice and affinity in the fallback mode), change live, survive in
 * vm.json, and bad values are refused with a clear error while nothing changes. Also the monitoring surface:
 * the history ring, the SSE event stream, prom-client metrics and the pino request log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import type { HostEvent } from '../../src/host/events.js';
import { weightToNice } from '../../src/host/cpu/fallback.js';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, toyKernel, waitFor, type DaemonHandle } from './daemon-harness.js';

const TIMEOUT = { timeout: 90_000 };

function cli(d: DaemonHandle, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, cliArgs(...args, '--home', d.home), {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const procFile = (d: DaemonHandle, tid: number, f: string) => readFileSync(`/proc/${d.proc.pid}/task/${tid}/${f}`, 'utf8');
const allowed = (d: DaemonHandle, tid: number) => /Cpus_allowed_list:\s*(\S+)/.exec(procFile(d, tid, 'status'))![1];
const niceOf = (d: DaemonHandle, tid: number) => {
  const stat = procFile(d, tid, 'stat');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19 - 3]);
};

async function startToy(d: DaemonHandle, name: string, cpu: object): Promise<VmView> {
  const kernel = join(d.kernels, 'k');
  writeFileSync(kernel, toyKernel());
  await d.client.json('POST', '/vms', { name, kernel, cmdline: 'toy=spin', memoryMiB: 32, cpu });
  await d.client.json('POST', `/vms/${name}/actions/start`, {});
  return waitFor(
    `${name} threads`,
    async () => {
      const v = await d.client.json<VmView>('GET', `/vms/${name}`);
      return v.cpu.threads.length ? v : undefined;
    },
    20_000,
  );
}

describe('cgroup v1', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemonProcess({ extraArgs: ['--cpu-mechanism', 'cgroup-v1'] });
  });
  after(async () => {
    await d.stop();
    removeHome(d.home);
  });

  test('settings reach the VM thread cgroup, change live, persist; bad values change nothing', TIMEOUT, async () => {
    const host = await d.client.json<HostInfo>('GET', '/host');
    assert.equal(host.cpuControl.mechanism, 'cgroup-v1');
    assert.match(cli(d, 'host').stdout, /cpu ctl\s+cgroup-v1/);
    const vm = await startToy(d, 'w', { weight: 400, capPercent: 30 });
    const tid = vm.cpu.threads[0]!;
    const cpuDir = join('/sys/fs/cgroup/cpu', `typevisor-${d.proc.pid}`, 'vm-w');
    const cpusetDir = join('/sys/fs/cgroup/cpuset', `typevisor-${d.proc.pid}`, 'vm-w');
    const read = (dir: string, f: string) => readFileSync(join(dir, f), 'utf8').trim();
    assert.ok(read(cpuDir, 'tasks').split('\n').includes(String(tid)), 'the VM thread is in its cpu group');
    assert.ok(read(cpusetDir, 'tasks').split('\n').includes(String(tid)), 'and in its cpuset group');
    assert.equal(read(cpuDir, 'cpu.shares'), '4096');
    assert.equal(read(cpuDir, 'cpu.cfs_quota_us'), '30000');
    assert.equal(read(cpuDir, 'cpu.cfs_period_us'), '100000');

    // Live changes through the CLI.
    const set = cli(d, 'set', 'w', '--cpu-cap', '60', '--cpu-weight', '50', '--cpuset', '1');
    assert.equal(set.status, 0, set.stderr);
    assert.match(set.stdout, /weight 50, cap 60%, cpuset 1.*\[cgroup-v1\]/);
    assert.equal(read(cpuDir, 'cpu.cfs_quota_us'), '60000');
    assert.equal(read(cpuDir, 'cpu.shares'), '512');
    assert.equal(read(cpusetDir, 'cpuset.cpus'), '1');
    assert.equal(allowed(d, tid), '1');

    // Refusals: a usage error (exit 2) or a 400 (exit 1) with the reason, and nothing changes anywhere.
    const recBefore = readFileSync(join(d.home, 'vms', 'w', 'vm.json'), 'utf8');
    for (const [args, status, re] of [
      [['--cpu-weight', '0'], 1, /weight must be a whole number from 1 to 10000/],
      [['--cpu-weight', '10001'], 1, /weight/],
      [['--cpu-weight', 'lots'], 2, /--cpu-weight takes a whole number/],
      [['--cpu-cap', '0'], 1, /cap must be from 1/],
      [['--cpu-cap=-3'], 1, /cap must be from 1/],
      [['--cpuset', '7'], 1, /core 7 does not exist/],
      [['--cpuset', 'x'], 1, /cpuset "x" must be a list of cores/],
      [['--cpu-burst', '40:5'], 1, /burst cap \(40\) must be above the cap \(60\)/],
      [[], 2, /nothing to set/],
    ] as const) {
      const r = cli(d, 'set', 'w', ...args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    assert.equal(readFileSync(join(d.home, 'vms', 'w', 'vm.json'), 'utf8'), recBefore);
    assert.equal(read(cpuDir, 'cpu.cfs_quota_us'), '60000');
    assert.equal(read(cpuDir, 'cpu.shares'), '512');
    assert.equal(read(cpusetDir, 'cpuset.cpus'), '1');
    const bad = await d.client.raw('PATCH', '/vms/w', { cpu: { capPercent: 0 } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.toString(), /INVALID_CONFIG/);

    // The record keeps the settings; removing the cap and cpuset restores the defaults in the kernel.
    const rec = JSON.parse(readFileSync(join(d.home, 'vms', 'w', 'vm.json'), 'utf8')) as { cpu: unknown };
    assert.deepEqual(rec.cpu, { weight: 50, capPercent: 60, cpuset: [1], burst: null });
    assert.equal(cli(d, 'set', 'w', '--cpu-cap', 'none', '--cpuset', 'none').status, 0);
    assert.equal(read(cpuDir, 'cpu.cfs_quota_us'), '-1');
    assert.equal(allowed(d, tid), read('/sys/fs/cgroup/cpuset', 'cpuset.cpus'));

    // info --json carries the accounting; stop removes the VM's groups.
    const info = JSON.parse(cli(d, 'info', 'w', '--json').stdout) as VmView;
    assert.ok(info.stats!.cpuTimeSeconds > 0, 'the toy thread used CPU time');
    assert.equal(typeof info.stats!.stealSeconds, 'number');
    assert.ok(info.cpu.perCoreNs && info.cpu.perCoreNs.length >= 1, 'cpuacct gives per-core time');
    await d.client.json('POST', '/vms/w/actions/stop', {});
    assert.equal(existsSync(cpuDir), false, 'the group is removed when the VM stops');
  });

  test('a stopped VM takes new settings at its next start', TIMEOUT, async () => {
    const kernel = join(d.kernels, 'k');
    writeFileSync(kernel, toyKernel());
    assert.equal(
      cli(d, 'create', 's', '--kernel', kernel, '--cmdline', 'toy=idle', '--memory', '32', '--cpu-weight', '300').status,
      0,
    );
    const r = cli(d, 'set', 's', '--cpu-cap', '40');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /from the next start/);
    await d.client.json('POST', '/vms/s/actions/start', {});
    const dir = join('/sys/fs/cgroup/cpu', `typevisor-${d.proc.pid}`, 'vm-s');
    assert.equal(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8').trim(), '40000');
    assert.equal(readFileSync(join(dir, 'cpu.shares'), 'utf8').trim(), '3072');
    await d.client.json('DELETE', '/vms/s?force=true');
  });
});

describe('fallback (no cgroup)', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemonProcess({ extraArgs: ['--cpu-mechanism', 'fallback'] });
  });
  after(async () => {
    await d.stop();
    removeHome(d.home);
  });

  test('weight becomes the thread nice value, cpuset its affinity; the cap goes to the run loop', TIMEOUT, async () => {
    assert.equal((await d.client.json<HostInfo>('GET', '/host')).cpuControl.mechanism, 'fallback');
    const vm = await startToy(d, 'f', { weight: 400 });
    const tid = vm.cpu.threads[0]!;
    await waitFor('nice applied', () => (niceOf(d, tid) === weightToNice(400) ? true : undefined), 5000);
    assert.equal(cli(d, 'set', 'f', '--cpuset', '0', '--cpu-weight', '100', '--cpu-cap', '20').status, 0);
    assert.equal(allowed(d, tid), '0');
    assert.equal(niceOf(d, tid), 10);
    assert.equal(vm.cpu.mechanism, 'fallback');
    // The run-loop cap: measured from the host over 3 s, the toy thread stays near 20 % of a core (the
    // pacer's credit bound lets it overshoot by a slice now and then; a loaded host may give it less).
    const t0 = Number(procFile(d, tid, 'schedstat').split(' ')[0]);
    await new Promise((r) => setTimeout(r, 3000));
    const used = (Number(procFile(d, tid, 'schedstat').split(' ')[0]) - t0) / 3e9;
    assert.ok(used < 0.3, `capped at 20 %, used ${(used * 100).toFixed(1)} %`);
    await d.client.json('DELETE', '/vms/f?force=true');
  });
});

describe('monitoring surface', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemonProcess();
  });
  after(async () => {
    await d.stop();
    removeHome(d.home);
  });

  test('history ring, SSE events with reasons, prom-client metrics, one log line per request', TIMEOUT, async () => {
    // Subscribe first, over the unix socket, and collect parsed SSE events.
    const events: HostEvent[] = [];
    const sse = request({ socketPath: d.socket, path: '/events', headers: { accept: 'text/event-stream' } });
    const opened = new Promise<string>((resolve, reject) => {
      sse.on('response', (res) => {
        let buf = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          buf += c;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = /^data: (.*)$/m.exec(block);
            if (data) events.push(JSON.parse(data[1]!) as HostEvent);
          }
        });
        resolve(String(res.headers['content-type']));
      });
      sse.on('error', reject);
    });
    sse.end();
    assert.match(await opened, /text\/event-stream/);

    await startToy(d, 'm', { capPercent: 50 });
    assert.equal(cli(d, 'set', 'm', '--cpu-weight', '250').status, 0);
    await waitFor('events', () => (events.some((e) => e.type === 'settings') ? true : undefined), 10_000);
    const kinds = events.map((e) => `${e.type}${e.type === 'vm-state' ? `:${e.state}` : ''}`);
    assert.deepEqual(kinds.slice(0, 3), ['vm-created', 'vm-state:running', 'settings']);
    for (const e of events) assert.ok(e.reason.length > 0 && e.vm === 'm');
    const ids = events.map((e) => e.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
    );
    // The non-streaming form, and resuming after an id.
    const later = await d.client.json<{ events: HostEvent[] }>('GET', `/events?follow=false&after=${ids[0]}`);
    assert.equal(later.events[0]!.id, ids[1]);
    sse.destroy();

    // The monitor samples every second; the ring answers with the newest N.
    await waitFor(
      '3 samples',
      async () => ((await d.client.json<{ samples: unknown[] }>('GET', '/vms/m/stats')).samples.length >= 3 ? true : undefined),
      15_000,
      300,
    );
    const hist = await d.client.json<{ intervalSeconds: number; samples: Record<string, number>[] }>(
      'GET',
      '/vms/m/stats?history=2',
    );
    assert.equal(hist.intervalSeconds, 1);
    assert.equal(hist.samples.length, 2);
    assert.ok(hist.samples[1]!.t! - hist.samples[0]!.t! >= 900);
    for (const k of [
      'cpuPercent',
      'stealPercent',
      'instructionsPerSecond',
      'residentBytes',
      'diskReadBytesPerSecond',
      'netRxBytesPerSecond',
    ])
      assert.equal(typeof hist.samples[1]![k], 'number', k);
    assert.ok(hist.samples[1]!.cpuPercent! > 0, 'a spinning toy uses CPU');
    assert.equal(hist.samples[1]!.capPercent, 50);
    const hostHist = await d.client.json<{ samples: Record<string, number>[] }>('GET', '/host/stats?history=1');
    assert.equal(hostHist.samples.length, 1);
    assert.equal(typeof hostHist.samples[0]!.idleCores, 'number');
    for (const q of ['history=0', 'history=901', 'history=x', 'bogus=1'])
      assert.equal((await d.client.raw('GET', `/vms/m/stats?${q}`)).status, 400, q);
    assert.equal((await d.client.raw('GET', '/vms/nope/stats')).status, 404);

    const text = (await d.client.text('/metrics')).toString();
    assert.match(text, /^# TYPE typevisor_api_request_duration_seconds histogram$/m);
    assert.match(
      text,
      /^typevisor_api_request_duration_seconds_bucket\{le="0\.05",method="GET",route="\/vms\/:name\/stats",status_code="200"\} \d+$/m,
    );
    assert.match(text, /^typevisor_daemon_process_cpu_seconds_total \d/m);
    assert.match(text, /^typevisor_vm_cpu_seconds_total\{vm="m"\} [\d.]+$/m);
    assert.match(text, /^typevisor_vm_cpu_weight\{vm="m"\} 250$/m);
    assert.match(text, /^typevisor_vm_cpu_cap_percent\{vm="m"\} 50$/m);

    // pino: JSON lines with levels; one per request, and VM events carry the VM name.
    const logLines = () =>
      d.stderr
        .join('')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    // The request line is written after the response went out: wait for it.
    const lines = await waitFor(
      'the /metrics request line',
      () => {
        const all = logLines();
        return all.some((l) => l.msg === 'api request' && (l.req as { url?: string }).url === '/metrics') ? all : undefined;
      },
      5000,
    );
    assert.ok(lines.some((l) => l.msg === 'api request' && l.level === 30 && typeof l.ms === 'number' && l.status === 200));
    assert.ok(lines.some((l) => l.event === 'settings' && l.vm === 'm'));
    await d.client.json('DELETE', '/vms/m?force=true');
  });
});
