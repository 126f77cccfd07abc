/**
 * Differential tests of the WebAssembly block JIT against the interpreter (the reference):
 * - random blocks (fast-check): RV64IM ALU ops, loads and stores (in-page, page-crossing and faulting), forward
 *   branches (side exits), Zb*, CSR and fence ops (the execSlow helper), in a loop back to the block start
 *   (the in-block back edge with its budget check), on registers drawn from edge values; every register, the
 *   pc, instret, the traps taken (cause, epc, tval) and the data memory must agree;
 * - multiply-high and division edges (division by zero, MIN / -1) with the results the spec gives;
 * - the random integer/M/A/Zb* and FP programs of diff-int/diff-fp (diffgen.ts), whose outputs must agree
 *   byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { buildElfFile, makeMachine, RAM_BASE } from './harness.js';
import { generateProgram } from './diffgen.js';
import { generateFpProgram } from './diffgen-fp.js';
import { runOnHart } from './diffrun.js';
import { CSR_MTVEC, type HartOptions } from '../../src/riscv/hart.js';
import { fuzzParams } from '../helpers/fuzz.js';
import { enc } from './jit-harness.js';

const WASM: HartOptions['jit'] = { threshold: 0, backend: 'wasm' };

// ---- instruction encoders ----
const { r: R, i: I, s: S, b: B, u: U, j: J } = enc;

/** R-type ops: [funct7, funct3, opcode] (OP and OP-32, with M and a few Zb*). */
const R_OPS: [number, number, number][] = [
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((f3) => [0, f3, 0x33] as [number, number, number]),
  [0x20, 0, 0x33],
  [0x20, 5, 0x33],
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((f3) => [1, f3, 0x33] as [number, number, number]),
  [0, 0, 0x3b],
  [0x20, 0, 0x3b],
  [0, 1, 0x3b],
  [0, 5, 0x3b],
  [0x20, 5, 0x3b],
  ...[0, 4, 5, 6, 7].map((f3) => [1, f3, 0x3b] as [number, number, number]),
  [0x20, 7, 0x33], // andn
  [0x10, 2, 0x33], // sh1add
  [0x05, 4, 0x33], // min
];

/** Registers the generated code may write: not x9 (loop counter), x10/x11 (memory bases). */
const RD = fc.constantFrom(...[0, 1, 2, 3, 4, 5, 6, 7, 8, ...Array.from({ length: 20 }, (_, i) => i + 12)]);
const RS = fc.integer({ min: 0, max: 31 });
const IMM12 = fc.integer({ min: -2048, max: 2047 });

/** One instruction at index `i` of a block of `len` (forward branches stay inside the program). */
const insn = (i: number, len: number): fc.Arbitrary<number> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.tuple(fc.constantFrom(...R_OPS), RS, RS, RD).map(([[f7, f3, op], a, b, d]) => R(f7, b, a, f3, d, op)),
    },
    {
      weight: 4,
      arbitrary: fc.tuple(fc.constantFrom(0, 2, 3, 4, 6, 7), IMM12, RS, RD).map(([f3, imm, a, d]) => I(imm, a, f3, d, 0x13)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(1, 5, 0x405), fc.integer({ min: 0, max: 63 }), RS, RD)
        .map(([k, sh, a, d]) => I((k & 0x400) | sh, a, k & 7, d, 0x13)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(0, 1, 5, 0x405), fc.integer({ min: 0, max: 31 }), IMM12, RS, RD)
        .map(([k, sh, imm, a, d]) => I(k === 0 ? imm : (k & 0x400) | sh, a, k & 7, d, 0x1b)),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xfffff }), RD, fc.boolean()).map(([v, d, pc]) => U(v, d, pc ? 0x17 : 0x37)),
    },
    {
      // loads: mostly around the data buffer (x10), sometimes from a hole in the address space (x11: access fault)
      weight: 4,
      arbitrary: fc
        .tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 6), IMM12, fc.integer({ min: 0, max: 30 }), RD)
        .map(([f3, imm, base, d]) => I(imm, base === 0 ? 11 : 10, f3, d, 0x03)),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(0, 1, 2, 3), IMM12, fc.integer({ min: 0, max: 30 }), RS)
        .map(([f3, imm, base, v]) => S(imm, v, base === 0 ? 11 : 10, f3)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(0, 1, 4, 5, 6, 7), RS, RS, fc.integer({ min: 1, max: Math.max(1, len - i) }))
        .map(([f3, a, b, skip]) => B(skip * 4, b, a, f3)),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        0x0ff0000f, // fence
        I(0x340, 0, 2, 5, 0x73), // csrrs t0, mscratch, x0
        I(0x340, 6, 1, 0, 0x73), // csrrw x0, mscratch, t1
        I(0x600, 7, 1, 8, 0x13), // clz s0, t2
      ),
    },
  );

