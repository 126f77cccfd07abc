/**
 * The Linux RISC-V `Image` header (Documentation/riscv/boot-image-header.rst): 64 bytes at the start of the
 * file, identified by magic2 "RSC\x05" at offset 0x38. Parsed into a typed value before anything is loaded.
 */
export type ImageErrorCode = 'TOO_SHORT' | 'BAD_MAGIC' | 'BAD_TEXT_OFFSET' | 'BAD_IMAGE_SIZE';

export class LinuxImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
  ) {
    super(`Linux Image: ${message}`);
    this.name = 'LinuxImageError';
  }
}

export const IMAGE_HEADER_SIZE = 64;
export const IMAGE_MAGIC2 = 0x05435352; // "RSC\x05" little-endian
const MAGIC2_OFFSET = 0x38;

export interface LinuxImageHeader {
  /** Where the image expects to sit relative to the start of RAM (2 MiB on RV64). */
  readonly textOffset: number;
  /** Bytes the image occupies once loaded, including bss; 0 in very old kernels. */
  readonly imageSize: number;
  readonly flags: number;
  readonly version: { major: number; minor: number };
}

export function isLinuxImage(bytes: Uint8Array): boolean {
  return (
    bytes.length >= IMAGE_HEADER_SIZE &&
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC2_OFFSET, true) === IMAGE_MAGIC2
  );
}

function u64(dv: DataView, off: number): number {
  return dv.getUint32(off + 4, true) * 0x1_0000_0000 + dv.getUint32(off, true);
}

export function parseLinuxImage(bytes: Uint8Array): LinuxImageHeader {
  if (bytes.length < IMAGE_HEADER_SIZE)
    throw new LinuxImageError('TOO_SHORT', `file is ${bytes.length} bytes, shorter than the 64-byte header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic2 = dv.getUint32(MAGIC2_OFFSET, true);
  if (magic2 !== IMAGE_MAGIC2) {
    throw new LinuxImageError(
      'BAD_MAGIC',
      `no "RSC\\x05" magic at offset 0x38 (found 0x${magic2.toString(16)}); not a RISC-V Linux Image`,
    );
  }
  const textOffset = u64(dv, 8);
  const imageSize = u64(dv, 16);
  if (textOffset % 4096 !== 0 || textOffset > 0x1000_0000)
    throw new LinuxImageError('BAD_TEXT_OFFSET', `text_offset 0x${textOffset.toString(16)} is not a sane page-aligned offset`);
  if (imageSize !== 0 && (imageSize < bytes.length - 4096 || imageSize > 0x4000_0000)) {
    throw new LinuxImageError('BAD_IMAGE_SIZE', `image_size ${imageSize} is inconsistent with the file size ${bytes.length}`);
  }
  const version = dv.getUint32(32, true);
  return { textOffset, imageSize, flags: u64(dv, 24), version: { major: version >>> 16, minor: version & 0xffff } };
}
