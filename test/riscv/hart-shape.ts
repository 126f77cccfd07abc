/**
 * Run by hart-shape.test.ts in a Node with --allow-natives-syntax: runs every bare-metal program on a hart and
 * prints whether the hart still has the hidden class (map) of a freshly made one.
 */
import { buildElf, makeMachine, runProgram } from './harness.js';
import { JIT_PROGRAMS, programSource } from './jit-harness.js';
import type { Hart } from '../../src/riscv/hart.js';

// V8's intrinsic, reachable only under --allow-natives-syntax; written through `new Function` so TypeScript and
// the test runner's own process never parse it.
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: Hart, b: Hart) => boolean;

const fresh = makeMachine(undefined, false).hart;
const results: { program: string; jit: string; sameMap: boolean; verdict: string }[] = [];
for (const jit of [false, undefined] as const) {
  for (const program of JIT_PROGRAMS) {
    const r = runProgram(buildElf(programSource(program)), 20_000_000, { jit });
    results.push({
      program,
      jit: jit === false ? 'interpreter' : 'default',
      sameMap: haveSameMap(r.hart, fresh),
      verdict: r.result ? JSON.stringify(r.result) : 'none',
    });
  }
}
console.log(JSON.stringify(results));
