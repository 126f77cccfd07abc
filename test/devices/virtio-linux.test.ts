/**
 * Integration: real Linux 6.1 driving our virtio devices, in-process (board + hart + attachVirtioDevices).
 * Root on virtio-blk (raw, then a qcow2 overlay on the base image), /dev/hwrng, /dev/hvc0 both ways with the
 * guest agent, and the balloon giving RAM back. Needs the guest images (`typevisor guest build`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDisk } from '../../src/storage/index.js';
import { requireGuest } from '../helpers/guest.js';
import { MiB, bootToShell, diskConfig, sha } from './linux-vm.js';

test(
  'Linux: root on virtio-blk (raw); hwrng, hvc0 both ways, balloon; a written file survives a reboot',
  { timeout: 900_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'typevisor-vlinux-'));
    try {
      const disk = join(dir, 'root.ext4');
      await copyFile(requireGuest().rootfs, disk);
      const extra = join(dir, 'extra.raw');
      await createDisk(extra, { format: 'raw', size: 8 * MiB });
      const config = diskConfig(disk, 'raw');
      config.disks.push({ path: extra, format: 'raw', readOnly: true, serial: 'second-disk' });
      const vm = await bootToShell(config);
      assert.match(await vm.sh('cat /proc/cmdline'), /root=\/dev\/vda/);
      // Several disks: the guest names them in config order; the read-only one is read-only to the guest.
      assert.equal((await vm.sh('cat /sys/block/vdb/serial')).trim(), 'second-disk');
      assert.equal((await vm.sh('cat /sys/block/vdb/ro')).trim(), '1');
      assert.equal((await vm.sh('cat /sys/block/vdb/size')).trim(), String((8 * MiB) / 512));
      assert.match(await vm.sh('cat /sys/block/vda/serial 2>/dev/null || cat /sys/block/vda/device/serial'), /typevisor-root/);
      // virtio-rng behind /dev/hwrng.
      const random = (await vm.sh('head -c 16 /dev/hwrng | od -An -tx1 | tr -d " \\n"')).trim();
      assert.match(random, /^[0-9a-f]{32}$/);
      assert.notEqual(random, '0'.repeat(32));
      assert.ok(vm.virtio.rng!.metrics().bytes >= 16);
      // virtio-console: the guest agent says ready on /dev/hvc0, and answers ping.
      await vm.waitFor('hvc', 'ready\n', 60_000);
      assert.ok(vm.virtio.agentSend('ping'));
      await vm.waitFor('hvc', 'pong\n', 30_000);
      // Free page reporting: memory the guest dirties then frees goes back to the host.
      await vm.sh('dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null');
      const dirty = vm.machine.ram.allocatedBytes;
      await vm.sh('rm /tmp/fill');
      const balloon = vm.virtio.balloon!;
      for (let i = 0; i < 100 && balloon.metrics().reportReleasedBytes === 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(balloon.metrics().reportReleasedBytes > 0, 'the guest reported free pages');
      assert.ok(vm.machine.ram.allocatedBytes < dirty, `host RAM after reporting ${vm.machine.ram.allocatedBytes} < ${dirty}`);
      // Write a file on the virtio root and power off.
      await vm.sh('echo persisted-through-virtio-blk > /persist.txt');
      // Discard reaches the device (fstrim on the ext4 root).
      await vm.sh('fstrim / 2>&1 || true');
      assert.ok(vm.virtio.disks[0]!.device.metrics().discards > 0, 'fstrim issued virtio-blk DISCARD');
      assert.equal((await vm.shutdown()).kind, 'poweroff');
      assert.ok(vm.virtio.disks[0]!.device.metrics().flushes >= 1, 'the guest flushed');

      // The next boot sees the file. It runs without free page reporting, so that inflating the balloon is what
      // gives dirtied-then-freed memory back.
      const vm2 = await bootToShell(diskConfig(disk, 'raw'), { balloon: { freePageReporting: false } });
      assert.equal((await vm2.sh('cat /persist.txt')).trim(), 'persisted-through-virtio-blk');
      await vm2.sh('dd if=/dev/zero of=/tmp/fill bs=1M count=128 2>/dev/null; rm /tmp/fill');
      const before = vm2.machine.ram.allocatedBytes;
      const b2 = vm2.virtio.balloon!;
      const targetPages = (192 * MiB) / 4096;
      b2.setTarget(targetPages);
      for (let i = 0; i < 600 && b2.actualPages < targetPages; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(b2.actualPages, targetPages, 'the guest reports the target as actual');
      assert.equal(b2.balloonedPages, targetPages);
      const after = vm2.machine.ram.allocatedBytes;
      assert.ok(b2.metrics().inflateReleasedBytes > 0);
      assert.ok(after < before, `host RAM after inflate ${after} < before ${before}`);
      console.log(
        `balloon: host RAM ${before / MiB} MiB -> ${after / MiB} MiB after inflating ${(targetPages * 4096) / MiB} MiB`,
      );
      b2.setTarget(0);
      for (let i = 0; i < 600 && b2.actualPages > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(b2.balloonedPages, 0, 'deflated');
      assert.match(await vm2.sh('echo alive'), /alive/);
      assert.equal((await vm2.shutdown()).kind, 'poweroff');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  'Linux: root on a qcow2 overlay of the base image; the base is unchanged and qemu-img check is clean',
  { timeout: 900_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'typevisor-vlinux-'));
    try {
      const base = join(dir, 'base.ext4');
      const overlay = join(dir, 'overlay.qcow2');
      await copyFile(requireGuest().rootfs, base);
      const baseHash = await sha(base);
      await createDisk(overlay, { format: 'qcow2', backingFile: base, backingFormat: 'raw' });
      const vm = await bootToShell(diskConfig(overlay, 'qcow2'));
      const written = (
        await vm.sh('echo on-the-overlay > /overlay.txt; dd if=/dev/urandom of=/blob bs=64k count=16 2>/dev/null; md5sum /blob')
      ).trim();
      assert.match(written, /^[0-9a-f]{32} {2}\/blob$/);
      assert.equal((await vm.shutdown()).kind, 'poweroff');
      assert.equal(await sha(base), baseHash, 'the backing file is byte-for-byte unchanged');
      execFileSync('qemu-img', ['check', overlay], { stdio: 'pipe' });

      const vm2 = await bootToShell(diskConfig(overlay, 'qcow2'));
      assert.equal((await vm2.sh('cat /overlay.txt')).trim(), 'on-the-overlay');
      assert.equal((await vm2.sh('md5sum /blob')).trim(), written);
      assert.equal((await vm2.shutdown()).kind, 'poweroff');
      assert.equal(await sha(base), baseHash);
      execFileSync('qemu-img', ['check', overlay], { stdio: 'pipe' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
