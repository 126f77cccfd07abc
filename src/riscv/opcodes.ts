/**
 * The single RV64GC opcode table: every instruction the hart knows, with its encoding (match/mask), its format
 * (how fields are laid out) and its operand list (how the disassembler prints it). The decoder
 * (src/riscv/decode.ts), the disassembler (src/riscv/disasm.ts) and the generated tests all read this table.
 *
 * Compressed entries (size 2) name the base instruction they expand to (`expand`) and a compressed layout
 * (`cfmt`) that says where their register and immediate fields live.
 */

export type Ext = 'I' | 'M' | 'A' | 'F' | 'D' | 'C' | 'Zicsr' | 'Zifencei' | 'Zba' | 'Zbb' | 'Zbs' | 'Priv';

/** 32-bit layouts. */
export type Format =
  | 'R' // rd, rs1, rs2
  | 'I' // rd, rs1, imm[11:0]
  | 'S' // rs1, rs2, imm split
  | 'B' // rs1, rs2, branch offset
  | 'U' // rd, imm[31:12]
  | 'J' // rd, jump offset
  | 'SH' // rd, rs1, shamt[5:0]
  | 'SHW' // rd, rs1, shamt[4:0]
  | 'R1' // rd, rs1 (rs2 field is part of the opcode)
  | 'CSR' // rd, csr, rs1
  | 'CSRI' // rd, csr, uimm[4:0] in the rs1 field
  | 'AMO' // rd, rs2, (rs1), aq/rl ignored
  | 'LR' // rd, (rs1)
  | 'R4' // FP fused: rd, rs1, rs2, rs3, rm
  | 'FR' // FP: rd, rs1, rs2, rm
  | 'FR1' // FP: rd, rs1, rm (rs2 is part of the opcode)
  | 'N' // no operands
  | 'FENCE' // pred, succ
  | 'SFENCE'; // rs1, rs2

/** Compressed layouts; the names follow the spec's CIW/CL/CS/... formats, split by immediate encoding. */
export type CFormat =
  | 'CIW_ADDI4SPN'
  | 'CL_W'
  | 'CL_D' // rd', offset(rs1')
  | 'CS_W'
  | 'CS_D' // rs2', offset(rs1')
  | 'CI_ADDI' // rd, nzimm[5:0] signed
  | 'CI_LI' // rd, imm[5:0] signed (rs1 = x0)
  | 'CI_ADDI16SP'
  | 'CI_LUI'
  | 'CI_SLLI' // rd, shamt[5:0]
  | 'CB_SHIFT' // rd', shamt[5:0]
  | 'CB_ANDI' // rd', imm[5:0] signed
  | 'CA' // rd', rs2'
  | 'CJ' // offset (rd = x0 or ra)
  | 'CB_BRANCH' // rs1', offset (rs2 = x0)
  | 'CI_LWSP'
  | 'CI_LDSP' // rd, offset(sp)
  | 'CSS_SWSP'
  | 'CSS_SDSP' // rs2, offset(sp)
  | 'CR_JR'
  | 'CR_JALR' // rs1
  | 'CR_MV' // rd, rs2 (rs1 = x0)
  | 'CR_ADD' // rd, rs2 (rs1 = rd)
  | 'CR_EBREAK'
  | 'CI_ADDIW';

export type ArgKind =
  | 'rd'
  | 'rs1'
  | 'rs2' // integer registers
  | 'fd'
  | 'fs1'
  | 'fs2'
  | 'fs3' // FP registers
  | 'imm' // signed immediate
  | 'uimm' // unsigned immediate (lui/auipc upper immediate, shift amount, csr uimm)
  | 'mem' // offset(rs1)
  | 'amem' // (rs1)
  | 'target' // pc-relative branch/jump target
  | 'csr'
  | 'rm'
  | 'fence';

export interface OpcodeEntry {
  readonly name: string; // objdump's no-alias mnemonic
  readonly ext: Ext;
  readonly size: 2 | 4;
  readonly match: number;
  readonly mask: number;
  readonly fmt: Format | CFormat;
  /** Operands in objdump -M no-aliases order. */
  readonly args: readonly ArgKind[];
  /** Compressed only: the base instruction this expands to. */
  readonly expand?: string;
}

