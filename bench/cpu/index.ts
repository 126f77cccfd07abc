/**
 * CPU benchmark: integer-, memory- and FP-heavy bare-metal loops, run on the typevisor hart and on
 * qemu-system-riscv64 (-M virt -bios none) in the same run. Prints guest MIPS, wall times and the ratio.
 *
 *   npx tsx bench/cpu/index.ts [--no-qemu] [--scale N]
 *
 * TYPEVISOR_JIT=0 runs the interpreter alone (see src/riscv/jit); TYPEVISOR_JIT=wasm with TYPEVISOR_RAM=linear runs the
 * WebAssembly block JIT. With a JIT on, each row is followed by its translation counts and compile time and the
 * first (cold) run's CPU-time MIPS, which pays for translation and tier-up.
 *
 * The programs power off through the sifive,test syscon at 0x100000 (0x5555), which both machines implement.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { parseElf } from '../../src/machine/loaders/elf.js';
import { GuestRam, RAM_BASE } from '../../src/machine/memory.js';
import { createLinearRam, linearRamWanted } from '../../src/vm/linear-ram.js';
import { Hart } from '../../src/riscv/hart.js';
import type { JitStats } from '../../src/riscv/jit/index.js';
import { buildElfFile, cachedFile, DEFAULT_LINKER_SCRIPT } from '../../test/riscv/harness.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** bench/cpu/workload.c (gcc -O2) behind a small start-up stub; powers off when workload() returns. */
function buildCWorkload(rounds: number): string {
  const csrc = readFileSync(join(here, 'workload.c'), 'utf8');
  const start = PRELUDE + `main:\n  li a0, ${rounds}\n  call workload\n  j poweroff\n` + EPILOGUE;
  return cachedFile(
    JSON.stringify({ v: 1, csrc, start, ls: readFileSync(DEFAULT_LINKER_SCRIPT, 'utf8') }),
    '.elf',
    (out, dir) => {
      writeFileSync(join(dir, 'w.c'), csrc);
      writeFileSync(join(dir, 's.S'), start);
      const cflags = [
        '-O2',
        '-march=rv64gc',
        '-mabi=lp64d',
        '-mcmodel=medany',
        '-ffreestanding',
        '-fno-pic',
        '-fno-builtin',
        '-c',
      ];
      execFileSync('riscv64-linux-gnu-gcc', [...cflags, '-o', join(dir, 'w.o'), join(dir, 'w.c')]);
      execFileSync('riscv64-linux-gnu-gcc', ['-c', '-march=rv64gc', '-mabi=lp64d', '-o', join(dir, 's.o'), join(dir, 's.S')]);
      execFileSync('riscv64-linux-gnu-ld', [
        '-nostdlib',
        '-static',
        '--no-relax',
        '-T',
        DEFAULT_LINKER_SCRIPT,
        '-o',
        out,
        join(dir, 's.o'),
        join(dir, 'w.o'),
      ]);
    },
  );
}

const scaleArg = process.argv.indexOf('--scale');
const SCALE = scaleArg > 0 ? Number(process.argv[scaleArg + 1]) : 1;
const NO_QEMU = process.argv.includes('--no-qemu');

const PRELUDE = `
.option norelax
.globl _start
.text
_start:
  li t0, (1 << 13)
  csrs mstatus, t0
  la sp, stack_top
  j main
poweroff:
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
`;
const EPILOGUE = `
.bss
.align 12
buffer: .skip 65536
stack: .skip 4096
stack_top:
`;

export const PROGRAMS: Record<string, (scale: number) => string> = {
  integer: (SCALE) => `
main:
  li a0, 0
  li a1, ${20_000_000 * SCALE}
  li a2, 0x9e3779b97f4a7c15
1:
  add a0, a0, a2
  xor a3, a0, a1
  slli a4, a3, 7
  srli a5, a3, 9
  or a4, a4, a5
  sub a0, a0, a4
  addi a1, a1, -1
  bnez a1, 1b
  j poweroff
`,
  memory: (SCALE) => `
main:
  li s0, ${400 * SCALE}
2:
  la a0, buffer
  li a1, 8192
  li a2, 0
1:
  ld a3, 0(a0)
  add a2, a2, a3
  addi a3, a3, 1
  sd a3, 0(a0)
  lw a4, 4(a0)
  add a2, a2, a4
  addi a0, a0, 8
  addi a1, a1, -1
  bnez a1, 1b
  addi s0, s0, -1
  bnez s0, 2b
  j poweroff
`,
  fp: (SCALE) => `
main:
  li a1, ${10_000_000 * SCALE}
  li t0, 0x3ff0000000000000
  fmv.d.x fa0, t0
  li t0, 0x3ff0000010000000
  fmv.d.x fa1, t0
  fmv.d.x fa2, zero
1:
  fmadd.d fa2, fa0, fa1, fa2
  fmul.d fa0, fa0, fa1
  fadd.d fa3, fa2, fa0
  fsub.d fa2, fa3, fa1
  addi a1, a1, -1
  bnez a1, 1b
  j poweroff
`,
};

interface Result {
  instructions: number;
  wallMs: number;
  cpuMs: number;
  jit: JitStats | null;
}

