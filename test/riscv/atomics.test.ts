/**
 * Cross-thread guest atomics (src/riscv/atomics.ts) on one thread: with `bus.atomics` set, every AMO kind and
 * size, LR/SC, misaligned accesses, MMIO and stores to decoded code behave exactly as the interpreter's plain
 * path (and as a BigInt model of the ISA), and both block JITs route their atomics through the same path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseElf, type ElfImage } from '../../src/machine/loaders/elf.js';
import { createGuestAtomics, type GuestAtomics } from '../../src/riscv/atomics.js';
import { Amo, CSR_MCAUSE, CSR_MTVAL, CSR_MTVEC } from '../../src/riscv/hart.js';
import { CSR_MSTATUS, CSR_SATP } from '../../src/riscv/csr.js';
import type { HartOptions } from '../../src/riscv/hart.js';
import { buildElf, loadElf, makeMachine, type Machine, type MachineOptions } from './harness.js';
import { getReg64, readCsr64, regIndex, setReg64, writeCsr64 } from './runner.js';

const KINDS = ['swap', 'add', 'xor', 'and', 'or', 'min', 'max', 'minu', 'maxu'] as const;
const KIND_OF: Record<(typeof KINDS)[number], Amo> = {
  swap: Amo.SWAP,
  add: Amo.ADD,
  xor: Amo.XOR,
  and: Amo.AND,
  or: Amo.OR,
  min: Amo.MIN,
  max: Amo.MAX,
  minu: Amo.MINU,
  maxu: Amo.MAXU,
};
/** A data page well away from the code; the operand sits at DATA + 8 between two guard words. */
const DATA = 0x8010_0000;
const UART = 0x1000_0000;
const GUARD = 0x5a5a_5a5a_a5a5_a5a5n;

const EDGES = [
  0n,
  1n,
  2n,
  -1n,
  -2n,
  0x7fff_ffffn,
  0x8000_0000n,
  0xffff_ffffn,
  0x1_0000_0000n,
  0x7fff_ffff_ffff_ffffn,
  -0x8000_0000_0000_0000n,
  0x1234_5678_9abc_def0n,
  -0x1234_5678_8000_0000n,
].map((v) => BigInt.asUintN(64, v));

const SOURCE = [
  '.option norelax',
  '.option norvc',
  '.globl _start',
  '.text',
  '_start:',
  ...KINDS.flatMap((k) => ['w', 'd'].flatMap((s) => [`op_${k}_${s}: amo${k}.${s} a0, a2, (a1)`, 'j _end'])),
  // LR/SC pairs run in one slice: a hart's run() starts without a reservation.
  ...['w', 'd'].flatMap((s) => [
    `lr_${s}: lr.${s} a0, (a1)`,
    'j _end',
    `sc_${s}: sc.${s} a3, a2, (a1)`,
    'j _end',
    // LR, SC (a3), a second SC without a reservation (a4).
    `lrsc_${s}: lr.${s} a0, (a1)`,
    `sc.${s} a3, a2, (a1)`,
    `sc.${s} a4, a2, (a1)`,
    'j _end',
    // LR, then SC to another address (a5).
    `lrsc_other_${s}: lr.${s} a0, (a1)`,
    `sc.${s} a3, a2, (a5)`,
    'j _end',
  ]),
  // Hot loop for the JITs: a3 rounds of amoadd.d, amoadd.w and an LR/SC increment by a2.
  'hot:',
  'hot_loop:',
  'amoadd.d zero, a2, (a1)',
  'amoadd.w zero, a2, (a4)',
  'hot_retry:',
  'lr.d t1, (a5)',
  'add t1, t1, a2',
  'sc.d t2, t1, (a5)',
  'bnez t2, hot_retry',
  'addi a3, a3, -1',
  'bnez a3, hot_loop',
  'j _end',
  // A plain load and store (the paging test runs them with MPRV, through a page table).
  'ld_a1: ld a0, 0(a1)',
  'j _end',
  'sd_a1: sd a2, 0(a1)',
  'j _end',
  // A store by AMO over an instruction of another page, already decoded: the next call must run the new
  // instruction (no fence.i: the hart drops a decoded page a store hits, and so must the atomic path).
  '.align 12',
  'smc:',
  'li a0, 0',
  'la a1, smc_patch',
  'lw a2, smc_new',
  'jal ra, smc_fn',
  'amoswap.w zero, a2, (a1)',
  'jal ra, smc_fn',
  'j _end',
  'smc_new: addi a0, a0, 100',
  '.align 12',
  'smc_fn:',
  'smc_patch: addi a0, a0, 1',
  'ret',
  '.globl _end',
  '.align 4',
  '_end: j _end',
  '.globl _trap',
  '.align 4',
  '_trap: j _trap',
  '',
].join('\n');

