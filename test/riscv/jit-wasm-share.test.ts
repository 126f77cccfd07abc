/**
 * Sibling sharing of compiled blocks (src/riscv/jit/wasm/share.ts): two harts on one linear RAM. A loop the first
 * hart made hot and compiled runs on the second from the first's module (it compiles nothing, and gets there long
 * before it would have counted the loop hot itself), with the results the interpreter gives. When the code at
 * that address has changed meanwhile, the second hart runs the new code, ignores the first's block, and compiles
 * its own once the new loop is hot for it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeMachine, RAM_BASE, type Machine } from './harness.js';
import { enc } from './jit-harness.js';
import { Hart, type HartOptions } from '../../src/riscv/hart.js';

const THRESHOLD = 200;
const JIT: HartOptions['jit'] = { threshold: THRESHOLD, backend: 'wasm', batch: 1 };
const LOOPS = 8000;

/** x5 counts to LOOPS; x6 += x5 (or -= with `sub`); x8 ^= x6; then wfi. */
function program(sub: boolean): number[] {
  return [
    enc.i(2000, 0, 0, 7), // addi x7, x0, 2000
    enc.i(2, 7, 1, 7), // slli x7, x7, 2
    enc.i(1, 5, 0, 5), // loop: addi x5, x5, 1
    enc.r(sub ? 0x20 : 0, 5, 6, 0, 6), // add/sub x6, x6, x5
    enc.r(0, 6, 8, 4, 8), // xor x8, x8, x6
    enc.b(-12, 7, 5, 1), // bne x5, x7, loop
    0x10500073, // wfi
    enc.j(-4),
  ];
}

function expected(sub: boolean): { x6: bigint; x8: bigint } {
  const M = (1n << 64n) - 1n;
  let x6 = 0n;
  let x8 = 0n;
  for (let x5 = 1n; x5 <= BigInt(LOOPS); x5++) {
    x6 = (sub ? x6 - x5 : x6 + x5) & M;
    x8 ^= x6;
  }
  return { x6, x8 };
}

function load(m: Machine, words: number[]): void {
  const bytes = new Uint8Array(words.length * 4);
  const view = new DataView(bytes.buffer);
  words.forEach((w, i) => view.setUint32(i * 4, w, true));
  m.ram.write(RAM_BASE, bytes);
}

/** Runs `hart` from RAM_BASE to its wfi; the instructions it took. */
function runToWfi(hart: Hart): number {
  hart.reset(RAM_BASE);
  let n = 0;
  while (!hart.waiting && n < 10 * LOOPS * 4) n += hart.run(1000);
  assert.ok(hart.waiting, 'reached the wfi');
  return n;
}

const reg = (hart: Hart, r: number): bigint => BigInt(`0x${hart.getXHex(r)}`);

test('a loop compiled on one hart runs on its sibling from the same module', () => {
  const m = makeMachine(1 << 20, JIT, { codeShare: true });
  const sibling = new Hart(m.bus, { hartId: 1, readTime: () => 0, jit: JIT });
  load(m, program(false));
  const want = expected(false);

  runToWfi(m.hart);
  const first = m.hart.jitStats!;
  assert.ok(first.compiled >= 1, `the first hart compiled the loop (${first.compiled})`);
  assert.equal(reg(m.hart, 6), want.x6);
  assert.equal(reg(m.hart, 8), want.x8);

  runToWfi(sibling);
  const second = sibling.jitStats!;
  assert.equal(second.compiled, 0, 'the sibling compiled nothing itself');
  assert.equal(second.siblingModules, 1, "it instantiated the first hart's module");
  assert.ok(second.siblingBlocks! >= 1);
  assert.ok(second.blocks >= 1, 'and ran the loop translated');
  assert.equal(reg(sibling, 6), want.x6);
  assert.equal(reg(sibling, 8), want.x8);
  assert.equal(m.hart.jitStats!.siblingModules, 0, 'nothing came back the other way');
});

test("a sibling's block for code that has since changed is not used: the new code runs, and is compiled when hot", () => {
  const m = makeMachine(1 << 20, JIT, { codeShare: true });
  const sibling = new Hart(m.bus, { hartId: 1, readTime: () => 0, jit: JIT });
  load(m, program(false));
  runToWfi(m.hart);
  assert.ok(m.hart.jitStats!.compiled >= 1);

  load(m, program(true));
  runToWfi(sibling);
  const want = expected(true);
  assert.equal(reg(sibling, 6), want.x6);
  assert.equal(reg(sibling, 8), want.x8);
  const stats = sibling.jitStats!;
  assert.equal(stats.siblingModules, 0, "the first hart's block was not taken");
  assert.ok(stats.compiled >= 1, `the new loop was compiled here once hot (${stats.compiled})`);
});
