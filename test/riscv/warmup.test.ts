/**
 * The interpreter warm-up (src/riscv/hart/warmup.ts) tries every entry of the opcode table in M and in S mode on a
 * scratch hart, once per isolate, and a real hart made afterwards runs as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
