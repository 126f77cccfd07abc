/**
 * Fuzz: hostile kernel and device-tree files against the loaders. Random bytes, and valid Linux Image / ELF /
 * FDT headers with random mutations, go through classifyKernel, parseLinuxImage, parseElf, planBoot and
 * parseFdt: each either succeeds or throws its own named error (never a TypeError/RangeError from reading past
 * the end), and a plan it makes only places bytes inside RAM.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BootError, planBoot } from '../../src/machine/loaders/boot.js';
import { ElfError, EM_RISCV, parseElf } from '../../src/machine/loaders/elf.js';
import { LinuxImageError, parseLinuxImage } from '../../src/machine/loaders/image.js';
import { classifyKernel, KernelFormatError } from '../../src/machine/loaders/kernel-format.js';
import { DeviceTree, FdtParseError, parseFdt, prop } from '../../src/machine/fdt.js';
import { fuzzParams } from '../helpers/fuzz.js';

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 64 * 1024 * 1024;

function imageHeader(): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  dv.setUint32(8, 0x20_0000, true); // text_offset
  dv.setUint32(16, 0x1_0000, true); // image_size
  dv.setUint32(0x38, 0x05435352, true); // "RSC\x05"
  return b;
}

function elfHeader(): Uint8Array {
  // ELF64 LE RISC-V with one PT_LOAD program header at 64, pointing at 16 bytes of code.
  const b = new Uint8Array(256);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, EM_RISCV, true);
  dv.setUint32(20, 1, true);
  dv.setUint32(24, RAM_BASE, true); // e_entry
  dv.setUint32(32, 64, true); // e_phoff
  dv.setUint16(52, 64, true); // e_ehsize
  dv.setUint16(54, 56, true); // e_phentsize
  dv.setUint16(56, 1, true); // e_phnum
  dv.setUint32(64, 1, true); // PT_LOAD
  dv.setUint32(64 + 8, 128, true); // p_offset
  dv.setUint32(64 + 16, RAM_BASE, true); // p_vaddr
  dv.setUint32(64 + 24, RAM_BASE, true); // p_paddr
  dv.setUint32(64 + 32, 16, true); // p_filesz
  dv.setUint32(64 + 40, 16, true); // p_memsz
  return b;
}

function fdtBlob(): Uint8Array {
  const dt = new DeviceTree();
  dt.root.set('#address-cells', prop.u32(2)).set('model', prop.str('typevisor'));
  dt.root.child('memory@80000000').set('reg', prop.u64(RAM_BASE, RAM_SIZE));
  return dt.toBlob();
}

/** Random bytes, or a valid header with random byte overwrites and a random truncation. */
const mutated = (base: () => Uint8Array): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.uint8Array({ minLength: 0, maxLength: 512 }),
    fc
      .tuple(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
        fc.option(fc.nat(), { nil: undefined }),
      )
      .map(([writes, cut]) => {
        const b = base();
        for (const [at, v] of writes) b[at % b.length] = v;
        return cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
      }),
  );

function onlyNamed(fn: () => unknown, ...named: (new (...args: never[]) => Error)[]): void {
  try {
    fn();
  } catch (err) {
    assert.ok(
      named.some((n) => err instanceof n),
      `unexpected ${(err as Error).name}: ${(err as Error).message}`,
    );
  }
}

const kernels = fc.oneof(mutated(imageHeader), mutated(elfHeader));

test('fuzz: kernel files through classifyKernel, parseLinuxImage, parseElf and planBoot', () => {
  // The seeds the mutations start from are valid files.
  assert.equal(parseElf(elfHeader()).entry, RAM_BASE);
  assert.equal(classifyKernel(elfHeader().subarray(0, 64), 'auto'), 'elf');
  assert.equal(parseLinuxImage(imageHeader()).textOffset, 0x20_0000);
  assert.equal(
    planBoot({ ramBase: RAM_BASE, ramSize: RAM_SIZE, kernel: imageHeader(), firmware: { kind: 'builtin' } }).kernelFormat,
    'linux-image',
  );
  fc.assert(
    fc.property(kernels, fc.constantFrom('builtin', 'none', 'external') as fc.Arbitrary<string>, (bytes, fw) => {
      onlyNamed(() => classifyKernel(bytes.subarray(0, 64), 'auto'), KernelFormatError);
      onlyNamed(() => parseLinuxImage(bytes), LinuxImageError);
      onlyNamed(() => parseElf(bytes), ElfError);
      const firmware =
        fw === 'external' ? { kind: 'external' as const, bytes: new Uint8Array(4096) } : { kind: fw as 'builtin' | 'none' };
      let plan;
      try {
        plan = planBoot({ ramBase: RAM_BASE, ramSize: RAM_SIZE, kernel: bytes, firmware });
      } catch (err) {
        assert.ok(err instanceof BootError || err instanceof ElfError || err instanceof LinuxImageError, String(err));
        return;
      }
      for (const p of plan.placements) {
        assert.ok(p.addr >= RAM_BASE && p.addr + p.bytes.length <= RAM_BASE + RAM_SIZE, `${p.what} placed outside RAM`);
      }
    }),
    fuzzParams(2000, 0xb007),
  );
});

test('fuzz: device-tree blobs through parseFdt', () => {
  assert.deepEqual(
    parseFdt(fdtBlob()).children.map((c) => c.name),
    ['memory@80000000'],
  );
  fc.assert(
    fc.property(mutated(fdtBlob), (blob) => onlyNamed(() => parseFdt(blob), FdtParseError)),
    fuzzParams(2000, 0xfd7),
  );
});
