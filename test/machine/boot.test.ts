/**
 * Integration: real guests booted through `typevisor run` with pipes as the console.
 * Linux tests need the guest images (`typevisor guest build`); U-Boot and OpenSBI come from Debian packages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleDriver } from './console-driver.js';
import { requireGuest } from '../helpers/guest.js';
import { requirePackageFile } from '../helpers/require.js';
import { repoRoot } from '../helpers/paths.js';
import type { GuestArtifacts } from '../../src/guests/index.js';

const UBOOT = '/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin';
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

type Guest = GuestArtifacts;
const uboot = (): string => requirePackageFile(UBOOT, 'u-boot-qemu');
const fwJump = (): string => requirePackageFile(FW_JUMP, 'opensbi');

async function bootLinux(d: ConsoleDriver, g: Guest): Promise<void> {
  await d.waitFor(g.marker, 240_000);
  d.type('\n');
  await d.waitFor(/# $/m, 30_000);
}

async function shell(d: ConsoleDriver, command: string, expect: RegExp, ms = 30_000): Promise<string> {
  const from = d.output.length;
  d.type(command + '\n');
  await d.waitFor(expect, ms, from);
  return d.output.slice(from);
}

test('U-Boot S-mode on the built-in SBI reaches its prompt and runs version', { timeout: 120_000 }, async () => {
  const d = new ConsoleDriver(['--kernel', uboot(), '--kernel-format', 'raw', '--no-virtio']);
  try {
    await d.waitFor('Hit any key to stop autoboot', 90_000);
    d.type(' ');
    await d.waitFor('=> ', 20_000);
    const out = await shell(d, 'version', /riscv64-linux-gnu-gcc[^\n]*\n[\s\S]*=> /);
    assert.match(out, /U-Boot 20\d\d/);
  } finally {
    d.kill();
  }
});

test('OpenSBI fw_jump (M-mode) hands over to U-Boot S-mode', { timeout: 180_000 }, async () => {
  const d = new ConsoleDriver([
    '--firmware',
    fwJump(),
    '--kernel',
    uboot(),
    '--kernel-format',
    'raw',
    '--no-virtio',
    '--cpus',
    '2',
  ]);
  try {
    await d.waitFor('Platform HART Count       : 2', 90_000);
    await d.waitFor('Hit any key to stop autoboot', 90_000);
    d.type(' ');
    await d.waitFor('=> ', 20_000);
  } finally {
    d.kill();
  }
});

const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
test('OpenSBI fw_dynamic reads our fw_dynamic_info and starts U-Boot in S-mode at 0x80200000', { timeout: 180_000 }, async () => {
  const d = new ConsoleDriver([
    '--firmware',
    requirePackageFile(FW_DYNAMIC, 'opensbi'),
    '--kernel',
    uboot(),
    '--kernel-format',
    'raw',
    '--no-virtio',
  ]);
  try {
    await d.waitFor(/Domain0 Next Address\s*: 0x0000000080200000/, 90_000);
    await d.waitFor(/Domain0 Next Mode\s*: S-mode/, 10_000);
    await d.waitFor('U-Boot 20', 90_000);
  } finally {
    d.kill();
  }
});

test('bare-metal ELF with --firmware none: UART output and the tohost exit code', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-bare-'));
  const obj = join(dir, 'p.o');
  const elf = join(dir, 'p.elf');
  execFileSync('riscv64-linux-gnu-as', [
    '-march=rv64imac_zicsr',
    '--defsym',
    'EXIT_CODE=21',
    '-o',
    obj,
    join(repoRoot, 'test/machine/programs/hello-tohost.S'),
  ]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', elf, obj]);
  const d = new ConsoleDriver(['--firmware', 'none', '--kernel', elf, '--no-virtio']);
  assert.equal(await d.exit, 21);
  assert.equal(d.output, 'bare metal hello\n');
  execFileSync('riscv64-linux-gnu-as', [
    '-march=rv64imac_zicsr',
    '--defsym',
    'EXIT_CODE=0',
    '-o',
    obj,
    join(repoRoot, 'test/machine/programs/hello-tohost.S'),
  ]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', elf, obj]);
  const ok = new ConsoleDriver(['--firmware', 'none', '--kernel', elf, '--no-virtio', '--cpus', '2']);
  assert.equal(await ok.exit, 0);
});

test('bad kernel images are refused with a clear message', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-bad-'));
  const elf32 = join(dir, 'elf32');
  writeFileSync(elf32, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]), Buffer.alloc(100)]));
  const d = new ConsoleDriver(['--kernel', elf32, '--firmware', 'none']);
  assert.equal(await d.exit, 1);
  assert.match(d.stderr, /elf32 is an ELF file but not a 64-bit little-endian RISC-V one \(class 1/);
  const e = new ConsoleDriver(['--kernel', '/nonexistent/Image']);
  assert.equal(await e.exit, 1);
  assert.match(e.stderr, /cannot read kernel '\/nonexistent\/Image'/);
});

test(
  'Linux + busybox initramfs (the default guest, no arguments): boots to the marker, answers a command, reboots, powers off with 0',
  { timeout: 400_000 },
  async () => {
    const guest = requireGuest();
    const d = new ConsoleDriver([]);
    try {
      await bootLinux(d, guest);
      await shell(d, 'echo $((6*7))', /^42\r?$/m);
      // A guest reboot resets the machine and boots again in the same process.
      const from = d.output.length;
      d.type('reboot -f\n');
      await d.waitFor(guest.marker, 240_000, from);
      d.type('\n');
      await d.waitFor(/# $/m, 30_000, from);
      assert.match(d.stderr, /guest reboot/);
      d.type('poweroff -f\n');
      assert.equal(await d.exit, 0);
    } finally {
      d.kill();
    }
  },
);

test('Linux with --cpus 4: nproc prints 4; an idle guest uses < 5% of a host core', { timeout: 300_000 }, async (t) => {
  const guest = requireGuest();
  const d = new ConsoleDriver([
    '--kernel',
    guest.kernel,
    '--initrd',
    guest.initramfs,
    '--append',
    'console=ttyS0',
    '--cpus',
    '4',
  ]);
  try {
    await bootLinux(d, guest);
    await shell(d, 'nproc', /^4\r?$/m);
    await new Promise((r) => setTimeout(r, 3000)); // let boot-time work settle
    const before = await d.cpuSeconds();
    await new Promise((r) => setTimeout(r, 10_000));
    const used = (await d.cpuSeconds()) - before;
    t.diagnostic(`idle 4-cpu guest: ${used.toFixed(2)} s of host CPU over 10 s`);
    assert.ok(used < 0.5, `idle guest used ${used.toFixed(2)} s of CPU in 10 s`);
    d.type('poweroff -f\n');
    assert.equal(await d.exit, 0);
  } finally {
    d.kill();
  }
});

test(
  'OpenSBI fw_jump with no --kernel boots the default guest to the marker (as run --help says)',
  { timeout: 300_000 },
  async () => {
    const guest = requireGuest();
    const d = new ConsoleDriver(['--firmware', fwJump()]);
    try {
      await d.waitFor('OpenSBI', 60_000);
      await bootLinux(d, guest);
      d.type('poweroff -f\n');
      assert.equal(await d.exit, 0);
    } finally {
      d.kill();
    }
  },
);
