/**
 * Fluent CPU runner for unit tests:
 *
 *   cpu('add a0, a1, a2').reg('a1', 2).reg('a2', 3).run().expectReg('a0', 5n);
 *
 * The snippet is assembled at 0x8000_0000 (cached), followed by `_end: j _end`; a trap handler `_trap: j _trap`
 * is installed in mtvec. run() stops when pc reaches `_end` or `_trap`.
 */
import assert from 'node:assert/strict';
import { parseElf, type ElfImage } from '../../src/machine/loaders/elf.js';
import {
  CSR_MCAUSE,
  CSR_MEPC,
  CSR_MTVAL,
  CSR_MTVEC,
  CSR_SCAUSE,
  CSR_SEPC,
  CSR_STVAL,
  CSR_STVEC,
  type Hart,
  type HartOptions,
} from '../../src/riscv/hart.js';
import { XREG_NAMES, FREG_NAMES } from '../../src/riscv/opcodes.js';
import { buildElf, loadElf, makeMachine, type Machine } from './harness.js';

const MASK64 = (1n << 64n) - 1n;

export function regIndex(name: string | number): number {
  if (typeof name === 'number') return name;
  if (/^x\d+$/.test(name)) return Number(name.slice(1));
  if (name === 'fp') return 8;
  const i = (XREG_NAMES as readonly string[]).indexOf(name);
  if (i < 0) throw new Error(`unknown register ${name}`);
  return i;
}
export function fregIndex(name: string | number): number {
  if (typeof name === 'number') return name;
  if (/^f\d+$/.test(name)) return Number(name.slice(1));
  const i = (FREG_NAMES as readonly string[]).indexOf(name);
  if (i < 0) throw new Error(`unknown FP register ${name}`);
  return i;
}

export function setReg64(hart: Hart, i: number, v: bigint | number): void {
  const b = BigInt.asUintN(64, BigInt(v));
  hart.setXHalves(i, Number(b & 0xffffffffn) | 0, Number(b >> 32n) | 0);
}
export function getReg64(hart: Hart, i: number): bigint {
  return (BigInt(hart.getXHi(i) >>> 0) << 32n) | BigInt(hart.getXLo(i) >>> 0);
}
export function readCsr64(hart: Hart, csr: number): bigint {
  const h = hart as unknown as { readCsr(c: number): boolean; valLo: number; valHi: number };
  if (!h.readCsr(csr)) throw new Error(`CSR 0x${csr.toString(16)} not readable`);
  return (BigInt(h.valHi >>> 0) << 32n) | BigInt(h.valLo >>> 0);
}
export function writeCsr64(hart: Hart, csr: number, v: bigint | number): void {
  const b = BigInt.asUintN(64, BigInt(v));
  if (!hart.writeCsr(csr, Number(b & 0xffffffffn) | 0, Number(b >> 32n) | 0))
    throw new Error(`CSR 0x${csr.toString(16)} not writable`);
}

export class CpuTest {
  readonly m: Machine;
  readonly elf: ElfImage;
  private stopped: 'end' | 'trap' | 'budget' | undefined;

  /** `jit`: the hart's translation setting (default: from TYPEVISOR_JIT; see makeMachine for the RAM it implies). */
  constructor(body: string, extra = '', jit?: HartOptions['jit']) {
    const source = `.option norelax\n.option norvc\n.globl _start\n.text\n_start:\n.option rvc\n${body}\n.option norvc\n.globl _end\n_end: j _end\n.align 4\n.globl _trap\n_trap: j _trap\n${extra}\n`;
    this.elf = parseElf(buildElf(source));
    this.m = makeMachine(undefined, jit);
    loadElf(this.m, this.elf);
    writeCsr64(this.hart, CSR_MTVEC, this.sym('_trap'));
  }