const EDGE = [0n, 1n, -1n, -(2n ** 63n), 2n ** 63n - 1n, 0x80000000n, 0xffffffffn, -0x80000000n, 2n];
const value = fc.oneof(fc.constantFrom(...EDGE), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));

const DATA = RAM_BASE + 0x10000;
const DATA_BYTES = 0x2000;
const POWEROFF = 0x10_0000;

interface Snapshot {
  regs: string[];
  pc: number;
  instret: number;
  traps: string[];
  data: number[];
  backend: string | undefined;
  blocks: number;
  regionSegments: number;
}

/** The block, then the loop's back edge (x9 counts the passes), then the power-off store (also the trap vector). */
function runBlock(code: number[], regs: bigint[], loops: number, jit: HartOptions['jit']): Snapshot {
  return runWords([...code, I(-1, 9, 0, 9, 0x13), B(-(code.length + 1) * 4, 0, 9, 1)], regs, loops, jit);
}

/** `body` at RAM_BASE, then the power-off store (also the trap vector); x9 = loops, x10 data, x11 a hole. */
function runWords(
  body: number[],
  regs: bigint[],
  loops: number,
  jit: HartOptions['jit'],
  slice = 100_000,
  codeShare = false,
): Snapshot {
  const m = makeMachine(16 << 20, jit, { codeShare });
  const epilogue = RAM_BASE + body.length * 4;
  const words = [...body, U(POWEROFF >>> 12, 31, 0x37), S(0, 0, 31, 2)];
  words.forEach((w, i) => m.ram.writeU32(RAM_BASE + i * 4, w));
  for (let i = 0; i < DATA_BYTES; i += 4) m.ram.writeU32(DATA + i, (Math.imul(i + 1, 0x9e3779b1) ^ (i << 7)) >>> 0);
  m.hart.reset(RAM_BASE);
  m.hart.writeCsr(CSR_MTVEC, epilogue | 0, 0);
  const traps: string[] = [];
  m.hart.onTrap = (_h, cause, _irq, tval, epc) =>
    traps.push(`cause ${cause} epc 0x${epc.toString(16)} tval 0x${tval.toString(16)}`);
  for (let r = 1; r < 32; r++) {
    const v = BigInt.asUintN(64, regs[r - 1]!);
    m.hart.setXHalves(r, Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0);
  }
  m.hart.setX(9, loops);
  m.hart.setX(10, DATA + 0x1000);
  m.hart.setX(11, 0x1000);
  for (let guard = 0; !m.poweredOff && guard < 10_000_000 / slice; guard++) {
    // Interrupts wait for the end of a slice: it may run over by a few blocks' worth (these programs' straight runs
    // are short), no more, however the code loops inside a translated region.
    const n = m.hart.run(slice);
    assert.ok(n <= slice + 64, `a slice of ${slice} ran ${n} instructions`);
  }
  assert.ok(m.poweredOff, 'the program reached its power-off store');
  const data: number[] = [];
  for (let i = 0; i < DATA_BYTES; i += 4) data.push(m.ram.readU32(DATA + i));
  const out: string[] = [];
  for (let r = 1; r < 32; r++) out.push(m.hart.getXHex(r));
  return {
    regs: out,
    pc: m.hart.pc,
    instret: m.hart.instret,
    traps,
    data,
    backend: m.hart.jitStats?.backend,
    blocks: m.hart.jitStats?.blocks ?? 0,
    regionSegments: m.hart.jitStats?.regionSegments ?? 0,
  };
}

