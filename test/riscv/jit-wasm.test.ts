/**
 * The WebAssembly block JIT (src/riscv/jit/wasm) against the interpreter on the bare-metal programs (traps,
 * interrupts, PMP, Sv39/Sv48, and programs/jit.S: faults inside looping blocks, self-modifying code, interrupts
 * during long loops, remapped code pages): exceptions (cause, epc, tval, in order), retired-instruction counts
 * and final registers must agree. The harts run on linear RAM, whose memory the blocks import. A golden test pins
 * the module generated for a few blocks (TYPEVISOR_UPDATE_GOLDEN=1 rewrites test/riscv/jit-wasm-golden.txt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden, assertJitMatchesInterpreter, enc, GOLDEN_BLOCKS, JIT_PROGRAMS, runWithJit } from './jit-harness.js';
import { decodedWords } from '../../src/riscv/hart.js';
import { buildModule, translateBlock, WasmBlockJit } from '../../src/riscv/jit/wasm/index.js';
import { PageBlocks } from '../../src/riscv/jit/index.js';

for (const name of JIT_PROGRAMS) {
  for (const [label, jit] of [
    ['every block translated on first entry', { threshold: 0, backend: 'wasm' }],
    ['blocks translated when hot', { threshold: 3, backend: 'wasm', batch: 1 }],
    ['every block on first entry, compiled in batches of 8', { threshold: 0, backend: 'wasm', batch: 8 }],
  ] as const) {
    test(`${name}: WebAssembly JIT (${label}) matches the interpreter`, { timeout: 120_000 }, () => {
      assert.equal(assertJitMatchesInterpreter(name, jit).backend, 'wasm');
    });
  }
}

test('jit.S: the faulting loop retires the same instruction count under the WebAssembly JIT', { timeout: 120_000 }, () => {
  const ref = runWithJit('jit.S', false);
  const got = runWithJit('jit.S', { threshold: 0, backend: 'wasm' });
  assert.equal(got.regs[21], ref.regs[21]);
  assert.notEqual(Number.parseInt(ref.regs[21]!, 16), 0);
});

// ---- golden test of generated modules ----
// The blocks the JS JIT's golden test pins too, and one of division and multiply-high.
const WASM_GOLDEN_BLOCKS: Record<string, number[]> = {
  ...GOLDEN_BLOCKS,
  // div (division by zero and overflow cases) and mulhu (the module's multiply-high function), then a jal
  'div and mulhu': [enc.r(1, 11, 10, 4, 12), enc.r(1, 11, 10, 3, 13), 0x0000006f | (8 << 21)],
};

function goldenText(): string {
  const parts: string[] = [];
  for (const [name, insns] of Object.entries(WASM_GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const read = (slot: number) => words[slot >>> 1] ?? { w: 1, imm: 0 }; // past the end: PAGE_END
    const block = translateBlock(read, 0, 0x1000000, true);
    parts.push(`== ${name} (${block?.length} instructions, ${block ? buildModule([block]).length : 0} bytes)\n${block?.text}\n`);
  }
  return parts.join('\n');
}

test('generated WebAssembly for a few blocks matches the golden file, and each module compiles', () => {
  for (const insns of Object.values(WASM_GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const block = translateBlock((slot) => words[slot >>> 1] ?? { w: 1, imm: 0 }, 0, 0x1000000)!;
    const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
    assert.ok(wasm.validate(buildModule([block])), 'the module validates');
  }
  assertGolden('jit-wasm-golden.txt', goldenText());
});

test('when the engine refuses a module the guest stays on the interpreter, translating nothing', () => {
  // A state region whose "memory" is not a WebAssembly.Memory: instantiating fails (LinkError).
  const jit = new WasmBlockJit({ memory: {}, buffer: new ArrayBuffer(65536), base: 0 }, { threshold: 0, backend: 'wasm' });
  jit.bind({ region: jit.region, ld: () => 0, st: () => 0, slow: () => 0, fp: () => 0, wrap: () => () => 0 });
  assert.match(jit.failure ?? '', /Memory/);
  const words = WASM_GOLDEN_BLOCKS['integer loop']!.map((i) => decodedWords(i));
  const blocks = new PageBlocks();
  assert.equal(
    jit.lookup(blocks, 0, (slot) => words[slot >>> 1] ?? { w: 1, imm: 0 }),
    null,
  );
  assert.equal(jit.stats.blocks, 0);
});
