/** ELF64 little-endian RISC-V parsing. Headers are untrusted: everything is validated before use. */

export type ElfErrorCode =
  | 'TOO_SHORT'
  | 'BAD_MAGIC'
  | 'NOT_ELF64'
  | 'NOT_LITTLE_ENDIAN'
  | 'NOT_RISCV'
  | 'BAD_PHDR_TABLE'
  | 'SEGMENT_OUT_OF_FILE'
  | 'BAD_SECTION_TABLE';

export class ElfError extends Error {
  constructor(
    readonly code: ElfErrorCode,
    message: string,
  ) {
    super(`ELF: ${message}`);
    this.name = 'ElfError';
  }
}

export const EM_RISCV = 243; // e_machine for RISC-V
const PT_LOAD = 1;
const SHT_SYMTAB = 2;

export interface ElfSegment {
  /** Physical load address (p_paddr). */
  readonly paddr: number;
  readonly vaddr: number;
  /** Bytes from the file; the remaining memSize - data.length bytes are zero (bss). */
  readonly data: Uint8Array;
  readonly memSize: number;
  readonly flags: number;
}

export interface ElfImage {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  /** Symbol table, name → value, when the file has one. */
  readonly symbols: ReadonlyMap<string, number>;
}

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

function u64(dv: DataView, off: number): number {
  const lo = dv.getUint32(off, true);
  const hi = dv.getUint32(off + 4, true);
  return hi * 0x1_0000_0000 + lo; // exact below 2^53, which every address we accept is
}

export function parseElf(bytes: Uint8Array): ElfImage {
  if (bytes.length < 64) throw new ElfError('TOO_SHORT', `file is ${bytes.length} bytes, shorter than an ELF64 header`);
  if (!isElf(bytes)) throw new ElfError('BAD_MAGIC', 'missing \\x7fELF magic');
  if (bytes[4] !== 2) throw new ElfError('NOT_ELF64', 'not a 64-bit ELF (EI_CLASS != ELFCLASS64)');
  if (bytes[5] !== 1) throw new ElfError('NOT_LITTLE_ENDIAN', 'not little-endian (EI_DATA != ELFDATA2LSB)');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) throw new ElfError('NOT_RISCV', `e_machine is ${machine}, not RISC-V (${EM_RISCV})`);
  const entry = u64(dv, 24);
  const phoff = u64(dv, 32);
  const shoff = u64(dv, 40);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  const shentsize = dv.getUint16(58, true);
  const shnum = dv.getUint16(60, true);

  if (phnum > 0 && (phentsize < 56 || phoff + phnum * phentsize > bytes.length)) {
    throw new ElfError('BAD_PHDR_TABLE', `program header table (off ${phoff}, ${phnum} x ${phentsize}) lies outside the file`);
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (dv.getUint32(o, true) !== PT_LOAD) continue;
    const flags = dv.getUint32(o + 4, true);
    const offset = u64(dv, o + 8);
    const vaddr = u64(dv, o + 16);
    const paddr = u64(dv, o + 24);
    const filesz = u64(dv, o + 32);
    const memsz = u64(dv, o + 40);
    if (offset + filesz > bytes.length || filesz > memsz) {
      throw new ElfError('SEGMENT_OUT_OF_FILE', `segment ${i}: file range ${offset}+${filesz} (memsz ${memsz}) is invalid`);
    }
    if (memsz === 0) continue;
    segments.push({ paddr, vaddr, data: bytes.subarray(offset, offset + filesz), memSize: memsz, flags });
  }

  const symbols = new Map<string, number>();
  if (shnum > 0 && shoff > 0) {
    if (shentsize < 64 || shoff + shnum * shentsize > bytes.length) {
      throw new ElfError(
        'BAD_SECTION_TABLE',
        `section header table (off ${shoff}, ${shnum} x ${shentsize}) lies outside the file`,
      );
    }
    for (let i = 0; i < shnum; i++) {
      const s = shoff + i * shentsize;
      if (dv.getUint32(s + 4, true) !== SHT_SYMTAB) continue;
      const symOff = u64(dv, s + 24);
      const symSize = u64(dv, s + 32);
      const link = dv.getUint32(s + 40, true);
      if (link >= shnum || symOff + symSize > bytes.length)
        throw new ElfError('BAD_SECTION_TABLE', 'symbol table lies outside the file');
      const strHdr = shoff + link * shentsize;
      const strOff = u64(dv, strHdr + 24);
      const strSize = u64(dv, strHdr + 32);
      if (strOff + strSize > bytes.length) throw new ElfError('BAD_SECTION_TABLE', 'string table lies outside the file');
      for (let p = symOff; p + 24 <= symOff + symSize; p += 24) {
        const nameIdx = dv.getUint32(p, true);
        if (nameIdx === 0 || nameIdx >= strSize) continue;
        let end = strOff + nameIdx;
        while (end < strOff + strSize && bytes[end] !== 0) end++;
        const name = new TextDecoder().decode(bytes.subarray(strOff + nameIdx, end));
        symbols.set(name, u64(dv, p + 8));
      }
    }
  }
  return { entry, segments, symbols };
}
