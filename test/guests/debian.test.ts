// @debian
/**
 * Debian as a real guest OS, in as few boots as possible (a Debian boot is tens of minutes on the interpreter).
 *
 * One VM made by `typevisor create --image debian-riscv64 --ssh-key --user-data --publish PORT:22` boots like a
 * real machine (OpenSBI, U-Boot's distro boot, the disk's own extlinux.conf, Debian's kernel and initramfs,
 * systemd to a login prompt). Its first boot applies the seed: hostname, two users with the key, apt sources that
 * point only at a repository this test serves from the host's loopback (the guest reaches it through the NAT
 * gateway; nothing goes to the internet), a package and runcmd. Then, in the same boot: exec and os-release,
 * is-system-running, `typevisor ssh` as each user, a busybox guest and a VM with U-Boot at its prompt running
 * beside it under the same daemon, and `apt-get install` of a newer kernel from the local repository; a graceful
 * `typevisor reboot` (the agent runs systemctl reboot) then boots that kernel (uname -r) through the extlinux.conf
 * u-boot-menu rewrote, and `typevisor stop` powers the VM off through the agent (systemctl poweroff). The same image also boots under qemu-system-riscv64 -M virt with Debian's own OpenSBI and U-Boot
 * (the opensbi and u-boot-qemu packages' files, used in place).
 *
 * Not in `npm test` (one run takes longer than the suite's budget on 2 cores): `npm run test:debian`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { VmView } from '../../src/host/actions.js';
import { debianArtifacts, guestArtifacts } from '../../src/guests/index.js';
import { createDisk } from '../../src/storage/index.js';
import { Expect } from '../helpers/console.js';
import { runCli } from '../helpers/cli.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const BOOT_MS = 3_600_000;
/** apt-get install of the newer kernel: ~3,100 modules unpacked, depmod over them, an initramfs, all emulated. */
const INSTALL_MS = 9_000_000;
let d: DaemonHandle;
let work: string;
let repo: { server: Server; port: number; requests: string[]; dir: string; upgradeKernel: string };
const cli = (...args: string[]) => runCli(d.home, args, { timeoutMs: 4_000_000 });

