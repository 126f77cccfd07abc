// The guest images boot under the reference machine, qemu-system-riscv64 -M virt (Debian's OpenSBI as
// the default -bios): initramfs root and ext4 root on a virtio disk, a working shell, the guest agent on
// a virtio console, a clean ext4 image, and a second `guest build` that is a cache hit.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_GUESTS, type GuestArtifacts } from '../../src/guests/index.js';
import { requireGuest } from '../helpers/guest.js';
import { requireTool } from '../helpers/require.js';
import { ConsoleProcess, Expect } from '../helpers/console.js';
import { cliArgs, repoRoot } from '../helpers/paths.js';

const BOOT_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 30_000;
const PROMPT = 'typevisor:/# ';

function qemu(a: GuestArtifacts, extra: string[], append: string): ConsoleProcess {
  return new ConsoleProcess('qemu-system-riscv64', [
    '-M',
    'virt',
    '-nographic',
    '-m',
    '256M',
    '-smp',
    '2',
    '-kernel',
    a.kernel,
    '-append',
    append,
    ...extra,
  ]);
}

/** Connects to a unix socket, retrying while the server (qemu, starting up) has not created it yet. */
async function connectWhenListening(path: string, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(path);
        s.once('connect', () => resolve(s)).once('error', reject);
      });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Boots to the marker and the prompt, checks arithmetic in the shell, runs `extra`, then powers off. */
async function shellSession(vm: ConsoleProcess, marker: string, extra: (vm: ConsoleProcess) => Promise<void>): Promise<void> {
  try {
    await vm.waitFor(marker, BOOT_TIMEOUT_MS);
    await vm.waitFor(PROMPT, STEP_TIMEOUT_MS);
    vm.send('echo $((6*7))');
    await vm.waitFor(/^42\r?$/m, STEP_TIMEOUT_MS);
    await extra(vm);
    vm.send('poweroff');
    const status = await vm.waitExit(STEP_TIMEOUT_MS);
    assert.deepEqual(status, { code: 0, signal: null }, vm.tail());
  } finally {
    await vm.kill();
  }
}

describe('guest images under qemu-system-riscv64 -M virt', { timeout: 6 * BOOT_TIMEOUT_MS }, () => {
  let a: GuestArtifacts;
  let tmp: string;
  before(() => {
    requireTool('qemu-system-riscv64', 'qemu-system-misc');
    a = requireGuest();
    tmp = mkdtempSync(join(tmpdir(), 'tv-guests-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it(
    'boots Linux with the initramfs to the marker and a working shell; poweroff ends qemu',
    { timeout: BOOT_TIMEOUT_MS + 2 * STEP_TIMEOUT_MS },
    async () => {
      const vm = qemu(a, ['-initrd', a.initramfs], 'console=ttyS0');
      await shellSession(vm, a.marker, async () => {
        // The root filesystem is the initramfs (rootfs), and the kernel has the SMP and RTC we configured.
        vm.send('grep -c ^processor /proc/cpuinfo; cat /sys/class/rtc/rtc0/name');
        await vm.waitFor(/^2\r?$/m, STEP_TIMEOUT_MS);
        await vm.waitFor(/goldfish/, STEP_TIMEOUT_MS);
      });
    },
  );

  it(
    'boots with root on the ext4 image as a virtio-blk disk, and leaves it clean',
    { timeout: BOOT_TIMEOUT_MS + 4 * STEP_TIMEOUT_MS },
    async () => {
      const disk = join(tmp, 'root.ext4');
      copyFileSync(a.rootfs, disk);
      const vm = qemu(
        a,
        ['-drive', `file=${disk},format=raw,if=none,id=hd0`, '-device', 'virtio-blk-device,drive=hd0'],
        'root=/dev/vda rw console=ttyS0',
      );
      await shellSession(vm, a.marker, async () => {
        vm.send("grep ' / ' /proc/mounts");
        await vm.waitFor(/^\/dev\/root \/ ext4 rw/m, STEP_TIMEOUT_MS);
        vm.send('echo persisted > /root/note && sync && cat /root/note');
        await vm.waitFor(/^persisted\r?$/m, STEP_TIMEOUT_MS);
      });
      const fsck = spawnSync('e2fsck', ['-fn', disk], { encoding: 'utf8' });
      assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
      const note = spawnSync('debugfs', ['-R', 'cat /root/note', disk], { encoding: 'utf8' });
      assert.equal(note.stdout, 'persisted\n');
    },
  );

  it(
    'answers the guest agent protocol on the first virtio console port and shuts down on request',
    { timeout: BOOT_TIMEOUT_MS + 3 * STEP_TIMEOUT_MS },
    async () => {
      const sock = join(tmp, 'agent.sock');
      const vm = qemu(
        a,
        [
          '-initrd',
          a.initramfs,
          '-device',
          'virtio-serial-device',
          '-chardev',
          `socket,id=agent,path=${sock},server=on,wait=off`,
          '-device',
          'virtconsole,chardev=agent',
        ],
        'console=ttyS0',
      );
      try {
        // Connect before the guest boots: qemu drops what the agent says while nobody is connected.
        const socket = await connectWhenListening(sock, STEP_TIMEOUT_MS);
        await vm.waitFor(a.marker, BOOT_TIMEOUT_MS);
        const agent = new Expect([socket], socket);
        await agent.waitFor(/^ready$/m, STEP_TIMEOUT_MS);
        agent.send('ping');
        await agent.waitFor(/^pong$/m, STEP_TIMEOUT_MS);
        agent.send('bogus');
        await agent.waitFor(/^error - unknown-command$/m, STEP_TIMEOUT_MS);
        agent.send('shutdown');
        await agent.waitFor(/^ok shutdown$/m, STEP_TIMEOUT_MS);
        const status = await vm.waitExit(STEP_TIMEOUT_MS);
        assert.deepEqual(status, { code: 0, signal: null }, vm.tail());
        socket.destroy();
      } finally {
        await vm.kill();
      }
    },
  );

  it('the ext4 root image passes e2fsck -fn', () => {
    const r = spawnSync('e2fsck', ['-fn', a.rootfs], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('a second `typevisor guest build` is a cache hit for every default guest', { timeout: 120_000 }, () => {
    const r = spawnSync(process.execPath, cliArgs('guest', 'build'), { cwd: repoRoot, encoding: 'utf8', timeout: 110_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    for (const name of DEFAULT_GUESTS) assert.match(r.stdout, new RegExp(`^${name}: cache hit \\([0-9a-f]{16}\\)$`, 'm'));
    assert.match(r.stdout, /0 built, 5 cached/);
  });
});