const table: OpcodeEntry[] = [];
function add(name: string, ext: Ext, fmt: Format, match: number, mask: number, args: ArgKind[]): void {
  table.push({ name, ext, size: 4, match: match >>> 0, mask: mask >>> 0, fmt, args });
}
function cadd(name: string, fmt: CFormat, match: number, mask: number, args: ArgKind[], expand: string, ext: Ext = 'C'): void {
  table.push({ name, ext, size: 2, match, mask, fmt, args, expand });
}

const OPC = 0x7f;
const F3 = 0x7000;
const F7 = 0xfe000000 | 0;
const RS2F = 0x01f00000;
const m = (opcode: number, f3 = 0, f7 = 0): number => (opcode | (f3 << 12) | (f7 << 25)) >>> 0;

// RV64I
add('lui', 'I', 'U', 0x37, OPC, ['rd', 'uimm']);
add('auipc', 'I', 'U', 0x17, OPC, ['rd', 'uimm']);
add('jal', 'I', 'J', 0x6f, OPC, ['rd', 'target']);
add('jalr', 'I', 'I', m(0x67, 0), OPC | F3, ['rd', 'mem']);
for (const [n, f3] of [
  ['beq', 0],
  ['bne', 1],
  ['blt', 4],
  ['bge', 5],
  ['bltu', 6],
  ['bgeu', 7],
] as const) {
  add(n, 'I', 'B', m(0x63, f3), OPC | F3, ['rs1', 'rs2', 'target']);
}
for (const [n, f3] of [
  ['lb', 0],
  ['lh', 1],
  ['lw', 2],
  ['ld', 3],
  ['lbu', 4],
  ['lhu', 5],
  ['lwu', 6],
] as const) {
  add(n, 'I', 'I', m(0x03, f3), OPC | F3, ['rd', 'mem']);
}
for (const [n, f3] of [
  ['sb', 0],
  ['sh', 1],
  ['sw', 2],
  ['sd', 3],
] as const)
  add(n, 'I', 'S', m(0x23, f3), OPC | F3, ['rs2', 'mem']);
