/**
 * First-boot configuration through the daemon, without booting a guest: `create --ssh-key --user-data` gives the
 * VM a read-only seed disk (serial cidata) whose archive holds the VM's own instance id, and a login user in its
 * view; bad user-data is refused naming the field, leaving no VM behind; `typevisor ssh` needs a published port 22.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmView } from '../../src/host/actions.js';
import { runCli } from '../helpers/cli.js';
import { removeHome, startDaemonProcess, toyKernel, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
let work: string;
const cli = (...args: string[]) => runCli(d.home, args);
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm6b1T2e3Gf9m4b5dQ2Z0yM8Zr3qZxkQ2b4k5Xn8p1s me@host';

before(async () => {
  d = await startDaemonProcess({ runtime: 'toy' });
  writeFileSync(join(d.kernels, 'Image'), toyKernel());
  work = mkdtempSync(join(tmpdir(), 'tv-firstboot-api-'));
  writeFileSync(join(work, 'key.pub'), `${KEY}\n`);
  writeFileSync(join(work, 'good.yaml'), '#cloud-config\nhostname: box\npackages: [hello]\n');
  writeFileSync(join(work, 'bad.yaml'), '#cloud-config\nhostname: box\nbootcmd: [reboot]\n');
});
after(async () => {
  await d.stop();
  removeHome(d.home);
  rmSync(work, { recursive: true, force: true });
});

test('create --ssh-key --user-data attaches a seed disk with the VM id, and records the login user', async () => {
  const kernel = join(d.kernels, 'Image');
  const made = await cli(
    'create',
    'seeded',
    '--kernel',
    kernel,
    '--ssh-key',
    join(work, 'key.pub'),
    '--user-data',
    join(work, 'good.yaml'),
  );
  assert.equal(made.status, 0, made.stderr);
  const vm = await d.client.json<VmView>('GET', '/vms/seeded');
  assert.deepEqual(vm.login, { user: 'debian' });
  const seed = vm.config.disks.at(-1)!;
  assert.equal(seed.serial, 'cidata');
  assert.equal(seed.readOnly, true);
  assert.equal(seed.format, 'raw');
  execFileSync('tar', ['-xf', seed.path, '-C', work]);
  assert.equal(readFileSync(join(work, 'meta-data'), 'utf8'), `instance-id: ${vm.uuid}\nlocal-hostname: box\n`);
  const script = readFileSync(join(work, 'typevisor-firstboot.sh'), 'utf8');
  assert.ok(script.includes(`'${KEY}'`));
  assert.match(script, /install -y 'hello'/);
});

test('bad user-data or key is refused naming the field, and no VM is left', async () => {
  const bad = await cli('create', 'badseed', '--kernel', join(d.kernels, 'Image'), '--user-data', join(work, 'bad.yaml'));
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /user-data: document: unsupported key\(s\) bootcmd/);
  writeFileSync(join(work, 'bad.pub'), 'ssh-rsa not-base64!\n');
  const badKey = await cli('create', 'badseed', '--kernel', join(d.kernels, 'Image'), '--ssh-key', join(work, 'bad.pub'));
  assert.match(badKey.stderr, /--ssh-key: not an OpenSSH public key/);
  const missing = await cli('create', 'badseed', '--kernel', join(d.kernels, 'Image'), '--ssh-key', join(work, 'nope.pub'));
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--ssh-key .*nope\.pub/);
  assert.ok(!existsSync(join(d.home, 'vms', 'badseed')));
  assert.equal((await cli('info', 'badseed')).status, 3);
});

test('typevisor ssh needs a published port 22', async () => {
  assert.equal((await cli('create', 'noport', '--kernel', join(d.kernels, 'Image'))).status, 0);
  const r = await cli('ssh', 'noport', '--', 'true');
  assert.equal(r.status, 4);
  assert.match(r.stderr, /publishes no host port to its port 22 \(create it with --publish HOSTPORT:22\)/);
  assert.equal((await cli('ssh', 'missing-vm')).status, 3);
});
