/**
 * Differential-test harness: a tiny static riscv64 Linux program, generated from OPS below, that executes
 * FP instructions on operand bit patterns read from stdin and writes result bits + fflags to stdout. It runs
 * under qemu-riscv64, whose softfloat is our reference. The binary is cached in os.tmpdir() keyed by the
 * hash of its generated source.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FpMnemonic } from '../../../src/riscv/fpu/index.js';
import { requireTool } from '../../helpers/require.js';

/**
 * Operand shapes: F = FP register, X = integer register, first letter is the destination.
 * FFF: rd, rs1, rs2 FP. FF: rd, rs1 FP. FFFF: fused multiply-add. XF: int rd from FP rs1.
 * XFF: compare. FX: FP rd from int rs1.
 */
export type Shape = 'FFF' | 'FF' | 'FFFF' | 'XF' | 'XFF' | 'FX';
export interface OpSpec {
  m: FpMnemonic;
  shape: Shape;
  /** Does the assembler accept (and the instruction use) a rounding-mode operand? */
  rm: boolean;
  /** Single-precision operand(s)? (Only used for vector generation.) */
  single: boolean;
}

function spec(m: FpMnemonic, shape: Shape, rm: boolean): OpSpec {
  const single = /_s$/.test(m) || m === 'fmv_x_w' || m === 'fcvt_d_s' || m === 'fmv_w_x' || /^fcvt_s_[wl]u?$/.test(m);
  return { m, shape, rm, single };
}

export const OPS: OpSpec[] = [];
for (const p of ['s', 'd'] as const) {
  for (const o of ['fadd', 'fsub', 'fmul', 'fdiv'] as const) OPS.push(spec(`${o}_${p}`, 'FFF', true));
  OPS.push(spec(`fsqrt_${p}`, 'FF', true));
  for (const o of ['fsgnj', 'fsgnjn', 'fsgnjx', 'fmin', 'fmax'] as const) OPS.push(spec(`${o}_${p}`, 'FFF', false));
  for (const o of ['fmadd', 'fmsub', 'fnmsub', 'fnmadd'] as const) OPS.push(spec(`${o}_${p}`, 'FFFF', true));
  for (const o of ['feq', 'flt', 'fle'] as const) OPS.push(spec(`${o}_${p}`, 'XFF', false));
  OPS.push(spec(`fclass_${p}`, 'XF', false));
  for (const i of ['w', 'wu', 'l', 'lu'] as const) OPS.push(spec(`fcvt_${i}_${p}`, 'XF', true));
  // fcvt.d.w/wu are exact: the assembler refuses an rm operand.
  for (const i of ['w', 'wu', 'l', 'lu'] as const) OPS.push(spec(`fcvt_${p}_${i}`, 'FX', p === 's' || i[0] === 'l'));
}
OPS.push(spec('fmv_x_w', 'XF', false), spec('fmv_x_d', 'XF', false));
OPS.push(spec('fmv_w_x', 'FX', false), spec('fmv_d_x', 'FX', false));
OPS.push(spec('fcvt_s_d', 'FF', true), spec('fcvt_d_s', 'FF', false));

const RM_NAMES = ['rne', 'rtz', 'rdn', 'rup', 'rmm', 'dyn'];

function asmFor(op: OpSpec, rmName: string | null): string {
  const insn = op.m.replace(/_/g, '.');
  const rm = rmName ? `, ${rmName}` : '';
  switch (op.shape) {
    case 'FFF':
      return `${insn} ft3, ft0, ft1${rm}\\n\\tfmv.x.d %0, ft3`;
    case 'FF':
      return `${insn} ft3, ft0${rm}\\n\\tfmv.x.d %0, ft3`;
    case 'FFFF':
      return `${insn} ft3, ft0, ft1, ft2${rm}\\n\\tfmv.x.d %0, ft3`;
    case 'XF':
      return `${insn} %0, ft0${rm}`;
    case 'XFF':
      return `${insn} %0, ft0, ft1`;
    case 'FX':
      return `${insn} ft3, %2${rm}\\n\\tfmv.x.d %0, ft3`;
  }
}

