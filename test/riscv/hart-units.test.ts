/** Directed unit tests of the hart through the fluent runner: edge values, every instruction class, hooks. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpu } from './runner.js';
import {
  CSR_MCAUSE,
  CSR_MEPC,
  CSR_MIE,
  CSR_MSTATUS,
  CSR_MTVAL,
  CSR_FFLAGS,
  CSR_MEDELEG,
  CSR_SEPC,
  MSTATUS_MIE,
  MIP_MTIP,
  IRQ_MTI,
  IRQ_MEI,
  IRQ_SEI,
  PRV_S,
  PRV_U,
  MSTATUS_FS,
} from '../../src/riscv/hart.js';

const MIN64 = -(1n << 63n);
const INT = 1n << 63n;

describe('integer edge values', () => {
  test('division and remainder corner cases', () => {
    cpu(`
      div a0, s0, s1
      rem a1, s0, s1
      div a2, s0, zero
      rem a3, s0, zero
      divu a4, s0, zero
      remu a5, s0, zero
      divw a6, s2, s1
      remw a7, s2, s1
      divuw t0, s2, zero
      remuw t1, s2, zero
      divu t2, s3, s4
      remu t3, s3, s4
      div t4, s5, s6
      rem t5, s5, s6
    `)
      .reg('s0', MIN64)
      .reg('s1', -1)
      .reg('s2', -0x80000000)
      .reg('s3', 0xfedcba9876543210n)
      .reg('s4', 0x1234567n)
      .reg('s5', -7)
      .reg('s6', 2)
      .run()
      .expectReg('a0', MIN64)
      .expectReg('a1', 0)
      .expectReg('a2', -1)
      .expectReg('a3', MIN64)
      .expectReg('a4', -1)
      .expectReg('a5', MIN64)
      .expectReg('a6', -0x80000000)
      .expectReg('a7', 0)
      .expectReg('t0', -1)
      .expectReg('t1', -0x80000000)
      .expectReg('t2', 0xfedcba9876543210n / 0x1234567n)
      .expectReg('t3', 0xfedcba9876543210n % 0x1234567n)
      .expectReg('t4', -3)
      .expectReg('t5', -1);
  });

  test('multiplication high halves', () => {
    const a = 0xfedcba9876543210n;
    const b = 0x8000000000000001n;
    const sa = BigInt.asIntN(64, a);
    const sb = BigInt.asIntN(64, b);
    cpu('mul a0, s0, s1\nmulh a1, s0, s1\nmulhu a2, s0, s1\nmulhsu a3, s0, s1\nmulw a4, s0, s1')
      .reg('s0', a)
      .reg('s1', b)
      .run()
      .expectReg('a0', (a * b) & ((1n << 64n) - 1n))
      .expectReg('a1', (sa * sb) >> 64n)
      .expectReg('a2', (a * b) >> 64n)
      .expectReg('a3', (sa * b) >> 64n)
      .expectReg('a4', BigInt.asIntN(32, BigInt.asIntN(32, a) * BigInt.asIntN(32, b)));
  });

  test('shifts by 0, 31, 32 and 63 and W sign extension', () => {
    cpu(`
      slli a0, s0, 63
      srli a1, s0, 63
      srai a2, s0, 63
      sll a3, s0, s1
      srl a4, s0, s1
      sra a5, s0, s1
      sraiw a6, s0, 31
      srliw a7, s0, 0
      addiw t0, s2, 1
      sllw t1, s2, s1
      slli t2, s0, 0
    `)
      .reg('s0', 0x80000000_80000001n)
      .reg('s1', 32)
      .reg('s2', 0x7fffffff)
      .run()
      .expectReg('a0', INT)
      .expectReg('a1', 1)
      .expectReg('a2', -1)
      .expectReg('a3', 0x80000001_00000000n)
      .expectReg('a4', 0x80000000n)
      .expectReg('a5', 0xffffffff_80000000n)
      .expectReg('a6', -1)
      .expectReg('a7', 0x80000001n | 0xffffffff_00000000n)
      .expectReg('t0', -0x80000000)
      .expectReg('t1', 0x7fffffff)
      .expectReg('t2', 0x80000000_80000001n);
  });

  test('compares, lui/auipc and x0', () => {
    const t = cpu(`
      slt a0, s0, s1
      sltu a1, s0, s1
      slti a2, s0, -1
      sltiu a3, s1, -1
      lui a4, 0x80000
      here: auipc a5, 0
      addi zero, zero, 5
      add a6, zero, zero
    `)
      .reg('s0', -5)
      .reg('s1', 3)
      .run();
    t.expectReg('a0', 1)
      .expectReg('a1', 0)
      .expectReg('a2', 1)
      .expectReg('a3', 1)
      .expectReg('a4', -0x80000000)
      .expectReg('a5', t.sym('here'))
      .expectReg('zero', 0)
      .expectReg('a6', 0);
  });

  test('ctzw counts only the low word (qemu 7.2 gets this wrong)', () => {
    cpu('ctzw a0, s0\nctz a1, s0\nclzw a2, s1\ncpop a3, s0')
      .reg('s0', INT)
      .reg('s1', 0xffffffff_00010000n)
      .run()
      .expectReg('a0', 32)
      .expectReg('a1', 63)
      .expectReg('a2', 15)
      .expectReg('a3', 1);
  });
});

describe('instruction classes', () => {
  test('compressed instructions', () => {
    cpu(
      `
      c.li a0, 5
      c.addi a0, -2
      c.slli a0, 4
      c.mv a1, a0
      c.add a1, a0
      c.srai a1, 1
      c.lui a2, 1
      c.addiw a2, -1
      la a3, buf
      c.sd a1, 8(a3)
      c.ld a4, 8(a3)
      c.sw a0, 0(a3)
      c.lw a5, 0(a3)
      c.andi a5, 15
      c.bnez a0, 1f
      c.li a5, 1
    1:
      c.j 2f
      c.li a5, 2
    2:
    `,
      '.data\n.align 3\nbuf: .dword 0, 0\n',
    )
      .run()
      .expectReg('a0', 48)
      .expectReg('a1', 48)
      .expectReg('a2', 4095)
      .expectReg('a4', 48)
      .expectReg('a5', 0);
  });

  test('loads sign/zero extend and misaligned accesses work', () => {
    cpu(
      `
      la a0, buf
      lb a1, 7(a0)
      lbu a2, 7(a0)
      lh a3, 6(a0)
      lhu a4, 6(a0)
      lw a5, 4(a0)
      lwu a6, 4(a0)
      ld a7, 1(a0)
      sw a5, 9(a0)
      ld t0, 8(a0)
    `,
      '.data\n.align 3\nbuf: .dword 0x8182838485868788, 0\n',
    )
      .run()
      .expectReg('a1', -0x7f)
      .expectReg('a2', 0x81)
      .expectReg('a3', -0x7e7e)
      .expectReg('a4', 0x8182)
      .expectReg('a5', BigInt.asIntN(32, 0x81828384n))
      .expectReg('a6', 0x81828384n)
      .expectReg('a7', 0x0081828384858687n)
      .expectReg('t0', 0x8182838400n);
  });

  test('LR/SC reservation and AMO sign extension', () => {
    cpu(
      `
      la a0, buf
      sc.d a1, s0, (a0)
      lr.d a2, (a0)
      sc.d a3, s0, (a0)
      ld a4, 0(a0)
      sc.d a5, s0, (a0)
      amomin.w a6, s1, (a0)
      lw a7, 0(a0)
      amomaxu.d t0, s1, (a0)
      ld t1, 0(a0)
    `,
      '.data\n.align 3\nbuf: .dword 7\n',
    )
      .reg('s0', 0x100000000n)
      .reg('s1', -2)
      .run()
      .expectReg('a1', 1)
      .expectReg('a2', 7)
      .expectReg('a3', 0)
      .expectReg('a4', 0x100000000n)
      .expectReg('a5', 1)
      .expectReg('a6', 0)
      .expectReg('a7', -2)
      .expectReg('t0', 0x1fffffffen)
      .expectReg('t1', -2);
  });

  test('a 32-bit instruction straddling a page boundary executes', () => {
    cpu(`
      j 1f
      .balign 4096
      .skip 4094
    1:
      .option norvc
      addi a0, zero, 77
      addi a1, a0, 1
      .option rvc
    `)
      .run()
      .expectReg('a0', 77)
      .expectReg('a1', 78);
  });

  test('self-modifying code: a store then fence.i executes the new instruction', () => {
    cpu(`
      la a3, patch
      li a1, 0x02a00513
      li a2, 0
    again:
      .option norvc
    patch:
      addi a0, zero, 1
      .option rvc
      bnez a2, done
      sw a1, 0(a3)
      fence.i
      li a2, 1
      j again
    done:
    `)
      .run()
      .expectReg('a0', 42);
  });

  test('code changed behind the hart (DMA) runs after flushDecodeCache (remote fence.i)', () => {
    const t = cpu('.option norvc\npatch: addi a0, zero, 1\n.option rvc').run();
    t.expectReg('a0', 1);
    t.m.ram.writeU32(t.sym('patch'), 0x02a00513); // addi a0, zero, 42
    t.hart.flushDecodeCache();
    t.hart.pc = t.sym('_start');
    t.run().expectReg('a0', 42);
    // Unchanged pages survive the flush (re-validated, not re-decoded) and still run correctly.
    t.hart.flushDecodeCache();
    t.hart.pc = t.sym('_start');
    t.hart.setX(10, 0);
    t.run().expectReg('a0', 42);
  });

  test('untouched RAM reads as zero; the first write (hart or DMA) remaps it and loads see the new data', () => {
    const t = cpu('ld a0, 0(s0)\nsd s1, 8(s0)\nld a1, 8(s0)\nld a2, 0(s2)')
      .reg('s0', 0x80800000)
      .reg('s1', 77)
      .reg('s2', 0x80a00000)
      .run();
    t.expectReg('a0', 0).expectReg('a1', 77).expectReg('a2', 0);
    t.m.ram.writeU32(0x80a00000, 0x1234); // a device writes a chunk the hart has only read (and cached) so far
    t.hart.pc = t.sym('_start');
    t.run().expectReg('a2', 0x1234);
  });

  test('FP loads/stores/moves and arithmetic through the decoder', () => {
    const t = cpu(
      `
      la a0, buf
      flw fa0, 0(a0)
      fld fa1, 8(a0)
      fadd.d fa2, fa1, fa1
      fsd fa2, 16(a0)
      ld a1, 16(a0)
      fmv.x.w a2, fa0
      fcvt.l.d a3, fa1
      fmv.d.x fa3, a1
      fdiv.d fa4, fa3, fa1
      fcvt.w.d a4, fa4
      li t0, 3
      fcvt.s.w fa5, t0
      li t0, 10
      fcvt.s.w fa6, t0
      fdiv.s fa7, fa5, fa6
      csrr a5, fflags
      fsw fa7, 24(a0)
      lwu a6, 24(a0)
      c.fld fs0, 8(a0)
      fsgnjn.d fs1, fs0, fs0
      fmv.x.d a7, fs1
    `,
      '.data\n.align 3\nbuf: .word 0x3fc00000, 0\n .dword 0x4004000000000000, 0, 0\n',
    )
      .csr(CSR_MSTATUS, 1 << 13)
      .run();
    t.expectReg('a1', 0x4014000000000000n)
      .expectReg('a2', 0x3fc00000)
      .expectReg('a3', 2)
      .expectReg('a4', 2)
      .expectReg('a5', 1)
      .expectReg('a6', 0x3e99999an)
      .expectReg('a7', 0xc004000000000000n)
      .expectFreg('fa0', 0xffffffff_3fc00000n);
    assert.equal(BigInt(t.hart.mstatus & MSTATUS_FS), BigInt(MSTATUS_FS), 'FS is Dirty');
    assert.equal(t.csrValue(CSR_FFLAGS), 1n);
  });
});

describe('traps and hooks', () => {
  test('illegal instruction tval holds the bits (compressed: 16 bits)', () => {
    cpu('.2byte 0x0000').run().expectTrap(2, 0);
    cpu('.4byte 0x0000707f').run().expectTrap(2, 0x707f);
    cpu('csrw 0x7c0, a0').run().expectTrap(2, 0x7c051073);
  });

  test('instructions and CSRs that need more privilege trap in U and S', () => {
    cpu('mret').priv(PRV_S).run().expectTrap(2, 0x30200073);
    cpu('sfence.vma').priv(PRV_U).run().expectTrap(2, 0x12000073);
    cpu('csrr a0, sstatus').priv(PRV_U).run().expectTrap(2, 0x10002573);
    cpu('wfi').priv(PRV_U).run().expectTrap(2, 0x10500073);
  });

  test('ecall causes per privilege, delegation and the S-mode ecall hook', () => {
    cpu('ecall').run().expectTrap(11, 0);
    cpu('ecall').priv(PRV_U).run().expectTrap(8, 0);
    const t = cpu('ecall')
      .priv(PRV_U)
      .csr(CSR_MEDELEG, 1 << 8)
      .strap()
      .run();
    t.expectSTrap(8, 0);
    assert.equal(t.csrValue(CSR_SEPC), BigInt(t.sym('_start')));
    let calls = 0;
    const h = cpu('li a7, 7\necall\nli a0, 1').priv(PRV_S);
    h.hart.ecallHandler = (hart) => {
      calls++;
      hart.setX(11, hart.getX(17) * 2);
      return true;
    };
    h.run().expectReg('a1', 14).expectReg('a0', 1);
    assert.equal(calls, 1);
  });

  test('misaligned AMO faults with the address; access fault outside RAM', () => {
    const t = cpu('addi a0, a0, 2\namoswap.w a1, a1, (a0)').reg('a0', 0x80001000).run();
    t.expectTrap(6, 0x80001002);
    cpu('ld a1, 0(a0)').reg('a0', 0x1000).run().expectTrap(5, 0x1000);
    cpu('sd a1, 0(a0)').reg('a0', -8).run().expectTrap(7, -8);
  });

  test('interrupts through setPending: priority and global enables', () => {
    const t = cpu('1: j 1b');
    t.csr(CSR_MIE, MIP_MTIP | (1 << IRQ_MEI)).csr(CSR_MSTATUS, MSTATUS_MIE);
    t.hart.setPending(IRQ_MTI, true);
    t.hart.setPending(IRQ_MEI, true);
    t.run(10);
    assert.equal(t.csrValue(CSR_MCAUSE), INT | 11n);
    assert.equal(t.csrValue(CSR_MTVAL), 0n);
    // SEIP from the PLIC reads back in mip ORed with the software bit, and is not cleared by csrc.
    t.hart.setPending(IRQ_SEI, true);
    assert.equal((t.hart.mip >> IRQ_SEI) & 1, 1);
  });

  test('an interrupt raised by an MMIO store is taken before the next instruction', () => {
    const t = cpu('sw a1, 0(a2)\nafter: li a0, 1\nj after');
    t.csr(CSR_MIE, 1 << 3)
      .csr(CSR_MSTATUS, MSTATUS_MIE)
      .reg('a1', 1)
      .reg('a2', 0x2000000);
    t.run(1000);
    assert.equal(t.csrValue(CSR_MCAUSE), INT | 3n);
    assert.equal(t.csrValue(CSR_MEPC), BigInt(t.sym('after')), 'mepc points after the store');
    assert.equal(t.x('a0'), 0n);
  });

  test('requestExit from a device write ends run() right away', () => {
    const t = cpu('sw a1, 0(a2)\n1: j 1b').reg('a1', 0x5555).reg('a2', 0x100000);
    const n = t.hart.run(1_000_000);
    assert.equal(n, 1);
    assert.equal(t.m.poweredOff, true);
  });

  test('WFI sets waiting; a pending enabled interrupt wakes it even with MIE=0', () => {
    const t = cpu('wfi\nli a0, 9');
    t.csr(CSR_MIE, MIP_MTIP);
    assert.equal(t.hart.run(100), 1);
    assert.equal(t.hart.waiting, true);
    assert.equal(t.hart.run(100), 0, 'stays asleep with nothing pending');
    t.hart.setPending(IRQ_MTI, true);
    t.run().expectReg('a0', 9);
    assert.equal(t.hart.waiting, false);
  });

  test('register helpers round-trip 64-bit values', () => {
    const t = cpu('nop');
    t.hart.setX(5, -2);
    assert.equal(t.hart.getXHex(5), 'fffffffffffffffe');
    assert.equal(t.hart.getX(5), -2);
    t.hart.setX(6, 2 ** 40 + 3);
    assert.equal(t.hart.getXHi(6), 256);
    assert.equal(t.hart.getXLo(6), 3);
    t.hart.setX(0, 5);
    assert.equal(t.hart.getX(0), 0);
  });
});

describe('CSR side effects', () => {
  test('sie/sip are views of mie/mip through mideleg', () => {
    const t = cpu(`
      csrw mideleg, s0
      csrw mie, s1
      csrr a0, sie
      csrw sie, zero
      csrr a1, mie
      csrsi sip, 2
      csrr a2, mip
      csrw mip, s2
      csrr a3, sip
    `)
      .reg('s0', 0x202)
      .reg('s1', 0xaaa)
      .reg('s2', 0x222)
      .run();
    t.expectReg('a0', 0x202).expectReg('a1', 0x8a8).expectReg('a2', 0x2).expectReg('a3', 0x202);
  });

  test('counter and Sstc gating from S-mode', () => {
    cpu('rdtime a0').priv(PRV_S).run().expectTrap(2);
    cpu('rdtime a0').csr(0x306, 2).priv(PRV_S).run().expectEnd();
    cpu('csrr a0, 0x14d').csr(0x306, 2).priv(PRV_S).run().expectTrap(2);
    cpu('csrw 0x14d, zero\ncsrr a0, sip')
      .csr(0x306, 2)
      .csr(0x30a, INT)
      .csr(0x303, 1 << 5)
      .priv(PRV_S)
      .run()
      .expectReg('a0', 0x20);
  });

  test('TVM traps satp and sfence.vma in S; satp keeps Sv39/Sv48 and ignores other modes', () => {
    cpu('csrr a0, satp')
      .csr(CSR_MSTATUS, 1 << 20)
      .priv(PRV_S)
      .run()
      .expectTrap(2);
    cpu('sfence.vma')
      .csr(CSR_MSTATUS, 1 << 20)
      .priv(PRV_S)
      .run()
      .expectTrap(2);
    cpu('csrw satp, s0\ncsrr a0, satp\ncsrw satp, s1\ncsrr a1, satp')
      .reg('s0', (9n << 60n) | 0x12345n)
      .reg('s1', (10n << 60n) | 1n)
      .run()
      .expectReg('a0', (9n << 60n) | 0x12345n)
      .expectReg('a1', (9n << 60n) | 0x12345n);
  });

  test('mret/sret stacks: MPP/SPP cleared, xPIE set, MPRV cleared when leaving M', () => {
    const t = cpu(`
      la t0, 1f
      csrw mepc, t0
      li t0, (1 << 11) | (1 << 17) | (1 << 7)
      csrs mstatus, t0
      mret
    1:
      la t0, 2f
      csrw sepc, t0
      li t0, (1 << 5)
      csrs sstatus, t0
      sret
    2:
      ecall
    `).run();
    t.expectTrap(8);
    const st = t.csrValue(CSR_MSTATUS);
    assert.equal((st >> 17n) & 1n, 0n, 'MPRV cleared by mret to S');
    assert.equal((st >> 11n) & 3n, 0n, 'MPP holds U (the ecall came from U)');
    assert.equal((st >> 5n) & 1n, 1n, 'SPIE set by sret');
  });
});

describe('decode cache trim (idle VMs give their decoded pages back)', () => {
  test('trimDecodeCache frees every decoded page and the code still runs correctly afterwards', () => {
    const r = cpu('add a0, a1, a2').reg('a1', 2).reg('a2', 3).run().expectReg('a0', 5n);
    assert.ok(r.hart.decodeCacheBytes() > 0, 'the run decoded a page');
    r.hart.trimDecodeCache();
    assert.equal(r.hart.decodeCacheBytes(), 0);
    r.hart.pc = r.sym('_start');
    r.reg('a1', 40).reg('a2', 2).run().expectReg('a0', 42n);
    assert.ok(r.hart.decodeCacheBytes() > 0, 'decoded again');
  });
});
