/**
 * Boot planning: decides where every image goes in guest RAM and how the boot hart starts, as a pure function
 * of the inputs, so placement rules and their errors are testable without a CPU.
 */
import { isElf, parseElf, type ElfImage } from './elf.js';
import { isLinuxImage, parseLinuxImage } from './image.js';
import { KERNEL_OFFSET_WITH_FIRMWARE } from '../layout.js';

export type BootErrorCode =
  'NO_KERNEL' | 'KERNEL_DOES_NOT_FIT' | 'INITRD_DOES_NOT_FIT' | 'FIRMWARE_DOES_NOT_FIT' | 'ELF_OUTSIDE_RAM' | 'RAM_TOO_SMALL';

export class BootError extends Error {
  constructor(
    readonly code: BootErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BootError';
  }
}

export type FirmwareImage = { kind: 'builtin' } | { kind: 'none' } | { kind: 'external'; bytes: Uint8Array };

export interface BootInputs {
  ramBase: number;
  ramSize: number;
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  firmware: FirmwareImage;
  /** Bytes reserved at the top of RAM for the device tree (the blob is written after planning). */
  fdtReserve?: number;
}

export interface Placement {
  addr: number;
  bytes: Uint8Array;
  /** Zero-filled bytes after `bytes` (ELF bss). */
  zeroFill?: number;
  what: string;
}

export type KernelFormat = 'linux-image' | 'elf' | 'raw';

export interface BootPlan {
  placements: Placement[];
  /** Where the boot hart starts, and in which mode: M for external firmware and bare metal, S for builtin SBI. */
  entry: number;
  mode: 'M' | 'S';
  kernelFormat?: KernelFormat;
  kernelAddr?: number;
  kernelEnd?: number;
  fdtAddr: number;
  initrd?: { start: number; end: number };
  /** fw_dynamic_info goes here (external firmware only). */
  dynamicInfoAddr?: number;
  /** The firmware's region, reserved in the device tree. */
  firmwareRegion?: { base: number; size: number };
  /** ELF symbols of a bare-metal kernel (HTIF tohost/fromhost). */
  symbols?: ReadonlyMap<string, number>;
}

/** A plan once its images are in RAM: where things are, without the image bytes (a running board needs none). */
export type BootLayout = Omit<BootPlan, 'placements'>;

const MiB = 1024 * 1024;
const FDT_ALIGN = 2 * MiB;
/** OpenSBI needs its 2 MiB below the kernel, and PMP-protects it (reserved in the device tree). */
const FIRMWARE_REGION = 2 * MiB;

const alignDown = (v: number, a: number): number => Math.floor(v / a) * a;
const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;
const hex = (n: number): string => '0x' + n.toString(16);

