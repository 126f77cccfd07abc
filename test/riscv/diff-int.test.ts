/**
 * Differential tests: random integer/M/A/Zb* sequences run under qemu-riscv64 and under the hart; every
 * register (x1..x30) and the memory buffer of every case must match. Set TYPEVISOR_DIFF_SEED to explore.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElfFile } from './harness.js';
import { generateProgram, REGS_PER_CASE, BUF_BYTES } from './diffgen.js';
import { ENGINES, runOnHart, runOnQemu } from './diffrun.js';

const envSeed = process.env.TYPEVISOR_DIFF_SEED;
const SEEDS = envSeed ? [Number(envSeed)] : [1, 2, 3];
const CASES = 8000;
const LENGTH = 16;

function hex(b: Uint8Array, off: number): string {
  const v = new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, true);
  return '0x' + v.toString(16).padStart(16, '0');
}

for (const seed of SEEDS)
  for (const engine of ENGINES) {
    test(
      `random integer sequences match qemu-riscv64 on the ${engine.name} (seed ${seed}, ${CASES} cases)`,
      { timeout: 180_000 },
      () => {
        const prog = generateProgram(seed, CASES, LENGTH);
        const elfPath = buildElfFile(prog.source, { march: 'rv64gc_zba_zbb_zbs' });
        const expected = runOnQemu(elfPath);
        const actual = runOnHart(readFileSync(elfPath), { jit: engine.jit });
        assert.equal(expected.length, prog.outBytes + prog.bufBytes, 'qemu output size');
        assert.equal(actual.length, expected.length, 'hart output size');
        for (let c = 0; c < prog.cases; c++) {
          for (let r = 0; r < REGS_PER_CASE; r++) {
            const off = (c * REGS_PER_CASE + r) * 8;
            const e = hex(expected, off);
            const a = hex(actual, off);
            if (e !== a) {
              assert.fail(`seed ${seed} case ${c}: x${r + 1} qemu ${e} hart ${a}\nsequence:\n${prog.sequences[c]}`);
            }
          }
          for (let b = 0; b < BUF_BYTES; b += 8) {
            const off = prog.outBytes + c * BUF_BYTES + b;
            if (hex(expected, off) !== hex(actual, off)) {
              assert.fail(
                `seed ${seed} case ${c}: buffer+${b} qemu ${hex(expected, off)} hart ${hex(actual, off)}\nsequence:\n${prog.sequences[c]}`,
              );
            }
          }
        }
      },
    );
  }
