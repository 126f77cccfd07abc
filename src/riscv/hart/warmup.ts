/**
 * Runs every instruction of the opcode table once, in M mode and in S mode with Sv39 paging on (jumps and branches
 * both ways, and out of a page), then the paths no single instruction reaches (TLB hits, an instruction across
 * pages, WFI and an interrupt, Sstc's deadline, a trap inside a translated block), on a scratch hart over scratch
 * RAM, before the first real hart of an isolate starts.
 *
 * Why: V8 optimizes the interpreter loop (`Hart.run`) within the first milliseconds of a boot, from the type
 * feedback gathered so far; every path the guest takes for the first time afterwards (a new opcode, a trap, a
 * privileged op) has no feedback, and hitting it deoptimizes run() and sends it back to TurboFan. A boot did that
 * a dozen times per isolate, and a VM with harts on threads pays it in every thread (docs/performance.md). Running
 * each path once first gives V8 the whole picture before it optimizes.
 *
 * The scratch hart touches nothing real: its RAM is a private WebAssembly.Memory, its bus answers MMIO with zeros,
 * its code-share channel (if any) is its own. It is kept (see keptAlive) but never runs again.
 */
import type { Bus } from '../bus.js';
import { OPCODES } from '../opcodes.js';
import type { Hart } from '../hart.js';
import { HART_REGION_BYTES } from '../jit/wasm/layout.js';
import { withCodeShare } from '../jit/wasm/share.js';
import { createGuestAtomics } from '../atomics.js';
import {
  CSR_MENVCFG,
  CSR_MEPC,
  CSR_MIE,
  MENVCFG_HI_STCE,
  CSR_MSTATUS,
  CSR_MTVEC,
  CSR_SATP,
  CSR_STIMECMP,
  CSR_STVEC,
  FS_INITIAL,
  IRQ_MTI,
  MSTATUS_FS_SHIFT,
  MSTATUS_MPP_SHIFT,
  PRV_S,
  SATP_MODE_SV39,
  MIP_MTIP,
  MSTATUS_FS,
  MSTATUS_MIE,
} from '../csr.js';

const RAM_BASE = 0x8000_0000;
const RAM_BYTES = 1 << 16;
const CODE = RAM_BASE + 0x1000;
const MRET_AT = RAM_BASE + 0x2000;
const TRAP_AT = RAM_BASE + 0x3000;
/** A page whose last words jump out of it, or hold an instruction that crosses into the next (free) page. */
const EDGE_PAGE = RAM_BASE + 0x4000;
const DATA = RAM_BASE + 0x8000;
/**
 * Sv39 tables for the S-mode pass (Linux runs S mode with paging on, so the page walk and the TLB fills are what
 * its loads, stores and fetches meet): RAM mapped as itself through all three levels in 4 KiB pages (the DATA
 * page without A and D, so the walk sets them), the first GiB (MMIO) as itself in one gigapage, the second not at
 * all (UNMAPPED faults).
 */
const ROOT_TABLE = RAM_BASE + 0xa000;
const L1_TABLE = RAM_BASE + 0xb000;
const L0_TABLE = RAM_BASE + 0xc000;
/** Sv39 PTE bits, as the privileged spec names them. */
const PTE_V = 1 << 0;
const PTE_R = 1 << 1;
const PTE_W = 1 << 2;
const PTE_X = 1 << 3;
const PTE_A = 1 << 6;
const PTE_D = 1 << 7;
/** Calls after which V8 has surely given a function its feedback vector (it waits for the first few). */
const FEEDBACK_CALLS = 16;
/** Neither RAM nor MMIO: an access there faults. */
const UNMAPPED = 0x4000_0000;
/**
 * loop: ld x5, 0(x10); addi x6, x6, -1; bne x6, x0, loop; then jal x0, 0. Run until a JIT has compiled the loop's
 * block, then once more with x10 unmapped: the load faults inside the translated block.
 */
