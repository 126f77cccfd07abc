/**
 * The API path policy through a real daemon: kernels, initrds and firmware come only from <home>/images, the
 * guest cache and --allow-path directories. A path outside them, a symlink leading out and `..` traversal get
 * 403 PATH_NOT_ALLOWED and the file is never opened: the targets are FIFOs, and a FIFO opened for reading by
 * the daemon would have a reader (a non-blocking writer open then succeeds instead of failing with ENXIO).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, toyKernel, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
let outside: string;
let kernel: string;

function hasReader(fifo: string): boolean {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') return false;
    throw err;
  }
}

function fifo(path: string): string {
  execFileSync('mkfifo', [path]);
  return path;
}

before(async () => {
  d = await startDaemonProcess();
  outside = mkdtempSync(join(tmpdir(), 'tv-outside-'));
  kernel = join(d.kernels, 'kernel.bin');
  writeFileSync(kernel, toyKernel());
});
after(async () => {
  await d.stop();
  removeHome(d.home);
  rmSync(outside, { recursive: true, force: true });
});

async function post(body: Record<string, unknown>): Promise<{ status: number; code?: string; message?: string }> {
  const r = await d.client.raw('POST', '/vms', body);
  const parsed = JSON.parse(r.body.toString('utf8')) as { error?: { code: string; message: string } };
  return { status: r.status, code: parsed.error?.code, message: parsed.error?.message };
}

test('files outside the allowed directories, symlinks out and .. traversal get 403 and are never opened', async () => {
  const secret = fifo(join(outside, 'secret'));
  symlinkSync(secret, join(d.kernels, 'link-out'));
  mkdirSync(join(d.kernels, 'sub'));
  symlinkSync(outside, join(d.kernels, 'sub', 'dir-out'));
  const cases: [string, Record<string, unknown>][] = [
    ['/etc/shadow as the kernel', { kernel: '/etc/shadow' }],
    ['/etc/shadow as the initrd', { kernel, initrd: '/etc/shadow' }],
    ['/etc/shadow as the firmware', { kernel, firmware: '/etc/shadow' }],
    ['a FIFO outside as the kernel', { kernel: secret }],
    ['a symlink in an allowed dir leading out', { kernel: join(d.kernels, 'link-out') }],
    ['a symlinked directory leading out', { kernel: join(d.kernels, 'sub', 'dir-out', 'secret') }],
    ['.. traversal out of an allowed dir', { kernel: `${d.kernels}/../../${outside.split('/').slice(-1)[0]}/secret` }],
    ['.. traversal to the token', { kernel: `${d.kernels}/../token` }],
    ['.. that stays inside', { kernel: `${d.kernels}/sub/../kernel.bin` }],
    ['a sibling whose name extends the allowed dir', { kernel: `${d.kernels}-evil/kernel.bin` }],
  ];
  for (const [what, body] of cases) {
    const r = await post({ name: 'x', ...body });
    assert.equal(r.status, 403, `${what}: ${JSON.stringify(r)}`);
    assert.equal(r.code, 'PATH_NOT_ALLOWED', what);
    assert.ok(r.message && r.message.length > 10, what);
    assert.equal(hasReader(secret), false, `${what}: the daemon opened the file`);
  }
  assert.match((await post({ name: 'x', kernel: '/etc/shadow' })).message!, /--allow-path/);
  assert.equal(existsSync(join(d.home, 'vms', 'x')), false, 'a refused create leaves nothing on disk');
});

test('a symlink inside the allowed dirs is fine and recorded as its real path', async () => {
  mkdirSync(join(d.kernels, 'v1'));
  writeFileSync(join(d.kernels, 'v1', 'Image'), toyKernel());
  symlinkSync(join(d.kernels, 'v1', 'Image'), join(d.kernels, 'current'));
  const r = await d.client.raw('POST', '/vms', { name: 'ok', kernel: join(d.kernels, 'current'), cmdline: 'toy=idle' });
  assert.equal(r.status, 201, r.body.toString());
  const rec = JSON.parse(readFileSync(join(d.home, 'vms', 'ok', 'vm.json'), 'utf8')) as { config: { kernel: string } };
  assert.equal(rec.config.kernel, join(d.kernels, 'v1', 'Image'));
  await d.client.json('DELETE', '/vms/ok');
});

test('a kernel swapped for a symlink leading out after create is refused at start', async () => {
  const k = join(d.kernels, 'swapped');
  writeFileSync(k, toyKernel());
  await d.client.json('POST', '/vms', { name: 'swap', kernel: k, cmdline: 'toy=idle' });
  const secret = fifo(join(outside, 'secret2'));
  rmSync(k);
  symlinkSync(secret, k);
  const r = await d.client.raw('POST', '/vms/swap/actions/start', {});
  assert.equal(r.status, 403, r.body.toString());
  assert.match(r.body.toString(), /PATH_NOT_ALLOWED/);
  assert.equal(hasReader(secret), false);
  assert.equal((await d.client.json<{ state: string }>('GET', '/vms/swap')).state, 'defined');
  await d.client.json('DELETE', '/vms/swap');
});

test('the CLI reports a refused path with exit 1 and the reason; --allow-path must name a directory', () => {
  const r = spawnSync(process.execPath, cliArgs('create', 'y', '--kernel', '/etc/shadow', '--home', d.home), {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /\/etc\/shadow is outside the directories this daemon may read images from/);
  const bad = spawnSync(process.execPath, cliArgs('daemon', '--home', d.home, '--allow-path', '/nonexistent/dir'), {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /--allow-path \/nonexistent\/dir is not a directory/);
});
