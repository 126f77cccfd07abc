/** The real CLI (spawned) against a real daemon: human and --json output, and the documented exit codes. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, tempHome, toyKernel, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
let kernel: string;

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
  kernel = join(d.kernels, 'kernel.bin');
  writeFileSync(kernel, toyKernel());
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

test('exit codes: usage 2, daemon unreachable 5', { timeout: 60_000 }, () => {
  const empty = tempHome('tv-nodaemon-');
  try {
    const r = spawnSync(process.execPath, cliArgs('ls', '--home', empty), { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 5, r.stderr);
    assert.match(r.stderr, /cannot reach the typevisor daemon.*typevisor daemon/);
  } finally {
    removeHome(empty);
  }
  assert.equal(cli('create').status, 2);
  assert.equal(cli('stop', 'x', '--bogus').status, 2);
  const help = cli('stop', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /exit status: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict\/wrong state, 5 daemon unreachable/);
});

test(
  'create, ls, info, start, stats, console, logs, stop, rm with tables, --json and exit codes',
  { timeout: 240_000 },
  async () => {
    const created = cli('create', 'web', '--kernel', kernel, '--cmdline', 'toy=idle', '--memory', '64', '--vcpus', '2', '--json');
    assert.equal(created.status, 0, created.stderr);
    const vm = JSON.parse(created.stdout) as { name: string; state: string; config: { cpus: number; memoryMiB: number } };
    assert.deepEqual([vm.name, vm.state, vm.config.cpus, vm.config.memoryMiB], ['web', 'defined', 2, 64]);

    const dup = cli('create', 'web', '--kernel', kernel);
    assert.equal(dup.status, 4);
    assert.match(dup.stderr, /already exists \[VM_EXISTS\]/);
    assert.equal(cli('create', 'Bad_Name', '--kernel', kernel).status, 1);
    assert.equal(cli('info', 'nope').status, 3);
    const wrong = cli('pause', 'web');
    assert.equal(wrong.status, 4);
    assert.match(wrong.stderr, /web has not been started \[INVALID_STATE\]/);

    const ls = cli('ls');
    assert.equal(ls.status, 0);
    assert.match(ls.stdout, /^NAME\s+STATE\s+VCPUS\s+MEMORY/m);
    assert.match(ls.stdout, /^web\s+defined\s+2\s+64 MiB/m);
    assert.deepEqual(
      (JSON.parse(cli('ls', '--json').stdout) as { name: string }[]).map((v) => v.name),
      ['web'],
    );

    assert.equal(cli('start', 'web').status, 0);
    const info = cli('info', 'web');
    assert.match(info.stdout, /^state\s+running$/m);
    assert.match(info.stdout, /^instructions\s+/m);

    const stats = JSON.parse(cli('stats', '--json').stdout) as { name: string; stats: { residentBytes: number } }[];
    assert.equal(stats[0]!.name, 'web');
    assert.ok(stats[0]!.stats.residentBytes > 0);
    assert.match(cli('stats', '--once').stdout, /^NAME\s+STATE\s+CPU%\s+INSTR\/S/m);

    // console: type a line, see the guest's answer, detach with Ctrl-].
    const con = spawn(process.execPath, cliArgs('console', 'web', '--home', d.home), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    con.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    con.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    await waitFor('console attach', () => (err.includes('connected to web') ? true : undefined), 30_000);
    con.stdin.write('hello console\r');
    await waitFor('console echo', () => (out.includes('echo: hello console') ? true : undefined), 10_000);
    const code = new Promise<number | null>((r) => con.once('exit', r));
    con.stdin.write(Buffer.from([0x1d]));
    assert.equal(await code, 0);
    assert.match(err, /detached from web/);

    const logs = cli('logs', 'web');
    assert.equal(logs.status, 0);
    assert.match(logs.stdout, /toy: web booted/);
    assert.match(logs.stdout, /echo: hello console/);

    const rmRunning = cli('rm', 'web');
    assert.equal(rmRunning.status, 4);
    // reboot asks the guest agent (the toy guest resets itself on the agent's reboot line); --force resets at once.
    const soft = cli('reboot', 'web', '--timeout', '60', '--json');
    assert.equal(soft.status, 0, soft.stderr);
    const softOut = JSON.parse(soft.stdout) as { vm: { state: string }; forced: boolean };
    assert.equal(softOut.vm.state, 'running');
    assert.equal(softOut.forced, false, 'the guest rebooted itself');
    const hard = cli('reboot', 'web', '--force');
    assert.equal(hard.status, 0, hard.stderr);
    assert.match(hard.stdout, /^web: running$/m);
    const stop = cli('stop', 'web');
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /^web: stopped$/m);
    assert.equal(cli('rm', 'web').status, 0);
    assert.equal(cli('rm', 'web').status, 3);
    const host = JSON.parse(cli('host', '--json').stdout) as { vms: { total: number } };
    assert.equal(host.vms.total, 0);
  },
);
