/**
 * Child process of warmup.test.ts (run with --allow-natives-syntax --expose-gc --trace-deopt): the interpreter
 * warm-up, a full GC, then `Hart.run` optimized at once, from nothing but the warm-up's feedback, and bare-metal
 * programs run on it. V8 prints every deoptimization; the test reads them.
 */
import { Hart } from '../../src/riscv/hart.js';
import { warmUpInterpreter } from '../../src/riscv/hart/warmup.js';
import { buildElf, runProgram } from './harness.js';
import { programSource } from './jit-harness.js';

const programs = process.argv.slice(2);
// Built before the warm-up: building compiles nothing of run(), and keeps the toolchain out of the window.
const elves = programs.map((p) => buildElf(programSource(p)));
warmUpInterpreter((bus) => new Hart(bus, { hartId: 0, readTime: () => 0, jit: false }));
(globalThis as unknown as { gc(): void }).gc();
// Natives syntax is only reachable through the Function constructor here (tsc would not parse it).
new Function('f', '%OptimizeFunctionOnNextCall(f)')(Hart.prototype.run);
elves.forEach((elf, i) => {
  const r = runProgram(elf, 20_000_000, { jit: false });
  console.log(`program ${programs[i]} ${JSON.stringify(r.result)}`);
});
