import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLinuxImage, LinuxImageError, IMAGE_MAGIC2 } from '../../src/machine/loaders/image.js';
import { planBoot, planForRestore, BootError } from '../../src/machine/loaders/boot.js';
import { ElfError } from '../../src/machine/loaders/elf.js';

const MiB = 1 << 20;
const RAM = 0x8000_0000;

function fakeImage(size: number, imageSize = size, textOffset = 0x20_0000): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  dv.setUint32(8, textOffset, true);
  dv.setUint32(16, imageSize, true);
  dv.setUint32(32, 2, true); // version 0.2
  dv.setUint32(0x38, IMAGE_MAGIC2, true);
  return b;
}

test('Linux Image header: parsed fields and named errors', () => {
  const h = parseLinuxImage(fakeImage(8192, 3 * MiB));
  assert.equal(h.textOffset, 0x20_0000);
  assert.equal(h.imageSize, 3 * MiB);
  assert.deepEqual(h.version, { major: 0, minor: 2 });
  assert.throws(
    () => parseLinuxImage(new Uint8Array(10)),
    (e: unknown) => e instanceof LinuxImageError && e.code === 'TOO_SHORT',
  );
  assert.throws(
    () => parseLinuxImage(new Uint8Array(128)),
    (e: unknown) => e instanceof LinuxImageError && e.code === 'BAD_MAGIC' && /RSC/.test(e.message),
  );
  assert.throws(
    () => parseLinuxImage(fakeImage(8192, 8192, 0x123)),
    (e: unknown) => e instanceof LinuxImageError && e.code === 'BAD_TEXT_OFFSET',
  );
});

test('builtin firmware: Image at 0x80200000, initrd below the FDT at the top of RAM', () => {
  const plan = planBoot({
    ramBase: RAM,
    ramSize: 64 * MiB,
    kernel: fakeImage(8192, 4 * MiB),
    initrd: new Uint8Array(MiB + 5),
    firmware: { kind: 'builtin' },
  });
  assert.equal(plan.mode, 'S');
  assert.equal(plan.entry, 0x8020_0000);
  assert.equal(plan.kernelFormat, 'linux-image');
  assert.equal(plan.fdtAddr, RAM + 62 * MiB);
  assert.ok(plan.initrd!.end <= plan.fdtAddr);
  assert.equal(plan.initrd!.start % 4096, 0);
  assert.equal(plan.initrd!.end - plan.initrd!.start, MiB + 5);
});

test('external firmware: firmware at RAM base in M-mode, kernel at +2 MiB, fw_dynamic info reserved', () => {
  const plan = planBoot({
    ramBase: RAM,
    ramSize: 64 * MiB,
    kernel: new Uint8Array(1000),
    firmware: { kind: 'external', bytes: new Uint8Array(300_000) },
  });
  assert.equal(plan.mode, 'M');
  assert.equal(plan.entry, RAM);
  assert.equal(plan.kernelAddr, 0x8020_0000);
  assert.equal(plan.kernelFormat, 'raw');
  assert.ok(plan.dynamicInfoAddr! > plan.fdtAddr && plan.dynamicInfoAddr! < RAM + 64 * MiB);
  assert.throws(
    () => planBoot({ ramBase: RAM, ramSize: 64 * MiB, firmware: { kind: 'external', bytes: new Uint8Array(3 * MiB) } }),
    (e: unknown) => e instanceof BootError && e.code === 'FIRMWARE_DOES_NOT_FIT',
  );
});

test('a board built for a restore keeps the layout a boot plans, with no image read', () => {
  for (const ramSize of [64 * MiB, 256 * MiB + 3 * 4096]) {
    const booted = planBoot({ ramBase: RAM, ramSize, kernel: fakeImage(8192, 4 * MiB), firmware: { kind: 'builtin' } });
    const restored = planForRestore({ ramBase: RAM, ramSize, firmware: 'builtin' });
    assert.deepEqual(
      [restored.mode, restored.entry, restored.fdtAddr, restored.placements.length],
      [booted.mode, booted.entry, booted.fdtAddr, 0],
    );
    assert.equal(restored.firmwareRegion, undefined);
    const withFirmware = planBoot({
      ramBase: RAM,
      ramSize,
      kernel: new Uint8Array(1000),
      firmware: { kind: 'external', bytes: new Uint8Array(300_000) },
    });
    const restoredFw = planForRestore({ ramBase: RAM, ramSize, firmware: 'external' });
    assert.deepEqual(
      [restoredFw.mode, restoredFw.entry, restoredFw.fdtAddr, restoredFw.firmwareRegion],
      [withFirmware.mode, withFirmware.entry, withFirmware.fdtAddr, withFirmware.firmwareRegion],
    );
  }
});

test('things that do not fit in RAM give clear errors', () => {
  assert.throws(
    () =>
      planBoot({
        ramBase: RAM,
        ramSize: 16 * MiB,
        kernel: fakeImage(8192, 4 * MiB),
        initrd: new Uint8Array(12 * MiB),
        firmware: { kind: 'builtin' },
      }),
    (e: unknown) => e instanceof BootError && e.code === 'INITRD_DOES_NOT_FIT' && /more memory/.test(e.message),
  );
  assert.throws(
    () => planBoot({ ramBase: RAM, ramSize: 16 * MiB, kernel: fakeImage(8192, 20 * MiB), firmware: { kind: 'builtin' } }),
    (e: unknown) => e instanceof BootError && e.code === 'KERNEL_DOES_NOT_FIT',
  );
  assert.throws(
    () => planBoot({ ramBase: RAM, ramSize: 16 * MiB, firmware: { kind: 'none' } }),
    (e: unknown) => e instanceof BootError && e.code === 'NO_KERNEL',
  );
});

test('bare metal: a broken ELF header is reported by the ELF parser', () => {
  const bad = new Uint8Array(64);
  bad.set([0x7f, 0x45, 0x4c, 0x46, 1, 1]); // ELF32
  assert.throws(
    () => planBoot({ ramBase: RAM, ramSize: 16 * MiB, kernel: bad, firmware: { kind: 'none' } }),
    (e: unknown) => e instanceof ElfError && e.code === 'NOT_ELF64',
  );
});
