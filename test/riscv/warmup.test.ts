/**
 * The interpreter warm-up (src/riscv/hart/warmup.ts) tries every entry of the opcode table in M and in S mode on a
 * scratch hart, once per isolate, and a real hart made afterwards runs as before.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { fromDist } from '../helpers/paths.js';
import { Hart } from '../../src/riscv/hart.js';
import { OPCODES } from '../../src/riscv/opcodes.js';
import { warmUpInterpreter } from '../../src/riscv/hart/warmup.js';
import { buildElf, runProgram } from './harness.js';
import { programSource } from './jit-harness.js';

test('the warm-up tries every opcode-table entry in both modes, once per isolate; harts made later run as before', () => {
  let made = 0;
  const stats = warmUpInterpreter((bus) => {
    made++;
    return new Hart(bus, { hartId: 0, readTime: () => 0, jit: false });
  });
  assert.ok(stats);
  assert.equal(made, 1, 'one scratch hart');
  assert.ok(stats.tried >= 2 * OPCODES.length, `${stats.tried} encodings tried for ${OPCODES.length} entries`);
  // Most encodings execute; privileged and malformed ones trap (and train the trap path).
  assert.ok(stats.retired > OPCODES.length, `${stats.retired} retired`);
  assert.equal(
    warmUpInterpreter(() => assert.fail('a second warm-up')),
    null,
  );
  for (const program of ['traps.S', 'vm.S']) {
    const r = runProgram(buildElf(programSource(program)), 20_000_000, { jit: false });
    assert.deepEqual(r.result, { kind: 'pass' }, program);
  }
});

test('after the warm-up and a full GC, an optimized run() meets no path without feedback in these programs', () => {
  // run() optimized right after the warm-up sees only the warm-up's feedback: a path it did not train deoptimizes
  // it ("Insufficient type feedback"), and in a boot each such deopt is ~100 ms of TurboFan and slow code meanwhile.
  // The GC checks the scratch hart is kept: its map, which real harts share, is held weakly by that feedback.
  // Traps, Sv39 walks and sfence, FP state, interrupts and Sstc, PMP, and the programs the JITs are tested on.
  const programs = ['traps.S', 'sfence.S', 'fpstate.S', 'jit.S', 'regions.S', 'vm.S', 'irq.S', 'pmp.S'];
  const child = fileURLToPath(new URL(`./warmup-deopt-child.${fromDist ? 'js' : 'ts'}`, import.meta.url));
  const r = spawnSync(
    process.execPath,
    [...(fromDist ? [] : ['--import', 'tsx']), '--allow-natives-syntax', '--expose-gc', '--trace-deopt', child, ...programs],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  for (const p of programs) assert.match(r.stdout, new RegExp(`program ${p.replace('.', '\\.')} \\{"kind":"pass"\\}`), p);
  const starved = r.stdout.split('\n').filter((l) => l.includes('<JSFunction run ') && l.includes('Insufficient type feedback'));
  assert.deepEqual(starved, [], 'run() deoptimized for lack of feedback');
});