function compare(code: number[], regs: bigint[], loops: number): void {
  const ref = runBlock(code, regs, loops, false);
  const got = runBlock(code, regs, loops, WASM);
  assert.equal(got.backend, 'wasm');
  const where = `code ${code.map((w) => w.toString(16).padStart(8, '0')).join(' ')}`;
  assert.deepEqual(got.traps, ref.traps, `traps (${where})`);
  assert.deepEqual(got.regs, ref.regs, `registers (${where})`);
  assert.equal(got.pc, ref.pc, `pc (${where})`);
  assert.equal(got.instret, ref.instret, `instret (${where})`);
  assert.deepEqual(got.data, ref.data, `memory (${where})`);
}

const program = fc
  .integer({ min: 1, max: 24 })
  .chain((len) =>
    fc.tuple(
      fc.tuple(...Array.from({ length: len }, (_, i) => insn(i, len))),
      fc.array(value, { minLength: 31, maxLength: 31 }),
      fc.integer({ min: 1, max: 4 }),
    ),
  );

test(
  'random blocks: the WebAssembly JIT matches the interpreter (registers, pc, instret, traps, memory)',
  { timeout: 600_000 },
  () => {
    fc.assert(
      fc.property(program, ([code, regs, loops]) => compare(code, regs, loops)),
      fuzzParams(250, 0x5eed),
    );
  },
);

/**
 * Three random runs of code (forward branches stay inside each) in the shape the WebAssembly JIT makes regions
 * of (several blocks of a page in one function, transfers between them inside it):
 *
 *   j A;  B: <b>; addi x9, x9, -1; blt x0, x9, A; j end;  A: <a>; blt x0, x9, B; <c>;  end: (power-off)
 *
 * A leaves to B (backwards: another segment), B goes back to A (the region's start when A is hot first), x9
 * counts the rounds down, so every run ends.
 */
const regionProgram = fc
  .tuple(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 6 }))
  .chain(([la, lb, lc]) =>
    fc.tuple(
      fc.tuple(...Array.from({ length: la }, (_, i) => insn(i, la))),
      fc.tuple(...Array.from({ length: lb }, (_, i) => insn(i, lb))),
      fc.tuple(...Array.from({ length: lc }, (_, i) => insn(i, lc))),
      fc.array(value, { minLength: 31, maxLength: 31 }),
      fc.integer({ min: 0, max: 40 }),
      fc.constantFrom(7, 50, 100_000),
      fc.boolean(),
    ),
  )
  .map(([a, b, c, regs, loops, slice, codeShare]) => {
    const bAt = 1;
    const aAt = bAt + b.length + 3;
    const words = [
      J(aAt * 4),
      ...b,
      I(-1, 9, 0, 9, 0x13), // addi x9, x9, -1
      B((aAt - (bAt + b.length + 1)) * 4, 9, 0, 4), // blt x0, x9, A
      J((aAt + a.length + 1 + c.length - (bAt + b.length + 2)) * 4), // j end
      ...a,
      B((bAt - (aAt + a.length)) * 4, 9, 0, 4), // blt x0, x9, B
      ...c,
    ];
    return { words, regs, loops, slice, codeShare };
  });

test(
  'random regions: blocks that branch to each other in one page match the interpreter, at any budget',
  { timeout: 600_000 },
  () => {
    let segments = 0;
    fc.assert(
      fc.property(regionProgram, ({ words, regs, loops, slice, codeShare }) => {
        const ref = runWords(words, regs, loops, false, slice);
        // codeShare: translated as on a board with several harts (the state region from the hb parameter).
        const got = runWords(words, regs, loops, WASM, slice, codeShare);
        segments += got.regionSegments;
        const where = `code ${words.map((w) => w.toString(16).padStart(8, '0')).join(' ')}, x9 ${loops}, slices of ${slice}, code for any hart ${codeShare}`;
        assert.deepEqual(got.traps, ref.traps, `traps (${where})`);
        assert.deepEqual(got.regs, ref.regs, `registers (${where})`);
        assert.equal(got.pc, ref.pc, `pc (${where})`);
        assert.equal(got.instret, ref.instret, `instret (${where})`);
        assert.deepEqual(got.data, ref.data, `memory (${where})`);
      }),
      fuzzParams(200, 0x7e61),
    );
    assert.ok(segments > 100, `blocks joined regions (${segments} segments in all)`);
  },
);