let elfCache: ElfImage | null = null;
function elf(): ElfImage {
  elfCache ??= parseElf(buildElf(SOURCE));
  return elfCache;
}

/** One machine with the test program loaded; `exec` runs one entry point until `_end` or `_trap`. */
class Rig {
  readonly m: Machine;
  constructor(jit: HartOptions['jit'], opts: MachineOptions) {
    this.m = makeMachine(16 << 20, jit, opts);
    loadElf(this.m, elf());
    writeCsr64(this.m.hart, CSR_MTVEC, this.sym('_trap'));
  }
  sym(name: string): number {
    const v = elf().symbols.get(name);
    if (v === undefined) throw new Error(`no symbol ${name}`);
    return v;
  }
  /** Runs from `label` with these registers; returns where it stopped. */
  exec(label: string, regs: Record<string, bigint | number>, budget = 1000): 'end' | 'trap' {
    const h = this.m.hart;
    for (const [r, v] of Object.entries(regs)) setReg64(h, regIndex(r), v);
    h.pc = this.sym(label);
    const end = this.sym('_end');
    const trap = this.sym('_trap');
    // `_end` and `_trap` jump to themselves, so running past them changes nothing.
    for (let n = 0; n < budget; n += 100) {
      if (h.pc === end) return 'end';
      if (h.pc === trap) return 'trap';
      h.run(100);
    }
    throw new Error(`${label}: still running after ${budget} instructions (pc 0x${h.pc.toString(16)})`);
  }
  x(r: string): bigint {
    return getReg64(this.m.hart, regIndex(r));
  }
  u64(addr: number): bigint {
    return (BigInt(this.m.ram.readU32(addr + 4) >>> 0) << 32n) | BigInt(this.m.ram.readU32(addr) >>> 0);
  }
  setU64(addr: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.m.ram.write(addr, b);
  }
  /** The guard, operand and guard words around DATA + 8. */
  window(): bigint[] {
    return [this.u64(DATA), this.u64(DATA + 8), this.u64(DATA + 16)];
  }
}

/** The ISA's AMO on `size` bytes: the value rd gets and the value memory then holds (both as unsigned 64-bit). */
function model(kind: Amo, size: 4 | 8, mem: bigint, b: bigint): { rd: bigint; mem: bigint } {
  const bits = size * 8;
  const a = BigInt.asUintN(bits, mem);
  const bu = BigInt.asUintN(bits, b);
  const as = BigInt.asIntN(bits, mem);
  const bs = BigInt.asIntN(bits, b);
  const next = [bu, a + bu, a ^ bu, a & bu, a | bu, as < bs ? a : bu, as > bs ? a : bu, a < bu ? a : bu, a > bu ? a : bu][kind]!;
  return { rd: BigInt.asUintN(64, as), mem: BigInt.asUintN(bits, next) };
}

const plainRig = (): Rig => new Rig(false, {});
const atomicRig = (wrap?: (a: GuestAtomics) => GuestAtomics): Rig => new Rig(false, { atomics: wrap ?? true });

test('every AMO kind and size on edge values: the atomic path equals the interpreter and the ISA', () => {
  const plain = plainRig();
  const atomic = atomicRig();
  let cases = 0;
  for (const k of KINDS) {
    for (const size of [4, 8] as const) {
      for (const memValue of EDGES) {
        for (const operand of EDGES) {
          const results = [plain, atomic].map((rig) => {
            rig.setU64(DATA, GUARD);
            rig.setU64(DATA + 8, memValue);
            rig.setU64(DATA + 16, GUARD);
            const stop = rig.exec(`op_${k}_${size === 4 ? 'w' : 'd'}`, { a0: 0, a1: DATA + 8, a2: operand });
            return { stop, rd: rig.x('a0'), window: rig.window() };
          });
          const what = `amo${k}.${size === 4 ? 'w' : 'd'} mem=0x${memValue.toString(16)} rs2=0x${operand.toString(16)}`;
          assert.deepEqual(results[1], results[0], what);
          const want = model(KIND_OF[k], size, memValue, operand);
          const keptHigh = size === 4 ? memValue & 0xffff_ffff_0000_0000n : 0n;
          assert.deepEqual(results[1], { stop: 'end', rd: want.rd, window: [GUARD, keptHigh | want.mem, GUARD] }, what);
          cases++;
        }
      }
    }
  }
  assert.equal(cases, KINDS.length * 2 * EDGES.length ** 2);
});

