/**
 * Memory settings, the budget and admission through a real daemon and CLI, with toy guests (the host plumbing):
 * settings reach vm.json and the API, bad input is refused with a clear error and nothing changes, a start that
 * would break the budget is refused with the numbers (409) while the running VMs are untouched, and
 * `typevisor host` shows the budget, committed and resident totals and the headroom.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, tempHome, toyKernel, type DaemonHandle } from './daemon-harness.js';

const TIMEOUT = { timeout: 120_000 };
const MIB = 1024 * 1024;

function cli(d: DaemonHandle, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, cliArgs(...args, '--home', d.home), {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const record = (d: DaemonHandle, name: string) => readFileSync(join(d.home, 'vms', name, 'vm.json'), 'utf8');

describe('memory settings, budget and admission (toy guests)', () => {
  let d: DaemonHandle;
  let kernel: string;
  before(async () => {
    d = await startDaemonProcess({ extraArgs: ['--memory-budget', '1G', '--overcommit', '2'] });
    kernel = join(d.kernels, 'k');
    writeFileSync(kernel, toyKernel());
  });
  after(async () => {
    await d.stop();
    removeHome(d.home);
  });

  test('create takes --memory SIZE, --memory-min and --memory-weight; they are in vm.json and the API', TIMEOUT, async () => {
    const r = cli(d, 'create', 'm1', '--kernel', kernel, '--memory', '512M', '--memory-min', '128M', '--memory-weight', '200');
    assert.equal(r.status, 0, r.stderr);
    const vm = await d.client.json<VmView>('GET', '/vms/m1');
    assert.equal(vm.config.memoryMiB, 512);
    assert.deepEqual(vm.memory, { maxMiB: 512, minMiB: 128, weight: 200, targetMiB: null, sizeMiB: null });
    assert.deepEqual(JSON.parse(record(d, 'm1')).memory, { minMiB: 128, weight: 200 });
    // Defaults: the floor is the maximum (no ballooning).
    assert.equal(cli(d, 'create', 'm2', '--kernel', kernel, '--memory', '256').status, 0);
    const m2 = await d.client.json<VmView>('GET', '/vms/m2');
    assert.equal(m2.memory.minMiB, 256);
    assert.equal(m2.memory.weight, 100);
  });

  test('bad input: each gets a clear error and nothing changes', TIMEOUT, async () => {
    const before = record(d, 'm1');
    const cases: [string[], number, RegExp][] = [
      [['set', 'm1', '--memory-min', '600M'], 1, /minimum \(600 MiB\) is above the maximum \(512 MiB\)/],
      [['set', 'm1', '--memory-min', '12Q'], 2, /--memory-min "12Q" is not a size/],
      [['set', 'm1', '--memory-weight', '0'], 1, /memory weight must be a whole number from 1 to 10000/],
      [['set', 'm1', '--memory-target', '300M'], 4, /a memory target applies to a running VM/],
      [['create', 'm3', '--kernel', kernel, '--memory', '256M', '--memory-min', '1G'], 1, /minimum \(1024 MiB\) is above/],
      [['create', 'm3', '--kernel', kernel, '--memory', 'lots'], 2, /--memory: cannot parse 'lots'/],
      [
        ['create', 'm3', '--kernel', kernel, '--memory', '2G'],
        1,
        /needs at least 2048 MiB but the whole memory budget is 1024 MiB/,
      ],
    ];
    for (const [args, status, message] of cases) {
      const r = cli(d, ...args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    assert.equal(record(d, 'm1'), before);
    const { vms } = await d.client.json<{ vms: VmView[] }>('GET', '/vms');
    assert.deepEqual(vms.map((v) => v.name).sort(), ['m1', 'm2']);
    // The API refuses a target outside [min, max] too (once running, below).
  });

  test(
    'admission: a start that would break the budget is refused with the numbers; running VMs are untouched',
    TIMEOUT,
    async () => {
      for (const n of ['a1', 'a2', 'a3'])
        assert.equal(cli(d, 'create', n, '--kernel', kernel, '--memory', '512M', '--memory-min', '128M').status, 0);
      for (const n of ['m1', 'a1', 'a2', 'a3']) assert.equal(cli(d, 'start', n).status, 0, n);
      // Maximums now commit 2048 MiB = 1 GiB × 2: m2 (256 MiB) does not fit.
      const r = cli(d, 'start', 'm2');
      assert.equal(r.status, 4, r.stderr);
      assert.match(
        r.stderr,
        /'m2' may use up to 256 MiB but the running VMs' maximums already commit 2048 MiB of 2048 MiB \(budget 1024 MiB × overcommit 2\)/,
      );
      const res = await fetchRaw(d, 'POST', '/vms/m2/actions/start');
      assert.equal(res.status, 409);
      assert.equal(res.body.error.code, 'MEMORY_BUDGET');
      const m2 = await d.client.json<VmView>('GET', '/vms/m2');
      assert.equal(m2.state, 'defined', 'never started');
      for (const n of ['m1', 'a1', 'a2', 'a3']) assert.equal((await d.client.json<VmView>('GET', `/vms/${n}`)).state, 'running');

      // Raising a running VM's floor past the budget is refused the same way.
      const raise = cli(d, 'set', 'a1', '--memory-min', '512M');
      assert.equal(raise.status, 0, 'floors 512+128+128+128 = 896 MiB fit 1 GiB');
      const r2 = cli(d, 'set', 'a2', '--memory-min', '512M');
      assert.equal(r2.status, 4, r2.stderr);
      assert.match(r2.stderr, /'a2' needs at least 512 MiB \(its minimum\) but only 256 MiB of the 1024 MiB budget/);
      assert.equal((await d.client.json<VmView>('GET', '/vms/a2')).memory.minMiB, 128);
    },
  );

  test('a running VM: a target outside [min, max] is refused; inside it pins the size', TIMEOUT, async () => {
    const bad = cli(d, 'set', 'a3', '--memory-target', '64M');
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /memory target must be within \[128, 512\] MiB/);
    const over = cli(d, 'set', 'a3', '--memory-target', '1G');
    assert.equal(over.status, 1);
    const ok = cli(d, 'set', 'a3', '--memory-target', '300M');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /size 300 MiB \(pinned\)/);
    const vm = await d.client.json<VmView>('GET', '/vms/a3');
    assert.equal(vm.memory.targetMiB, 300);
    assert.equal(vm.memory.sizeMiB, 300);
    assert.equal(cli(d, 'set', 'a3', '--memory-target', 'auto').status, 0);
    assert.equal((await d.client.json<VmView>('GET', '/vms/a3')).memory.targetMiB, null);
  });

  test('typevisor host shows the budget, committed, floors, resident and headroom', TIMEOUT, async () => {
    const h = await d.client.json<HostInfo>('GET', '/host');
    assert.equal(h.memory.budgetBytes, 1024 * MIB);
    assert.equal(h.memory.overcommit, 2);
    assert.equal(h.memory.commitLimitBytes, 2048 * MIB);
    assert.equal(h.memory.committedBytes, 2048 * MIB);
    assert.equal(h.memory.floorsBytes, (512 + 128 + 128 + 128) * MIB);
    assert.equal(h.memory.headroomBytes, h.memory.budgetBytes - h.memory.residentBytes);
    assert.deepEqual(h.memory.vms.map((v) => v.name).sort(), ['a1', 'a2', 'a3', 'm1']);
    const r = cli(d, 'host');
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /memory\s+budget 1\.0 ?GiB \(overcommit 2: maximums up to 2\.0 ?GiB\), committed 2\.0 ?GiB, floors 896/,
    );
    assert.match(r.stdout, /headroom/);
    // Four toy VMs run: the per-VM overhead measured from the daemon's RSS is there, next to the counted one.
    // (Toy workers cost a few MiB each, within the daemon heap's own swings, so only its presence is checked here,
    // and it may read 0 B; bench/memory compares it with real guests.)
    assert.equal(typeof h.memory.measuredOverheadPerVmBytes, 'number');
    assert.ok(h.memory.measuredOverheadPerVmBytes! >= 0);
    assert.match(
      r.stdout,
      /per VM\s+overhead \S+ ?\S*B measured \(daemon RSS beyond the empty daemon and the guests' RAM\), \S+ ?\S*B counted/,
    );
    // Stopping a VM frees its commitment: m2 now starts.
    assert.equal(cli(d, 'stop', 'a1', '--force').status, 0);
    assert.equal(cli(d, 'start', 'm2').status, 0);
  });
});

describe('daemon flags', () => {
  test('a budget smaller than one VM, a bad size or a bad ratio: the daemon refuses to start', TIMEOUT, () => {
    const home = tempHome();
    try {
      for (const [args, message] of [
        [['--memory-budget', '32M'], /memory budget \(32 MiB\) is smaller than one VM/],
        [['--memory-budget', '1X'], /--memory-budget "1X" is not a size/],
        [['--overcommit', '0.5'], /--overcommit must be a ratio from 1 to 20/],
        [['--overcommit', 'two'], /--overcommit takes a ratio/],
      ] as const) {
        const r = spawnSync(process.execPath, cliArgs('daemon', '--home', home, ...args), { encoding: 'utf8', timeout: 30_000 });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, message);
      }
    } finally {
      removeHome(home);
    }
  });
});

async function fetchRaw(
  d: DaemonHandle,
  method: string,
  path: string,
): Promise<{ status: number; body: { error: { code: string } } }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end('{}');
  });
}
