/**
 * A user's first hour, through the real CLI: a file that is no kernel is refused before boot (run and create), a
 * guest stuck in a trap loop is a fault with its trap history (run exits 70; a daemon VM becomes crashed and its
 * stop answers at once), flags and limits read the same on run and create, refusals speak the CLI's words with
 * the documented exit codes, and --url accepts the daemon's own tcp:HOST:PORT spelling.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import type { VmView } from '../../src/host/actions.js';
import { cliArgs, repoRoot } from '../helpers/paths.js';
import { requireTool } from '../helpers/require.js';
import { removeHome, startDaemonProcess, tempHome, toyKernel, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
let trapLoop: string;
let garbage: string;
let echo: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function spawnCli(args: string[], timeout = 120_000): Run {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, cliArgs(...args), {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}
const cli = (...args: string[]): Run => spawnCli([...args, '--home', d.home]);

before(async () => {
  requireTool('riscv64-linux-gnu-as', 'binutils-riscv64-linux-gnu');
  const home = tempHome();
  d = await startDaemonProcess({
    home,
    runtime: 'machine',
    extraArgs: ['--listen', `unix:${join(home, 'typevisor.sock')}`, '--listen', 'tcp:127.0.0.1:0'],
  });
  const obj = join(d.kernels, 'trap-loop.o');
  trapLoop = join(d.kernels, 'trap-loop.elf');
  execFileSync('riscv64-linux-gnu-as', ['-march=rv64imac_zicsr', '-o', obj, join(repoRoot, 'test/machine/programs/trap-loop.S')]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', trapLoop, obj]);
  const echoObj = join(d.kernels, 'echo.o');
  echo = join(d.kernels, 'echo.elf');
  execFileSync('riscv64-linux-gnu-as', [
    '-march=rv64imac_zicsr',
    '--defsym',
    'MODE=0',
    '-o',
    echoObj,
    join(repoRoot, 'test/host/fixtures/bare-guest.S'),
  ]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', echo, echoObj]);
  garbage = join(d.kernels, 'garbage.bin');
  writeFileSync(garbage, Buffer.from('this is a text file, not a kernel\n'.repeat(100)));
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

test('run refuses a file that is no kernel before booting it, saying what it is and how to force raw', () => {
  let r = spawnCli(['run', '--kernel', garbage]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /neither a RISC-V Linux Image \(no "RSC\\x05" magic at offset 0x38\) nor a riscv64 ELF/);
  assert.match(r.stderr, /--kernel-format raw/);
  const gz = join(d.kernels, 'Image.gz');
  writeFileSync(gz, gzipSync(toyKernel()));
  r = spawnCli(['run', '--kernel', gz]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /gzip-compressed: decompress it/);
  r = spawnCli(['run', '--kernel', process.execPath]); // the host's own ELF: not RISC-V
  assert.equal(r.status, 1);
  assert.match(r.stderr, /an ELF file but not a 64-bit little-endian RISC-V one/);
  r = spawnCli(['run', '--kernel', garbage, '--kernel-format', 'elf']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--kernel-format takes auto or raw/);
});

test('run: a guest trapping at one pc forever is a fault with its trap history, exit 70', { timeout: 120_000 }, () => {
  const r = spawnCli(['run', '--firmware', 'none', '--kernel', trapLoop, '--no-virtio'], 110_000);
  assert.equal(r.status, 70, r.stderr);
  assert.equal(r.stdout, 'about to loop\n');
  assert.match(r.stderr, /emulator fault on hart 0 at pc 0x8000\w+: no progress: the same exception repeated \d+ times/);
  assert.match(r.stderr, /last traps \(oldest first\):\n\s+exception 2 epc=0x8000/);
});

test(
  'daemon: a garbage kernel is refused at create; a trap-looping VM becomes crashed and stop answers at once',
  { timeout: 180_000 },
  async () => {
    let r = cli('create', 'junk', '--kernel', garbage);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /is neither a RISC-V Linux Image.*\[INVALID_CONFIG\]/);
    assert.equal(cli('info', 'junk').status, 3, 'nothing was created');

    r = cli('create', 'loop', '--kernel', trapLoop, '--firmware', 'none', '--memory', '32M', '--start');
    assert.equal(r.status, 0, r.stderr);
    const vm = await waitFor(
      'the VM to crash',
      async () => {
        const v = await d.client.json<VmView>('GET', '/vms/loop');
        return v.state === 'crashed' ? v : undefined;
      },
      120_000,
    );
    assert.match(vm.stateReason ?? '', /no progress: the same exception repeated \d+ times.*exception 2 epc=0x8000/);
    r = cli('stop', 'loop');
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /loop is not running \(it crashed: .*no progress/);
    assert.ok(r.ms < 20_000, `stop took ${r.ms} ms`);
    assert.equal(cli('rm', 'loop').status, 0);
  },
);

test('flags: sizes with units and --cpus/--vcpus on both run and create; limits in the flags own words', () => {
  const kernel = join(d.kernels, 'toy-Image');
  writeFileSync(kernel, toyKernel());
  let r = cli('create', 'sized', '--kernel', kernel, '--memory', '1G', '--cpus', '2', '--json');
  assert.equal(r.status, 0, r.stderr);
  let view = JSON.parse(r.stdout) as VmView;
  assert.equal(view.config.memoryMiB, 1024);
  assert.equal(view.config.cpus, 2);
  r = cli('create', 'sized2', '--kernel', kernel, '--memory', '512MiB', '--vcpus', '3', '--json');
  assert.equal(r.status, 0, r.stderr);
  view = JSON.parse(r.stdout) as VmView;
  assert.equal(view.config.memoryMiB, 512);
  assert.equal(view.config.cpus, 3);
  r = cli('create', 'sized3', '--kernel', kernel, '--memory', '384', '--json');
  assert.equal((JSON.parse(r.stdout) as VmView).config.memoryMiB, 384, 'a plain number is MiB');
  for (const [args, message] of [
    [['--memory', '32G'], /--memory must be at most 16 GiB, got 32G/],
    [['--memory', '8M'], /--memory must be at least 16 MiB/],
    [['--memory', 'lots'], /--memory: cannot parse 'lots'/],
    [['--cpus', '9'], /--cpus must be from 1 to 8, got 9/],
    [['--vcpus', '2', '--cpus', '3'], /(--vcpus and --cpus|--cpus and --vcpus) are the same option/],
  ] as const) {
    r = cli('create', 'bad', '--kernel', kernel, ...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    const ran = spawnCli(['run', '--kernel', kernel, ...args]);
    assert.equal(ran.status, 2, `run ${args.join(' ')}: ${ran.stderr}`);
    assert.match(ran.stderr, message);
  }
  for (const n of ['sized', 'sized2', 'sized3']) assert.equal(cli('rm', n).status, 0);
});

test('exit codes follow the documented table: stop on a stopped VM is 4 and says so; unknown VMs are 3', () => {
  const kernel = join(d.kernels, 'toy-Image');
  writeFileSync(kernel, toyKernel());
  assert.equal(cli('create', 'idle', '--kernel', kernel).status, 0);
  let r = cli('stop', 'idle');
  assert.equal(r.status, 4);
  assert.match(r.stderr, /idle has not been started/);
  assert.equal(cli('create', 'echo', '--kernel', echo, '--firmware', 'none', '--memory', '32M', '--start').status, 0);
  r = cli('stop', 'echo', '--force');
  assert.equal(r.status, 0, r.stderr);
  r = cli('stop', 'echo');
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /echo is already stopped/);
  assert.equal(cli('rm', 'echo').status, 0);
  r = cli('stats', 'nosuch', '--once');
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /no VM named 'nosuch'/);
  for (const verb of ['info', 'start', 'stop', 'pause', 'logs', 'rm']) {
    r = cli(verb, 'nosuch');
    assert.equal(r.status, 3, `${verb}: ${r.stderr}`);
  }
  assert.equal(cli('rm', 'idle').status, 0);
});

test('--url tcp:HOST:PORT (the daemon --listen spelling) reaches the daemon with the token', () => {
  const tcp = d.addresses.find((a) => a.startsWith('tcp:'));
  assert.ok(tcp, d.addresses.join(' '));
  const r = cli('ls', '--url', tcp, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Array.isArray(JSON.parse(r.stdout)));
  const bad = cli('ls', '--url', 'tcp:nohost');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--url tcp: takes tcp:HOST:PORT/);
});
