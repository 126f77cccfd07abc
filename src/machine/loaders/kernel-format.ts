/**
 * What kind of kernel a file is, judged from its first 64 bytes before anything boots: a RISC-V Linux `Image`
 * (magic "RSC\x05" at 0x38), a 64-bit little-endian RISC-V ELF, or a raw binary, which is accepted only when
 * the user says so (`--kernel-format raw`): a file of any other kind (a typo'd path to a text file, an x86
 * bzImage, a compressed Image.gz) would otherwise be "booted" as raw code and fail silently.
 */
import { EM_RISCV, isElf } from './elf.js';
import { isLinuxImage } from './image.js';

export type KernelKind = 'linux-image' | 'elf' | 'raw';
/** What the user declared: `auto` recognises Image and ELF; `raw` loads the bytes as they are. */
export type KernelFormatChoice = 'auto' | 'raw';
export const KERNEL_FORMAT_CHOICES: readonly KernelFormatChoice[] = ['auto', 'raw'];

/** Bytes classifyKernel needs from the start of the file. */
export const KERNEL_HEAD_BYTES = 64;

export type KernelFormatErrorCode = 'UNRECOGNISED' | 'NOT_RISCV64_ELF' | 'EMPTY';

export class KernelFormatError extends Error {
  constructor(
    readonly code: KernelFormatErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KernelFormatError';
  }
}

const GZIP = [0x1f, 0x8b];
const MZ = [0x4d, 0x5a];

function startsWith(b: Uint8Array, magic: number[]): boolean {
  return magic.every((m, i) => b[i] === m);
}

/** Classifies a kernel from its head (at least KERNEL_HEAD_BYTES when the file is that long); throws KernelFormatError. */
export function classifyKernel(head: Uint8Array, choice: KernelFormatChoice, what = 'kernel'): KernelKind {
  if (head.length === 0) throw new KernelFormatError('EMPTY', `${what} is an empty file`);
  if (choice === 'raw') return 'raw';
  if (isLinuxImage(head)) return 'linux-image';
  if (isElf(head)) {
    const machine = head.length >= 20 ? head[18]! | (head[19]! << 8) : -1;
    if (head[4] !== 2 || head[5] !== 1 || machine !== EM_RISCV) {
      throw new KernelFormatError(
        'NOT_RISCV64_ELF',
        `${what} is an ELF file but not a 64-bit little-endian RISC-V one (class ${head[4]}, data ${head[5]}, machine ${machine})`,
      );
    }
    return 'elf';
  }
  const hint = startsWith(head, GZIP)
    ? ' (it is gzip-compressed: decompress it, e.g. Image.gz → Image)'
    : startsWith(head, MZ) && !isLinuxImage(head)
      ? ' (it is a PE/EFI file for another architecture)'
      : '';
  throw new KernelFormatError(
    'UNRECOGNISED',
    `${what} is neither a RISC-V Linux Image (no "RSC\\x05" magic at offset 0x38) nor a riscv64 ELF${hint}; ` +
      `if it is a raw binary to load at RAM + 2 MiB (e.g. U-Boot's u-boot.bin), say so with --kernel-format raw (API: kernelFormat 'raw')`,
  );
}