function runOnHart(elfBytes: Uint8Array): Result {
  // Held as the daemon's VMs hold it (chunks unless TYPEVISOR_RAM=linear), since a RAM access is part of the loop.
  const ram = new GuestRam(64 << 20, RAM_BASE, linearRamWanted() ? createLinearRam(64 << 20) : null);
  let off = false;
  const ref: { hart?: Hart } = {};
  const bus = ram.asBus({
    mmioRead: () => undefined,
    mmioWrite: (pa, _size, value) => {
      if (pa === 0x100000 && value === 0x5555) {
        off = true;
        ref.hart!.requestExit();
        return true;
      }
      return false;
    },
  });
  const hart = new Hart(bus, { hartId: 0, readTime: () => 0 });
  ref.hart = hart;
  const elf = parseElf(elfBytes);
  for (const s of elf.segments) ram.write(s.paddr, s.data);
  hart.reset(elf.entry);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (!off) n += hart.run(10_000_000);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { instructions: n, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, jit: hart.jitStats };
}

/** Best of three runs: QEMU's wall time is noisy on a loaded machine. */
function runOnQemu(elfPath: string): { wallMs: number } | undefined {
  let best: { wallMs: number } | undefined;
  for (let i = 0; i < 3; i++) {
    const r = runOnQemuOnce(elfPath);
    if (!r) return undefined;
    if (!best || r.wallMs < best.wallMs) best = r;
  }
  return best;
}

function runOnQemuOnce(elfPath: string): { wallMs: number } | undefined {
  const t0 = performance.now();
  const r = spawnSync('qemu-system-riscv64', ['-M', 'virt', '-bios', 'none', '-kernel', elfPath, '-nographic', '-m', '128M'], {
    timeout: 120_000,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (r.status !== 0) {
    console.error(`qemu failed: ${r.stderr?.toString() ?? r.error}`);
    return undefined;
  }
  return { wallMs: performance.now() - t0 };
}

function qemuStartupMs(): number {
  // The same harness with an empty program: QEMU's fixed start/exit cost, reported separately.
  const path = buildElfFile(PRELUDE + 'main:\n  j poweroff\n' + EPILOGUE);
  return runOnQemu(path)?.wallMs ?? 0;
}

/** QEMU runs this many times the work, so its run time dwarfs its start-up cost. */
const QEMU_SCALE = 40;

function main(): void {
  try {
    execFileSync('qemu-system-riscv64', ['--version']);
  } catch {
    console.error('qemu-system-riscv64 not found');
  }
  const startup = NO_QEMU ? 0 : qemuStartupMs();
  console.log(
    `qemu-system-riscv64 start+exit: ${startup.toFixed(0)} ms (subtracted); qemu runs ${QEMU_SCALE}x the work of typevisor`,
  );
  console.log(
    'loop          guest insns   typevisor wall   MIPS  (cpu-time MIPS)   qemu insns     qemu net   MIPS   qemu/typevisor',
  );
  const builds: [string, (scale: number) => string][] = Object.entries(PROGRAMS).map(([name, body]) => [
    name,
    (scale: number) => buildElfFile(PRELUDE + body(scale * SCALE) + EPILOGUE),
  ]);
  builds.push(['compiled C', (scale: number) => buildCWorkload(6 * scale * SCALE)]);
  for (const [name, build] of builds) {
    const bytes1 = readFileSync(build(1));
    const cold = runOnHart(bytes1); // warm-up (JIT tiers)
    const r = runOnHart(bytes1);
    // Instruction counts are linear in the scale: n(s) = a + b*s. Two points give QEMU's count at QEMU_SCALE.
    const n2 = runOnHart(readFileSync(build(2))).instructions;
    const b = n2 - r.instructions;
    const qInsns = r.instructions - b + b * QEMU_SCALE;
    const q = NO_QEMU ? undefined : runOnQemu(build(QEMU_SCALE));
    const mips = r.instructions / r.wallMs / 1000;
    const cpuMips = r.instructions / r.cpuMs / 1000;
    const qnet = q ? Math.max(1, q.wallMs - startup) : NaN;
    const qmips = qInsns / qnet / 1000;
    console.log(
      `${name.padEnd(12)}${String(r.instructions).padStart(12)}   ${r.wallMs.toFixed(0).padStart(9)} ms ${mips.toFixed(1).padStart(7)}  (${cpuMips
        .toFixed(1)
        .padStart(
          6,
        )})   ${String(qInsns).padStart(12)} ${qnet.toFixed(0).padStart(8)} ms ${qmips.toFixed(0).padStart(6)}   ${(qmips / mips).toFixed(1)}x`,
    );
    const j = cold.jit;
    if (j)
      console.log(
        `  ${j.backend} jit: ${j.blocks} blocks (${j.translatedInsns} insns), ${j.compiled} compiled in ${j.compileMs.toFixed(1)} ms` +
          ` (${j.compiled ? ((j.compileMs / j.compiled) * 1000).toFixed(0) : 0} us each), instantiated in ${j.instantiateMs.toFixed(1)} ms; cold run ${(cold.instructions / cold.cpuMs / 1000).toFixed(1)} cpu-time MIPS`,
      );
  }
}

main();
