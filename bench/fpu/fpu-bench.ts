/**
 * FPU throughput: calls per second of FP_OPS entries on typical operands (normal doubles/singles, dynamic rm with
 * frm = RNE, as compiled code uses), next to the same instructions executed by qemu-riscv64 (user mode, TCG with
 * softfloat helpers) in a tight loop in the same run. Run: npx tsx bench/fpu/fpu-bench.ts [millions-per-op]
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FP_OPS, FpState, RM_DYN, type FpMnemonic } from '../../src/riscv/fpu/index.js';

const millions = Number(process.argv[2] ?? 5);
const N = Math.round(millions * 1e6);

interface BenchOp {
  m: FpMnemonic;
  asm: string;
}
const OPS: BenchOp[] = [
  { m: 'fadd_d', asm: 'fadd.d ft0, ft1, ft2' },
  { m: 'fmul_d', asm: 'fmul.d ft0, ft1, ft2' },
  { m: 'fmadd_d', asm: 'fmadd.d ft0, ft1, ft2, ft3' },
  { m: 'fdiv_d', asm: 'fdiv.d ft0, ft1, ft2' },
  { m: 'fsqrt_d', asm: 'fsqrt.d ft0, ft1' },
  { m: 'fadd_s', asm: 'fadd.s ft0, ft1, ft2' },
  { m: 'fmul_s', asm: 'fmul.s ft0, ft1, ft2' },
  { m: 'fmadd_s', asm: 'fmadd.s ft0, ft1, ft2, ft3' },
  { m: 'fcvt_w_d', asm: 'fcvt.w.d t0, ft1, rtz' },
];

function ours(m: FpMnemonic): number {
  const fs = new FpState();
  const x = new Int32Array(64);
  for (let r = 1; r <= 8; r++) {
    fs.f64[r] = 1 + r / 7;
    fs.f32[2 * (r + 8)] = 1 + r / 7; // singles in f9..f16, NaN-boxed
    fs.i32[2 * (r + 8) + 1] = -1;
  }
  const base = m.endsWith('_s') ? 9 : 1;
  const op = FP_OPS[m];
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) op(fs, x, 20 + (i & 3), base + (i & 7), base + ((i >> 3) & 7), base + ((i >> 2) & 7), RM_DYN);
  };
  run(200_000); // warm up the JIT
  const t0 = process.hrtime.bigint();
  run(N);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  return N / dt;
}

function qemuSource(): string {
  const cases = OPS.map(
    (o, i) =>
      `    case ${i}: for (long k = 0; k < n; k += 8) __asm__ volatile(${JSON.stringify(
        Array(8).fill(o.asm).join('\n\t'),
      )} ::: "ft0", "t0"); break;`,
  ).join('\n');
  return `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
  int op = atoi(argv[1]);
  long n = atol(argv[2]);
  __asm__ volatile("li t0, 0x3ff2000000000000\\n\\tfmv.d.x ft1, t0\\n\\tli t0, 0x3ff4000000000000\\n\\tfmv.d.x ft2, t0\\n\\tfmv.d.x ft3, t0" ::: "t0", "ft1", "ft2", "ft3");
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  switch (op) {
${cases}
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double dt = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  printf("%.0f\\n", n / dt);
  return 0;
}
`;
}

function qemuBinary(): string | null {
  const src = qemuSource();
  const dir = join(tmpdir(), 'typevisor-fpbench');
  const bin = join(dir, `fpbench-${createHash('sha256').update(src).digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${bin}.c`, src);
  const r = spawnSync('riscv64-linux-gnu-gcc', ['-static', '-O2', '-o', bin, `${bin}.c`], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`cannot build the qemu reference loop: ${r.stderr ?? r.error}`);
    return null;
  }
  return bin;
}

function qemu(bin: string, index: number): number {
  const r = spawnSync('qemu-riscv64', [bin, String(index), String(N)], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : NaN;
}

const bin = qemuBinary();
const fmt = (v: number): string => (Number.isFinite(v) ? `${(v / 1e6).toFixed(1)} M/s` : 'n/a');
console.log(`FP op throughput, ${millions}M calls per op (node ${process.version})`);
console.log('op        typevisor FP_OPS   qemu-riscv64   typevisor/qemu');
OPS.forEach((o, i) => {
  const a = ours(o.m);
  const b = bin ? qemu(bin, i) : NaN;
  console.log(`${o.m.padEnd(9)} ${fmt(a).padStart(16)} ${fmt(b).padStart(14)} ${(a / b).toFixed(2).padStart(16)}`);
});