  get hart(): Hart {
    return this.m.hart;
  }
  sym(name: string): number {
    const v = this.elf.symbols.get(name);
    if (v === undefined) throw new Error(`no symbol ${name}`);
    return v;
  }
  reg(name: string | number, v: bigint | number): this {
    setReg64(this.hart, regIndex(name), v);
    return this;
  }
  freg(name: string | number, bits: bigint): this {
    const i = fregIndex(name);
    const b = BigInt.asUintN(64, bits);
    this.hart.fp.i32[2 * i] = Number(b & 0xffffffffn) | 0;
    this.hart.fp.i32[2 * i + 1] = Number(b >> 32n) | 0;
    return this;
  }
  csr(csr: number, v: bigint | number): this {
    writeCsr64(this.hart, csr, v);
    return this;
  }
  priv(p: number): this {
    this.hart.priv = p;
    return this;
  }
  /** Writes bytes into RAM before running. */
  poke(addr: number, bytes: Uint8Array): this {
    this.m.ram.write(addr, bytes);
    return this;
  }
  run(maxInstructions = 1_000_000): this {
    const end = this.sym('_end');
    const trap = this.sym('_trap');
    let total = 0;
    while (total < maxInstructions) {
      const pc = this.hart.pc;
      if (pc === end) {
        this.stopped = 'end';
        return this;
      }
      if (pc === trap) {
        this.stopped = 'trap';
        return this;
      }
      const n = this.hart.run(Math.min(1000, maxInstructions - total));
      total += n;
      if (n === 0 && this.hart.waiting) {
        this.m.clint.time += 1000;
        this.m.clint.update();
      }
    }
    this.stopped = 'budget';
    return this;
  }
  x(name: string | number): bigint {
    return getReg64(this.hart, regIndex(name));
  }
  f(name: string | number): bigint {
    const i = fregIndex(name);
    return (BigInt(this.hart.fp.i32[2 * i + 1]! >>> 0) << 32n) | BigInt(this.hart.fp.i32[2 * i]! >>> 0);
  }
  csrValue(csr: number): bigint {
    return readCsr64(this.hart, csr);
  }
  expectReg(name: string | number, v: bigint | number): this {
    assert.equal(
      this.stopped,
      'end',
      `expected to reach _end, stopped at ${this.stopped} (pc 0x${this.hart.pc.toString(16)}, mcause ${this.csrValue(CSR_MCAUSE)})`,
    );
    assert.equal(this.x(name), BigInt.asUintN(64, BigInt(v)) & MASK64, `register ${name}`);
    return this;
  }
  expectFreg(name: string | number, bits: bigint): this {
    assert.equal(this.f(name), BigInt.asUintN(64, bits), `FP register ${name}`);
    return this;
  }
  expectEnd(): this {
    assert.equal(
      this.stopped,
      'end',
      `stopped at ${this.stopped} (pc 0x${this.hart.pc.toString(16)}, mcause ${this.csrValue(CSR_MCAUSE)})`,
    );
    return this;
  }
  /** Expects an M-mode trap with this cause (and tval/epc when given). */
  expectTrap(cause: number | bigint, tval?: bigint | number, epc?: bigint | number): this {
    assert.equal(this.stopped, 'trap', `expected a trap, stopped at ${this.stopped}`);
    assert.equal(this.csrValue(CSR_MCAUSE), BigInt(cause), 'mcause');
    if (tval !== undefined) assert.equal(this.csrValue(CSR_MTVAL), BigInt.asUintN(64, BigInt(tval)), 'mtval');
    if (epc !== undefined) assert.equal(this.csrValue(CSR_MEPC), BigInt.asUintN(64, BigInt(epc)), 'mepc');
    return this;
  }
  /** Expects an S-mode trap (stvec must point at `_trap`). */
  expectSTrap(cause: number | bigint, tval?: bigint | number, epc?: bigint | number): this {
    assert.equal(this.stopped, 'trap', `expected a trap, stopped at ${this.stopped}`);
    assert.equal(this.csrValue(CSR_SCAUSE), BigInt(cause), 'scause');
    if (tval !== undefined) assert.equal(this.csrValue(CSR_STVAL), BigInt.asUintN(64, BigInt(tval)), 'stval');
    if (epc !== undefined) assert.equal(this.csrValue(CSR_SEPC), BigInt.asUintN(64, BigInt(epc)), 'sepc');
    return this;
  }
  /** Points stvec at `_trap` too. */
  strap(): this {
    return this.csr(CSR_STVEC, this.sym('_trap'));
  }
}

export function cpu(body: string, extra = '', jit?: HartOptions['jit']): CpuTest {
  return new CpuTest(body, extra, jit);
}
