/**
 * JIT back-end probe: bench/cpu's integer loop (add, xor, slli, srli, or, sub, addi, bnez; 8 instructions)
 * translated three ways and timed on the same iteration count:
 *   - the JS block the JIT emits today (src/riscv/jit codegen over the Int32Array register halves);
 *   - a WebAssembly function with the registers in linear memory as i64 (each instruction loads and stores,
 *     the translation a simple WebAssembly JIT would start with);
 *   - the same with the registers in i64 locals (what a register-allocating translation would reach).
 * It also times compiling each form, since boot code is lukewarm and pays compile and tier-up per block.
 *
 *   npx tsx bench/cpu/wasm-probe.ts [iterations]
 */
import { loadavg } from 'node:os';
import { decodedWords } from '../../src/riscv/hart.js';
import { BlockJit, PageBlocks } from '../../src/riscv/jit/index.js';

/** The slice of the WebAssembly JS API used here (the project's lib setting does not declare it). */
const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

const ITER = Number(process.argv[2] ?? 20_000_000);
const INSNS = 8;

// ---- the JS block, exactly as the JIT generates it ----
const enc = {
  r: (f7: number, rs2: number, rs1: number, f3: number, rd: number) =>
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33,
  i: (imm: number, rs1: number, f3: number, rd: number) => ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x13,
  bne: (imm: number, rs2: number, rs1: number) =>
    (((imm >> 12) & 1) << 31) |
    (((imm >> 5) & 0x3f) << 25) |
    (rs2 << 20) |
    (rs1 << 15) |
    (1 << 12) |
    (((imm >> 1) & 0xf) << 8) |
    (((imm >> 11) & 1) << 7) |
    0x63,
};
const LOOP = [
  enc.r(0, 12, 10, 0, 10), // add a0, a0, a2
  enc.r(0, 11, 10, 4, 13), // xor a3, a0, a1
  enc.i(7, 13, 1, 14), // slli a4, a3, 7
  enc.i(9, 13, 5, 15), // srli a5, a3, 9
  enc.r(0, 15, 14, 6, 14), // or a4, a4, a5
  enc.r(0x20, 14, 10, 0, 10), // sub a0, a0, a4
  enc.i(-1, 11, 0, 11), // addi a1, a1, -1
  enc.bne(-28, 0, 11), // bnez a1, start
].map((i) => decodedWords(i));

function jsBlock(): { ms: number; compileMs: number; a0: bigint } {
  const x = new Int32Array(66);
  const dummy = new DataView(new ArrayBuffer(8));
  const t0 = performance.now();
  const jit = new BlockJit(
    {
      loadTag: new Float64Array(2048),
      loadView: [dummy],
      loadOff: new Int32Array(2048),
      storeTag: new Float64Array(2048),
      storeView: [dummy],
      storeOff: new Int32Array(2048),
      codePages: new Uint8Array(1),
    },
    { threshold: 0 },
  );
  const fn = jit.lookup(new PageBlocks(), 0, (slot) => LOOP[slot >>> 1] ?? { w: 1, imm: 0 })!;
  const compileMs = performance.now() - t0;
  x[22] = ITER; // a1
  x[24] = 0x7f4a7c15; // a2 = 0x9e3779b97f4a7c15
  x[25] = 0x9e3779b9 | 0;
  const h = { dataCtx: 0, pcValue: 0 };
  const t1 = performance.now();
  fn(h, x, 0, 0, ITER * INSNS + 1, 0);
  const ms = performance.now() - t1;
  return { ms, compileMs, a0: (BigInt(x[21]! >>> 0) << 32n) | BigInt(x[20]! >>> 0) };
}

// ---- WebAssembly, hand-assembled ----
const uleb = (v: number): number[] => {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
};
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const OP = {
  get: 0x20,
  set: 0x21,
  tee: 0x22,
  i64c: 0x42,
  add: 0x7c,
  sub: 0x7d,
  or: 0x84,
  xor: 0x85,
  shl: 0x86,
  shru: 0x88,
  ne: 0x52,
};

