/** Bare-metal privileged test programs (test/riscv/programs/*.S), judged through HTIF tohost. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildElf, runProgram, PROGRAMS_DIR } from './harness.js';

const header = readFileSync(join(PROGRAMS_DIR, 'common.h'), 'utf8');
const programs = readdirSync(PROGRAMS_DIR).filter((f) => f.endsWith('.S'));

for (const name of programs) {
  test(`bare-metal program ${name} passes`, { timeout: 60_000 }, () => {
    const src = readFileSync(join(PROGRAMS_DIR, name), 'utf8').replace('#include "common.h"', header);
    const r = runProgram(buildElf(src), 20_000_000);
    assert.ok(r.result, `${name}: no tohost verdict after ${r.instructions} instructions`);
    assert.deepEqual(r.result, { kind: 'pass' }, `${name}: failed check ${r.result.kind === 'fail' ? r.result.code : ''}`);
  });
}