test('multiply-high and division edges give the spec results on both engines', () => {
  const MIN = -(2n ** 63n);
  // x1 = MIN, x2 = -1, x3 = 0, x4 = 7, x5 = 0x8000_0000_0000_0001 sign word cases, x6 = low word INT32_MIN
  const regs = [MIN, -1n, 0n, 7n, -(2n ** 63n) + 1n, 0x80000000n, ...Array.from({ length: 25 }, () => 0n)];
  const ops: [string, number, bigint][] = [
    ['div MIN/-1', R(1, 2, 1, 4, 12, 0x33), MIN],
    ['rem MIN%-1', R(1, 2, 1, 6, 13, 0x33), 0n],
    ['div 7/0', R(1, 3, 4, 4, 14, 0x33), -1n],
    ['divu 7/0', R(1, 3, 4, 5, 15, 0x33), -1n],
    ['rem 7%0', R(1, 3, 4, 6, 16, 0x33), 7n],
    ['remu 7%0', R(1, 3, 4, 7, 17, 0x33), 7n],
    ['divw INT32_MIN/-1', R(1, 2, 6, 4, 18, 0x3b), -0x80000000n],
    ['remw INT32_MIN%-1', R(1, 2, 6, 6, 19, 0x3b), 0n],
    ['divuw 7/0', R(1, 3, 4, 5, 20, 0x3b), -1n],
    ['remuw INT32_MIN%0', R(1, 3, 6, 7, 21, 0x3b), -0x80000000n],
    ['mulh MIN*-1', R(1, 2, 1, 1, 22, 0x33), 0n],
    ['mulhu MIN*-1', R(1, 2, 1, 3, 23, 0x33), 2n ** 63n - 1n],
    ['mulhsu -1*(2^64-1)', R(1, 2, 2, 2, 24, 0x33), -1n],
    ['mulh (MIN+1)^2', R(1, 5, 5, 1, 25, 0x33), 2n ** 62n - 1n],
  ];
  const code = ops.map(([, w]) => w);
  const ref = runBlock(code, regs, 1, false);
  const got = runBlock(code, regs, 1, WASM);
  ops.forEach(([name, w, want], i) => {
    const rd = (w >>> 7) & 31;
    const hex = BigInt.asUintN(64, want).toString(16).padStart(16, '0');
    assert.equal(ref.regs[rd - 1], hex, `${name} on the interpreter`);
    assert.equal(got.regs[rd - 1], hex, `${name} on the WebAssembly JIT (op ${i})`);
  });
});

test('a fault in the middle of a looping block is precise: epc, tval and instret as on the interpreter', () => {
  // addi, addi, ld through x13, x13 += x14, addi: the second pass loads from a hole (access fault, cause 5).
  const code = [I(1, 5, 0, 5, 0x13), I(2, 6, 0, 6, 0x13), I(0, 13, 3, 12, 0x03), R(0, 14, 13, 0, 13, 0x33), I(3, 7, 0, 7, 0x13)];
  const regs = Array.from({ length: 31 }, () => 0n);
  regs[12] = BigInt(DATA); // x13
  regs[13] = 0x7f000000n; // x14: DATA + 0x7f000000 is past the 16 MiB of RAM and no device
  const ref = runBlock(code, regs, 3, false);
  const got = runBlock(code, regs, 3, WASM);
  assert.deepEqual(ref.traps, [`cause 5 epc 0x80000008 tval 0x${(DATA + 0x7f000000).toString(16)}`], 'the load faults');
  assert.deepEqual(got.traps, ref.traps, 'cause, epc and tval');
  assert.equal(got.instret, ref.instret, 'instructions retired up to the fault');
  assert.deepEqual(got.regs, ref.regs, 'registers at the fault');
  assert.ok(got.blocks > 0, 'blocks were translated');
});

