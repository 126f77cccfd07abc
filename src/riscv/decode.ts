/**
 * Turns instruction bits into fields, driven by the opcode table. Decoding happens once per instruction slot
 * (the hart caches the result), so this favours clarity over speed; it still only scans the entries that share
 * the instruction's major opcode (or compressed quadrant/funct3).
 */
import { OPCODES, type OpcodeEntry } from './opcodes.js';

export interface Decoded {
  entry: OpcodeEntry;
  /** The base mnemonic executed: the entry's own name, or for compressed entries the one it expands to. */
  op: string;
  size: 2 | 4;
  rd: number;
  rs1: number;
  rs2: number;
  rs3: number;
  /** Sign-extended immediate (or CSR number for CSR ops, shift amount for shifts, uimm for CSRxxI in rs1). */
  imm: number;
  rm: number;
}

const byMajor = new Map<number, OpcodeEntry[]>();
const byCompressedKey = new Map<number, OpcodeEntry[]>();
for (const e of OPCODES) {
  if (e.size === 4) {
    const k = e.match & 0x7f;
    (byMajor.get(k) ?? byMajor.set(k, []).get(k)!).push(e);
  } else {
    const k = (e.match & 3) | (((e.match >>> 13) & 7) << 2);
    (byCompressedKey.get(k) ?? byCompressedKey.set(k, []).get(k)!).push(e);
  }
}

/** Length in bytes of the instruction whose low 16 bits are `lowHalf`. */
export function insnLength(lowHalf: number): 2 | 4 {
  return (lowHalf & 3) === 3 ? 4 : 2;
}

const sext = (v: number, bits: number): number => (v << (32 - bits)) >> (32 - bits);

/** Decodes one instruction; null when the bits are not a valid instruction (reserved encodings included). */
export function decode(insn: number): Decoded | null {
  return (insn & 3) === 3 ? decode32(insn | 0) : decode16(insn & 0xffff);
}

function decode32(insn: number): Decoded | null {
  const list = byMajor.get(insn & 0x7f);
  if (!list) return null;
  const u = insn >>> 0;
  const entry = list.find((e) => (u & e.mask) >>> 0 === e.match);
  if (!entry) return null;
  const rd = (insn >>> 7) & 31;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  const rs3 = insn >>> 27;
  const rm = (insn >>> 12) & 7;
  let imm = 0;
  switch (entry.fmt) {
    case 'I':
      imm = insn >> 20;
      break;
    case 'S':
      imm = ((insn >> 25) << 5) | ((insn >>> 7) & 0x1f);
      break;
    case 'B':
      imm = ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 0x3f) << 5) | (((insn >>> 8) & 0xf) << 1);
      break;
    case 'U':
      imm = insn & 0xfffff000;
      break;
    case 'J':
      imm = ((insn >> 31) << 20) | (insn & 0xff000) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 0x3ff) << 1);
      break;
    case 'SH':
      imm = (insn >>> 20) & 0x3f;
      break;
    case 'SHW':
      imm = (insn >>> 20) & 0x1f;
      break;
    case 'CSR':
    case 'CSRI':
      imm = insn >>> 20;
      break;
    case 'FENCE':
      imm = (insn >>> 20) & 0xff;
      break;
    default:
      break;
  }
  return { entry, op: entry.name, size: 4, rd, rs1, rs2, rs3, imm, rm };
}

function decode16(h: number): Decoded | null {
  if (h === 0) return null; // the all-zero parcel is defined illegal
  const list = byCompressedKey.get((h & 3) | (((h >>> 13) & 7) << 2));
  if (!list) return null;
  for (const entry of list) {
    if ((h & entry.mask) !== entry.match) continue;
    const d = expand(entry, h);
    if (d) return d;
  }
  return null;
}

