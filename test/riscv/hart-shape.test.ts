/**
 * The hart's hidden class stays the one it was made with, whatever the guest does: V8 deoptimizes every optimized
 * function that relied on a hidden class when one of its fields first turns from constant to mutable or from small
 * integer to double, and the interpreter loop is the largest of them (Hart.settleFields, docs/performance.md). The
 * bare-metal programs (traps, paging, interrupts, PMP, fences, LR/SC, JIT blocks) run in a child Node that may
 * call V8's %HaveSameMap.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test('running every bare-metal program leaves the hart with the hidden class it was made with', { timeout: 300_000 }, () => {
  const script = fileURLToPath(new URL('./hart-shape.js', import.meta.url));
  // execArgv carries tsx's loader when the tests run from source.
  const out = execFileSync(process.execPath, [...process.execArgv, '--allow-natives-syntax', script], { encoding: 'utf8' });
  const results = JSON.parse(out.trim().split('\n').at(-1)!) as {
    program: string;
    jit: string;
    sameMap: boolean;
    verdict: string;
  }[];
  assert.ok(results.length >= 10, `${results.length} runs`);
  for (const r of results) {
    assert.notEqual(r.verdict, 'none', `${r.program} (${r.jit}) finished`);
    assert.ok(r.sameMap, `${r.program} on the ${r.jit} engine changed the hart's hidden class`);
  }
});