test('branches forward inside a block and jumps within the page: skipped paths, followed calls and a fault after a join are exact', () => {
  // One block: a beq that skips two instructions, a jal x1 the block follows, a bne that skips a load and its
  // pointer bump; on the fourth pass the load reaches a hole, right after a join.
  const code = [
    I(1, 5, 0, 5, 0x13), // 0: addi x5, x5, 1
    B(12, 6, 5, 0), // 4: beq x5, x6, 16
    I(3, 7, 0, 7, 0x13), // 8: addi x7, x7, 3
    I(5, 8, 0, 8, 0x13), // 12: addi x8, x8, 5
    0x008000ef, // 16: jal x1, 24
    I(1, 12, 0, 12, 0x13), // 20: addi x12, x12, 1 (jumped over)
    I(1, 5, 7, 13, 0x13), // 24: andi x13, x5, 1
    B(12, 0, 13, 1), // 28: bne x13, x0, 40
    I(0, 15, 3, 14, 0x03), // 32: ld x14, 0(x15)
    R(0, 16, 15, 0, 15, 0x33), // 36: add x15, x15, x16
    R(0, 7, 17, 0, 17, 0x33), // 40: add x17, x17, x7
  ];
  for (const [bump, loops, fault] of [
    [8n, 9, false],
    [0x7f000000n, 9, true],
  ] as const) {
    const regs = Array.from({ length: 31 }, () => 0n);
    regs[5] = 2n; // x6
    regs[14] = BigInt(DATA); // x15
    regs[15] = bump; // x16
    const ref = runBlock(code, regs, loops, false);
    const got = runBlock(code, regs, loops, WASM);
    if (fault)
      assert.deepEqual(ref.traps, [`cause 5 epc 0x80000020 tval 0x${(DATA + 0x7f000000).toString(16)}`], 'the load faults');
    else assert.deepEqual(ref.traps, [], 'no trap');
    assert.deepEqual(got.traps, ref.traps, 'cause, epc and tval');
    assert.equal(got.instret, ref.instret, 'instructions retired');
    assert.deepEqual(got.regs, ref.regs, 'registers');
    assert.deepEqual(got.data, ref.data, 'memory');
    assert.ok(got.blocks > 0, 'blocks were translated');
  }
});

test('self-modifying code: a store into a translated page, then fence.i, runs the new instruction', () => {
  const code = [
    I(1, 0, 0, 5, 0x13), // 0: addi x5, x0, 1 (patched later)
    I(-1, 9, 0, 9, 0x13), // 4: addi x9, x9, -1
    B(-8, 0, 9, 1), // 8: bnez x9, 0
    B(24, 0, 8, 1), // 12: bnez x8, 36 (done)
    S(0, 6, 7, 2), // 16: sw x6, 0(x7): patch instruction 0
    0x0000100f, // 20: fence.i
    I(2, 0, 0, 9, 0x13), // 24: addi x9, x0, 2
    I(1, 0, 0, 8, 0x13), // 28: addi x8, x0, 1
    0xfe1ff06f, // 32: j 0
  ];
  const regs = Array.from({ length: 31 }, () => 0n);
  regs[5] = BigInt(I(2, 0, 0, 5, 0x13)); // x6: addi x5, x0, 2
  regs[6] = BigInt(RAM_BASE); // x7
  const ref = runWords(code, regs, 3, false);
  const got = runWords(code, regs, 3, WASM);
  assert.equal(ref.regs[4], '0000000000000002', 'x5 comes from the patched instruction on the interpreter');
  assert.equal(got.regs[4], '0000000000000002', 'x5 comes from the patched instruction on the WebAssembly JIT');
  assert.deepEqual(got.traps, [], 'no trap');
  assert.equal(got.instret, ref.instret, 'instructions retired');
  assert.ok(got.blocks > 0, 'blocks were translated');
});