for (const [n, f3] of [
  ['addi', 0],
  ['slti', 2],
  ['sltiu', 3],
  ['xori', 4],
  ['ori', 6],
  ['andi', 7],
] as const) {
  add(n, 'I', 'I', m(0x13, f3), OPC | F3, ['rd', 'rs1', 'imm']);
}
add('slli', 'I', 'SH', m(0x13, 1), OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('srli', 'I', 'SH', m(0x13, 5), OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('srai', 'I', 'SH', m(0x13, 5) | 0x40000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
const rOps: [string, number, number, Ext][] = [
  ['add', 0, 0, 'I'],
  ['sub', 0, 0x20, 'I'],
  ['sll', 1, 0, 'I'],
  ['slt', 2, 0, 'I'],
  ['sltu', 3, 0, 'I'],
  ['xor', 4, 0, 'I'],
  ['srl', 5, 0, 'I'],
  ['sra', 5, 0x20, 'I'],
  ['or', 6, 0, 'I'],
  ['and', 7, 0, 'I'],
  ['mul', 0, 1, 'M'],
  ['mulh', 1, 1, 'M'],
  ['mulhsu', 2, 1, 'M'],
  ['mulhu', 3, 1, 'M'],
  ['div', 4, 1, 'M'],
  ['divu', 5, 1, 'M'],
  ['rem', 6, 1, 'M'],
  ['remu', 7, 1, 'M'],
  ['sh1add', 2, 0x10, 'Zba'],
  ['sh2add', 4, 0x10, 'Zba'],
  ['sh3add', 6, 0x10, 'Zba'],
  ['andn', 7, 0x20, 'Zbb'],
  ['orn', 6, 0x20, 'Zbb'],
  ['xnor', 4, 0x20, 'Zbb'],
  ['max', 6, 0x05, 'Zbb'],
  ['maxu', 7, 0x05, 'Zbb'],
  ['min', 4, 0x05, 'Zbb'],
  ['minu', 5, 0x05, 'Zbb'],
  ['rol', 1, 0x30, 'Zbb'],
  ['ror', 5, 0x30, 'Zbb'],
  ['bclr', 1, 0x24, 'Zbs'],
  ['bext', 5, 0x24, 'Zbs'],
  ['binv', 1, 0x34, 'Zbs'],
  ['bset', 1, 0x14, 'Zbs'],
];
for (const [n, f3, f7, ext] of rOps) add(n, ext, 'R', m(0x33, f3, f7), OPC | F3 | F7, ['rd', 'rs1', 'rs2']);
add('addiw', 'I', 'I', m(0x1b, 0), OPC | F3, ['rd', 'rs1', 'imm']);
add('slliw', 'I', 'SHW', m(0x1b, 1), OPC | F3 | F7, ['rd', 'rs1', 'uimm']);
add('srliw', 'I', 'SHW', m(0x1b, 5), OPC | F3 | F7, ['rd', 'rs1', 'uimm']);
add('sraiw', 'I', 'SHW', m(0x1b, 5, 0x20), OPC | F3 | F7, ['rd', 'rs1', 'uimm']);
const wOps: [string, number, number, Ext][] = [
  ['addw', 0, 0, 'I'],
  ['subw', 0, 0x20, 'I'],
  ['sllw', 1, 0, 'I'],
  ['srlw', 5, 0, 'I'],
  ['sraw', 5, 0x20, 'I'],
  ['mulw', 0, 1, 'M'],
  ['divw', 4, 1, 'M'],
  ['divuw', 5, 1, 'M'],
  ['remw', 6, 1, 'M'],
  ['remuw', 7, 1, 'M'],
  ['add.uw', 0, 0x04, 'Zba'],
  ['sh1add.uw', 2, 0x10, 'Zba'],
  ['sh2add.uw', 4, 0x10, 'Zba'],
  ['sh3add.uw', 6, 0x10, 'Zba'],
  ['rolw', 1, 0x30, 'Zbb'],
  ['rorw', 5, 0x30, 'Zbb'],
];
for (const [n, f3, f7, ext] of wOps) add(n, ext, 'R', m(0x3b, f3, f7), OPC | F3 | F7, ['rd', 'rs1', 'rs2']);
// Zba/Zbb/Zbs immediates and unary ops
add('slli.uw', 'Zba', 'SH', m(0x1b, 1) | 0x08000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('rori', 'Zbb', 'SH', m(0x13, 5) | 0x60000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('roriw', 'Zbb', 'SHW', m(0x1b, 5, 0x30), OPC | F3 | F7, ['rd', 'rs1', 'uimm']);
add('bclri', 'Zbs', 'SH', m(0x13, 1) | 0x48000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('bexti', 'Zbs', 'SH', m(0x13, 5) | 0x48000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('binvi', 'Zbs', 'SH', m(0x13, 1) | 0x68000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
add('bseti', 'Zbs', 'SH', m(0x13, 1) | 0x28000000, OPC | F3 | 0xfc000000, ['rd', 'rs1', 'uimm']);
const unary: [string, number, number, number][] = [
  ['clz', 0x13, 0x600, 1],
  ['ctz', 0x13, 0x601, 1],
  ['cpop', 0x13, 0x602, 1],
  ['sext.b', 0x13, 0x604, 1],
  ['sext.h', 0x13, 0x605, 1],
  ['clzw', 0x1b, 0x600, 1],
  ['ctzw', 0x1b, 0x601, 1],
  ['cpopw', 0x1b, 0x602, 1],
  ['orc.b', 0x13, 0x287, 5],
  ['rev8', 0x13, 0x6b8, 5],
];
for (const [n, opc, f12, f3] of unary)
  add(n, 'Zbb', 'R1', (opc | (f3 << 12) | (f12 << 20)) >>> 0, OPC | F3 | 0xfff00000, ['rd', 'rs1']);
add('zext.h', 'Zbb', 'R1', m(0x3b, 4, 0x04), OPC | F3 | 0xfff00000, ['rd', 'rs1']);

add('fence', 'I', 'FENCE', m(0x0f, 0), OPC | F3, ['fence']);
add('fence.i', 'Zifencei', 'N', m(0x0f, 1), OPC | F3, []);
add('ecall', 'I', 'N', 0x00000073, 0xffffffff, []);
add('ebreak', 'I', 'N', 0x00100073, 0xffffffff, []);
add('sret', 'Priv', 'N', 0x10200073, 0xffffffff, []);
add('mret', 'Priv', 'N', 0x30200073, 0xffffffff, []);
add('wfi', 'Priv', 'N', 0x10500073, 0xffffffff, []);
add('sfence.vma', 'Priv', 'SFENCE', 0x12000073, 0xfe007fff, ['rs1', 'rs2']);
for (const [n, f3] of [
  ['csrrw', 1],
  ['csrrs', 2],
  ['csrrc', 3],
] as const)
  add(n, 'Zicsr', 'CSR', m(0x73, f3), OPC | F3, ['rd', 'csr', 'rs1']);
for (const [n, f3] of [
  ['csrrwi', 5],
  ['csrrsi', 6],
  ['csrrci', 7],
] as const)
  add(n, 'Zicsr', 'CSRI', m(0x73, f3), OPC | F3, ['rd', 'csr', 'uimm']);

// A: funct5 in [31:27], aq/rl in [26:25] ignored by the mask.
const AMO_MASK = OPC | F3 | 0xf8000000;
for (const [w, f3] of [
  ['w', 2],
  ['d', 3],
] as const) {
  add(`lr.${w}`, 'A', 'LR', m(0x2f, f3) | (0x02 << 27), AMO_MASK | RS2F, ['rd', 'amem']);
  add(`sc.${w}`, 'A', 'AMO', m(0x2f, f3) | (0x03 << 27), AMO_MASK, ['rd', 'rs2', 'amem']);
  for (const [n, f5] of [
    ['amoswap', 1],
    ['amoadd', 0],
    ['amoxor', 4],
    ['amoand', 0x0c],
    ['amoor', 8],
    ['amomin', 0x10],
    ['amomax', 0x14],
    ['amominu', 0x18],
    ['amomaxu', 0x1c],
  ] as const) {
    add(`${n}.${w}`, 'A', 'AMO', (m(0x2f, f3) | (f5 << 27)) >>> 0, AMO_MASK, ['rd', 'rs2', 'amem']);
  }
}

// F and D. The FP arithmetic itself lives in src/riscv/fpu (FP_OPS, keyed by mnemonic with '.' → '_').
add('flw', 'F', 'I', m(0x07, 2), OPC | F3, ['fd', 'mem']);
add('fld', 'D', 'I', m(0x07, 3), OPC | F3, ['fd', 'mem']);
add('fsw', 'F', 'S', m(0x27, 2), OPC | F3, ['fs2', 'mem']);
add('fsd', 'D', 'S', m(0x27, 3), OPC | F3, ['fs2', 'mem']);
for (const [sfx, fmt, ext] of [
  ['s', 0, 'F'],
  ['d', 1, 'D'],
] as const) {
  const r4 = (op: number): number => (op | (fmt << 25)) >>> 0;
  const R4MASK = OPC | (3 << 25);
  add(`fmadd.${sfx}`, ext, 'R4', r4(0x43), R4MASK, ['fd', 'fs1', 'fs2', 'fs3', 'rm']);
  add(`fmsub.${sfx}`, ext, 'R4', r4(0x47), R4MASK, ['fd', 'fs1', 'fs2', 'fs3', 'rm']);
  add(`fnmsub.${sfx}`, ext, 'R4', r4(0x4b), R4MASK, ['fd', 'fs1', 'fs2', 'fs3', 'rm']);
  add(`fnmadd.${sfx}`, ext, 'R4', r4(0x4f), R4MASK, ['fd', 'fs1', 'fs2', 'fs3', 'rm']);
  const f7 = (f5: number): number => (f5 << 2) | fmt;
  for (const [n, f5] of [
    ['fadd', 0],
    ['fsub', 1],
    ['fmul', 2],
    ['fdiv', 3],
  ] as const) {
    add(`${n}.${sfx}`, ext, 'FR', m(0x53, 0, f7(f5)), OPC | F7, ['fd', 'fs1', 'fs2', 'rm']);
  }
  add(`fsqrt.${sfx}`, ext, 'FR1', m(0x53, 0, f7(0x0b)), OPC | F7 | RS2F, ['fd', 'fs1', 'rm']);
  for (const [n, f5, f3] of [
    ['fsgnj', 4, 0],
    ['fsgnjn', 4, 1],
    ['fsgnjx', 4, 2],
    ['fmin', 5, 0],
    ['fmax', 5, 1],
  ] as const) {
    add(`${n}.${sfx}`, ext, 'FR', m(0x53, f3, f7(f5)), OPC | F3 | F7, ['fd', 'fs1', 'fs2']);
  }
  for (const [n, f3] of [
    ['fle', 0],
    ['flt', 1],
    ['feq', 2],
  ] as const) {
    add(`${n}.${sfx}`, ext, 'FR', m(0x53, f3, f7(0x14)), OPC | F3 | F7, ['rd', 'fs1', 'fs2']);
  }
  const ints = [
    ['w', 0],
    ['wu', 1],
    ['l', 2],
    ['lu', 3],
  ] as const;
  for (const [it, r2] of ints) {
    add(`fcvt.${it}.${sfx}`, ext, 'FR1', m(0x53, 0, f7(0x18)) | (r2 << 20), OPC | F7 | RS2F, ['rd', 'fs1', 'rm']);
    // int → double is exact for 32-bit sources, so the assembler and objdump take no rounding mode there.
    const exact = sfx === 'd' && (it === 'w' || it === 'wu');
    add(
      `fcvt.${sfx}.${it}`,
      ext,
      'FR1',
      m(0x53, 0, f7(0x1a)) | (r2 << 20),
      OPC | F7 | RS2F,
      exact ? ['fd', 'rs1'] : ['fd', 'rs1', 'rm'],
    );
  }
  const mvx = sfx === 's' ? 'w' : 'd';
  add(`fmv.x.${mvx}`, ext, 'FR1', m(0x53, 0, f7(0x1c)), OPC | F3 | F7 | RS2F, ['rd', 'fs1']);
  add(`fclass.${sfx}`, ext, 'FR1', m(0x53, 1, f7(0x1c)), OPC | F3 | F7 | RS2F, ['rd', 'fs1']);
  add(`fmv.${mvx}.x`, ext, 'FR1', m(0x53, 0, f7(0x1e)), OPC | F3 | F7 | RS2F, ['fd', 'rs1']);
}
add('fcvt.s.d', 'D', 'FR1', m(0x53, 0, 0x20) | (1 << 20), OPC | F7 | RS2F, ['fd', 'fs1', 'rm']);
add('fcvt.d.s', 'D', 'FR1', m(0x53, 0, 0x21), OPC | F7 | RS2F, ['fd', 'fs1']); // exact: no rm operand

// RV64C. Quadrant 0
cadd('c.addi4spn', 'CIW_ADDI4SPN', 0x0000, 0xe003, ['rd', 'rs1', 'uimm'], 'addi');
cadd('c.fld', 'CL_D', 0x2000, 0xe003, ['fd', 'mem'], 'fld');
cadd('c.lw', 'CL_W', 0x4000, 0xe003, ['rd', 'mem'], 'lw');
cadd('c.ld', 'CL_D', 0x6000, 0xe003, ['rd', 'mem'], 'ld');
cadd('c.fsd', 'CS_D', 0xa000, 0xe003, ['fs2', 'mem'], 'fsd');
cadd('c.sw', 'CS_W', 0xc000, 0xe003, ['rs2', 'mem'], 'sw');
cadd('c.sd', 'CS_D', 0xe000, 0xe003, ['rs2', 'mem'], 'sd');
// Quadrant 1
cadd('c.nop', 'CI_ADDI', 0x0001, 0xffff, [], 'addi');
cadd('c.addi', 'CI_ADDI', 0x0001, 0xe003, ['rd', 'imm'], 'addi');
cadd('c.addiw', 'CI_ADDIW', 0x2001, 0xe003, ['rd', 'imm'], 'addiw');
cadd('c.li', 'CI_LI', 0x4001, 0xe003, ['rd', 'imm'], 'addi');
cadd('c.addi16sp', 'CI_ADDI16SP', 0x6101, 0xef83, ['rd', 'imm'], 'addi');
cadd('c.lui', 'CI_LUI', 0x6001, 0xe003, ['rd', 'uimm'], 'lui');
cadd('c.srli', 'CB_SHIFT', 0x8001, 0xec03, ['rd', 'uimm'], 'srli');
cadd('c.srai', 'CB_SHIFT', 0x8401, 0xec03, ['rd', 'uimm'], 'srai');
cadd('c.andi', 'CB_ANDI', 0x8801, 0xec03, ['rd', 'imm'], 'andi');
cadd('c.sub', 'CA', 0x8c01, 0xfc63, ['rd', 'rs2'], 'sub');
cadd('c.xor', 'CA', 0x8c21, 0xfc63, ['rd', 'rs2'], 'xor');
cadd('c.or', 'CA', 0x8c41, 0xfc63, ['rd', 'rs2'], 'or');
cadd('c.and', 'CA', 0x8c61, 0xfc63, ['rd', 'rs2'], 'and');
cadd('c.subw', 'CA', 0x9c01, 0xfc63, ['rd', 'rs2'], 'subw');
cadd('c.addw', 'CA', 0x9c21, 0xfc63, ['rd', 'rs2'], 'addw');
cadd('c.j', 'CJ', 0xa001, 0xe003, ['target'], 'jal');
cadd('c.beqz', 'CB_BRANCH', 0xc001, 0xe003, ['rs1', 'target'], 'beq');
cadd('c.bnez', 'CB_BRANCH', 0xe001, 0xe003, ['rs1', 'target'], 'bne');
// Quadrant 2
cadd('c.slli', 'CI_SLLI', 0x0002, 0xe003, ['rd', 'uimm'], 'slli');
cadd('c.fldsp', 'CI_LDSP', 0x2002, 0xe003, ['fd', 'mem'], 'fld');
cadd('c.lwsp', 'CI_LWSP', 0x4002, 0xe003, ['rd', 'mem'], 'lw');
cadd('c.ldsp', 'CI_LDSP', 0x6002, 0xe003, ['rd', 'mem'], 'ld');
cadd('c.jr', 'CR_JR', 0x8002, 0xf07f, ['rs1'], 'jalr');
cadd('c.mv', 'CR_MV', 0x8002, 0xf003, ['rd', 'rs2'], 'addi'); // expands to add rd, x0, rs2; addi rd, rs2, 0 is equivalent
cadd('c.ebreak', 'CR_EBREAK', 0x9002, 0xffff, [], 'ebreak');
cadd('c.jalr', 'CR_JALR', 0x9002, 0xf07f, ['rs1'], 'jalr');
cadd('c.add', 'CR_ADD', 0x9002, 0xf003, ['rd', 'rs2'], 'add');
cadd('c.fsdsp', 'CSS_SDSP', 0xa002, 0xe003, ['fs2', 'mem'], 'fsd');
cadd('c.swsp', 'CSS_SWSP', 0xc002, 0xe003, ['rs2', 'mem'], 'sw');
cadd('c.sdsp', 'CSS_SDSP', 0xe002, 0xe003, ['rs2', 'mem'], 'sd');

export const OPCODES: readonly OpcodeEntry[] = table;

/** objdump's integer register names. */
export const XREG_NAMES = [
  'zero',
  'ra',
  'sp',
  'gp',
  'tp',
  't0',
  't1',
  't2',
  's0',
  's1',
  'a0',
  'a1',
  'a2',
  'a3',
  'a4',
  'a5',
  'a6',
  'a7',
  's2',
  's3',
  's4',
  's5',
  's6',
  's7',
  's8',
  's9',
  's10',
  's11',
  't3',
  't4',
  't5',
  't6',
] as const;
export const FREG_NAMES = [
  'ft0',
  'ft1',
  'ft2',
  'ft3',
  'ft4',
  'ft5',
  'ft6',
  'ft7',
  'fs0',
  'fs1',
  'fa0',
  'fa1',
  'fa2',
  'fa3',
  'fa4',
  'fa5',
  'fa6',
  'fa7',
  'fs2',
  'fs3',
  'fs4',
  'fs5',
  'fs6',
  'fs7',
  'fs8',
  'fs9',
  'fs10',
  'fs11',
  'ft8',
  'ft9',
  'ft10',
  'ft11',
] as const;
