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
import {
  DEFAULT_WASM_SUPERVISOR_THRESHOLD,
  DEFAULT_WASM_THRESHOLD,
  PageBlocks,
  pageThreshold,
  parseJitSetting,
} from '../../src/riscv/jit/index.js';

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
  // As translated on a board with several harts: state addresses from the hb parameter (sibling sharing).
  test(`${name}: WebAssembly JIT (code for any hart) matches the interpreter`, { timeout: 120_000 }, () => {
    assert.equal(assertJitMatchesInterpreter(name, { threshold: 0, backend: 'wasm', batch: 8 }, true).backend, 'wasm');
  });
}

test('jit.S: the faulting loop retires the same instruction count under the WebAssembly JIT', { timeout: 120_000 }, () => {
  const ref = runWithJit('jit.S', false);
  const got = runWithJit('jit.S', { threshold: 0, backend: 'wasm' });
  assert.equal(got.regs[21], ref.regs[21]);
  assert.notEqual(Number.parseInt(ref.regs[21]!, 16), 0);
});

test('pages first run in S-mode wait for supervisorThreshold entries; the default engine sets it', { timeout: 120_000 }, () => {
  // jit.S calls code 200 times from an S-mode loop: translated at threshold 3, not when S-mode pages need 1000.
  const both = assertJitMatchesInterpreter('jit.S', { threshold: 3, backend: 'wasm', batch: 1 });
  const kernelCold = assertJitMatchesInterpreter('jit.S', {
    threshold: 3,
    supervisorThreshold: 1000,
    backend: 'wasm',
    batch: 1,
  });
  assert.ok(kernelCold.blocks < both.blocks, `fewer blocks translated (${kernelCold.blocks} < ${both.blocks})`);
  const jit = new WasmBlockJit({ memory: {}, buffer: new ArrayBuffer(65536), base: 0 }, parseJitSetting(undefined)!);
  assert.equal(jit.newPage(7, true).threshold, DEFAULT_WASM_SUPERVISOR_THRESHOLD);
  assert.equal(jit.newPage(7, false).threshold, DEFAULT_WASM_THRESHOLD);
  assert.ok(DEFAULT_WASM_SUPERVISOR_THRESHOLD > DEFAULT_WASM_THRESHOLD);
  // An explicit threshold holds for every mode.
  assert.equal(pageThreshold(parseJitSetting('wasm-threshold=50')!, true), 50);
  assert.equal(pageThreshold(parseJitSetting('wasm-eager')!, true), 0);
});

// ---- golden test of generated modules ----
// The blocks the JS JIT's golden test pins too, and one of division and multiply-high.
const WASM_GOLDEN_BLOCKS: Record<string, number[]> = {
  ...GOLDEN_BLOCKS,
  // div (division by zero and overflow cases) and mulhu (the module's multiply-high function), then a jal
  'div and mulhu': [enc.r(1, 11, 10, 4, 12), enc.r(1, 11, 10, 3, 13), 0x0000006f | (8 << 21)],
  // amoadd.d a0, a2, (a1); lr.w a3, (a1); sc.w a4, a2, (a1) (WebAssembly atomics behind a store TLB hit), then
  // amomax.d a5, a2, (a1) (the hart's), then a jal
  atomics: [
    enc.r(0, 12, 11, 3, 10, 0x2f),
    enc.r(2 << 2, 0, 11, 2, 13, 0x2f),
    enc.r(3 << 2, 12, 11, 2, 14, 0x2f),
    enc.r(20 << 2, 12, 11, 3, 15, 0x2f),
    0x0000006f | (8 << 21),
  ],
  // frrm a0, frflags a1, frcsr a2 (from the FP_FAST_OFF word while FS is on), then a jal
  'fp csr reads': [enc.i(2, 0, 2, 10, 0x73), enc.i(1, 0, 2, 11, 0x73), enc.i(3, 0, 2, 12, 0x73), 0x0000006f | (8 << 21)],
};

// A region: a loop block whose branch leaves to a block that branches back to the loop (translated with every
// in-page target hot, so the second block joins the first's function as segment 1).
const GOLDEN_REGION = [
  enc.i(1, 10, 0, 10), // 0: addi a0, a0, 1
  enc.b(12, 11, 10, 4), // 4: blt a0, a1, 16 (past the jump: another block)
  enc.j(-8), // 8: jal x0, 0 (the loop)
  enc.i(0, 0, 0, 0), // 12: nop
  enc.i(2, 12, 0, 12), // 16: addi a2, a2, 2
  enc.b(-20, 11, 12, 4), // 20: blt a2, a1, 0 (back to the region's start: a transfer inside the function)
];
const readWords =
  (insns: number[]) =>
  (slot: number): { w: number; imm: number } => {
    const words = insns.map((i) => decodedWords(i));
    return words[slot >>> 1] ?? { w: 1, imm: 0 }; // past the end: PAGE_END
  };

/** The state region of the golden blocks translated for one hart. */
const GOLDEN_BASE = 0x1000000;

function goldenText(): string {
  const parts: string[] = [];
  const entries = Object.entries(WASM_GOLDEN_BLOCKS).map(([name, insns]) => [name, insns, null, GOLDEN_BASE] as const);
  for (const [name, insns, hot, base] of [
    ...entries,
    ['region of two blocks', GOLDEN_REGION, () => true, GOLDEN_BASE] as const,
    // Code any hart can run (sibling sharing): state addresses from the hb parameter, TLB indices plus hb.
    ['memory and csr, for any hart', GOLDEN_BLOCKS['memory and csr']!, null, null] as const,
  ]) {
    const block = translateBlock(readWords(insns), 0, base, true, hot);
    parts.push(`== ${name} (${block?.length} instructions, ${block ? buildModule([block]).length : 0} bytes)\n${block?.text}\n`);
  }
  return parts.join('\n');
}

test('generated WebAssembly for a few blocks and a region matches the golden file, and each module compiles', () => {
  const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
  for (const insns of Object.values(WASM_GOLDEN_BLOCKS)) {
    const block = translateBlock(readWords(insns), 0, GOLDEN_BASE)!;
    assert.equal(block.segments, 1);
    assert.ok(wasm.validate(buildModule([block])), 'the module validates');
  }
  const region = translateBlock(readWords(GOLDEN_REGION), 0, GOLDEN_BASE, false, () => true)!;
  assert.equal(region.segments, 2, 'the block at 16 joined the region');
  assert.equal(region.length, 5);
  assert.ok(wasm.validate(buildModule([region])), 'the region module validates');
  const alone = translateBlock(readWords(GOLDEN_REGION), 0, GOLDEN_BASE, false, (slot) => slot !== 8)!;
  assert.equal(alone.segments, 1, 'a cold target stays outside');
  assertGolden('jit-wasm-golden.txt', goldenText());
});

test('regions.S: blocks run inside regions, and without regions the same program agrees too', { timeout: 120_000 }, () => {
  const got = assertJitMatchesInterpreter('regions.S', { threshold: 0, backend: 'wasm' });
  assert.ok(got.regionSegments > 0, `blocks joined regions (${got.regionSegments})`);
  const hot = assertJitMatchesInterpreter('regions.S', { threshold: 50, backend: 'wasm', batch: 1 });
  assert.ok(hot.regionSegments > 0, `blocks joined regions when hot (${hot.regionSegments})`);
  const without = assertJitMatchesInterpreter('regions.S', { threshold: 0, backend: 'wasm', regions: false });
  assert.equal(without.regionSegments, 0);
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