test('GuestAtomics: amo/load/cas on the memory directly, and null for a memory that is not shared', () => {
  const Wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => { buffer: ArrayBufferLike } } }).WebAssembly;
  const memory = new Wasm.Memory({ initial: 1, maximum: 1, shared: true });
  const a = createGuestAtomics(memory)!;
  assert.ok(a);
  const view = new DataView(memory.buffer);
  view.setBigUint64(16, 0xffff_ffff_8000_0000n, true);
  assert.equal(a.load(8, 16), 0x8000_0000 | 0);
  assert.equal(a.oldHi, -1);
  assert.equal(a.load(4, 16), 0x8000_0000 | 0);
  assert.equal(a.oldHi, -1, '32-bit load sign-extends');
  assert.equal(a.load(4, 20), -1);
  // cas: fails (memory unchanged) on another expected value, succeeds on the right one.
  assert.equal(a.cas(8, 16, 0x8000_0000 | 0, 0, 1, 2), false);
  assert.equal(view.getBigUint64(16, true), 0xffff_ffff_8000_0000n);
  assert.equal(a.cas(8, 16, 0x8000_0000 | 0, -1, 1, 2), true);
  assert.equal(view.getBigUint64(16, true), 0x2_0000_0001n);
  assert.equal(a.cas(4, 16, 2, 0, 7, 99), false);
  assert.equal(a.cas(4, 16, 1, 0, 7, 99), true);
  assert.equal(view.getBigUint64(16, true), 0x2_0000_0007n, '32-bit cas leaves the other half alone');
  // amo: old value back, high half in oldHi.
  assert.equal(a.amo(Amo.ADD, 8, 16, -7, -2), 7);
  assert.equal(a.oldHi, 2);
  assert.equal(view.getBigUint64(16, true), 0x1_0000_0000n, 'the carry crosses the halves');
  assert.equal(a.amo(Amo.MINU, 4, 20, -1, 0), 1);
  assert.equal(a.oldHi, 0);
  assert.equal(a.amo(Amo.MAX, 4, 20, -1, 0), 1);
  assert.equal(view.getBigUint64(16, true), 0x1_0000_0000n);
  // store64: both halves in one access.
  a.store64(24, 0x8765_4321 | 0, 0x1234_5678);
  assert.equal(view.getBigUint64(24, true), 0x1234_5678_8765_4321n);
  assert.equal(view.getBigUint64(16, true), 0x1_0000_0000n, 'the neighbour is untouched');
  assert.equal(createGuestAtomics(new Wasm.Memory({ initial: 1 })), null);
  assert.equal(createGuestAtomics({}), null);
});

