/** HTIF tohost verdicts: 1 = pass, (n << 1) | 1 = fail n, other values are acknowledged and ignored. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestRam } from '../../src/machine/memory.js';
import { Htif } from '../../src/riscv/htif.js';
import { buildElf, runProgram } from './harness.js';

test('tohost values map to pass, fail codes and exit statuses', () => {
  const ram = new GuestRam(1 << 20);
  const htif = Htif.fromSymbols(new Map([['tohost', 0x8000_1000]]), ram)!;
  assert.equal(htif.poll(), undefined);
  ram.writeU32(0x8000_1000, 1);
  assert.deepEqual(htif.poll(), { kind: 'pass' });
  assert.equal(Htif.exitStatus({ kind: 'pass' }), 0);
  ram.writeU32(0x8000_1000, (7 << 1) | 1);
  assert.deepEqual(htif.poll(), { kind: 'fail', code: 7 });
  assert.equal(Htif.exitStatus({ kind: 'fail', code: 7 }), 7);
  ram.writeU32(0x8000_1000, 0x100); // a proxy syscall request: unsupported, cleared
  assert.equal(htif.poll(), undefined);
  assert.equal(ram.readU32(0x8000_1000), 0);
  assert.equal(Htif.fromSymbols(new Map(), ram), undefined);
});

test('a bare-metal program reporting failure 3 through tohost', () => {
  const src = `
.option norelax
.section .tohost, "aw", @progbits
.align 6
.globl tohost
tohost: .dword 0
.text
.globl _start
_start:
  li t0, (3 << 1) | 1
  la t1, tohost
  sd t0, 0(t1)
1: j 1b
`;
  const r = runProgram(buildElf(src), 100_000);
  assert.deepEqual(r.result, { kind: 'fail', code: 3 });
});