/** The C source: one function per (op, rm) through a macro, a dispatch table, and a stdin/stdout loop. */
export function harnessSource(): string {
  const lines: string[] = [];
  lines.push(`#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
typedef struct { uint32_t op, rm, frm, pad; uint64_t a, b, c; } rec_t;
typedef struct { uint64_t r, flags; } out_t;
typedef void (*fn_t)(const rec_t *, out_t *);
/* ft3 starts as a recognisable pattern so an op that writes nothing is visible. */
#define DEF(NAME, ASM) static void NAME(const rec_t *in, out_t *o) { \\
  uint64_t r, fl; \\
  __asm__ volatile("fmv.d.x ft0, %2\\n\\tfmv.d.x ft1, %3\\n\\tfmv.d.x ft2, %4\\n\\tfsflags zero\\n\\t" ASM "\\n\\tfrflags %1" \\
    : "=&r"(r), "=&r"(fl) : "r"(in->a), "r"(in->b), "r"(in->c) : "ft0", "ft1", "ft2", "ft3"); \\
  o->r = r; o->flags = fl; }`);
  const table: string[] = [];
  OPS.forEach((op, i) => {
    const row: string[] = [];
    for (let k = 0; k < 6; k++) {
      const name = `op${i}_${k}`;
      if (op.rm || k === 0) lines.push(`DEF(${name}, "${asmFor(op, op.rm ? RM_NAMES[k] : null)}")`);
      row.push(op.rm ? name : `op${i}_0`);
    }
    table.push(`  { ${row.join(', ')} },`);
  });
  lines.push(`static const fn_t table[${OPS.length}][6] = {\n${table.join('\n')}\n};`);
  lines.push(`static int readall(void *buf, size_t n) {
  size_t got = 0;
  while (got < n) { ssize_t k = read(0, (char *)buf + got, n - got); if (k <= 0) return got == 0 ? 0 : -1; got += k; }
  return 1;
}
int main(void) {
  enum { CHUNK = 1024 };
  static rec_t in[CHUNK];
  static out_t out[CHUNK];
  for (;;) {
    uint32_t n;
    int s = readall(&n, 4);
    if (s == 0) return 0;
    if (s < 0 || n > CHUNK || readall(in, n * sizeof(rec_t)) != 1) return 2;
    for (uint32_t i = 0; i < n; i++) {
      const rec_t *r = &in[i];
      if (r->op >= ${OPS.length}) return 3;
      __asm__ volatile("fsrm %0" :: "r"((uint64_t)r->frm));
      table[r->op][r->rm == 7 ? 5 : r->rm](r, &out[i]);
    }
    size_t len = n * sizeof(out_t), done = 0;
    while (done < len) { ssize_t k = write(1, (char *)out + done, len - done); if (k <= 0) return 4; done += k; }
  }
}`);
  return lines.join('\n') + '\n';
}

/** Fails the calling test, naming the apt packages, when the cross compiler or qemu-riscv64 is missing. */
export function requireFpTools(): void {
  requireTool('riscv64-linux-gnu-gcc', 'gcc-riscv64-linux-gnu');
  requireTool('qemu-riscv64', 'qemu-user');
}

/** Builds (or reuses) the harness binary and returns its path. */
export function buildHarness(): string {
  const src = harnessSource();
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'typevisor-fpdiff');
  const bin = join(dir, `fpdiff-${hash}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const cfile = join(dir, `fpdiff-${hash}.c`);
  writeFileSync(cfile, src);
  const tmpBin = `${bin}.${process.pid}.tmp`;
  const r = spawnSync('riscv64-linux-gnu-gcc', ['-static', '-O2', '-march=rv64gc', '-o', tmpBin, cfile], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`harness build failed:\n${r.stderr}`);
  renameSync(tmpBin, bin);
  return bin;
}

export interface Vector {
  op: number;
  rm: number;
  frm: number;
  a: bigint;
  b: bigint;
  c: bigint;
}
export interface Outcome {
  r: bigint;
  flags: number;
}

/** Runs the vectors under qemu-riscv64 and returns QEMU's result bits and fflags for each. */
export function runUnderQemu(bin: string, vectors: Vector[]): Outcome[] {
  const CHUNK = 1024;
  const parts: Buffer[] = [];
  for (let i = 0; i < vectors.length; i += CHUNK) {
    const n = Math.min(CHUNK, vectors.length - i);
    const buf = Buffer.alloc(4 + n * 40);
    buf.writeUInt32LE(n, 0);
    for (let k = 0; k < n; k++) {
      const v = vectors[i + k];
      const o = 4 + k * 40;
      buf.writeUInt32LE(v.op, o);
      buf.writeUInt32LE(v.rm, o + 4);
      buf.writeUInt32LE(v.frm, o + 8);
      buf.writeBigUInt64LE(v.a, o + 16);
      buf.writeBigUInt64LE(v.b, o + 24);
      buf.writeBigUInt64LE(v.c, o + 32);
    }
    parts.push(buf);
  }
  const r = spawnSync('qemu-riscv64', [bin], { input: Buffer.concat(parts), maxBuffer: 1 << 28, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`harness exited with ${r.status ?? r.signal}: ${r.stderr?.toString()}`);
  const out = r.stdout;
  if (out.length !== vectors.length * 16) throw new Error(`harness returned ${out.length} bytes`);
  const res: Outcome[] = [];
  for (let i = 0; i < vectors.length; i++) {
    res.push({ r: out.readBigUInt64LE(i * 16), flags: Number(out.readBigUInt64LE(i * 16 + 8)) });
  }
  return res;
}
