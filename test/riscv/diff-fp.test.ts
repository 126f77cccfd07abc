/**
 * Whole-hart FP differential test: random F/D sequences (all table entries, static and dynamic rounding
 * modes, NaN-boxed and unboxed inputs) under qemu-riscv64 and the hart; x1..x30, f0..f31 and fflags compared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildElfFile } from './harness.js';
import { generateFpProgram, FP_CASE_BYTES } from './diffgen-fp.js';
import { ENGINES, runOnHart, runOnQemu } from './diffrun.js';

const envSeed = process.env.TYPEVISOR_DIFF_SEED;
const SEED = envSeed ? Number(envSeed) : 11;
const CASES = 3000;

for (const engine of ENGINES)
  test(
    `random FP sequences through the whole hart match qemu-riscv64 on the ${engine.name} (seed ${SEED}, ${CASES} cases)`,
    { timeout: 180_000 },
    () => {
      const prog = generateFpProgram(SEED, CASES, 12);
      const elfPath = buildElfFile(prog.source, { march: 'rv64gc' });
      const expected = runOnQemu(elfPath);
      const actual = runOnHart(readFileSync(elfPath), { jit: engine.jit });
      assert.equal(expected.length, CASES * FP_CASE_BYTES);
      assert.equal(actual.length, expected.length);
      const name = (slot: number): string => (slot < 30 ? `x${slot + 1}` : slot < 62 ? `f${slot - 30}` : 'fflags');
      for (let c = 0; c < CASES; c++) {
        for (let s = 0; s < FP_CASE_BYTES / 8; s++) {
          const off = c * FP_CASE_BYTES + s * 8;
          const e = new DataView(expected.buffer, expected.byteOffset + off, 8).getBigUint64(0, true);
          const a = new DataView(actual.buffer, actual.byteOffset + off, 8).getBigUint64(0, true);
          if (e !== a)
            assert.fail(
              `seed ${SEED} case ${c}: ${name(s)} qemu 0x${e.toString(16)} hart 0x${a.toString(16)}\nsequence:\n${prog.sequences[c]}`,
            );
        }
      }
    },
  );
