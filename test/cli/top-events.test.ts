/** `typevisor top` and `typevisor events` against a real daemon with toy guests, and top's sorting. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { renderTop, ratesBetween } from '../../src/cli/top-view.js';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, toyKernel, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, cliArgs(...args, '--home', d.home), {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  d = await startDaemonProcess();
  const kernel = join(d.kernels, 'k');
  writeFileSync(kernel, toyKernel());
  for (const [name, mode, weight] of [
    ['busy', 'spin', 400],
    ['calm', 'idle', 100],
  ] as const) {
    await d.client.json('POST', '/vms', { name, kernel, cmdline: `toy=${mode}`, memoryMiB: 32, cpu: { weight } });
    await d.client.json('POST', `/vms/${name}/actions/start`, {});
  }
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

test('top prints the host summary and one row per VM, sorted by the key', { timeout: 60_000 }, () => {
  const r = cli('top', '--iterations', '2', '--delay', '0.5', '--sort', 'cpu');
  assert.equal(r.status, 0, r.stderr);
  const screens = r.stdout.trim().split('\n\n\n');
  const last = r.stdout.trim().split('\n');
  assert.match(r.stdout, /^typevisor top - .* cores, cpu control (cgroup-v1|cgroup-v2|fallback)$/m);
  assert.match(r.stdout, /^NAME\s+STATE\s+CPU%\s+STEAL%\s+WEIGHT\s+CAP/m);
  const rows = last.filter((l) => /^(busy|calm)\s/.test(l)).slice(-2);
  assert.deepEqual(
    rows.map((l) => l.split(/\s+/)[0]),
    ['busy', 'calm'],
    'the spinning VM sorts first by CPU',
  );
  assert.match(rows[0]!, /^busy\s+running\s+[\d.]+\s+[\d.]+\s+400\s+-\s+all/);
  assert.ok(screens.length >= 1);
  assert.equal(cli('top', '--sort', 'bogus').status, 2);
});

test('renderTop sorts by name, memory and disk rate', () => {
  const vm = (name: string, resident: number, diskRead: number): VmView =>
    ({
      name,
      state: 'running',
      config: { cpus: 1 },
      cpu: { weight: 100, capPercent: null, cpuset: null, burst: null, effectiveCapPercent: null, bursting: false },
      stats: {
        cpuPercent: 1,
        stealPercent: 0,
        cpuTimeSeconds: 1,
        instructionsPerSecond: 5,
        residentBytes: resident,
        diskReadBytes: diskRead,
        diskWriteBytes: 0,
        netRxBytes: 0,
        netTxBytes: 0,
      },
    }) as unknown as VmView;
  const host = {
    hostname: 'h',
    cpus: 2,
    memoryBytes: 8,
    freeMemoryBytes: 4,
    usage: { residentBytes: 3 },
    cpuControl: { mechanism: 'x' },
  } as unknown as HostInfo;
  const a = vm('a', 100, 0);
  const b = vm('b', 300, 0);
  const rates = new Map([
    ['a', ratesBetween(vm('a', 100, 0), vm('a', 100, 5000), 1)],
    ['b', ratesBetween(undefined, b, 1)],
  ]);
  const order = (sort: Parameters<typeof renderTop>[4]) =>
    renderTop(host, undefined, [b, a], rates, sort, new Date(0))
      .split('\n')
      .filter((l) => /^[ab]\s/.test(l))
      .map((l) => l[0]);
  assert.deepEqual(order('name'), ['a', 'b']);
  assert.deepEqual(order('mem'), ['b', 'a']);
  assert.deepEqual(order('disk'), ['a', 'b']);
  assert.equal(rates.get('a')!.diskRead, 5000);
});

test('events lists recent events and --follow streams new ones with their reasons', { timeout: 60_000 }, async () => {
  const r = cli('events');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /busy\s+created\s+created \(weight 400, no cap\)/);
  assert.match(r.stdout, /busy\s+defined -> running\s+running by request/);
  assert.equal(cli('events', 'nope').status, 3);
  const json = cli('events', 'calm', '--json').stdout.trim().split('\n');
  assert.ok(json.every((l) => (JSON.parse(l) as { vm: string }).vm === 'calm'));

  const follow = spawn(process.execPath, cliArgs('events', 'busy', '-f', '--home', d.home), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  follow.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  try {
    await waitFor('the backlog', () => (out.includes('running by request') ? true : undefined), 20_000);
    assert.equal(cli('set', 'busy', '--cpu-cap', '70').status, 0);
    await waitFor(
      'the live event',
      () => (/busy\s+settings\s+cpu set to weight 400, cap 70 %/.test(out) ? true : undefined),
      20_000,
    );
  } finally {
    follow.kill('SIGINT');
  }
});
