/**
 * Random F/D instruction sequences generated from the opcode table, for a whole-hart differential test
 * against qemu-riscv64 (decoder → FP_OPS mapping, NaN-boxing on loads/moves, rm/frm plumbing, fflags, FS).
 * Each case loads f0..f31 and x1..x30, sets frm, runs the sequence, and stores x1..x30, f0..f31 and fflags.
 */
import { OPCODES } from '../../src/riscv/opcodes.js';
import { prng } from './diffgen.js';

export const FP_CASE_BYTES = 30 * 8 + 32 * 8 + 8;

const S_SPECIAL = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0x00000001, 0x807fffff, 0x3f800000, 0xbfc00000,
  0x7f7fffff, 0x00800000, 0x4f000000, 0xcf000000, 0x5f000000, 0x3effffff,
];
const D_SPECIAL = [
  0n,
  0x8000000000000000n,
  0x7ff0000000000000n,
  0xfff0000000000000n,
  0x7ff8000000000000n,
  0x7ff4000000000000n,
  1n,
  0x800fffffffffffffn,
  0x3ff0000000000000n,
  0xbff8000000000000n,
  0x7fefffffffffffffn,
  0x0010000000000000n,
  0x41e0000000000000n,
  0xc3e0000000000000n,
  0x43f0000000000000n,
  0x3fdfffffffffffffn,
];
const INTS = [
  0n,
  1n,
  -1n,
  0x7fffffffn,
  -0x80000000n,
  0xffffffffn,
  0x7fffffffffffffffn,
  -0x8000000000000000n,
  3n,
  -7n,
  0x1000001n,
];

const FP_ENTRIES = OPCODES.filter(
  (e) => (e.ext === 'F' || e.ext === 'D') && e.size === 4 && !['flw', 'fld', 'fsw', 'fsd'].includes(e.name),
);

export interface FpDiffProgram {
  source: string;
  cases: number;
  sequences: string[];
}

export function generateFpProgram(seed: number, cases: number, length: number): FpDiffProgram {
  const rnd = prng(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const rand64 = (): bigint => (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  const fpValue = (): bigint => {
    const r = rnd();
    if (r < 0.35) return 0xffffffff00000000n | BigInt(pick(S_SPECIAL)); // NaN-boxed single
    if (r < 0.7) return pick(D_SPECIAL);
    if (r < 0.8) return 0xffffffff00000000n | BigInt(int(2 ** 32));
    if (r < 0.9) return BigInt(pick(S_SPECIAL)); // a single that is not NaN-boxed
    return rand64();
  };
  const intValue = (): bigint => (rnd() < 0.6 ? pick(INTS) : BigInt.asIntN(64, rand64()));
  const text: string[] = ['.option norelax', '.text', '.globl _start', '_start:'];
  const data: string[] = ['.data', '.align 3'];
  const sequences: string[] = [];
  for (let c = 0; c < cases; c++) {
    text.push(`  la t6, fin${c}`);
    for (let i = 0; i < 32; i++) text.push(`  fld f${i}, ${i * 8}(t6)`);
    text.push(`  la t6, in${c}`);
    for (let i = 1; i <= 30; i++) text.push(`  ld x${i}, ${(i - 1) * 8}(t6)`);
    text.push('  fsflags zero', `  fsrmi ${int(5)}`);
    const seq: string[] = [];
    for (let k = 0; k < length; k++) {
      const e = pick(FP_ENTRIES);
      const ops: string[] = [];
      for (const a of e.args) {
        if (a === 'rd' || a === 'rs1') ops.push(`x${1 + int(30)}`);
        else if (a === 'fd' || a === 'fs1' || a === 'fs2' || a === 'fs3') ops.push(`f${int(32)}`);
        else if (a === 'rm') {
          const rm = int(6);
          if (rm < 5) ops.push(['rne', 'rtz', 'rdn', 'rup', 'rmm'][rm]!);
        }
      }
      seq.push(`${e.name} ${ops.join(', ')}`);
    }
    sequences.push(seq.join('\n'));
    for (const s of seq) text.push(`  ${s}`);
    text.push(`  la t6, out${c}`);
    for (let i = 1; i <= 30; i++) text.push(`  sd x${i}, ${(i - 1) * 8}(t6)`);
    for (let i = 0; i < 32; i++) text.push(`  fsd f${i}, ${240 + i * 8}(t6)`);
    text.push('  frflags t5', `  sd t5, ${240 + 256}(t6)`);
    data.push(`fin${c}: .dword ${Array.from({ length: 32 }, () => '0x' + fpValue().toString(16)).join(', ')}`);
    data.push(`in${c}: .dword ${Array.from({ length: 30 }, () => intValue().toString()).join(', ')}`);
  }
  text.push(
    '  li a7, 64',
    '  li a0, 1',
    '  la a1, outputs',
    `  li a2, ${cases * FP_CASE_BYTES}`,
    '  ecall',
    '  li a7, 93',
    '  li a0, 0',
    '  ecall',
  );
  data.push('.align 3', 'outputs:');
  for (let c = 0; c < cases; c++) data.push(`out${c}: .zero ${FP_CASE_BYTES}`);
  return { source: text.join('\n') + '\n' + data.join('\n') + '\n', cases, sequences };
}
