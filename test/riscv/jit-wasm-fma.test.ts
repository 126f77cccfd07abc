/**
 * The WebAssembly JIT's own fused multiply-add (fmadd/fmsub/fnmsub/fnmadd.d with round-to-nearest-even and NX
 * already set, src/riscv/jit/wasm/translate.ts `fusedMultiplyAdd`) against the FPU's (whose exact slow path
 * decides every case it does not prove): the same table of operand triples runs through each op on the
 * interpreter and in translated code, and every result bit and the final fflags must agree. The triples lean on
 * the hard cases: sums that cancel most of the product, addends a few half-ulps from the product (ties and near
 * ties), random ones, and operands outside the JIT's guard (huge, tiny, subnormal, zero, infinite, NaN).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildElf, runProgram, type Machine } from './harness.js';
import { withCommonHeader } from './jit-harness.js';
import { parseElf } from '../../src/machine/loaders/elf.js';
import type { HartOptions } from '../../src/riscv/hart.js';

const FUSED = ['fmadd', 'fmsub', 'fnmsub', 'fnmadd'] as const;
/** Double or single: the ops' suffix, load and store, and a value's bits in an 8-byte slot. */
interface Precision {
  suffix: 'd' | 's';
  load: 'fld' | 'flw';
  store: 'fsd' | 'fsw';
  bitsOf(x: number): bigint;
  valueOf(bits: bigint): number;
}

/** A small seeded generator (xorshift128+ on doubles' bits): the table is the same on every run. */
function generator(seed: number): { bits(): bigint; unit(): number } {
  let s0 = BigInt(seed) | 1n;
  let s1 = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  const next = (): bigint => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & mask;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return (s1 + y) & mask;
  };
  return { bits: next, unit: () => Number(next() >> 11n) / 2 ** 53 };
}

const view = new DataView(new ArrayBuffer(8));
const fromBits = (b: bigint): number => {
  view.setBigUint64(0, b);
  return view.getFloat64(0);
};
const toBits = (x: number): bigint => {
  view.setFloat64(0, x);
  return view.getBigUint64(0);
};
/** A double with a random 52-bit mantissa, the given unbiased exponent and a random sign. */
const randomDouble = (g: ReturnType<typeof generator>, exp: number): number =>
  fromBits((g.bits() & ((1n << 52n) - 1n)) | (BigInt(exp + 1023) << 52n) | (g.bits() & (1n << 63n)));

function triples(): [number, number, number][] {
  const g = generator(0x5eed);
  const out: [number, number, number][] = [];
  const exp = (lo: number, hi: number): number => lo + Math.floor(g.unit() * (hi - lo + 1));
  for (let i = 0; i < 3000; i++) {
    const a = randomDouble(g, exp(-40, 40));
    const b = randomDouble(g, exp(-40, 40));
    const p = a * b;
    const ulp = 2 ** (Math.floor(Math.log2(Math.abs(p))) - 52);
    let c: number;
    switch (i % 6) {
      case 0: // random
        c = randomDouble(g, exp(-90, 90));
        break;
      case 1: // cancels the rounded product: the result is the product's rounding error, plus a little
        c = -p + (g.unit() < 0.5 ? 0 : randomDouble(g, Math.floor(Math.log2(ulp)) - exp(0, 40)));
        break;
      case 2: // k half-ulps of the product away: ties and near ties after the sum
        c = (Math.floor(g.unit() * 9) - 4) * (ulp / 2) * (g.unit() < 0.5 ? 1 : 2 ** exp(-3, 3));
        break;
      case 3: // an addend far larger or smaller than the product
        c = randomDouble(g, Math.floor(Math.log2(Math.abs(p))) + (g.unit() < 0.5 ? exp(40, 120) : -exp(40, 120)));
        break;
      case 4: // small integers (exact results, zero results)
        c = Math.floor(g.unit() * 7) - 3;
        out.push([Math.floor(g.unit() * 7) - 3, Math.floor(g.unit() * 7) - 3, c]);
        continue;
      default: {
        // outside the guard: huge, tiny, subnormal, zero, infinite, NaN operands
        const special = [1e300, -1e-300, 5e-324, 0, -0, Infinity, -Infinity, NaN, 2 ** 401, 2 ** -401];
        const pick = (): number => special[Math.floor(g.unit() * special.length)]!;
        const which = Math.floor(g.unit() * 3);
        out.push([which === 0 ? pick() : a, which === 1 ? pick() : b, which === 2 ? pick() : randomDouble(g, exp(-90, 90))]);
        continue;
      }
    }
    out.push([a, b, c]);
  }
  // Where rounding the low part to nearest (not to odd) gives a wrong answer: (1 + 2^-52)^2 + 3 is
  // 4 + 2^-51 + 2^-104; 4 + 2^-51 is a tie and 2^-51 + 2^-104 another, so two roundings to nearest give 4, where
  // the answer is 4 + 2^-50. Scaled, and with each sign.
  const u = 1 + 2 ** -52;
  for (let e = -24; e <= 24; e += 3)
    for (const [sa, sc] of [
      [1, 1],
      [-1, -1],
    ])
      out.push([sa * u * 2 ** e, u, sc * 3 * 2 ** e]);
  return out;
}