export function planBoot(inp: BootInputs): BootPlan {
  const ramEnd = inp.ramBase + inp.ramSize;
  if (inp.ramSize < 8 * MiB)
    throw new BootError('RAM_TOO_SMALL', `RAM of ${inp.ramSize} bytes is too small to boot anything (need 8 MiB)`);
  const fdtReserve = alignUp(inp.fdtReserve ?? 64 * 1024, 4096);
  // The FDT sits at the top of RAM, 2 MiB aligned as QEMU does, so the kernel's early mapping finds it.
  const fdtAddr = alignDown(ramEnd - fdtReserve, FDT_ALIGN);
  const placements: Placement[] = [];
  const plan: BootPlan = { placements, entry: 0, mode: 'S', fdtAddr };

  if (inp.firmware.kind === 'none') {
    if (!inp.kernel) throw new BootError('NO_KERNEL', '--firmware none needs a --kernel (a bare-metal ELF or raw binary)');
    plan.mode = 'M';
    if (isElf(inp.kernel)) {
      const elf = parseElf(inp.kernel);
      placeElf(elf, inp, fdtAddr, placements);
      plan.entry = elf.entry;
      plan.kernelFormat = 'elf';
      plan.symbols = elf.symbols;
    } else {
      checkFits('KERNEL_DOES_NOT_FIT', 'bare-metal binary', inp.ramBase, inp.kernel.length, inp.ramBase, fdtAddr);
      placements.push({ addr: inp.ramBase, bytes: inp.kernel, what: 'bare-metal binary' });
      plan.entry = inp.ramBase;
      plan.kernelFormat = 'raw';
    }
    plan.kernelAddr = plan.entry;
    return plan;
  }

  let kernelLimit = fdtAddr;
  if (inp.firmware.kind === 'external') {
    const fw = inp.firmware.bytes;
    if (fw.length > FIRMWARE_REGION) {
      throw new BootError(
        'FIRMWARE_DOES_NOT_FIT',
        `firmware is ${fw.length} bytes; at most ${FIRMWARE_REGION} fit below the kernel at ${hex(inp.ramBase + KERNEL_OFFSET_WITH_FIRMWARE)}`,
      );
    }
    placements.push({ addr: inp.ramBase, bytes: fw, what: 'firmware' });
    plan.entry = inp.ramBase;
    plan.mode = 'M';
    plan.firmwareRegion = { base: inp.ramBase, size: FIRMWARE_REGION };
    // fw_dynamic_info lives in the FDT's 2 MiB window, after the blob.
    plan.dynamicInfoAddr = fdtAddr + alignUp(fdtReserve, 4096);
    if (plan.dynamicInfoAddr + 64 > ramEnd) plan.dynamicInfoAddr = fdtAddr - 4096;
    kernelLimit = Math.min(kernelLimit, plan.dynamicInfoAddr);
  }
  if (!inp.kernel) {
    if (inp.firmware.kind === 'external') return plan; // firmware alone (it may have a payload)
    throw new BootError('NO_KERNEL', 'no kernel to boot: pass --kernel (or build the default guest)');
  }

  let kernelAddr: number;
  let kernelEnd: number;
  if (isLinuxImage(inp.kernel)) {
    const h = parseLinuxImage(inp.kernel);
    // RV64 kernels must sit 2 MiB aligned; 0x80200000 is where both QEMU and OpenSBI fw_jump put them.
    kernelAddr = inp.ramBase + Math.max(h.textOffset, KERNEL_OFFSET_WITH_FIRMWARE);
    kernelEnd = kernelAddr + Math.max(h.imageSize, inp.kernel.length);
    plan.kernelFormat = 'linux-image';
    checkFits('KERNEL_DOES_NOT_FIT', 'kernel Image (with its bss)', kernelAddr, kernelEnd - kernelAddr, inp.ramBase, kernelLimit);
    placements.push({ addr: kernelAddr, bytes: inp.kernel, what: 'kernel' });
  } else if (isElf(inp.kernel)) {
    const elf = parseElf(inp.kernel);
    placeElf(elf, inp, kernelLimit, placements);
    kernelAddr = elf.entry;
    kernelEnd = Math.max(...elf.segments.map((s) => s.paddr + s.memSize));
    plan.kernelFormat = 'elf';
    plan.symbols = elf.symbols;
  } else {
    // A raw binary (e.g. U-Boot's S-mode u-boot.bin, linked at 0x80200000).
    kernelAddr = inp.ramBase + KERNEL_OFFSET_WITH_FIRMWARE;
    kernelEnd = kernelAddr + inp.kernel.length;
    plan.kernelFormat = 'raw';
    checkFits('KERNEL_DOES_NOT_FIT', 'kernel binary', kernelAddr, inp.kernel.length, inp.ramBase, kernelLimit);
    placements.push({ addr: kernelAddr, bytes: inp.kernel, what: 'kernel' });
  }
  plan.kernelAddr = kernelAddr;
  plan.kernelEnd = kernelEnd;
  if (inp.firmware.kind === 'builtin') plan.entry = kernelAddr;

  if (inp.initrd) {
    // Just below the FDT (and fw_dynamic_info), page aligned; it must not overlap the kernel's image and bss.
    const end = kernelLimit;
    const start = alignDown(end - inp.initrd.length, 4096);
    if (start < alignUp(kernelEnd, 4096)) {
      throw new BootError(
        'INITRD_DOES_NOT_FIT',
        `initrd of ${inp.initrd.length} bytes does not fit between the kernel (ends ${hex(kernelEnd)}) and the device tree at ${hex(fdtAddr)}: give the VM more memory`,
      );
    }
    placements.push({ addr: start, bytes: inp.initrd, what: 'initrd' });
    plan.initrd = { start, end: start + inp.initrd.length };
  }
  return plan;
}

/**
 * The layout of a board that will load a saved state (src/machine/snapshot): its RAM, harts and device tree come
 * from the state, so no image is placed and none needs reading; only what the board itself keeps (the FDT's
 * window, the firmware's reserved region) is planned. A bare-metal kernel's symbols (HTIF) do need it: planBoot.
 */
export function planForRestore(inp: { ramBase: number; ramSize: number; firmware: 'builtin' | 'external' }): BootPlan {
  const fdtReserve = alignUp(64 * 1024, 4096);
  const fdtAddr = alignDown(inp.ramBase + inp.ramSize - fdtReserve, FDT_ALIGN);
  if (inp.firmware === 'builtin') return { placements: [], entry: inp.ramBase + KERNEL_OFFSET_WITH_FIRMWARE, mode: 'S', fdtAddr };
  return {
    placements: [],
    entry: inp.ramBase,
    mode: 'M',
    fdtAddr,
    firmwareRegion: { base: inp.ramBase, size: FIRMWARE_REGION },
  };
}

function checkFits(code: BootErrorCode, what: string, addr: number, len: number, ramBase: number, limit: number): void {
  if (addr < ramBase || addr + len > limit) {
    throw new BootError(
      code,
      `${what} of ${len} bytes at ${hex(addr)} does not fit in RAM below ${hex(limit)}: give the VM more memory`,
    );
  }
}

function placeElf(elf: ElfImage, inp: BootInputs, limit: number, out: Placement[]): void {
  for (const s of elf.segments) {
    if (s.paddr < inp.ramBase || s.paddr + s.memSize > limit) {
      throw new BootError(
        'ELF_OUTSIDE_RAM',
        `ELF segment at ${hex(s.paddr)}+${hex(s.memSize)} lies outside usable RAM ${hex(inp.ramBase)}..${hex(limit)}`,
      );
    }
    out.push({ addr: s.paddr, bytes: s.data, zeroFill: s.memSize - s.data.length, what: 'ELF segment' });
  }
}