test(
  'random integer/M/A/Zb* programs give the same output on the interpreter and the WebAssembly JIT',
  { timeout: 300_000 },
  () => {
    const prog = generateProgram(7, 3000, 16);
    const elf = readFileSync(buildElfFile(prog.source, { march: 'rv64gc_zba_zbb_zbs' }));
    const ref = runOnHart(elf, { jit: false });
    const got = runOnHart(elf, { jit: WASM });
    assert.equal(got.length, ref.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(ref)), 'outputs are identical');
  },
);

test('random FP programs give the same output on the interpreter and the WebAssembly JIT', { timeout: 300_000 }, () => {
  const prog = generateFpProgram(13, 1500, 12);
  const elf = readFileSync(buildElfFile(prog.source, { march: 'rv64gc' }));
  const ref = runOnHart(elf, { jit: false });
  const got = runOnHart(elf, { jit: WASM });
  assert.equal(got.length, ref.length);
  assert.ok(Buffer.from(got).equals(Buffer.from(ref)), 'outputs are identical');
});

test("the blocks' own FP paths (loads, stores, sign moves, double arithmetic) leave results, flags and rounding as the interpreter does", () => {
  // A loop the JIT runs on its own paths once NX is accrued, then ops whose results need flags (underflow,
  // overflow, divide by zero), an inexact op with NX clear, and round-towards-zero: those must go to the hart.
  const source = `
.option norelax
.text
.globl _start
_start:
  la t6, vals
  li s1, 300
  fld f1, 0(t6)
  fld f2, 8(t6)
  fld f3, 16(t6)
  fld f4, 24(t6)
  fld f5, 32(t6)
  fmv.d f10, f5
1:
  fadd.d f10, f10, f1
  fmul.d f11, f10, f2
  fdiv.d f12, f11, f1
  fsqrt.d f13, f12
  fsub.d f14, f13, f10
  fsgnjn.d f15, f14, f14
  fsgnjx.d f16, f15, f11
  fsgnj.d f19, f16, f14
  fsd f16, 40(t6)
  fld f17, 40(t6)
  flw f18, 40(t6)
  fsw f17, 48(t6)
  addi s1, s1, -1
  bnez s1, 1b
  frflags s2
  fsflags zero
  fmul.d f20, f3, f3
  frflags s3
  fsflags zero
  fadd.d f21, f1, f2
  fmul.d f22, f4, f4
  frflags s4
  fsrmi 1
  fadd.d f23, f1, f2
  fdiv.d f24, f2, f1
  fsrmi 0
  fdiv.d f25, f5, f0
  frflags s5
  la t6, out
${Array.from({ length: 16 }, (_, k) => `  fsd f${10 + k}, ${k * 8}(t6)`).join('\n')}
  sd s2, 128(t6)
  sd s3, 136(t6)
  sd s4, 144(t6)
  sd s5, 152(t6)
  ld t0, 48(t6)
  li a7, 64
  li a0, 1
  la a1, out
  li a2, 160
  ecall
  li a7, 93
  li a0, 0
  ecall
.data
.align 3
vals: .double 1.1, 3.3, 1e-300, 1e300, 1.0
  .zero 16
out: .zero 160
`;
  const elf = readFileSync(buildElfFile(source, { march: 'rv64gc' }));
  const ref = Buffer.from(runOnHart(elf, { jit: false }));
  const got = Buffer.from(runOnHart(elf, { jit: WASM }));
  const flags = (b: Buffer, k: number): number => Number(b.readBigUInt64LE(128 + k * 8));
  assert.equal(flags(ref, 0), 0x01, 'the loop accrues NX only');
  assert.equal(flags(ref, 1), 0x03, 'underflow: UF and NX');
  assert.equal(flags(ref, 2), 0x05, 'an inexact sum with NX clear, then an overflow: OF and NX');
  assert.equal(flags(ref, 3) & 0x08, 0x08, 'divide by zero: DZ');
  for (let k = 0; k < 20; k++)
    assert.equal(got.readBigUInt64LE(k * 8), ref.readBigUInt64LE(k * 8), `output dword ${k} (f${10 + k} or flags)`);
});
