/**
 * The block JIT (src/riscv/jit) against the interpreter, the reference: every bare-metal program (traps,
 * interrupts, PMP, Sv39/Sv48, and programs/jit.S for faults inside looping blocks, self-modifying code,
 * interrupts during long loops and remapped code pages) runs on both engines, and the exceptions taken
 * (cause, epc, tval, in order), the retired-instruction count and the final registers must agree. Golden tests
 * pin the code generated for a few blocks (TYPEVISOR_UPDATE_GOLDEN=1 rewrites test/riscv/jit-golden.txt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildElf, loadElf, makeMachine } from './harness.js';
import {
  assertGolden,
  assertJitMatchesInterpreter,
  GOLDEN_BLOCKS,
  JIT_PROGRAMS,
  programSource,
  runWithJit,
} from './jit-harness.js';
import { parseElf } from '../../src/machine/loaders/elf.js';
import { Htif } from '../../src/riscv/htif.js';
import { decodedWords, type HartOptions } from '../../src/riscv/hart.js';
import { generateBlock } from '../../src/riscv/jit/index.js';

for (const name of JIT_PROGRAMS) {
  for (const [label, jit] of [
    ['every block translated on first entry', { threshold: 0 }],
    ['blocks translated when hot', { threshold: 3 }],
  ] as const) {
    test(`${name}: JIT (${label}) matches the interpreter`, { timeout: 120_000 }, () => {
      assertJitMatchesInterpreter(name, jit);
    });
  }
}

test('jit.S: the faulting loop retires the same instruction count on both engines', { timeout: 120_000 }, () => {
  // s6 (x22) holds minstret across the loop with its one fault, read by the guest itself.
  const ref = runWithJit('jit.S', false);
  const got = runWithJit('jit.S', { threshold: 0 });
  assert.equal(got.regs[21], ref.regs[21]);
  assert.notEqual(Number.parseInt(ref.regs[21]!, 16), 0);
});

test(
  'an idle trim drops every translation (they were kept for good), and the program runs on alike',
  { timeout: 120_000 },
  () => {
    const elf = parseElf(buildElf(programSource('vm.S')));
    const run = (jit: HartOptions['jit'], trimEvery: number) => {
      const m = makeMachine(undefined, jit);
      loadElf(m, elf);
      const htif = Htif.fromSymbols(elf.symbols, m.ram);
      let heldBeforeTrim = 0;
      let slices = 0;
      let result;
      while (!result && m.hart.instret < 20_000_000) {
        const n = m.hart.run(1000);
        m.clint.time += n === 0 ? 1000 : Math.max(1, Math.floor(n / 100));
        m.clint.update();
        result = htif?.poll();
        if (trimEvery > 0 && ++slices % trimEvery === 0) {
          heldBeforeTrim = Math.max(heldBeforeTrim, m.hart.jitTranslationsHeld);
          m.hart.trimDecodeCache();
          assert.equal(m.hart.jitTranslationsHeld, 0, 'no translation is held after the trim');
        }
      }
      const regs: string[] = [];
      for (let i = 1; i < 32; i++) regs.push(m.hart.getXHex(i));
      return { verdict: JSON.stringify(result), instret: m.hart.instret, regs, heldBeforeTrim };
    };
    const ref = run(false, 0);
    const got = run({ threshold: 0 }, 1);
    assert.equal(ref.verdict, JSON.stringify({ kind: 'pass' }));
    assert.ok(got.heldBeforeTrim > 0, 'translations were held before a trim');
    assert.equal(got.verdict, ref.verdict);
    assert.equal(got.instret, ref.instret);
    assert.deepEqual(got.regs, ref.regs);
  },
);

// ---- golden tests of generated code ----

function goldenText(): string {
  const parts: string[] = [];
  for (const [name, insns] of Object.entries(GOLDEN_BLOCKS)) {
    const words = insns.map((i) => decodedWords(i));
    const read = (slot: number) => words[slot >>> 1] ?? { w: 1, imm: 0 }; // past the end: PAGE_END
    const src = generateBlock(read, 0);
    parts.push(`== ${name} (${src?.length} instructions)\n${src?.body}\n`);
  }
  return parts.join('\n');
}

test('generated code for a few blocks matches the golden file', () => {
  assertGolden('jit-golden.txt', goldenText());
});