const HOT_LOOP = [0x00053283, 0xfff30313, 0xfe031ce3, 0x0000006f];
/** An MMIO address the scratch bus answers (loads through x11 reach the device path). */
const MMIO = 0x1000_0000;
const MRET = 0x30200073;
const WFI = 0x10500073;
/**
 * Jumps and branches, compressed ones included: also tried from the end of a page (a taken one leaves it), and
 * with rs1 = rs2 = a code address (the other way for each branch; jalr's target inside its page).
 */
const BRANCH_OP = /^(c\.)?(j|jal|jalr|beq|bne|blt|bge|bltu|bgeu|beqz|bnez)$/;
/**
 * ld sd, then lb lh lw ld lbu lhu lwu, sb sh sw sd, flw fld fsw fsd, all on 0(x10), then addi x5, x10, 1: the
 * first load and store fill the TLBs, so the rest take the interpreter's TLB-hit paths (every table entry alone
 * only misses).
 */
const MEMORY_RUN = [
  0x00053283, 0x00553023, 0x00050283, 0x00051283, 0x00052283, 0x00053283, 0x00054283, 0x00055283, 0x00056283, 0x00550023,
  0x00551023, 0x00552023, 0x00553023, 0x00052007, 0x00053007, 0x00552027, 0x00553027, 0x00150293,
];
/** CSRs the CSR instructions are tried on (the csr field of the table's match is 0). */
const CSRS = [0x001, 0x002, 0x003, 0x100, 0x104, 0x105, 0x106, 0x140, 0x141, 0x142, 0x143, 0x144, 0x14d, 0x180];
const CSRS_M = [0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x340, 0x341, 0x342, 0x343, 0x344, 0xc00, 0xc01, 0xc02];

const Wasm = (
  globalThis as unknown as {
    WebAssembly?: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer } };
  }
).WebAssembly;

/** A shared WebAssembly.Memory of `pages`, or null where there is none (no WebAssembly, or no shared memory). */
function sharedMemory(pages: number): { buffer: SharedArrayBuffer } | null {
  try {
    return Wasm ? new Wasm.Memory({ initial: pages, maximum: pages, shared: true }) : null;
  } catch {
    return null;
  }
}

let warmed = false;
/**
 * The scratch hart, kept for the isolate's life: it holds the hidden class (map) the real harts share with it.
 * V8 keeps maps in run()'s property-access feedback weakly, so had the scratch hart died and a full GC run before
 * the first real hart existed, that feedback would be cleared, and the optimized run() would deoptimize at each of
 * those accesses in turn ("insufficient type feedback for generic named access").
 */
const keptAlive: Hart[] = [];

/** Loads, stores and atomics: the entries also tried on an MMIO address. */
const MEMORY_OP = /^(c\.)?(l[bhwd]u?|s[bhwd]|f?l[wd]|f?s[wd]|amo|lr\.|sc\.)/;

export interface WarmUpStats {
  /** Instructions the scratch hart retired (a trapping one retires none). */
  retired: number;
  /** Instruction encodings tried. */
  tried: number;
}

/** What the real harts' bus has that changes run()'s paths, so the scratch bus gets it too. */
export interface WarmUpBusLike {
  /** Hardware atomics (harts on several threads): AMOs, LR/SC and 8-byte accesses go through them. */
  atomics?: boolean;
  /** Sibling sharing of compiled blocks (several harts): blocks take the state region as a parameter. */
  codeShare?: boolean;
}

/**
 * Once per isolate: `make` builds a hart over the given bus (Hart itself is passed in, so this module does not
 * import the class it warms up).
 */