for (const size of [4, 8] as const) {
  const s = size === 4 ? 'w' : 'd';
  test(`lr.${s}/sc.${s}: success, no reservation, another address, another hart's store between them`, () => {
    const value = 0x8765_4321_fedc_ba98n;
    const loaded = BigInt.asUintN(64, BigInt.asIntN(size * 8, value));
    const operand = 0x1111_2222_3333_4444n;
    const keptHigh = size === 4 ? value & 0xffff_ffff_0000_0000n : 0n;
    const stored = keptHigh | BigInt.asUintN(size * 8, operand);
    let foreignStore: (() => void) | null = null;
    const atomic = atomicRig((a) =>
      counting(a, (op) => {
        if (op === 'cas') foreignStore?.();
      }),
    );
    for (const rig of [plainRig(), atomic]) {
      rig.setU64(DATA + 8, value);
      assert.equal(rig.exec(`lrsc_${s}`, { a1: DATA + 8, a2: operand, a3: 7, a4: 7 }), 'end');
      assert.equal(rig.x('a0'), loaded, 'lr sign-extends');
      assert.equal(rig.x('a3'), 0n, 'sc succeeds');
      assert.equal(rig.x('a4'), 1n, 'an sc after an sc has no reservation');
      assert.equal(rig.u64(DATA + 8), stored);
      // Every run() slice starts without a reservation: a lone SC fails.
      assert.equal(rig.exec(`sc_${s}`, { a2: 5, a3: 7 }), 'end');
      assert.equal(rig.x('a3'), 1n);
      assert.equal(rig.u64(DATA + 8), stored);
      rig.setU64(DATA + 16, 0n);
      assert.equal(rig.exec(`lrsc_other_${s}`, { a1: DATA + 8, a2: 5, a3: 7, a5: DATA + 16 }), 'end');
      assert.equal(rig.x('a3'), 1n, 'sc to another address than lr fails');
      assert.equal(rig.u64(DATA + 16), 0n);
    }
    // Another hart stores to the word between LR and SC (the test, just before the compare-and-swap): SC fails
    // and memory keeps that hart's value; the same value stored back (ABA) lets it succeed, as QEMU's SC does.
    atomic.setU64(DATA + 8, value);
    foreignStore = () => atomic.setU64(DATA + 8, value + 1n);
    assert.equal(atomic.exec(`lrsc_${s}`, { a1: DATA + 8, a2: operand, a3: 7, a4: 7 }), 'end');
    assert.equal(atomic.x('a3'), 1n, 'sc fails when the word changed since lr');
    assert.equal(atomic.u64(DATA + 8), value + 1n);
    atomic.setU64(DATA + 8, value);
    foreignStore = () => atomic.setU64(DATA + 8, value);
    assert.equal(atomic.exec(`lrsc_${s}`, { a1: DATA + 8, a2: operand, a3: 7, a4: 7 }), 'end');
    assert.equal(atomic.x('a3'), 0n);
    assert.equal(atomic.u64(DATA + 8), stored);
  });
}

test('misaligned AMO, LR and SC raise the misaligned exceptions with the atomic path too', () => {
  for (const rig of [plainRig(), atomicRig()]) {
    const causes: bigint[] = [];
    for (const [label, addr] of [
      ['op_add_d', DATA + 4],
      ['op_add_w', DATA + 2],
      ['op_minu_d', DATA + 1],
      ['lr_d', DATA + 4],
      ['lr_w', DATA + 6],
      ['sc_d', DATA + 12],
      ['sc_w', DATA + 1],
    ] as const) {
      rig.setU64(DATA, GUARD);
      rig.setU64(DATA + 8, GUARD);
      assert.equal(rig.exec(label, { a1: addr, a2: 1 }), 'trap', label);
      assert.equal(readCsr64(rig.m.hart, CSR_MTVAL), BigInt(addr), `${label} mtval`);
      causes.push(readCsr64(rig.m.hart, CSR_MCAUSE));
      assert.deepEqual(rig.window().slice(0, 2), [GUARD, GUARD], `${label} leaves memory alone`);
    }
    // Store/AMO address misaligned (6) for AMOs and SC, load address misaligned (4) for LR.
    assert.deepEqual(causes, [6n, 6n, 6n, 4n, 4n, 6n, 6n]);
  }
});

test('an AMO on MMIO takes the plain path (atomics are for RAM only)', () => {
  let calls = 0;
  const rig = atomicRig((a) => counting(a, () => calls++));
  assert.equal(rig.exec('op_swap_w', { a1: UART, a2: 0x41 }), 'end');
  assert.deepEqual(rig.m.console, [0x41]);
  assert.equal(rig.x('a0'), 0n);
  assert.equal(calls, 0);
});

test('an AMO over an instruction already decoded drops the decoded copy (as a plain store does)', () => {
  for (const rig of [plainRig(), atomicRig()]) {
    assert.equal(rig.exec('smc', {}), 'end');
    assert.equal(rig.x('a0'), 101n, 'the second call runs the patched instruction');
  }
});

/** Wraps `a`, calling `tick` on each operation. */
function counting(a: GuestAtomics, tick: (op: 'amo' | 'load' | 'cas' | 'store') => void): GuestAtomics {
  return {
    amo: (kind, size, off, lo, hi) => (tick('amo'), a.amo(kind, size, off, lo, hi)),
    load: (size, off) => (tick('load'), a.load(size, off)),
    cas: (size, off, el, eh, nl, nh) => (tick('cas'), a.cas(size, off, el, eh, nl, nh)),
    store64: (off, lo, hi) => (tick('store'), a.store64(off, lo, hi)),
    get oldHi() {
      return a.oldHi;
    },
  };
}

