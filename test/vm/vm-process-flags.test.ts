import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VM_PROCESS_FLAGS_ENV, VM_PROCESS_V8_FLAGS, vmProcessNodeFlags } from '../../src/vm/vm-process-flags.js';

test('a VM process gets its old-space limit and the tuned flags', () => {
  assert.deepEqual(vmProcessNodeFlags(256, {}), ['--max-old-space-size=256', ...VM_PROCESS_V8_FLAGS]);
});

test('the override replaces the tuned flags, keeps the old-space limit and drops what is not a flag', () => {
  const env = { [VM_PROCESS_FLAGS_ENV]: ' --v8-pool-size=1  --single-threaded-gc ; rm ' };
  assert.deepEqual(vmProcessNodeFlags(128, env), ['--max-old-space-size=128', '--v8-pool-size=1', '--single-threaded-gc']);
  assert.deepEqual(vmProcessNodeFlags(128, { [VM_PROCESS_FLAGS_ENV]: '' }), ['--max-old-space-size=128']);
});