export function warmUpInterpreter(make: (bus: Bus) => Hart, like: WarmUpBusLike = {}): WarmUpStats | null {
  if (warmed) return null;
  warmed = true;
  const stats: WarmUpStats = { retired: 0, tried: 0 };
  // RAM at the start of a shared WebAssembly.Memory with room for one hart's JIT state after it, as on a real
  // board (src/vm/linear-ram.ts): a hart made with the JIT the environment selects gets the same JIT as the real
  // ones, so run()'s JIT paths (block lookups, the entry counts of branch targets) are trained on the class they
  // will meet.
  const pages = (RAM_BYTES + HART_REGION_BYTES) / 65536;
  const memory = sharedMemory(pages);
  const view = new DataView(memory ? memory.buffer : new ArrayBuffer(RAM_BYTES), 0, RAM_BYTES);
  let reserved = false;
  const plain: Bus = {
    ...(memory && like.atomics && { atomics: createGuestAtomics(memory) }),
    ...(memory && {
      wasmState: {
        memory,
        buffer: memory.buffer,
        reserve: (bytes: number) => (reserved || bytes > HART_REGION_BYTES ? null : ((reserved = true), RAM_BYTES)),
      },
    }),
    ramBase: RAM_BASE,
    ramSize: RAM_BYTES,
    chunkShift: 16,
    ramChunk: (pa) => (pa >= RAM_BASE && pa < RAM_BASE + RAM_BYTES ? view : null),
    mmioRead: (pa) => (pa >= MMIO && pa < MMIO + 0x100 ? 0 : undefined),
    mmioWrite: (pa) => pa >= MMIO && pa < MMIO + 0x100,
    onRamRemap: () => {},
  };
  // Its own channel: what the scratch hart compiles reaches no real hart.
  const bus = like.codeShare ? withCodeShare(plain) : plain;
  const hart = make(bus);
  keptAlive.push(hart);
  const put = (at: number, word: number, size: 2 | 4): void => {
    if (size === 2) {
      view.setUint16(at - RAM_BASE, word, true);
      view.setUint16(at - RAM_BASE + 2, 0x0001, true); // c.nop after it
    } else view.setInt32(at - RAM_BASE, word, true);
    hart.flushDecodeCache();
  };
  /** 32-bit instructions one after another from `at`. */
  const putProgram = (at: number, words: readonly number[]): void => {
    words.forEach((word, i) => view.setInt32(at - RAM_BASE + 4 * i, word, true));
    hart.flushDecodeCache();
  };
  put(MRET_AT, MRET, 4);
  const pte = (at: number, pa: number, flags: number): void => {
    const v = Math.floor(pa / 4096) * 1024 + flags;
    view.setUint32(at - RAM_BASE, v % 2 ** 32, true);
    view.setUint32(at - RAM_BASE + 4, Math.floor(v / 2 ** 32), true);
  };
  /** A valid leaf any access may use. */
  const RWX = PTE_V | PTE_R | PTE_W | PTE_X;
  pte(ROOT_TABLE, 0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
  pte(ROOT_TABLE + 8 * 2, L1_TABLE, PTE_V);
  pte(L1_TABLE, L0_TABLE, PTE_V);
  for (let page = 0; page < RAM_BYTES / 4096; page++)
    pte(L0_TABLE + 8 * page, RAM_BASE + page * 4096, RWX | (RAM_BASE + page * 4096 === DATA ? 0 : PTE_A | PTE_D));
  for (const supervisor of [false, true]) {
    for (const op of OPCODES) {
      const csrOp = op.fmt === 'CSR' || op.fmt === 'CSRI';
      const csrs = csrOp ? (supervisor ? CSRS : [...CSRS, ...CSRS_M]) : [0];
      for (const csr of csrs) {
        // rd x5, rs1 x10 (RAM data) or x11 (MMIO) alternately, rs2 x6, rs3 x7, where the opcode leaves those
        // bits free (a shift's funct7 holds rs3's, say: it still gets rd x5, so it is performed, where the whole
        // word falling back to the bare opcode made it a write to x0, which decodes as a NOP).
        for (const base of MEMORY_OP.test(op.name) ? [10, 11] : [10]) {
          const fields = op.size === 4 ? (5 << 7) | (base << 15) | (csrOp ? csr << 20 : (6 << 20) | (7 << 27)) : 0;
          const word = (op.match | (fields & ~op.mask)) >>> 0;
          const branch = BRANCH_OP.test(op.name);
          for (const at of branch ? [CODE, EDGE_PAGE + 4096 - op.size] : [CODE]) {
            for (const equal of branch ? [false, true] : [false]) {
              start(supervisor);
              if (equal) for (const r of [6, 8, 10]) hart.setX(r, CODE);
              put(at, word, op.size);
              stats.retired += runFrom(at, supervisor);
              stats.tried++;
            }
          }
        }
      }
    }
  }
  // Paths no single instruction reaches. They come last: V8 gives run() its feedback vector only after its first
  // few calls, and what ran before that leaves no feedback.
  // Loads and stores that hit the TLBs, with Sstc on (run() then checks stimecmp on entry): its deadline not
  // reached, then reached.
  start(false);
  hart.writeCsr(CSR_MSTATUS, MSTATUS_FS, 0);
  hart.writeCsr(CSR_MENVCFG, 0, MENVCFG_HI_STCE);
  putProgram(CODE, MEMORY_RUN);
  // Each more than a few times: V8 gives a function (the stimecmp getter, say) a feedback vector only then.
  for (const deadline of [-1, 0])
    for (let i = 0; i < FEEDBACK_CALLS; i++) {
      hart.writeCsr(CSR_STIMECMP, deadline, deadline);
      stats.retired += runFrom(CODE, false, MEMORY_RUN.length);
    }
  // A 32-bit instruction across a page boundary (addi x5, x10, 1), entered there and reached from the one before.
  start(false);
  put(EDGE_PAGE + 4090, 0x00150293, 4);
  put(EDGE_PAGE + 4094, 0x00150293, 4);
  stats.retired += runFrom(EDGE_PAGE + 4094, false);
  stats.retired += runFrom(EDGE_PAGE + 4090, false, 3);
  // Jumps back and forth between two pages the fetch TLB maps (jal x0, +8 at a page's end; jal x0, -8 after it).
  start(false);
  put(EDGE_PAGE + 4092, 0x0080006f, 4);
  put(EDGE_PAGE + 4100, 0xff9ff06f, 4);
  stats.retired += runFrom(EDGE_PAGE + 4092, false, 6);
  // WFI with nothing pending: the next run() returns at once. Then the machine timer pending and enabled: run()
  // wakes, and takes the interrupt at the top of its loop.
  start(false);
  put(CODE, WFI, 4);
  stats.retired += runFrom(CODE, false);
  hart.run(2);
  hart.writeCsr(CSR_MIE, MIP_MTIP, 0);
  hart.writeCsr(CSR_MSTATUS, MSTATUS_MIE, 0);
  hart.setPending(IRQ_MTI, true);
  stats.retired += hart.run(2);
  hart.setPending(IRQ_MTI, false);
  // With a JIT, a trap from inside a translated block (the hit threshold and the wait for a batch are ~6000
  // entries of the loop's head).
  start(false);
  putProgram(CODE, HOT_LOOP);
  hart.setX(6, 8192);
  stats.retired += runFrom(CODE, false, 40_000);
  hart.setX(10, UNMAPPED);
  hart.setX(6, 4);
  stats.retired += runFrom(CODE, false, 100);
  return stats;

  function start(supervisor: boolean): void {
    hart.reset(RAM_BASE);
    hart.writeCsr(CSR_MTVEC, TRAP_AT, 0);
    hart.writeCsr(CSR_STVEC, TRAP_AT, 0);
    for (let r = 1; r < 32; r++) hart.setX(r, r * 3);
    hart.setX(10, DATA);
    hart.setX(11, MMIO);
    if (!supervisor) return;
    hart.writeCsr(CSR_MSTATUS, (PRV_S << MSTATUS_MPP_SHIFT) | (FS_INITIAL << MSTATUS_FS_SHIFT), 0);
    hart.writeCsr(CSR_SATP, Math.floor(ROOT_TABLE / 4096), SATP_MODE_SV39 << 28);
    // The DATA page's A and D again, for the next walk to set.
    pte(L0_TABLE + 8 * ((DATA - RAM_BASE) / 4096), DATA, RWX);
  }

  /** Runs `count` instructions from `at` (two by default), in S mode through an mret when `supervisor`. */
  function runFrom(at: number, supervisor: boolean, count = 2): number {
    if (supervisor) {
      hart.writeCsr(CSR_MEPC, at, 0);
      hart.pc = MRET_AT;
      hart.run(1);
    } else hart.pc = at;
    return hart.run(count);
  }
}