/** (func (param $n i64) (result i64)) over registers in memory (inMemory) or in locals. */
function wasmModule(inMemory: boolean): Uint8Array {
  const body: number[] = [];
  // register access: memory at 8*r, or local r (local 0 is the parameter, used as a1's initial value)
  const get = (r: number): number[] => (inMemory ? [0x41, 0, 0x29, 3, ...uleb(r * 8)] : [OP.get, r]);
  const set = (r: number, value: number[]): number[] =>
    inMemory ? [0x41, 0, ...value, 0x37, 3, ...uleb(r * 8)] : [...value, OP.set, r];
  const A0 = 10,
    A1 = 11,
    A2 = 12,
    A3 = 13,
    A4 = 14,
    A5 = 15;
  body.push(...set(A1, [OP.get, 0]));
  body.push(...set(A2, [OP.i64c, ...sleb64(0x9e3779b9, 0x7f4a7c15)]));
  body.push(0x02, 0x40, 0x03, 0x40); // block, loop
  body.push(...set(A0, [...get(A0), ...get(A2), OP.add]));
  body.push(...set(A3, [...get(A0), ...get(A1), OP.xor]));
  body.push(...set(A4, [...get(A3), OP.i64c, 7, OP.shl]));
  body.push(...set(A5, [...get(A3), OP.i64c, 9, OP.shru]));
  body.push(...set(A4, [...get(A4), ...get(A5), OP.or]));
  body.push(...set(A0, [...get(A0), ...get(A4), OP.sub]));
  body.push(...set(A1, [...get(A1), OP.i64c, 1, OP.sub]));
  body.push(...get(A1), OP.i64c, 0, OP.ne, 0x0d, 0); // br_if loop
  body.push(0x0b, 0x0b); // end loop, end block
  body.push(...get(A0), 0x0b);
  const locals = inMemory ? [0] : [1, 15, 0x7e]; // 15 extra i64 locals (x1..x15)
  const func = [...locals, ...body];
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [1, 0x60, 1, 0x7e, 1, 0x7e]),
    ...section(3, [1, 0]),
    ...(inMemory ? section(5, [1, 0, 1]) : []),
    ...section(7, [1, 3, 0x72, 0x75, 0x6e, 0, 0]),
    ...section(10, [1, ...uleb(func.length), ...func]),
  ];
  return Uint8Array.from(bytes);
}

/** Signed LEB128 of the 64-bit value hi:lo. */
function sleb64(hi: number, lo: number): number[] {
  let v = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  v = BigInt.asIntN(64, v);
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function wasm(inMemory: boolean): { ms: number; compileMs: number; a0: bigint } {
  const t0 = performance.now();
  const mod = new Wasm.Module(wasmModule(inMemory));
  const inst = new Wasm.Instance(mod);
  const compileMs = performance.now() - t0;
  const run = inst.exports.run as (n: bigint) => bigint;
  const t1 = performance.now();
  const a0 = run(BigInt(ITER));
  return { ms: performance.now() - t1, compileMs, a0: BigInt.asUintN(64, a0) };
}

console.log(`integer loop, ${ITER} iterations x ${INSNS} instructions; load average ${loadavg()[0]!.toFixed(1)}`);
for (const [name, f] of [
  ['JS block (JIT today)', jsBlock],
  ['wasm, registers in memory', () => wasm(true)],
  ['wasm, registers in locals', () => wasm(false)],
] as const) {
  for (let round = 0; round < 2; round++) {
    const r = f();
    console.log(
      `${name.padEnd(28)} round ${round}: compile ${r.compileMs.toFixed(2)} ms, run ${r.ms.toFixed(0)} ms, ${((ITER * INSNS) / r.ms / 1000).toFixed(0)} MIPS, a0 ${r.a0.toString(16)}`,
    );
  }
}
