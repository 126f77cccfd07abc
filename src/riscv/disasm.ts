/**
 * Disassembler generated from the opcode table: prints objdump -M no-aliases style text
 * ("addi\ta0,a0,1", "ld\ta5,8(sp)", "c.addi\ta0,1", "beq\ta0,a1,0x80000010").
 */
import { decode } from './decode.js';
import { FREG_NAMES, XREG_NAMES } from './opcodes.js';

const RM_NAMES = ['rne', 'rtz', 'rdn', 'rup', 'rmm', '', '', 'dyn'];
const CSR_NAMES: Record<number, string> = {
  0x001: 'fflags',
  0x002: 'frm',
  0x003: 'fcsr',
  0xc00: 'cycle',
  0xc01: 'time',
  0xc02: 'instret',
  0x100: 'sstatus',
  0x104: 'sie',
  0x105: 'stvec',
  0x106: 'scounteren',
  0x10a: 'senvcfg',
  0x140: 'sscratch',
  0x141: 'sepc',
  0x142: 'scause',
  0x143: 'stval',
  0x144: 'sip',
  0x180: 'satp',
  0xf11: 'mvendorid',
  0xf12: 'marchid',
  0xf13: 'mimpid',
  0xf14: 'mhartid',
  0xf15: 'mconfigptr',
  0x300: 'mstatus',
  0x301: 'misa',
  0x302: 'medeleg',
  0x303: 'mideleg',
  0x304: 'mie',
  0x305: 'mtvec',
  0x306: 'mcounteren',
  0x30a: 'menvcfg',
  0x320: 'mcountinhibit',
  0x340: 'mscratch',
  0x341: 'mepc',
  0x342: 'mcause',
  0x343: 'mtval',
  0x344: 'mip',
  0x34a: 'mtinst',
  0x34b: 'mtval2',
  0xb00: 'mcycle',
  0xb02: 'minstret',
};
for (let i = 0; i < 16; i++) CSR_NAMES[0x3b0 + i] = `pmpaddr${i}`;
CSR_NAMES[0x3a0] = 'pmpcfg0';
CSR_NAMES[0x3a2] = 'pmpcfg2';

function hex(v: number): string {
  return '0x' + (v < 0 ? BigInt.asUintN(64, BigInt(v)) : BigInt(v)).toString(16);
}

function fenceSet(bits: number): string {
  const s = (bits & 8 ? 'i' : '') + (bits & 4 ? 'o' : '') + (bits & 2 ? 'r' : '') + (bits & 1 ? 'w' : '');
  return s || '0';
}

/** Disassembles one instruction (`insn` holds its bits; the low 16 for a compressed one) located at `pc`. */
export function disassemble(insn: number, pc: number): string {
  const d = decode(insn);
  if (!d) return (insn & 3) === 3 ? `.4byte\t${hex(insn >>> 0)}` : `.2byte\t${hex(insn & 0xffff)}`;
  const e = d.entry;
  const x = (i: number): string => XREG_NAMES[i]!;
  const f = (i: number): string => FREG_NAMES[i]!;
  const compressedMem = e.size === 2;
  const parts: string[] = [];
  for (const a of e.args) {
    switch (a) {
      case 'rd':
        parts.push(x(d.rd));
        break;
      case 'rs1':
        parts.push(x(d.rs1));
        break;
      case 'rs2':
        parts.push(x(d.rs2));
        break;
      case 'fd':
        parts.push(f(d.rd));
        break;
      case 'fs1':
        parts.push(f(d.rs1));
        break;
      case 'fs2':
        parts.push(f(d.rs2));
        break;
      case 'fs3':
        parts.push(f(d.rs3));
        break;
      case 'imm':
        parts.push(String(d.imm));
        break;
      case 'uimm':
        if (e.fmt === 'CSRI') parts.push(String(d.rs1));
        else if (e.fmt === 'U' || e.fmt === 'CI_LUI') parts.push(hex((d.imm >>> 12) & 0xfffff));
        else parts.push(hex(d.imm)); // shift amounts
        break;
      case 'mem':
        parts.push(`${d.imm}(${x(d.rs1)})`);
        break;
      case 'amem':
        parts.push(`(${x(d.rs1)})`);
        break;
      case 'target':
        parts.push(hex(pc + d.imm).slice(2)); // objdump prints branch targets without 0x
        break;
      case 'csr':
        parts.push(CSR_NAMES[d.imm] ?? hex(d.imm));
        break;
      case 'rm':
        if (d.rm !== 7) parts.push(RM_NAMES[d.rm] ?? String(d.rm));
        break;
      case 'fence':
        parts.push(fenceSet((d.imm >>> 4) & 15), fenceSet(d.imm & 15));
        break;
    }
  }
  // Compressed forms print their own operands, not the expansion's: c.addi a0,1 / c.lw a0,4(a1) / c.mv a0,a1.
  if (compressedMem && e.fmt === 'CIW_ADDI4SPN') return `${e.name}\t${x(d.rd)},sp,${d.imm}`;
  if (compressedMem && e.fmt === 'CR_MV') return `${e.name}\t${x(d.rd)},${x(d.rs1)}`;
  if (e.name === 'c.nop') return 'c.addi\tzero,0'; // what objdump prints
  let name = e.name;
  if (e.fmt === 'AMO' || e.fmt === 'LR') {
    const aq = (insn >>> 26) & 1;
    const rl = (insn >>> 25) & 1;
    name += (aq ? '.aq' : '') + (rl ? '.rl' : '');
  }
  return parts.length ? `${name}\t${parts.join(',')}` : name;
}