function expand(entry: OpcodeEntry, h: number): Decoded | null {
  const rdFull = (h >>> 7) & 31;
  const rs2Full = (h >>> 2) & 31;
  const rdP = ((h >>> 2) & 7) + 8; // rd'/rs2' in bits 4:2
  const rs1P = ((h >>> 7) & 7) + 8; // rs1'/rd' in bits 9:7
  const imm6 = sext(((h >>> 2) & 0x1f) | ((h >>> 7) & 0x20), 6);
  const uimm6 = ((h >>> 2) & 0x1f) | ((h >>> 7) & 0x20);
  let rd = 0;
  let rs1 = 0;
  let rs2 = 0;
  let imm = 0;
  switch (entry.fmt as string) {
    case 'CIW_ADDI4SPN':
      imm = ((h >>> 7) & 0x30) | ((h >>> 1) & 0x3c0) | ((h >>> 4) & 4) | ((h >>> 2) & 8);
      if (imm === 0) return null;
      rd = rdP;
      rs1 = 2;
      break;
    case 'CL_W':
      rd = rdP;
      rs1 = rs1P;
      imm = ((h >>> 7) & 0x38) | ((h >>> 4) & 4) | ((h << 1) & 0x40);
      break;
    case 'CL_D':
      rd = rdP;
      rs1 = rs1P;
      imm = ((h >>> 7) & 0x38) | ((h << 1) & 0xc0);
      break;
    case 'CS_W':
      rs2 = rdP;
      rs1 = rs1P;
      imm = ((h >>> 7) & 0x38) | ((h >>> 4) & 4) | ((h << 1) & 0x40);
      break;
    case 'CS_D':
      rs2 = rdP;
      rs1 = rs1P;
      imm = ((h >>> 7) & 0x38) | ((h << 1) & 0xc0);
      break;
    case 'CI_ADDI':
      rd = rs1 = rdFull;
      imm = imm6;
      break;
    case 'CI_ADDIW':
      if (rdFull === 0) return null;
      rd = rs1 = rdFull;
      imm = imm6;
      break;
    case 'CI_LI':
      rd = rdFull;
      imm = imm6;
      break;
    case 'CI_ADDI16SP':
      imm = sext(((h >>> 3) & 0x200) | ((h >>> 2) & 0x10) | ((h << 1) & 0x40) | ((h << 4) & 0x180) | ((h << 3) & 0x20), 10);
      if (imm === 0) return null;
      rd = rs1 = 2;
      break;
    case 'CI_LUI':
      if (imm6 === 0) return null;
      rd = rdFull;
      imm = imm6 << 12;
      break;
    case 'CI_SLLI':
      rd = rs1 = rdFull;
      imm = uimm6;
      break;
    case 'CB_SHIFT':
      rd = rs1 = rs1P;
      imm = uimm6;
      break;
    case 'CB_ANDI':
      rd = rs1 = rs1P;
      imm = imm6;
      break;
    case 'CA':
      rd = rs1 = rs1P;
      rs2 = rdP;
      break;
    case 'CJ':
      imm = sext(
        ((h >>> 1) & 0x800) |
          ((h >>> 7) & 0x10) |
          ((h >>> 1) & 0x300) |
          ((h << 2) & 0x400) |
          ((h >>> 1) & 0x40) |
          ((h << 1) & 0x80) |
          ((h >>> 2) & 0xe) |
          ((h << 3) & 0x20),
        12,
      );
      break;
    case 'CB_BRANCH':
      rs1 = rs1P;
      imm = sext(((h >>> 4) & 0x100) | ((h >>> 7) & 0x18) | ((h << 1) & 0xc0) | ((h >>> 2) & 6) | ((h << 3) & 0x20), 9);
      break;
    case 'CI_LWSP':
      if (rdFull === 0) return null;
      rd = rdFull;
      rs1 = 2;
      imm = ((h >>> 7) & 0x20) | ((h >>> 2) & 0x1c) | ((h << 4) & 0xc0);
      break;
    case 'CI_LDSP':
      if (rdFull === 0 && entry.name === 'c.ldsp') return null;
      rd = rdFull;
      rs1 = 2;
      imm = ((h >>> 7) & 0x20) | ((h >>> 2) & 0x18) | ((h << 4) & 0x1c0);
      break;
    case 'CSS_SWSP':
      rs2 = rs2Full;
      rs1 = 2;
      imm = ((h >>> 7) & 0x3c) | ((h >>> 1) & 0xc0);
      break;
    case 'CSS_SDSP':
      rs2 = rs2Full;
      rs1 = 2;
      imm = ((h >>> 7) & 0x38) | ((h >>> 1) & 0x1c0);
      break;
    case 'CR_JR':
      if (rdFull === 0) return null;
      rs1 = rdFull;
      break;
    case 'CR_JALR':
      rd = 1;
      rs1 = rdFull;
      break;
    case 'CR_MV':
      if (rs2Full === 0) return null;
      rd = rdFull;
      rs1 = rs2Full;
      break;
    case 'CR_ADD':
      rd = rs1 = rdFull;
      rs2 = rs2Full;
      break;
    case 'CR_EBREAK':
      break;
    default:
      return null;
  }
  return { entry, op: entry.expand!, size: 2, rd, rs1, rs2, rs3: 0, imm, rm: 0 };
}