for (const [name, jit] of [
  ['the JS block JIT', { threshold: 0 }],
  ['the WebAssembly block JIT', { threshold: 0, backend: 'wasm' }],
] as const) {
  // The JS JIT calls the hart for every AMO, LR and SC, which takes the bus's atomics. WebAssembly blocks do them
  // with WebAssembly atomics on the same memory once the store TLB maps the address (jit-wasm-golden.txt shows the
  // code; atomics-threads.test.ts counts on real threads): only the first access of each word, a TLB miss, goes
  // to the hart.
  const viaHart = jit.backend === 'wasm' ? { amo: 1, load: 0, cas: 0, store: 0 } : { amo: 1000, load: 500, cas: 500, store: 0 };
  test(`${name} does AMOs and LR/SC atomically: ${JSON.stringify(viaHart)} through the bus's atomics`, () => {
    const counts = { amo: 0, load: 0, cas: 0, store: 0 };
    const rig = new Rig(jit, { atomics: (a) => counting(a, (op) => counts[op]++) });
    const rounds = 500;
    for (const at of [DATA, DATA + 8, DATA + 16]) rig.setU64(at, 0n);
    const stop = rig.exec('hot', { a1: DATA, a2: 3, a3: rounds, a4: DATA + 8, a5: DATA + 16 }, 100_000);
    assert.equal(stop, 'end');
    assert.deepEqual(rig.window(), [3n * BigInt(rounds), 3n * BigInt(rounds), 3n * BigInt(rounds)]);
    assert.deepEqual(counts, viaHart);
    const stats = rig.m.hart.jitStats;
    assert.ok(stats && stats.blocks > 0, `blocks were translated (${JSON.stringify(stats)})`);
    assert.equal(stats.backend, jit.backend ?? 'js');
  });
}

/**
 * The page walker's A/D update with harts on other threads is a compare-and-swap: when another hart changes the
 * PTE between the walk's read and its update (here: clears it, as an unmap does), the update fails and the walk
 * starts again, finds no mapping and faults. A plain write would have brought the cleared PTE back to life.
 */
test('the A/D update of a PTE is a compare-and-swap that walks again when another hart changed the PTE', () => {
  const ROOT = 0x8020_0000;
  const PTE = ROOT + 8; // Sv39 root entry 1: VA 0x4000_0000, a 1 GiB leaf onto RAM at 0x8000_0000
  const leaf = (0x80000n << 10n) | 0xfn; // V R W X, A and D clear
  const VA = 0x4000_0000 + (DATA - 0x8000_0000);
  for (const unmapped of [false, true]) {
    let casCalls = 0;
    const rig = atomicRig((a) => ({
      amo: (kind, size, off, lo, hi) => a.amo(kind, size, off, lo, hi),
      load: (size, off) => a.load(size, off),
      store64: (off, lo, hi) => a.store64(off, lo, hi),
      get oldHi() {
        return a.oldHi;
      },
      cas(size, off, el, eh, nl, nh) {
        if (size === 8 && off === PTE - 0x8000_0000) {
          casCalls++;
          // Another hart unmaps the page between this hart's read of the PTE and its A/D update.
          if (unmapped && casCalls === 1) a.store64(off, 0, 0);
        }
        return a.cas(size, off, el, eh, nl, nh);
      },
    }));
    for (let i = 0; i < 512; i++) rig.setU64(ROOT + i * 8, 0n);
    rig.setU64(PTE, leaf);
    rig.setU64(DATA, 0x1122_3344_5566_7788n);
    const h = rig.m.hart;
    writeCsr64(h, CSR_SATP, (8n << 60n) | BigInt(ROOT >>> 12));
    // MPRV with MPP = S: M-mode loads and stores go through the page table.
    writeCsr64(h, CSR_MSTATUS, (1n << 17n) | (1n << 11n));
    const stop = rig.exec('ld_a1', { a1: VA });
    if (!unmapped) {
      assert.equal(stop, 'end');
      assert.equal(rig.x('a0'), 0x1122_3344_5566_7788n);
      assert.equal(rig.u64(PTE), leaf | 0x40n, 'A set');
      assert.equal(casCalls, 1);
    } else {
      assert.equal(stop, 'trap');
      assert.equal(readCsr64(h, CSR_MCAUSE), 13n, 'load page fault');
      assert.equal(readCsr64(h, CSR_MTVAL), BigInt(VA));
      assert.equal(rig.u64(PTE), 0n, 'the cleared PTE stays cleared');
    }
  }
});