/** A loopback HTTP server for the image's local repository (flat: Packages and .debs), logging what it served. */
async function serveRepo(dir: string): Promise<{ server: Server; port: number; requests: string[] }> {
  const files = new Set(readdirSync(dir));
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').split('?')[0]!.replace(/^\/+/, '').replace(/^\.\//, ''));
    requests.push(name);
    if (!files.has(name) || name.includes('/')) {
      res.writeHead(404).end();
      return;
    }
    const path = join(dir, name);
    res.writeHead(200, { 'content-length': statSync(path).size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, requests };
}

/**
 * The kernel install's steps from dpkg's log (`YYYY-MM-DD HH:MM:SS action ...` lines after the first `skip`):
 * each dpkg run's start (the first one ends apt's download), each linux package's unpack (`install`/`upgrade`),
 * configure and installed state, triggers, and the seconds between one step and the next.
 */
function dpkgSteps(log: string, skip: number): string {
  const steps: string[] = [];
  let last: number | undefined;
  for (const l of log.split('\n').slice(skip)) {
    const m =
      /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (startup \S+ \S+|(?:install|upgrade|configure|trigproc) \S+|status installed linux\S*)/.exec(
        l,
      );
    if (!m) continue;
    const at = Date.parse(`${m[1]!.replace(' ', 'T')}Z`);
    steps.push(`${m[1]!.slice(11)} ${m[2]}${last === undefined ? '' : ` (+${(at - last) / 1000} s)`}`);
    last = at;
  }
  return steps.join('\n') || '(no dpkg log lines)';
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  const a = debianArtifacts(); // fails, naming `typevisor guest build debian`, when the image is missing
  guestArtifacts(); // the busybox guest for the side-by-side check
  const release = JSON.parse(readFileSync(join(a.dir, 'release.json'), 'utf8')) as { repo?: { upgradeKernel?: string } };
  assert.ok(release.repo?.upgradeKernel, 'the debian image was built without its local repository: rebuild it');
  const served = await serveRepo(a.repo);
  repo = { ...served, dir: a.repo, upgradeKernel: release.repo.upgradeKernel };
  work = mkdtempSync(join(tmpdir(), 'tv-debian-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'typevisor-test', '-f', join(work, 'key')]);
  d = await startDaemonProcess({ runtime: 'machine' });
});
after(async () => {
  await d?.stop();
  if (d) removeHome(d.home);
  repo?.server.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test(
  'debian-riscv64: first-boot config, exec, ssh, apt from a local repo, side by side, kernel upgrade and reboot',
  { timeout: 2 * BOOT_MS + INSTALL_MS + 600_000 },
  async (t) => {
    const gateway = (await d.client.json<{ gateway: string }>('GET', '/networks/default')).gateway;
    const sshPort = await freePort();
    const key = readFileSync(join(work, 'key.pub'), 'utf8').trim();
    writeFileSync(
      join(work, 'user-data'),
      `#cloud-config
hostname: deb-first
users:
  - default
  - name: tester
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys:
      - ${key}
apt:
  preserve_sources_list: false
  sources:
    local:
      source: "deb [trusted=yes] http://${gateway}:${repo.port}/ ./"
packages:
  - hello
write_files:
  - path: /etc/typevisor-test
    content: |
      written by first boot
runcmd:
  - [sh, -c, "hello > /var/tmp/hello.out"]
`,
    );
    const made = await cli(
      'create',
      'deb',
      '--image',
      'debian-riscv64',
      '--memory',
      '1024',
      '--ssh-key',
      join(work, 'key.pub'),
      '--user-data',
      join(work, 'user-data'),
      '--publish',
      `${sshPort}:22`,
      '--start',
    );
    assert.equal(made.status, 0, made.stderr);
    const vm = await d.client.json<VmView>('GET', '/vms/deb');
    assert.equal(vm.config.firmware.kind, 'file');
    assert.deepEqual(vm.login, { user: 'debian' });
    assert.equal(vm.config.disks.at(-1)?.serial, 'cidata');

    const t0 = Date.now();
    /** Wall time since start, and the VM's own CPU time, steal and instructions: wall alone means little on a loaded host. */
    const cost = async () => {
      const s = (await d.client.json<VmView>('GET', '/vms/deb')).stats;
      const wall = ((Date.now() - t0) / 1000).toFixed(0);
      return s
        ? `${wall} s wall, ${s.cpuTimeSeconds.toFixed(0)} s CPU, ${s.stealSeconds.toFixed(0)} s steal, ${(s.instret / 1e9).toFixed(1)} G instructions`
        : `${wall} s wall`;
    };
    /** A diagnostic, also written at once to stderr: a run takes an hour, and diagnostics are printed at its end. */
    const note = (msg: string) => {
      t.diagnostic(msg);
      process.stderr.write(`# [${new Date().toISOString()}] ${msg}\n`);
    };
    const consoleText = async () => (await d.client.text('/vms/deb/console.log')).toString('latin1');
    /** The guest kernel's own clock at a console line: where a boot spends its time. */
    const kernelTime = (log: string, line: RegExp) =>
      /\[\s*(\d+\.\d+)\]/.exec(log.split('\n').find((l) => line.test(l)) ?? '')?.[1];
    const milestones = (log: string) =>
      [
        ['initramfs unpacked', /Freeing initrd memory/],
        ['/init', /Run \/init as init process/],
        ['root mounted', /EXT4-fs \(vda1\): mounted/],
        ['systemd', /systemd\[1\]: systemd \d+/],
      ]
        .map(([what, re]) => `${what as string} ${kernelTime(log, re as RegExp) ?? '?'} s`)
        .join(', ');
    await waitFor('the login prompt', async () => (/login:/.test(await consoleText()) ? true : undefined), BOOT_MS, 5000);
    note(`Debian booted to login: ${await cost()}; guest clock: ${milestones(await consoleText())}`);
    const log = await consoleText();
    assert.match(log, /OpenSBI/);
    assert.match(log, /U-Boot 20\d\d/);
    assert.match(log, /Found \/boot\/extlinux\/extlinux\.conf/);
    assert.match(log, /Welcome to .*Debian GNU\/Linux 13 \(trixie\)/);
    assert.match(log, /typevisor-seed: init done/);

    // The agent runs as a systemd unit: exec works on this image too.
    await waitFor(
      'the agent',
      async () => ((await cli('exec', 'deb', '--timeout', '60', '--', 'true')).status === 0 ? true : undefined),
      900_000,
      5000,
    );
    assert.match((await cli('exec', 'deb', '--', 'cat', '/etc/os-release')).stdout, /VERSION_CODENAME=trixie/);
    // Waits for the first boot's final stage too (apt-get install from the local repository, runcmd).
    const running = await cli('exec', 'deb', '--timeout', '3600', '--', 'systemctl', 'is-system-running', '--wait');
    const failed = (await cli('exec', 'deb', '--', 'systemctl', '--failed', '--no-legend', '--plain')).stdout;
    note(`systemctl is-system-running: ${running.stdout.trim()}; failed units: ${failed.trim() || 'none'}`);
    assert.match(running.stdout, /^(running|degraded)/);
    assert.doesNotMatch(failed, /typevisor-seed|ssh\.service/, 'a first-boot or ssh unit failed');
    const seedLog = await cli('exec', 'deb', '--', 'journalctl', '-b', '-u', 'typevisor-seed-final', '--no-pager');
    assert.match(seedLog.stdout, /typevisor-seed: final done/);
    note(`Debian ready (first boot applied): ${await cost()}`);

    // First boot: hostname, file, the package from the local repository (served by us), runcmd.
    assert.equal((await cli('exec', 'deb', '--', 'hostname')).stdout.trim(), 'deb-first');
    assert.equal((await cli('exec', 'deb', '--', 'cat', '/etc/typevisor-test')).stdout, 'written by first boot\n');
    assert.equal((await cli('exec', 'deb', '--', 'cat', '/var/tmp/hello.out')).stdout, 'Hello, world!\n');
    assert.ok(repo.requests.includes('Packages') || repo.requests.includes('Packages.gz'), repo.requests.join(' '));
    assert.ok(
      repo.requests.some((r) => r.startsWith('hello_')),
      `hello was not fetched from us: ${repo.requests.join(' ')}`,
    );
    assert.doesNotMatch((await cli('exec', 'deb', '--', 'ls', '/etc/apt/sources.list.d')).stdout, /debian\.sources/);

    // ssh through the published port, as each configured user, with the key.
    const ssh = (...args: string[]) => cli('ssh', 'deb', '-i', join(work, 'key'), '-o', 'ConnectTimeout=600', ...args);
    const asDefault = await ssh('--', 'id', '-un');
    assert.equal(asDefault.status, 0, asDefault.stderr);
    assert.equal(asDefault.stdout.trim(), 'debian');
    const asTester = await ssh('-l', 'tester', '--', 'sudo', '-n', 'id', '-u');
    assert.equal(asTester.status, 0, asTester.stderr);
    assert.equal(asTester.stdout.trim(), '0');
    const wrongKey = join(work, 'other');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    assert.notEqual((await cli('ssh', 'deb', '-i', wrongKey, '-o', 'BatchMode=yes', '--', 'true')).status, 0);

    // Side by side under one daemon: the busybox guest, and U-Boot waiting at its prompt (no disk, no NIC).
    const a = debianArtifacts();
    assert.equal((await cli('create', 'bb', '--memory', '128', '--no-nic', '--start')).status, 0);
    await d.client.json('POST', '/vms', {
      name: 'ub',
      memoryMiB: 128,
      kernel: a.uboot,
      kernelFormat: 'raw',
      firmware: a.fwJump,
      nics: [],
      rootDisk: false,
    });
    assert.equal((await cli('start', 'ub')).status, 0);
    await waitFor(
      'the busybox guest',
      async () => ((await cli('exec', 'bb', '--timeout', '60', '--', 'true')).status === 0 ? true : undefined),
      1_200_000,
      3000,
    );
    await waitFor(
      'the U-Boot prompt',
      async () => (/=> $/m.test((await d.client.text('/vms/ub/console.log')).toString('latin1')) ? true : undefined),
      1_200_000,
      3000,
    );
    const states = (await d.client.json<{ vms: VmView[] }>('GET', '/vms')).vms.map((v) => `${v.name}:${v.state}`);
    assert.deepEqual(states.sort(), ['bb:running', 'deb:running', 'ub:running']);
    assert.match((await cli('exec', 'bb', '--', 'cat', '/proc/version')).stdout, /Linux version 6\.1/);
    assert.match((await cli('exec', 'deb', '--', 'uname', '-v')).stdout, /Debian/);
    assert.equal((await cli('stop', 'bb')).status, 0);
    assert.equal((await cli('stop', 'ub')).status, 0);

    // Kernel upgrade from the local repository; u-boot-menu puts the newest kernel first in extlinux.conf.
    const oldKernel = (await cli('exec', 'deb', '--', 'uname', '-r')).stdout.trim();
    assert.match(oldKernel, /\+deb13-riscv64$/);
    const dpkgLinesBefore = (await cli('exec', 'deb', '--', 'cat', '/var/log/dpkg.log')).stdout.split('\n').length - 1;
    const tUp = Date.now();
    const install = await runCli(
      d.home,
      [
        'ssh',
        'deb',
        '-i',
        join(work, 'key'),
        '-o',
        'ConnectTimeout=600',
        '--',
        'set -o pipefail; sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y linux-image-riscv64 2>&1 | tail -5',
      ],
      { timeoutMs: INSTALL_MS },
    );
    assert.equal(install.status, 0, install.stdout + install.stderr);
    note(`kernel package installed in ${((Date.now() - tUp) / 1000).toFixed(0)} s (since start: ${await cost()})`);
    // Where the install's time went, on the guest's clock: dpkg's log of this run (download ends at its first line).
    const dpkgLog = (await cli('exec', 'deb', '--', 'cat', '/var/log/dpkg.log')).stdout;
    note(`dpkg steps (guest clock):\n${dpkgSteps(dpkgLog, dpkgLinesBefore)}`);
    const extlinux = (await cli('exec', 'deb', '--', 'cat', '/boot/extlinux/extlinux.conf')).stdout;
    assert.match(extlinux, new RegExp(`vmlinu[xz]-${repo.upgradeKernel.replace(/[.+]/g, '\\$&')}`));
    assert.ok(
      repo.requests.some((r) => r.startsWith('linux-')),
      'the kernel did not come from the local repository',
    );

    // A graceful reboot through the agent (systemctl reboot): the guest resets the machine itself, not forced.
    const logBefore = (await consoleText()).length;
    const tReboot = Date.now();
    const reboot = await cli('reboot', 'deb', '--timeout', '3600', '--json');
    assert.equal(reboot.status, 0, reboot.stderr);
    assert.equal((JSON.parse(reboot.stdout) as { forced: boolean }).forced, false, 'the guest rebooted itself');
    note(`graceful reboot: the guest reset the machine ${((Date.now() - tReboot) / 1000).toFixed(0)} s after the request`);
    const shutdownLog = (await consoleText()).slice(logBefore);
    // systemd stopped the services and handed over to systemd-shutdown; the kernel then restarted the machine.
    assert.match(shutdownLog, /Stopped .*ssh\.service|Stopped .*OpenBSD Secure Shell server/);
    assert.match(shutdownLog, /systemd-shutdown\[1\]/);
    assert.match(shutdownLog, /reboot: Restarting system/);
    // Host times at which the second boot's console reaches each firmware step: what U-Boot spends loading files.
    const firmwareSteps: [string, RegExp][] = [
      ['U-Boot', /U-Boot 20\d\d/],
      ['extlinux.conf', /Found \/boot\/extlinux\/extlinux\.conf/],
      ['initrd load', /Retrieving file: \/boot\/initrd/],
      ['kernel load', /Retrieving file: \/boot\/vmlinu/],
      ['kernel start', /Starting kernel/],
    ];
    const seenAt = new Map<string, string>();
    let watching = true;
    const watcher = (async () => {
      while (watching && seenAt.size < firmwareSteps.length) {
        const text = (await consoleText()).slice(logBefore);
        for (const [what, re] of firmwareSteps)
          if (!seenAt.has(what) && re.test(text)) seenAt.set(what, `${what} ${await cost()}`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    await waitFor(
      'the upgraded kernel',
      async () => {
        const r = await cli('exec', 'deb', '--timeout', '30', '--', 'uname', '-r');
        return r.status === 0 && r.stdout.trim() !== oldKernel ? r.stdout.trim() : undefined;
      },
      BOOT_MS,
      10_000,
    ).then((k) => assert.equal(k, repo.upgradeKernel));
    watching = false;
    await watcher;
    note(`second boot's firmware steps (first seen, polled every 2 s): ${[...seenAt.values()].join('; ')}`);
    const second = (await consoleText()).slice(logBefore);
    note(
      `rebooted into ${repo.upgradeKernel} in ${((Date.now() - tReboot) / 1000).toFixed(0)} s (since start: ${await cost()}); guest clock: ${milestones(second)}`,
    );
    assert.match(second, /Found \/boot\/extlinux\/extlinux\.conf/);
    // The seed is not applied twice: the instance's stamps are kept.
    assert.match(second, /typevisor-seed: init already done/);

    // The new kernel's boot comes up whole (the agent answers well before systemd is done: a poweroff then would
    // stop services that never started) before the graceful poweroff below.
    const running2 = await cli('exec', 'deb', '--timeout', '3600', '--', 'systemctl', 'is-system-running', '--wait');
    const failed2 = (await cli('exec', 'deb', '--', 'systemctl', '--failed', '--no-legend', '--plain')).stdout;
    note(
      `second boot: systemctl is-system-running: ${running2.stdout.trim()}; failed units: ${failed2.trim() || 'none'} (since start: ${await cost()})`,
    );
    assert.match(running2.stdout, /^(running|degraded)/);

    // Graceful shutdown through the agent (systemctl poweroff): `typevisor stop` without --force.
    const logBeforeStop = (await consoleText()).length;
    const tStop = Date.now();
    const stop = await cli('stop', 'deb', '--timeout', '3600', '--json');
    assert.equal(stop.status, 0, stop.stderr);
    assert.equal((JSON.parse(stop.stdout) as { forced: boolean }).forced, false, 'the guest powered itself off');
    assert.equal((await d.client.json<VmView>('GET', '/vms/deb')).state, 'stopped');
    const poweroffLog = (await consoleText()).slice(logBeforeStop);
    assert.match(poweroffLog, /Stopped .*ssh\.service|Stopped .*OpenBSD Secure Shell server/);
    assert.match(poweroffLog, /systemd-shutdown\[1\]/);
    assert.match(poweroffLog, /reboot: Power down/);
    note(`graceful poweroff in ${((Date.now() - tStop) / 1000).toFixed(0)} s`);
  },
);

/** Debian's own firmware for QEMU's virt board, as its packages install it (install.sh installs both packages). */
const DEBIAN_FIRMWARE = {
  opensbi: '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin',
  uboot: '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin',
};

test(
  "the same image boots under qemu-system-riscv64 -M virt with Debian's OpenSBI and u-boot-qemu",
  { timeout: BOOT_MS },
  async (t) => {
    const a = debianArtifacts();
    // The files belong to Debian's packages (a missing package fails here, naming the file).
    const owner = (path: string) => execFileSync('dpkg-query', ['-S', path], { encoding: 'utf8' }).split(':')[0];
    assert.equal(owner(DEBIAN_FIRMWARE.opensbi), 'opensbi');
    assert.equal(owner(DEBIAN_FIRMWARE.uboot), 'u-boot-qemu');
    const dir = mkdtempSync(join(tmpdir(), 'tv-debian-qemu-'));
    const overlay = join(dir, 'overlay.qcow2');
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
        DEBIAN_FIRMWARE.opensbi,
        '-kernel',
        DEBIAN_FIRMWARE.uboot,
        '-drive',
        `file=${overlay},format=qcow2,if=none,id=d0`,
        '-device',
        'virtio-blk-device,drive=d0',
        '-nic',
        'none',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const io = new Expect([qemu.stdout!, qemu.stderr!], qemu.stdin!);
    try {
      const t0 = Date.now();
      await io.waitFor(/OpenSBI v\d/, 600_000);
      await io.waitFor(/U-Boot 20\d\d/, 600_000);
      await io.waitFor('Found /boot/extlinux/extlinux.conf', 600_000);
      await io.waitFor(/Welcome to .*Debian GNU\/Linux 13/, BOOT_MS);
      await io.waitFor('login:', BOOT_MS);
      t.diagnostic(
        `qemu booted the image to login in ${((Date.now() - t0) / 1000).toFixed(0)} s (${basename(a.disk)}, ${DEBIAN_FIRMWARE.opensbi}, ${DEBIAN_FIRMWARE.uboot})`,
      );
    } finally {
      qemu.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
