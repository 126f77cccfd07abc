/**
 * What a WebAssembly block costs to compile (`new WebAssembly.Module`) and instantiate, by how many blocks share
 * a module: the WebAssembly JIT (src/riscv/jit/wasm) batches hot blocks because of the per-module part.
 *
 *   npx tsx bench/cpu/wasm-compile-probe.ts [--blocks N]
 *
 * Every block is a distinct module body (V8 caches modules by their bytes, so repeats would be free): an
 * 8-instruction block with loads (bench/cpu's loops look like it), with a different immediate in each.
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { buildModule, translateBlock, type WasmBlock } from '../../src/riscv/jit/wasm/index.js';
import { decodedWords } from '../../src/riscv/hart.js';

const { values } = parseArgs({ options: { blocks: { type: 'string', default: '512' } } });
const N = Number(values.blocks);

const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (d: { initial: number }) => object;
      Module: new (bytes: Uint8Array) => object;
      Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

const r = (f7: number, rs2: number, rs1: number, f3: number, rd: number): number =>
  (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33;
const i = (imm: number, rs1: number, f3: number, rd: number, op = 0x13): number =>
  ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
const wordsOf = (u: number): { w: number; imm: number }[] =>
  [
    r(0, 12, 10, 0, 10),
    i(8, 10, 3, 13, 3),
    r(0, 11, 10, 4, 13),
    i((u >>> 11) & 63, 13, 1, 14),
    i(16, 10, 3, 15, 3),
    r(0, 15, 14, 6, 14),
    i((u % 2047) - 1023, 11, 0, 11),
    r(0, 14, 10, 0, 10),
  ].map((w) => decodedWords(w));
const memory = new Wasm.Memory({ initial: 512 });
const ok = (): number => 0;
const imports = { env: { mem: memory, ld: ok, st: ok, slow: ok, fp: ok } };
let unique = 0;
const block = (): WasmBlock => {
  const words = wordsOf(unique++);
  return translateBlock((s) => words[s >>> 1] ?? { w: 1, imm: 0 }, 0, 0x1000000)!;
};

console.log(`${N} distinct blocks per row (load average ${loadavg()[0]!.toFixed(1)})`);
console.log('blocks/module   compile us/block   instantiate us/block');
for (const round of [1, 2])
  for (const batch of [1, 4, 16, 64]) {
    let compile = 0;
    let instantiate = 0;
    for (let done = 0; done < N; done += batch) {
      const bytes = buildModule(Array.from({ length: batch }, block));
      const t0 = performance.now();
      const m = new Wasm.Module(bytes);
      const t1 = performance.now();
      new Wasm.Instance(m, imports);
      instantiate += performance.now() - t1;
      compile += t1 - t0;
    }
    const per = (ms: number): string => ((ms * 1000) / N).toFixed(0).padStart(8);
    console.log(`${String(batch).padStart(6)} (round ${round})  ${per(compile)}           ${per(instantiate)}`);
  }
