// Checks that a built program is what the guest needs: a 64-bit little-endian RISC-V ELF executable
// with no program interpreter (statically linked), since the guest images carry no libc.

export const EM_RISCV = 243; // e_machine for RISC-V
const ELFCLASS64 = 2; // e_ident[EI_CLASS]
const ELFDATA2LSB = 1; // e_ident[EI_DATA]
const PT_INTERP = 3; // p_type of the program-interpreter segment

export class NotStaticRiscvElfError extends Error {
  constructor(reason: string) {
    super(`not a static riscv64 ELF executable: ${reason}`);
    this.name = 'NotStaticRiscvElfError';
  }
}

export function checkStaticRiscv64Elf(bytes: Uint8Array): void {
  if (bytes.length < 64) throw new NotStaticRiscvElfError('shorter than an ELF header');
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46)
    throw new NotStaticRiscvElfError('no ELF magic');
  if (bytes[4] !== ELFCLASS64) throw new NotStaticRiscvElfError('not ELFCLASS64');
  if (bytes[5] !== ELFDATA2LSB) throw new NotStaticRiscvElfError('not little-endian');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const machine = view.getUint16(18, true); // e_machine
  if (machine !== EM_RISCV) throw new NotStaticRiscvElfError(`e_machine is ${machine}, not ${EM_RISCV} (RISC-V)`);
  const phoff = Number(view.getBigUint64(32, true)); // e_phoff
  const phentsize = view.getUint16(54, true); // e_phentsize
  const phnum = view.getUint16(56, true); // e_phnum
  if (phnum === 0) throw new NotStaticRiscvElfError('no program headers');
  if (phoff + phnum * phentsize > bytes.length || phentsize < 56)
    throw new NotStaticRiscvElfError('program headers out of bounds');
  for (let i = 0; i < phnum; i++) {
    if (view.getUint32(phoff + i * phentsize, true) === PT_INTERP)
      throw new NotStaticRiscvElfError('has a PT_INTERP (dynamically linked)');
  }
}