function source(table: [number, number, number][], pr: Precision): string {
  const loops = FUSED.map(
    (op, k) => `
  la a0, operands
  la a1, results + ${k * table.length * 8}
  li a2, ${table.length}
op${k}:
  ${pr.load} fa0, 0(a0)
  ${pr.load} fa1, 8(a0)
  ${pr.load} fa2, 16(a0)
  ${op}.${pr.suffix} fa3, fa0, fa1, fa2
  ${pr.store} fa3, 0(a1)
  addi a0, a0, 24
  addi a1, a1, 8
  addi a2, a2, -1
  bnez a2, op${k}`,
  );
  const words = table.flatMap((t) => t.map((x) => `  .dword 0x${pr.bitsOf(x).toString(16)}`));
  return withCommonHeader(`#include "common.h"
.text
main:
  li t0, (3 << 13)
  csrs mstatus, t0
  fsrmi 0
  csrwi fflags, 1 /* NX already accrued: the state the JIT's own FP paths need */
${loops.join('\n')}
  csrr t0, fflags
  la t1, flags
  sd t0, 0(t1)
  j pass
.data
.align 3
flags: .dword 0
operands:
${words.join('\n')}
.bss
.align 3
results: .skip ${FUSED.length * table.length * 8}
`);
}

function run(
  elf: Uint8Array,
  jit: HartOptions['jit'],
  count: number,
): { results: BigUint64Array; flags: bigint; fpHelperCalls: number } {
  const symbols = parseElf(elf).symbols;
  let machine: Machine | undefined;
  const r = runProgram(elf, 50_000_000, { jit, setup: (m) => (machine = m) });
  assert.deepEqual(r.result, { kind: 'pass' });
  const read = (name: string, bytes: number): BigUint64Array => {
    const buf = new Uint8Array(bytes);
    machine!.ram.read(symbols.get(name)!, buf);
    return new BigUint64Array(buf.buffer);
  };
  return {
    results: read('results', FUSED.length * count * 8),
    flags: read('flags', 8)[0]!,
    fpHelperCalls: r.hart.jitStats?.fpHelperCalls ?? 0,
  };
}

/** Runs every triple through the four fused ops of `pr` on both engines: every result and fflags must agree. */
function checkFused(table: [number, number, number][], pr: Precision): void {
  const elf = buildElf(source(table, pr));
  const ref = run(elf, false, table.length);
  const got = run(elf, { threshold: 0, backend: 'wasm' }, table.length);
  for (let i = 0; i < ref.results.length; i++) {
    if (got.results[i] !== ref.results[i]) {
      const [a, b, c] = table[i % table.length]!;
      assert.fail(
        `${FUSED[Math.floor(i / table.length)]}.${pr.suffix} of ${a}, ${b}, ${c}: translated ${pr.valueOf(got.results[i]!)} ` +
          `(0x${got.results[i]!.toString(16)}), FPU ${pr.valueOf(ref.results[i]!)} (0x${ref.results[i]!.toString(16)})`,
      );
    }
  }
  assert.equal(got.flags, ref.flags, 'fflags');
  // Translated code did most of them itself: only the operands outside its guard, and results that are not
  // finite normal numbers, went to the FPU.
  const total = FUSED.length * table.length;
  assert.ok(got.fpHelperCalls < total / 4, `${got.fpHelperCalls} of ${total} went to the FPU`);
  assert.ok(got.fpHelperCalls > 0, 'the operands outside the guard went to the FPU');
}

const DOUBLE: Precision = { suffix: 'd', load: 'fld', store: 'fsd', bitsOf: toBits, valueOf: fromBits };
const f32 = new DataView(new ArrayBuffer(4));
const SINGLE: Precision = {
  suffix: 's',
  load: 'flw',
  store: 'fsw',
  bitsOf: (x) => {
    f32.setFloat32(0, x);
    return BigInt(f32.getUint32(0));
  },
  valueOf: (bits) => {
    f32.setUint32(0, Number(bits & 0xffffffffn));
    return f32.getFloat32(0);
  },
};

test(
  "translated fmadd/fmsub/fnmsub/fnmadd.d give the FPU's bits and flags on hard and random operands",
  { timeout: 120_000 },
  () => checkFused(triples(), DOUBLE),
);

/**
 * Singles: the doubles' table rounded to single (its ties and cancellations are near ties and cancellations
 * still), specials of single range, and where rounding the exact sum to nearest in double before single would be
 * wrong: 2^-12 (1 + 2^-23) × 2^-12 (1 - 2^-23) + (1 + 2^-23) is 1 + 2^-23 + 2^-24 - 2^-70, just under a tie of
 * singles; the double nearest it is the tie itself, which rounds to even (up), where the answer is down.
 */
function singleTriples(): [number, number, number][] {
  const out = triples().map(
    ([a, b, c]) => [Math.fround(a * 2 ** -30), Math.fround(b), Math.fround(c * 2 ** -30)] as [number, number, number],
  );
  const specials = [3e38, -1e-38, 1e-45, 0, -0, Infinity, NaN, 2 ** 127, 2 ** -126];
  specials.forEach((x, k) => out.push([x, 1.5, 2], [1.25, x, -3], [0.75, -2, x], [x, specials[(k + 3) % specials.length]!, 1]));
  for (let e = -20; e <= 20; e += 4)
    for (const sign of [1, -1])
      out.push([sign * 2 ** (e - 12) * (1 + 2 ** -23), 2 ** -12 * (1 - 2 ** -23), sign * 2 ** e * (1 + 2 ** -23)]);
  return out;
}

test(
  "translated fmadd/fmsub/fnmsub/fnmadd.s give the FPU's bits and flags on hard and random operands",
  { timeout: 120_000 },
  () => checkFused(singleTriples(), SINGLE),
);
