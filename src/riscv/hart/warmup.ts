/**
 * Runs every instruction of the opcode table once, in M and in S mode, on a scratch hart over scratch RAM, before
 * the first real hart of an isolate starts.
 *
 * Why: V8 optimizes the interpreter loop (`Hart.run`) within the first milliseconds of a boot, from the type
 * feedback gathered so far; every path the guest takes for the first time afterwards (a new opcode, a trap, a
 * privileged op) has no feedback, and hitting it deoptimizes run() and sends it back to TurboFan. A boot did that
 * a dozen times per isolate, and a VM with harts on threads pays it in every thread (docs/performance.md). Running
 * each path once first gives V8 the whole picture before it optimizes.
 *
 * Nothing of the scratch hart survives: its RAM is a private buffer, its bus answers MMIO with zeros.
 */
import type { Bus } from '../bus.js';
import { OPCODES } from '../opcodes.js';
import type { Hart } from '../hart.js';
import { CSR_MEPC, CSR_MSTATUS, CSR_MTVEC, CSR_STVEC } from '../csr.js';

const RAM_BASE = 0x8000_0000;
const RAM_BYTES = 1 << 16;
const CODE = RAM_BASE + 0x1000;
const MRET_AT = RAM_BASE + 0x2000;
const TRAP_AT = RAM_BASE + 0x3000;
const DATA = RAM_BASE + 0x8000;
/** An MMIO address the scratch bus answers (loads through x11 reach the device path). */
const MMIO = 0x1000_0000;
const MRET = 0x30200073;
/** CSRs the CSR instructions are tried on (the csr field of the table's match is 0). */
const CSRS = [0x001, 0x002, 0x003, 0x100, 0x104, 0x105, 0x106, 0x140, 0x141, 0x142, 0x143, 0x144, 0x14d, 0x180];
const CSRS_M = [0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x340, 0x341, 0x342, 0x343, 0x344, 0xc00, 0xc01, 0xc02];

let warmed = false;

/** Loads, stores and atomics: the entries also tried on an MMIO address. */
const MEMORY_OP = /^(c\.)?(l[bhwd]u?|s[bhwd]|f?l[wd]|f?s[wd]|amo|lr\.|sc\.)/;

export interface WarmUpStats {
  /** Instructions the scratch hart retired (a trapping one retires none). */
  retired: number;
  /** Instruction encodings tried. */
  tried: number;
}

/**
 * Once per isolate: `make` builds a hart over the given bus (Hart itself is passed in, so this module does not
 * import the class it warms up).
 */
export function warmUpInterpreter(make: (bus: Bus) => Hart): WarmUpStats | null {
  if (warmed) return null;
  warmed = true;
  const stats: WarmUpStats = { retired: 0, tried: 0 };
  const view = new DataView(new ArrayBuffer(RAM_BYTES));
  const bus: Bus = {
    ramBase: RAM_BASE,
    ramSize: RAM_BYTES,
    chunkShift: 16,
    ramChunk: (pa) => (pa >= RAM_BASE && pa < RAM_BASE + RAM_BYTES ? view : null),
    mmioRead: (pa) => (pa >= MMIO && pa < MMIO + 0x100 ? 0 : undefined),
    mmioWrite: (pa) => pa >= MMIO && pa < MMIO + 0x100,
    onRamRemap: () => {},
  };
  const hart = make(bus);
  const put = (at: number, word: number, size: 2 | 4): void => {
    if (size === 2) {
      view.setUint16(at - RAM_BASE, word, true);
      view.setUint16(at - RAM_BASE + 2, 0x0001, true); // c.nop after it
    } else view.setInt32(at - RAM_BASE, word, true);
    hart.flushDecodeCache();
  };
  put(MRET_AT, MRET, 4);
  for (const supervisor of [false, true]) {
    for (const op of OPCODES) {
      const csrOp = op.fmt === 'CSR' || op.fmt === 'CSRI';
      const csrs = csrOp ? (supervisor ? CSRS : [...CSRS, ...CSRS_M]) : [0];
      for (const csr of csrs) {
        // rd x5, rs1 x10 (RAM data) or x11 (MMIO) alternately, rs2 x6, rs3 x7; immediates zero.
        for (const base of MEMORY_OP.test(op.name) ? [10, 11] : [10]) {
          let word = op.match;
          if (op.size === 4) {
            const high = csrOp ? csr << 20 : (6 << 20) | (7 << 27);
            word = (word | (5 << 7) | (base << 15) | high) >>> 0;
          }
          if ((word & op.mask) >>> 0 !== op.match) word = op.match; // the fields are part of the opcode
          hart.reset(RAM_BASE);
          hart.writeCsr(CSR_MTVEC, TRAP_AT, 0);
          hart.writeCsr(CSR_STVEC, TRAP_AT, 0);
          for (let r = 1; r < 32; r++) hart.setX(r, r * 3);
          hart.setX(10, DATA);
          hart.setX(11, MMIO);
          put(CODE, word, op.size);
          if (supervisor) {
            // mret into S at CODE.
            hart.writeCsr(CSR_MSTATUS, (1 << 11) | (1 << 13), 0); // MPP = S, FS = Initial
            hart.writeCsr(CSR_MEPC, CODE, 0);
            hart.pc = MRET_AT;
            hart.run(1);
          } else hart.pc = CODE;
          stats.retired += hart.run(2);
          stats.tried++;
        }
      }
    }
  }
  return stats;
}
