/** The disassembler, checked against riscv64-linux-gnu-objdump -M no-aliases on a mixed instruction list. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { disassemble } from '../../src/riscv/disasm.js';
import { OPCODES } from '../../src/riscv/opcodes.js';

const SOURCE = `
addi a0, a1, -5
slli a0, a1, 3
srai t0, t1, 63
lui a5, 0xfffff
auipc ra, 0x12
ld a5, 8(sp)
sd s0, -16(s1)
beq a0, a1, _start
jal ra, _start
jalr ra, 8(a5)
csrrw a0, mstatus, a1
csrrsi zero, sstatus, 2
fence rw, rw
lr.d.aq a0, (a1)
sc.w.rl a2, a3, (a4)
amoadd.d a0, a1, (a2)
amomaxu.w a0, a1, (a2)
fadd.d fa0, fa1, fa2
fadd.s fa0, fa1, fa2, rtz
fmadd.d fa0, fa1, fa2, fa3
fcvt.w.d a0, fa0, rtz
fcvt.d.l fa0, a0
fmv.x.d a0, fa0
feq.s a0, fa0, fa1
fclass.d a0, fa1
flw ft0, 4(a0)
fsd fs1, 16(sp)
mul a0, a1, a2
divuw a0, a1, a2
addiw a0, a0, 1
sraiw a0, a0, 31
c.addi a0, 1
c.li a1, -3
c.lui a2, 0xfffe1
c.addi16sp sp, -32
c.addi4spn a0, sp, 16
c.lw a0, 4(a1)
c.ld a0, 8(a1)
c.sd a0, 8(a1)
c.fld fa0, 8(a1)
c.fsdsp fs1, 16(sp)
c.j _start
c.beqz a0, _start
c.bnez a0, _start
c.slli a0, 3
c.srli a0, 3
c.srai a0, 33
c.andi a0, -1
c.sub a0, a1
c.xor a0, a1
c.addw a0, a1
c.subw a0, a1
c.mv a0, a1
c.add a0, a1
c.jr ra
c.jalr a0
c.ldsp ra, 24(sp)
c.lwsp ra, 24(sp)
c.sdsp ra, 24(sp)
c.swsp ra, 24(sp)
c.addiw a0, -1
c.ebreak
c.nop
ecall
ebreak
mret
sret
wfi
fence.i
sh1add a0, a1, a2
add.uw a0, a1, a2
clz a0, a1
cpopw a0, a1
sext.b a0, a1
rev8 a0, a1
rori a0, a1, 5
bseti a0, a1, 40
`;

test('disassembly matches objdump -M no-aliases', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-disasm-'));
  try {
    writeFileSync(join(dir, 'd.S'), `.option norelax\n_start:\n${SOURCE}`);
    execFileSync('riscv64-linux-gnu-as', ['-march=rv64gc_zba_zbb_zbs', '-o', join(dir, 'd.o'), join(dir, 'd.S')]);
    const dump = execFileSync('riscv64-linux-gnu-objdump', ['-d', '-M', 'no-aliases', join(dir, 'd.o')], { encoding: 'utf8' });
    let checked = 0;
    for (const line of dump.split('\n')) {
      const m = /^\s*([0-9a-f]+):\s+([0-9a-f]+)\s+(.*)$/.exec(line);
      if (!m) continue;
      const pc = parseInt(m[1]!, 16);
      const bits = parseInt(m[2]!, 16) | 0;
      const expected = m[3]!
        .replace(/\s*#.*$/, '')
        .replace(/\s*<[^>]*>$/, '')
        .trim();
      assert.equal(disassemble(bits, pc), expected, `at 0x${pc.toString(16)} (${m[2]})`);
      checked++;
    }
    assert.equal(checked, SOURCE.trim().split('\n').length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every opcode-table entry decodes its own match pattern to itself', () => {
  for (const e of OPCODES) {
    // Fill register/immediate fields with a value that avoids reserved compressed encodings.
    let bits = e.match;
    if (e.size === 2) bits |= ~e.mask & 0x0404 & 0xffff;
    const text = disassemble(bits | 0, 0);
    assert.ok(!text.startsWith('.'), `${e.name}: decoded as ${text}`);
  }
});
