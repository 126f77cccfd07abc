/**
 * Debian as a real guest OS: the `debian-riscv64` image (built by `typevisor guest build debian`) boots on
 * typevisor like a real machine — OpenSBI, U-Boot's distro boot, the disk's own extlinux.conf, Debian's kernel
 * and initramfs, systemd to a login prompt — and the same image boots under qemu-system-riscv64 -M virt with
 * Debian's OpenSBI and U-Boot, which shows the image is standard.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmView } from '../../src/host/actions.js';
import { debianArtifacts } from '../../src/guests/index.js';
import { createDisk } from '../../src/storage/index.js';
import { Expect } from '../helpers/console.js';
import { runCli } from '../helpers/cli.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const BOOT_MS = 1_500_000;
let d: DaemonHandle;
const cli = (...args: string[]) => runCli(d.home, args);

before(async () => {
  debianArtifacts(); // fails, naming `typevisor guest build debian`, when the image is missing
  d = await startDaemonProcess({ runtime: 'machine' });
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

test(
  "debian-riscv64 boots on typevisor through OpenSBI, U-Boot and the disk's extlinux.conf to a systemd login",
  { timeout: BOOT_MS + 300_000 },
  async (t) => {
    const made = await cli('create', 'deb', '--image', 'debian-riscv64', '--memory', '1024', '--start');
    assert.equal(made.status, 0, made.stderr);
    const vm = await d.client.json<VmView>('GET', '/vms/deb');
    assert.equal(vm.config.firmware.kind, 'file');
    const t0 = Date.now();
    const consoleText = async () => (await d.client.text('/vms/deb/console.log')).toString('latin1');
    await waitFor('the login prompt', async () => (/login:/.test(await consoleText()) ? true : undefined), BOOT_MS, 2000);
    t.diagnostic(`Debian booted to login in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const log = await consoleText();
    assert.match(log, /OpenSBI/);
    assert.match(log, /U-Boot 20\d\d/);
    assert.match(log, /Found \/boot\/extlinux\/extlinux\.conf/);
    assert.match(log, /Welcome to .*Debian GNU\/Linux 13 \(trixie\)/);

    // The agent runs as a systemd unit: exec works on this image too.
    await waitFor(
      'the agent',
      async () => ((await cli('exec', 'deb', '--timeout', '20', '--', 'true')).status === 0 ? true : undefined),
      600_000,
      3000,
    );
    const osRelease = await cli('exec', 'deb', '--', 'cat', '/etc/os-release');
    assert.match(osRelease.stdout, /VERSION_CODENAME=trixie/);
    const running = await cli(
      'exec',
      'deb',
      '--timeout',
      '600',
      '--',
      'sh',
      '-c',
      'systemctl is-system-running --wait; systemctl --failed --no-legend',
    );
    t.diagnostic(`systemctl is-system-running: ${running.stdout.trim()}`);
    assert.match(running.stdout, /^(running|degraded)/);
    assert.match((await cli('exec', 'deb', '--', 'uname', '-r')).stdout, /\+deb13-riscv64/);
    // Graceful shutdown through the agent (systemctl poweroff).
    const stop = await cli('shutdown', 'deb', '--timeout', '600');
    assert.equal(stop.status, 0, stop.stderr);
    assert.equal((await d.client.json<VmView>('GET', '/vms/deb')).state, 'stopped');
  },
);

test('the same image boots under qemu-system-riscv64 -M virt with OpenSBI and U-Boot', { timeout: BOOT_MS }, async (t) => {
  const a = debianArtifacts();
  const work = mkdtempSync(join(tmpdir(), 'tv-debian-qemu-'));
  const overlay = join(work, 'overlay.qcow2');
  await createDisk(overlay, { format: 'qcow2', backingFile: a.disk, backingFormat: 'qcow2' });
  const qemu = spawn(
    'qemu-system-riscv64',
    [
      '-M',
      'virt',
      '-m',
      '1024',
      '-nographic',
      '-bios',
      a.fwJump,
      '-kernel',
      a.uboot,
      '-drive',
      `file=${overlay},format=qcow2,if=none,id=d0`,
      '-device',
      'virtio-blk-device,drive=d0',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const io = new Expect([qemu.stdout!, qemu.stderr!], qemu.stdin!);
  try {
    const t0 = Date.now();
    await io.waitFor('Found /boot/extlinux/extlinux.conf', 300_000);
    await io.waitFor(/Welcome to .*Debian GNU\/Linux 13/, BOOT_MS);
    await io.waitFor('login:', BOOT_MS);
    t.diagnostic(`qemu booted the image to login in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    qemu.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
});
