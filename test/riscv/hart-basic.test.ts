import { test } from 'node:test';
import { cpu, writeCsr64 } from './runner.js';
import { CSR_MTVEC } from '../../src/riscv/csr.js';

test('integer loop, shifts, mul, loads and stores', () => {
  const t = cpu(
    `
  li a0, 0
  li a1, 1000
1: addi a0, a0, 3
  addi a1, a1, -1
  bnez a1, 1b
  li t0, -1
  srli t1, t0, 1
  mul t2, t0, t0
  la t3, data
  ld t4, 0(t3)
  sd t4, 8(t3)
  lw t5, 8(t3)
`,
    `.data\n.align 3\ndata: .dword 0x1234567890abcdef\n .dword 0\n`,
  ).run();
  t.expectReg('a0', 3000n).expectReg('t1', 0x7fffffffffffffffn).expectReg('t2', 1n);
  t.expectReg('t4', 0x1234567890abcdefn).expectReg('t5', 0xffffffff90abcdefn);
});

test('after a reset the recycled decoded-page arrays decode memory afresh', () => {
  // reset() keeps the dropped pages' arrays for the next pages decoded (HartMmu.dropDecodeCache): the new code at
  // the same address must run, not the old decode.
  const t = cpu(`
.option norvc
  li a0, 1
`).run();
  t.expectReg('a0', 1n);
  const start = t.sym('_start');
  t.hart.reset(start);
  writeCsr64(t.hart, CSR_MTVEC, t.sym('_trap'));
  t.poke(start, new Uint8Array(new Uint32Array([0x00200513]).buffer)); // addi a0, zero, 2
  t.run().expectReg('a0', 2n);
});
