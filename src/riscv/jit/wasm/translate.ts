/**
 * Translates one block of decoded slots into a WebAssembly module (see encoder.ts), with the block boundaries,
 * side exits and precise-trap contract of the JS translator (../codegen.ts): a block starts at a slot, runs
 * code of its page with conditional branches as side exits (a branch back to the first slot loops while the
 * budget lasts; one to an instruction later in the block skips ahead inside it), goes on at the target of a JAL
 * within the page, and ends at another jump, the page end or after WASM_MAX_BLOCK instructions.
 *
 * The module imports the guest RAM's memory (env.mem) and four JS helpers, and exports `b(pb, n, limit, ctx, hb)`:
 * `pb` the page's virtual base (f64), `n` the instructions retired so far in this run() slice, `limit` its
 * budget, `ctx` the hart's data translation context (f64, folded into TLB tags), `hb` the byte its state region
 * starts at (used by code translated for any hart, see P_HB). It returns the new count and
 * leaves the next pc (f64) at PC_OFF of the hart's region.
 *
 * Registers used by the block are held in i64 locals, loaded on entry; every register the block writes is
 * stored back before any helper call (so a trap inside it sees exact state) and at every exit. Loads and stores
 * look up the hart's TLB in memory inline; misses, MMIO and faults call `ld`/`st`, which record the faulting pc
 * and count (h.jitPc/h.jitN) before anything can trap. LR, SC and most AMOs are WebAssembly atomics behind the
 * same store TLB test (atomicOp). Everything else (CSRs, min/max AMOs, FP, system ops, bit-manipulation) calls
 * `slow`, the hart's execSlow.
 */
import { Amo, Op, RD_SHIFT, RS1_SHIFT, RS2_SHIFT, STEP_SHIFT } from '../../hart.js';
import { SINK, TLB_SIZE } from '../../hart/constants.js';
import type { SlotReader } from '../codegen.js';
import { encodeModule, F64, FnBody, I32, I64, type AtomicOp, type MemOp, type ModuleSpec } from './encoder.js';
import { FP_MNEMONICS } from '../../fpu/state.js';
import { CSR_FCSR, CSR_FFLAGS, CSR_FRM } from '../../csr.js';
import {
  ATOMICS_OFF,
  FETCH_PPN_OFF,
  FP_ARITH_FAST,
  FP_FAST_OFF,
  FP_FFLAGS_SHIFT,
  FP_FRM_SHIFT,
  FP_FS_DIRTY,
  FP_FS_ON,
  FP_OFF,
  FETCH_TAG_OFF,
  JC_INDEX_OFF,
  JC_PPN_OFF,
  JC_SIZE,
  JC_TAG_OFF,
  LOAD_PPN_OFF,
  LOAD_TAG_OFF,
  PB_OFF,
  PC_OFF,
  PPN_OFF,
  RES_ADDR_OFF,
  RES_VALID_OFF,
  RES_VALUE_OFF,
  STOP_OFF,
  STORE_PPN_OFF,
  STORE_TAG_OFF,
  X_OFF,
} from './layout.js';

/** Imported helpers, by function index. */
export const FN_LD = 0;
export const FN_ST = 1;
export const FN_SLOW = 2;
export const FN_FP = 3;
/** The module's multiply-high helper; block functions follow it. */
const FN_MULHU = 4;

// Parameters of the block function.
const P_PB = 0;
const P_N = 1;
const P_LIMIT = 2;
const P_CTX = 3;
/**
 * The byte where the calling hart's state region starts (layout.ts), used by blocks translated for any hart
 * (base null): one compiled block then serves every hart of the VM, so a block hot on one hart thread runs on
 * the others without being compiled again (sibling sharing, ./share.ts), and V8 tiers it up once for all of
 * them. A hart alone gets its base as constant offsets instead: the parameter costs single-hart loops ~7 %
 * (bench/cpu, integer and memory loops), and reading it from an imported global far more (memory loop 1800 ->
 * 1010 MIPS).
 */
const P_HB = 4;

export interface WasmBlock {
  /** The block's function, to be put in a module (buildModule) alone or with others. */
  body: FnBody;
  /** Its encoded body: identical bytes mean an identical block (for sharing one translation). */
  key: string;
  /** WAT-like text of the block function, when asked for (tests, debugging). */
  text: string | null;
  /** Instructions in its segments (the straight-line path of each). */
  length: number;
  /** Segments: 1 for a block alone, more for a region. */
  segments: number;
  /**
   * The start slots of the segments after the first: translating the same page slot with exactly these as the
   * hot targets gives the same region again (how a sibling hart rebuilds the key of a block it is sent).
   */
  segmentSlots: number[];
}

interface Insn {
  op: number;
  w: number;
  imm: number;
  rd: number;
  r1: number;
  r2: number;
  pcOff: number;
  nextOff: number;
  /** A JAL whose target (in this page) the block goes on translating: it only writes the link register. */
  follow?: boolean;
}

// Built on first use: hart.ts imports this module (through the JIT), so Op is not ready at load time.
let LOAD_OPS: Partial<Record<number, MemOp>> = {};
let STORE_OPS: Partial<Record<number, [MemOp, number]>> = {};
let NATIVE = new Set<number>();
/** The AMOs WebAssembly has a read-modify-write for, by `Amo` kind (the decoded imm); min/max go to the hart. */
let AMO_RMW: Partial<Record<number, string>> = {};
let tablesReady = false;
function buildTables(): void {
  if (tablesReady) return;
  tablesReady = true;
  LOAD_OPS = {
    [Op.LB]: 'i64.load8_s',
    [Op.LH]: 'i64.load16_s',
    [Op.LW]: 'i64.load32_s',
    [Op.LD]: 'i64.load',
    [Op.LBU]: 'i64.load8_u',
    [Op.LHU]: 'i64.load16_u',
    [Op.LWU]: 'i64.load32_u',
  };
  STORE_OPS = {
    [Op.SB]: ['i64.store8', 1],
    [Op.SH]: ['i64.store16', 2],
    [Op.SW]: ['i64.store32', 4],
    [Op.SD]: ['i64.store', 8],
  };
  AMO_RMW = { [Amo.SWAP]: 'xchg', [Amo.ADD]: 'add', [Amo.XOR]: 'xor', [Amo.AND]: 'and', [Amo.OR]: 'or' };
  // Ops this translator executes itself, some with a helper call for what it does not handle (the rest call the
  // hart's execSlow).
  NATIVE = new Set<number>([
    Op.CSRRS,
    Op.LR_W,
    Op.LR_D,
    Op.SC_W,
    Op.SC_D,
    Op.AMO_W,
    Op.AMO_D,
    Op.NOP,
    Op.FENCE,
    Op.LUI,
    Op.AUIPC,
    Op.JAL,
    Op.JALR,
    Op.BEQ,
    Op.BNE,
    Op.BLT,
    Op.BGE,
    Op.BLTU,
    Op.BGEU,
    ...Object.keys(LOAD_OPS).map(Number),
    ...Object.keys(STORE_OPS).map(Number),
    Op.ADDI,
    Op.SLTI,
    Op.SLTIU,
    Op.XORI,
    Op.ORI,
    Op.ANDI,
    Op.SLLI,
    Op.SRLI,
    Op.SRAI,
    Op.ADD,
    Op.SUB,
    Op.SLL,
    Op.SLT,
    Op.SLTU,
    Op.XOR,
    Op.SRL,
    Op.SRA,
    Op.OR,
    Op.AND,
    Op.ADDIW,
    Op.SLLIW,
    Op.SRLIW,
    Op.SRAIW,
    Op.ADDW,
    Op.SUBW,
    Op.SLLW,
    Op.SRLW,
    Op.SRAW,
    Op.MUL,
    Op.MULW,
    Op.MULH,
    Op.MULHSU,
    Op.MULHU,
    Op.DIV,
    Op.DIVU,
    Op.REM,
    Op.REMU,
    Op.DIVW,
    Op.DIVUW,
    Op.REMW,
    Op.REMUW,
  ]);
}

/**
 * Most instructions in one WebAssembly block (the JS JIT's MAX_BLOCK is 16). Since blocks go on through in-page
 * jumps and skip ahead inside themselves, longer ones pay: on bench/proc in-process, 32 took ash's loop from
 * 1.07 to 0.97 s and the pipeline from 1.11 to 0.98 s; 64 gained ~3% more there but made the boot dearer
 * (2.96 s CPU against 2.61 s).
 */
export const WASM_MAX_BLOCK = 32;

/** Double ops a block does itself (by FP function index), and the sign moves (0 fsgnj, 1 fsgnjn, 2 fsgnjx). */
const FP_ARITH: Partial<Record<number, 'f64.add' | 'f64.sub' | 'f64.mul' | 'f64.div' | 'f64.sqrt'>> = {
  [FP_MNEMONICS.indexOf('fadd_d')]: 'f64.add',
  [FP_MNEMONICS.indexOf('fsub_d')]: 'f64.sub',
  [FP_MNEMONICS.indexOf('fmul_d')]: 'f64.mul',
  [FP_MNEMONICS.indexOf('fdiv_d')]: 'f64.div',
  [FP_MNEMONICS.indexOf('fsqrt_d')]: 'f64.sqrt',
};
const FP_SGNJ: Partial<Record<number, number>> = {
  [FP_MNEMONICS.indexOf('fsgnj_d')]: 0,
  [FP_MNEMONICS.indexOf('fsgnjn_d')]: 1,
  [FP_MNEMONICS.indexOf('fsgnjx_d')]: 2,
};

/** Fused double ops a block does itself (by FP function index): [negate the product, negate the addend]. */
const FP_FUSED: Partial<Record<number, readonly [boolean, boolean]>> = {
  [FP_MNEMONICS.indexOf('fmadd_d')]: [false, false],
  [FP_MNEMONICS.indexOf('fmsub_d')]: [false, true],
  [FP_MNEMONICS.indexOf('fnmsub_d')]: [true, false],
  [FP_MNEMONICS.indexOf('fnmadd_d')]: [true, true],
};
/** The upper word of a single in a 64-bit FP register: all ones (NaN-boxing). */
const NAN_BOX = -4294967296;
/** The same in single precision (fusedMultiplyAddS). */
const FP_FUSED_S: Partial<Record<number, readonly [boolean, boolean]>> = {
  [FP_MNEMONICS.indexOf('fmadd_s')]: [false, false],
  [FP_MNEMONICS.indexOf('fmsub_s')]: [false, true],
  [FP_MNEMONICS.indexOf('fnmsub_s')]: [true, false],
  [FP_MNEMONICS.indexOf('fnmadd_s')]: [true, true],
};
/** The fused path's f64 locals (see fusedMultiplyAdd). */
const FUSED_LOCALS = ['a', 'b', 'c', 't', 'ah', 'al', 'bh', 'bl', 'p', 'pe', 's', 'bb', 'err'] as const;
type FusedTemps = Record<(typeof FUSED_LOCALS)[number], number>;
/** Veltkamp's splitting constant for doubles, 2^27 + 1. */
const SPLIT = 134217729;
/** The fused path's guard: |a|, |b| within 2^±400 and c zero or within 2^±700 (then nothing overflows or underflows). */
const FUSED_PRODUCT_EXP = 400;
const FUSED_ADDEND_EXP = 700;

const isFpMem = (op: number): boolean => op >= Op.FLW && op <= Op.FSD;

/** Reads the block's instructions; null when no block can start at `start`. */
function collect(read: SlotReader, start: number): { insns: Insn[]; endOff: number } | null {
  const insns: Insn[] = [];
  let slot = start;
  for (;;) {
    if (insns.length >= WASM_MAX_BLOCK) return { insns, endOff: slot * 2 };
    const { w, imm } = read(slot);
    const op = w & 0xff;
    if (op === Op.PAGE_END || op === Op.CROSS || op === Op.DECODE) {
      if (insns.length === 0) return null;
      return { insns, endOff: slot * 2 };
    }
    const step = w >>> STEP_SHIFT;
    const insn: Insn = {
      op,
      w,
      imm,
      rd: (w >>> RD_SHIFT) & 0x7f,
      r1: (w >>> RS1_SHIFT) & 0x7f,
      r2: (w >>> RS2_SHIFT) & 0x7f,
      pcOff: slot * 2,
      nextOff: slot * 2 + step * 2,
    };
    insns.push(insn);
    slot += step;
    if (op === Op.JAL) {
      // A direct jump or call within the page continues the block at its target (the next block would
      // otherwise start there, one more trip through the dispatcher), unless that is the block's start (the
      // in-block loop) or code the block already holds.
      const to = insn.pcOff + imm;
      if (to >= 0 && to < 4096 && to !== start * 2 && !insns.some((i) => i.pcOff === to)) {
        insn.follow = true;
        slot = to >>> 1;
        continue;
      }
    }
    if (op === Op.JAL || op === Op.JALR) return { insns, endOff: insn.nextOff };
  }
}

/** Which x-array offsets an instruction reads (as register numbers) and whether it writes rd. */
function sources(i: Insn): number[] {
  switch (i.op) {
    case Op.NOP:
    case Op.FENCE:
    case Op.LUI:
    case Op.AUIPC:
    case Op.JAL:
      return [];
    case Op.CSRRS:
    case Op.JALR:
    case Op.ADDI:
    case Op.SLTI:
    case Op.SLTIU:
    case Op.XORI:
    case Op.ORI:
    case Op.ANDI:
    case Op.SLLI:
    case Op.SRLI:
    case Op.SRAI:
    case Op.ADDIW:
    case Op.SLLIW:
    case Op.SRLIW:
    case Op.SRAIW:
      return [i.r1 >>> 1];
    default:
      if (LOAD_OPS[i.op] !== undefined) return [i.r1 >>> 1];
      return [i.r1 >>> 1, i.r2 >>> 1];
  }
}
const writesRd = (i: Insn): boolean =>
  NATIVE.has(i.op) &&
  i.rd !== SINK &&
  STORE_OPS[i.op] === undefined &&
  !(i.op >= Op.BEQ && i.op <= Op.BGEU) &&
  i.op !== Op.NOP &&
  i.op !== Op.FENCE;

/** One straight-line path of a translated region: the instructions collect() read from `startOff`. */
interface Segment {
  startOff: number;
  insns: Insn[];
  endOff: number;
  /** By instruction: the index of the later instruction in this segment its conditional branch goes to, or -1. */
  forwardTo: number[];
}

const isBranch = (op: number): boolean => op >= Op.BEQ && op <= Op.BGEU;

function segmentAt(read: SlotReader, start: number): Segment | null {
  const found = collect(read, start);
  if (found === null) return null;
  const { insns } = found;
  const forwardTo = insns.map((i, k) =>
    isBranch(i.op) ? insns.findIndex((j, jk) => jk > k && j.pcOff === i.pcOff + i.imm) : -1,
  );
  return { startOff: start * 2, insns, endOff: found.endOff, forwardTo };
}

/** Page offsets a segment may leave to (taken branches, a jump not followed, its fall-through end), in order. */
function exitTargets(seg: Segment): number[] {
  const out: number[] = [];
  seg.insns.forEach((i, k) => {
    if (isBranch(i.op) && seg.forwardTo[k] === -1) out.push(i.pcOff + i.imm);
    else if (i.op === Op.JAL && i.follow !== true) out.push(i.pcOff + i.imm);
  });
  const last = seg.insns.at(-1)!;
  if (last.op !== Op.JAL && last.op !== Op.JALR) out.push(seg.endOff);
  return out.filter((to) => to >= 0 && to < 4096 && to !== seg.startOff);
}

/**
 * Most instructions in one region (all its segments), and most segments. A region is one function, so V8
 * compiles it in one piece: bigger ones cost more to compile than they save on code that runs a few thousand times.
 */
export const WASM_MAX_REGION = 128;
export const WASM_MAX_SEGMENTS = 8;

/**
 * The segments of the region starting at `start`: its own block, then (breadth first) the blocks at the hot
 * in-page targets its segments leave to, while the region's limits allow.
 */
function collectRegion(read: SlotReader, start: number, hot: ((slot: number) => boolean) | null): Segment[] | null {
  const first = segmentAt(read, start);
  if (first === null) return null;
  const segments = [first];
  if (hot === null) return segments;
  const seen = new Set<number>([first.startOff]);
  let total = first.insns.length;
  for (let s = 0; s < segments.length && segments.length < WASM_MAX_SEGMENTS; s++) {
    for (const to of exitTargets(segments[s]!)) {
      if (seen.has(to)) continue;
      seen.add(to);
      if (!hot(to >>> 1)) continue;
      const seg = segmentAt(read, to >>> 1);
      if (seg === null || total + seg.insns.length > WASM_MAX_REGION) continue;
      segments.push(seg);
      total += seg.insns.length;
      if (segments.length >= WASM_MAX_SEGMENTS) break;
    }
  }
  return segments;
}

/**
 * The function for the region starting at `start`, for the hart whose state region starts at byte `base` of the
 * memory, or (base null) for any hart: the state region is then the function's last argument; null when no block
 * can start there. Without `hot` the region is one block; with it, the blocks at
 * in-page targets that `hot` names join it as segments (see collectRegion): the function then starts with a
 * `br_table` over its segments, and a transfer between them is a branch inside the function (registers stay in
 * locals) instead of a return to the dispatcher and another call.
 */
export function translateBlock(
  read: SlotReader,
  start: number,
  base: number | null,
  withText = false,
  hot: ((slot: number) => boolean) | null = null,
): WasmBlock | null {
  buildTables();
  const segments = collectRegion(read, start, hot);
  if (segments === null) return null;
  const entries = new Map<number, number>(segments.map((seg, i) => [seg.startOff, i]));
  const f = new FnBody(5, withText);
  // The state region: at a constant byte (a hart's own code), or at the hb parameter (code any hart can run).
  const at = base ?? 0;
  const state = (): FnBody => (base === null ? f.get(P_HB) : f.i32(0));

  // Register locals: every register the region reads or writes (x0 reads as a constant).
  const regLocal = new Int32Array(32).fill(-1);
  const written: number[] = [];
  const use = (reg: number): void => {
    if (reg !== 0 && regLocal[reg] === -1) regLocal[reg] = f.local(I64);
  };
  for (const seg of segments)
    for (const i of seg.insns) {
      for (const r of sources(i)) if (NATIVE.has(i.op)) use(r);
      if (isFpMem(i.op)) use(i.r1 >>> 1); // the base of an FP load or store (done here, see fpFast)
      if (writesRd(i)) {
        use(i.rd >>> 1);
        if (!written.includes(i.rd >>> 1)) written.push(i.rd >>> 1);
      }
    }
  const cached: number[] = [];
  for (let r = 1; r < 32; r++) if (regLocal[r] !== -1) cached.push(r);
  const pbi = f.local(I64);
  const va = f.local(I64);
  const lo = f.local(I32);
  const off = f.local(I32);
  const ti = f.local(I32);
  const t1 = f.local(I64);
  const t2 = f.local(I64);
  const tf = f.local(F64);
  const xAt = (reg: number): number => at + X_OFF + reg * 8;

  /** Pushes register `x` (an x-array offset) as i64. */
  const R = (x: number): void => {
    const reg = x >>> 1;
    if (reg === 0) f.i64(0);
    else f.get(regLocal[reg]!);
  };
  /** Pops an i64 into rd (the x0 sink drops it). */
  const W = (rd: number): void => {
    if (rd === SINK) f.op('drop');
    else f.set(regLocal[rd >>> 1]!);
  };
  const flush = (): void => {
    for (const r of written) state().get(regLocal[r]!).mem('i64.store', xAt(r));
  };
  const reload = (regs: readonly number[]): void => {
    for (const r of regs) if (regLocal[r] !== -1) state().mem('i64.load', xAt(r)).set(regLocal[r]!);
  };
  /** Pushes n + k (the count retired before instruction k of this pass). */
  const nPlus = (k: number): void => {
    f.get(P_N);
    if (k !== 0) f.i32(k).op('i32.add');
  };
  /**
   * Leaves the block at page offset `to` right after a helper that ended it: the registers are in memory already
   * (stored before the call; a load's helper wrote rd there), so only the pc is. Storing them all again made a
   * fifth of the code translated for ash's loop (a region stores every register it writes at each such exit).
   */
  const exitFlushed = (to: number, retired: number): void => {
    state()
      .get(P_PB)
      .f64(to)
      .op('f64.add')
      .mem('f64.store', at + PC_OFF);
    nPlus(retired);
    f.op('return');
  };
  /** Leaves the block at page offset `to` with `retired` more instructions retired. */
  const exit = (to: number, retired: number): void => {
    flush();
    exitFlushed(to, retired);
  };
  let nest = 0; // blocks open inside the segment's loop
  const open = (kind: 'if' | 'block', result?: typeof I64 | typeof I32 | typeof F64): void => {
    f.open(kind, result);
    nest++;
  };
  const close = (): void => {
    f.end();
    nest--;
  };
  // The segment being emitted, its index, and (several segments) the local naming the segment to run next.
  let seg = segments[0]!;
  let segIndex = 0;
  const next = segments.length > 1 ? f.local(I32) : -1;
  /**
   * Goes on at page offset `to` with `retired` more instructions retired, while the budget lasts: at the
   * segment's own start through its loop, at another segment's through the region's br_table (nest + segments -
   * segIndex labels out); past the budget, or anywhere else, out of the function.
   */
  const leave = (to: number, retired: number): void => {
    const self = to === seg.startOff;
    const target = self ? segIndex : entries.get(to);
    if (target === undefined) {
      exit(to, retired);
      return;
    }
    f.get(P_N).i32(retired).op('i32.add').tee(P_N).get(P_LIMIT).op('i32.lt_u');
    open('if');
    if (self) f.br(nest);
    else {
      f.i32(target).set(next);
      f.br(nest + segments.length - segIndex);
    }
    close();
    exit(to, 0);
  };
  /** Taken transfer to page offset `to` after instruction k retired. */
  const jumpTo = (to: number, k: number): void => leave(to, k + 1);
  // Conditional branches to an instruction later in the segment skip ahead inside it (a wasm `block` per such
  // target, all opened at the top of the loop body and closed right before their target, so they nest) instead
  // of leaving through the dispatcher. Counts stay static (instruction k retires n + k): a skip from k to t
  // lowers n by t - k - 1, the instructions it did not run.
  const forwardAt = new Map<number, number>(); // target's index -> its block's nesting level
  const branch = (to: number, k: number): void => {
    open('if');
    const t = seg.forwardTo[k]!;
    const level = forwardAt.get(t);
    if (level !== undefined) {
      if (t - k - 1 !== 0)
        f.get(P_N)
          .i32(k + 1 - t)
          .op('i32.add')
          .set(P_N);
      f.br(nest - level);
    } else jumpTo(to, k);
    close();
  };
  /** Virtual address rs1 + imm into `va`, and the TLB index (times 8) into `ti`, the page offset into `off`. */
  const address = (i: Insn, imm = i.imm): void => {
    R(i.r1);
    if (imm !== 0) f.i64(imm).op('i64.add');
    f.tee(va).op('i32.wrap_i64').tee(lo).i32(12).op('i32.shr_u').i32(2047).op('i32.and').i32(3).op('i32.shl').set(ti);
    f.get(lo).i32(4095).op('i32.and').set(off);
  };
  /** Pushes the TLB hit test (i32) for the tag table at `tagOff`. */
  const tlbHit = (tagOff: number): void => {
    f.get(ti);
    if (base === null) state().op('i32.add');
    f.mem('f64.load', at + tagOff);
    f.get(va).i64(-4096).op('i64.and').op('f64.convert_i64_s').get(P_CTX).op('f64.add').op('f64.eq');
    f.get(off).i32(4088).op('i32.le_u').op('i32.and');
  };
  /** Pushes the memory address of `off` in the entry's RAM page. */
  const hostAddress = (ppnOff: number): void => {
    f.get(ti).i32(1).op('i32.shr_u');
    if (base === null) state().op('i32.add');
    f.mem('i32.load', at + ppnOff)
      .i32(12)
      .op('i32.shl')
      .get(off)
      .op('i32.add');
  };
  /** Instruction k by the hart's execSlow, leaving the block when it says so (the registers are in memory). */
  const helperCall = (i: Insn, k: number): void => {
    flush();
    f.i32(i.w).i32(i.imm).i32(i.rd).i32(i.r1).i32(i.r2).i32(i.pcOff);
    nPlus(k);
    f.call(FN_SLOW, 'slow');
    open('if');
    nPlus(k + 1);
    f.op('return');
    close();
  };
  /** An op done by the hart's execSlow alone that writes rd at most (in memory; the local is loaded again). */
  const helperOp = (i: Insn, k: number): void => {
    helperCall(i, k);
    if (i.rd !== SINK) reload([i.rd >>> 1]);
  };
  /**
   * Closes an `if (result i64)` whose then-arm computed rd with an else-arm where the hart's execSlow does the
   * instruction (it writes rd only, in memory), and writes rd.
   */
  const elseHart = (i: Insn, k: number): void => {
    f.else();
    helperCall(i, k);
    state().mem('i64.load', xAt(i.rd === SINK ? 0 : i.rd >>> 1));
    close();
    W(i.rd);
  };
  /**
   * LR, SC and the AMOs WebAssembly has (swap, add, xor, and, or), done here when the address is aligned and the
   * store TLB maps it: as in the hart's amoAddress, that entry means a RAM page that may be written (so read),
   * is dirty, allowed by PMP and holds no decoded code. Anything else (misaligned, a miss, MMIO, min/max) goes to
   * execSlow. The accesses are WebAssembly atomics, single-copy atomic against every other hart's thread; the
   * reservation is the hart's own (RES_*_OFF), and SC compares-and-swaps against LR's value only when the hart
   * says other threads can write (ATOMICS_OFF), as the hart's SC does. rd gets the old value, LR's value, or SC's
   * 0 (stored) / 1 (failed).
   */
  const atomicOp = (i: Insn, k: number): void => {
    const word = i.op === Op.LR_W || i.op === Op.SC_W || i.op === Op.AMO_W;
    const isAmo = i.op === Op.AMO_W || i.op === Op.AMO_D;
    const rmw = isAmo ? AMO_RMW[i.imm] : undefined;
    if (isAmo && rmw === undefined) {
      helperOp(i, k);
      return;
    }
    const t = word ? 'i32' : 'i64';
    /** Pushes rs2 in the access's width. */
    const value = (): void => {
      R(i.r2);
      if (word) f.op('i32.wrap_i64');
    };
    /** Pushes the reservation's value in the access's width. */
    const reserved = (): void => {
      state().mem('i64.load', at + RES_VALUE_OFF);
      if (word) f.op('i32.wrap_i64');
    };
    address(i, 0);
    tlbHit(STORE_TAG_OFF);
    f.get(lo)
      .i32(word ? 3 : 7)
      .op('i32.and')
      .op('i32.eqz')
      .op('i32.and');
    open('if', I64);
    hostAddress(STORE_PPN_OFF);
    f.set(lo);
    if (isAmo) {
      f.get(lo);
      value();
      f.atomic(`${t}.atomic.rmw.${rmw}` as AtomicOp, 0);
      if (word) f.op('i64.extend_i32_s');
    } else if (i.op === Op.LR_W || i.op === Op.LR_D) {
      f.get(lo).atomic(`${t}.atomic.load` as AtomicOp, 0);
      if (word) f.op('i64.extend_i32_s');
      f.set(t1);
      state()
        .i32(1)
        .mem('i32.store', at + RES_VALID_OFF);
      state()
        .get(lo)
        .op('f64.convert_i32_u')
        .mem('f64.store', at + RES_ADDR_OFF);
      state()
        .get(t1)
        .mem('i64.store', at + RES_VALUE_OFF);
      f.get(t1);
    } else {
      // SC: `off` holds whether it stores.
      state().mem('i32.load', at + RES_VALID_OFF);
      state()
        .mem('f64.load', at + RES_ADDR_OFF)
        .get(lo)
        .op('f64.convert_i32_u')
        .op('f64.eq');
      f.op('i32.and').set(off);
      state()
        .i32(0)
        .mem('i32.store', at + RES_VALID_OFF);
      f.get(off);
      open('if');
      state().mem('i32.load', at + ATOMICS_OFF);
      open('if');
      f.get(lo);
      reserved();
      value();
      f.atomic(`${t}.atomic.rmw.cmpxchg` as AtomicOp, 0);
      reserved();
      f.op(`${t}.eq`).set(off);
      f.else();
      f.get(lo);
      R(i.r2);
      f.mem(word ? 'i64.store32' : 'i64.store', 0);
      close();
      close();
      f.get(off).op('i32.eqz').op('i64.extend_i32_u');
    }
    elseHart(i, k);
  };
  /**
   * frrm, frflags and frcsr (csrrs rd, frm/fflags/fcsr, x0) from the FP_FAST_OFF word, which the hart keeps with
   * frm and fflags in it, while mstatus.FS is on; false for any other CSR instruction (execSlow does it), and
   * with FS off the read goes to execSlow too, which raises the illegal-instruction exception.
   */
  const fpCsrRead = (i: Insn, k: number): boolean => {
    const csr = i.imm & 0xfff;
    if (i.r1 !== 0 || (csr !== CSR_FFLAGS && csr !== CSR_FRM && csr !== CSR_FCSR)) return false;
    fpAllows(FP_FS_ON);
    open('if', I64);
    state()
      .mem('i32.load', at + FP_FAST_OFF)
      .set(off);
    const frm = (): void => void f.get(off).i32(FP_FRM_SHIFT).op('i32.shr_u').i32(7).op('i32.and');
    const fflags = (): void => void f.get(off).i32(FP_FFLAGS_SHIFT).op('i32.shr_u').i32(31).op('i32.and');
    if (csr === CSR_FRM) frm();
    else if (csr === CSR_FFLAGS) fflags();
    else {
      frm();
      f.i32(5).op('i32.shl');
      fflags();
      f.op('i32.or');
    }
    f.op('i64.extend_i32_u');
    elseHart(i, k);
    return true;
  };
  /** Where FP register r lives in the hart's region. */
  const fAt = (r: number): number => at + FP_OFF + r * 8;
  /** Pushes (i32) whether every FP_FAST_OFF bit in `bits` is set. */
  const fpAllows = (bits: number): void => {
    state()
      .mem('i32.load', at + FP_FAST_OFF)
      .i32(bits)
      .op('i32.and')
      .i32(bits)
      .op('i32.eq');
  };
  /**
   * Opens a wasm block around `i`'s helper call with the op's own path in front (false when the op has none): it
   * does the op and branches past the call. Doubles: a result that is finite, normal and computed in
   * round-to-nearest-even with NX already accrued raises no new flag (overflow, underflow, invalid and divide by
   * zero all give an infinite, NaN, zero or subnormal result), so it is stored as is; any other goes to the hart.
   */
  const fpFast = (i: Insn): boolean => {
    const fd = i.rd >>> 1;
    const fs1 = i.r1 >>> 1;
    const fs2 = i.r2 >>> 1;
    const isMem = isFpMem(i.op);
    const fi = i.imm & 0xff;
    const rm = (i.imm >>> 13) & 7;
    // Round to nearest even, given (0) or dynamic (7: frm, which FP_ARITH_FAST requires to be 0).
    const nearest = i.op === Op.FPOP && (rm === 0 || rm === 7);
    const arith = nearest ? FP_ARITH[fi] : undefined;
    const sgnj = i.op === Op.FPOP ? FP_SGNJ[fi] : undefined;
    const fused = nearest ? FP_FUSED[fi] : undefined;
    const fusedS = nearest ? FP_FUSED_S[fi] : undefined;
    if (!isMem && arith === undefined && sgnj === undefined && fused === undefined && fusedS === undefined) return false;
    open('block');
    const done = nest;
    if (isMem) {
      const load = i.op === Op.FLW || i.op === Op.FLD;
      address(i);
      tlbHit(load ? LOAD_TAG_OFF : STORE_TAG_OFF);
      // A load writes an FP register, so it needs FS Dirty already; a store only needs FS on.
      fpAllows(load ? FP_FS_DIRTY : FP_FS_ON);
      f.op('i32.and');
      open('if');
      if (load) {
        state();
        hostAddress(LOAD_PPN_OFF);
        if (i.op === Op.FLD) f.mem('i64.load', 0);
        else f.mem('i64.load32_u', 0).i64(NAN_BOX).op('i64.or'); // NaN-boxed
        f.mem('i64.store', fAt(fd));
      } else {
        hostAddress(STORE_PPN_OFF);
        if (i.op === Op.FSD) state().mem('i64.load', fAt(fs2)).mem('i64.store', 0);
        else state().mem('i32.load', fAt(fs2)).mem('i32.store', 0);
      }
      f.br(nest - done);
      close();
      return true;
    }
    if (sgnj !== undefined) {
      fpAllows(FP_FS_DIRTY);
      open('if');
      state();
      if (sgnj === 2) state().mem('i64.load', fAt(fs1));
      else state().mem('i64.load', fAt(fs1)).i64(1).op('i64.shl').i64(1).op('i64.shr_u');
      state().mem('i64.load', fAt(fs2)).i64(63).op('i64.shr_u');
      if (sgnj === 1) f.i64(1).op('i64.xor');
      f.i64(63).op('i64.shl');
      f.op(sgnj === 2 ? 'i64.xor' : 'i64.or');
      f.mem('i64.store', fAt(fd));
      f.br(nest - done);
      close();
      return true;
    }
    fpAllows(FP_FS_DIRTY | FP_ARITH_FAST);
    open('if');
    if (fusedS !== undefined) {
      // A finite normal single result: stored NaN-boxed.
      fusedMultiplyAddS(fs1, fs2, (i.imm >>> 8) & 31, fusedS);
      f.tee(fusedBits()).i32(23).op('i32.shr_u').i32(0xff).op('i32.and').i32(1).op('i32.sub').i32(0xfe).op('i32.lt_u');
      open('if');
      state().get(fusedBits()).op('i64.extend_i32_u').i64(NAN_BOX).op('i64.or').mem('i64.store', fAt(fd));
      f.br(nest - done);
      close();
      close();
      return true;
    }
    if (fused !== undefined) fusedMultiplyAdd(fs1, fs2, (i.imm >>> 8) & 31, fused);
    else {
      state().mem('f64.load', fAt(fs1));
      if (arith !== 'f64.sqrt') state().mem('f64.load', fAt(fs2));
      f.op(arith!);
    }
    f.tee(tf);
    f.op('i64.reinterpret_f64').i64(52).op('i64.shr_u').op('i32.wrap_i64').i32(0x7ff).op('i32.and');
    f.i32(1).op('i32.sub').i32(0x7fe).op('i32.lt_u');
    open('if');
    state().get(tf).mem('f64.store', fAt(fd));
    f.br(nest - done);
    close();
    close();
    return true;
  };
  let fusedLocals: FusedTemps | null = null;
  /** The fused paths' f64 locals, made on first use (most blocks have no fused op). */
  const fusedTemps = (): FusedTemps =>
    (fusedLocals ??= Object.fromEntries(FUSED_LOCALS.map((name) => [name, f.local(F64)])) as FusedTemps);
  /** Knuth's TwoSum: sum = RN(x + y) and err its exact error (x + y = sum + err), in f64 locals. */
  const twoSum = (x: number, y: number, sum: number, err: number): void => {
    const { bb } = fusedTemps();
    f.get(x).get(y).op('f64.add').tee(sum).get(x).op('f64.sub').set(bb);
    f.get(x).get(sum).get(bb).op('f64.sub').op('f64.sub').get(y).get(bb).op('f64.sub').op('f64.add').set(err);
  };
  /**
   * Rounds to odd the exact value v + e (v = RN(v + e)): v stays when e is 0 or v is odd, else becomes its
   * neighbour towards e (which is odd).
   */
  const roundToOdd = (v: number, e: number): void => {
    f.get(e).f64(0).op('f64.ne');
    f.get(v).op('i64.reinterpret_f64').op('i32.wrap_i64').i32(1).op('i32.and').op('i32.eqz');
    f.op('i32.and');
    open('if');
    f.get(v).op('i64.reinterpret_f64');
    f.i64(1)
      .get(v)
      .f64(0)
      .op('f64.lt')
      .get(e)
      .f64(0)
      .op('f64.lt')
      .op('i32.xor')
      .op('i64.extend_i32_u')
      .i64(1)
      .op('i64.shl')
      .op('i64.sub');
    f.op('i64.add').op('f64.reinterpret_i64').set(v);
    close();
  };
  let fusedBitsLocal = -1;
  const fusedBits = (): number => (fusedBitsLocal >= 0 ? fusedBitsLocal : (fusedBitsLocal = f.local(I32)));
  /**
   * Pushes the bits (i32) of RN32(a * b + c) for single operands (NaN-boxed, finite), else 0 (which the caller's
   * finite-normal test sends to the FPU). The product of two singles is exact in a double; c + p is summed with
   * its exact error (Knuth), rounded to odd in the double, then to nearest in single: rounding to odd with at
   * least two more bits than the target makes the second rounding the correct one (Boldo and Melquiond).
   */
  const fusedMultiplyAddS = (fs1: number, fs2: number, fs3: number, [negProd, negAdd]: readonly [boolean, boolean]): void => {
    const { a, b, c, p, s, err } = fusedTemps();
    // Each operand: boxed (upper word all ones) and finite (exponent below 255), its value promoted exactly.
    const operand = (r: number, negate: boolean, into: number): void => {
      state().mem('i64.load', fAt(r)).op('i32.wrap_i64');
      if (negate) f.i32(-0x80000000).op('i32.xor');
      f.op('f32.reinterpret_i32').op('f64.promote_f32').set(into);
    };
    const usable = (r: number): void => {
      state().mem('i64.load', fAt(r)).i64(32).op('i64.shr_u').op('i32.wrap_i64').i32(-1).op('i32.eq');
      state().mem('i64.load', fAt(r)).op('i32.wrap_i64').i32(23).op('i32.shr_u').i32(0xff).op('i32.and').i32(0xff).op('i32.ne');
      f.op('i32.and');
    };
    usable(fs1);
    usable(fs2);
    f.op('i32.and');
    usable(fs3);
    f.op('i32.and');
    open('if', I32);
    operand(fs1, negProd, a);
    operand(fs2, false, b);
    operand(fs3, negAdd, c);
    f.get(a).get(b).op('f64.mul').set(p);
    twoSum(p, c, s, err);
    roundToOdd(s, err);
    f.get(s).op('f32.demote_f64').op('i32.reinterpret_f32');
    f.else();
    f.i32(0);
    close();
  };
  /**
   * Pushes RN(a * b + c) (f64, with the op's exact negations) when the operands are in the guarded range, else 0
   * (which the caller's finite-normal test sends to the FPU): Dekker's exact product p + pe, Knuth's
   * exact sum c + p = s + err, err + pe rounded to odd, then s plus that rounded to nearest (Boldo and
   * Melquiond's emulation of an FMA by rounding to odd; test/riscv/jit-wasm-fma checks it against the FPU).
   */
  const fusedMultiplyAdd = (fs1: number, fs2: number, fs3: number, [negProd, negAdd]: readonly [boolean, boolean]): void => {
    const { a, b, c, t, ah, al, bh, bl, p, pe, s, err } = fusedTemps();
    const operand = (r: number, negate: boolean, into: number): void => {
      state().mem('i64.load', fAt(r));
      if (negate) f.i64(-0x8000000000000000).op('i64.xor');
      f.op('f64.reinterpret_i64').set(into);
    };
    operand(fs1, negProd, a);
    operand(fs2, false, b);
    operand(fs3, negAdd, c);
    const inRange = (x: number, e: number): void => {
      f.get(x).op('i64.reinterpret_f64').i64(52).op('i64.shr_u').op('i32.wrap_i64').i32(0x7ff).op('i32.and');
      f.i32(1023 - e)
        .op('i32.sub')
        .i32(2 * e + 1)
        .op('i32.lt_u');
    };
    inRange(a, FUSED_PRODUCT_EXP);
    inRange(b, FUSED_PRODUCT_EXP);
    f.op('i32.and');
    inRange(c, FUSED_ADDEND_EXP);
    f.get(c).op('i64.reinterpret_f64').i64(1).op('i64.shl').op('i64.eqz').op('i32.or');
    f.op('i32.and');
    open('if', F64);
    // Veltkamp's split: x = xh + xl, each half 26 bits or less, so the partial products are exact.
    const split = (x: number, hi: number, lo: number): void => {
      f.get(x).f64(SPLIT).op('f64.mul').tee(t).get(t).get(x).op('f64.sub').op('f64.sub').tee(hi);
      f.get(x).get(hi).op('f64.sub').set(lo);
      f.op('drop');
    };
    split(a, ah, al);
    split(b, bh, bl);
    f.get(a).get(b).op('f64.mul').set(p);
    f.get(ah).get(bh).op('f64.mul').get(p).op('f64.sub');
    f.get(ah).get(bl).op('f64.mul').op('f64.add');
    f.get(al).get(bh).op('f64.mul').op('f64.add');
    f.get(al).get(bl).op('f64.mul').op('f64.add').set(pe);
    // s + err = c + p
    twoSum(c, p, s, err);
    // v = RO(err + pe): the sum rounded to nearest (in a), its exact error (in b), then the odd neighbour when inexact
    twoSum(err, pe, a, b);
    roundToOdd(a, b);
    f.get(s).get(a).op('f64.add');
    f.else();
    f.f64(0); // out of range: the finite-normal test below fails and the FPU does it
    close();
  };
  /** i64 ops on (rs1, rs2) or (rs1, imm). */
  const bin = (i: Insn, name: 'i64.add' | 'i64.sub' | 'i64.and' | 'i64.or' | 'i64.xor' | 'i64.mul', useImm: boolean): void => {
    R(i.r1);
    if (useImm) f.i64(i.imm);
    else R(i.r2);
    f.op(name);
    W(i.rd);
  };
  const shift = (i: Insn, name: 'i64.shl' | 'i64.shr_u' | 'i64.shr_s', useImm: boolean): void => {
    R(i.r1);
    if (useImm) f.i64(i.imm & 63);
    else R(i.r2);
    f.op(name);
    W(i.rd);
  };
  /** 32-bit op on the low words, sign-extended. */
  const word = (
    i: Insn,
    name: 'i32.add' | 'i32.sub' | 'i32.shl' | 'i32.shr_u' | 'i32.shr_s' | 'i32.mul',
    useImm: boolean,
    mask = -1,
  ): void => {
    R(i.r1);
    f.op('i32.wrap_i64');
    if (useImm) f.i32(i.imm & mask);
    else {
      R(i.r2);
      f.op('i32.wrap_i64');
    }
    f.op(name).op('i64.extend_i32_s');
    W(i.rd);
  };
  const compare = (i: Insn, name: 'i64.lt_s' | 'i64.lt_u', useImm: boolean): void => {
    R(i.r1);
    if (useImm) f.i64(i.imm);
    else R(i.r2);
    f.op(name).op('i64.extend_i32_u');
    W(i.rd);
  };
  /** rs1 into t1 and rs2 into t2. */
  const operands = (i: Insn): void => {
    R(i.r1);
    f.set(t1);
    R(i.r2);
    f.set(t2);
  };
  const divide = (i: Insn): void => {
    operands(i);
    const wordOp = i.op === Op.DIVW || i.op === Op.DIVUW || i.op === Op.REMW || i.op === Op.REMUW;
    const signed = i.op === Op.DIV || i.op === Op.REM || i.op === Op.DIVW || i.op === Op.REMW;
    const rem = i.op === Op.REM || i.op === Op.REMU || i.op === Op.REMW || i.op === Op.REMUW;
    const t = wordOp ? I32 : I64;
    const get = (l: number): void => {
      f.get(l);
      if (wordOp) f.op('i32.wrap_i64');
    };
    // Division by zero gives all ones (quotient) or the dividend (remainder); signed overflow (MIN / -1) gives
    // MIN and 0, which is what -a and 0 are for divisor -1 in two's complement.
    get(t2);
    f.op(wordOp ? 'i32.eqz' : 'i64.eqz');
    f.open('if', t);
    if (rem) get(t1);
    else if (wordOp) f.i32(-1);
    else f.i64(-1);
    f.else();
    if (signed) {
      get(t2);
      if (wordOp) f.i32(-1).op('i32.eq');
      else f.i64(-1).op('i64.eq');
      f.open('if', t);
      if (rem) {
        if (wordOp) f.i32(0);
        else f.i64(0);
      } else if (wordOp) {
        f.i32(0);
        get(t1);
        f.op('i32.sub');
      } else {
        f.i64(0);
        get(t1);
        f.op('i64.sub');
      }
      f.else();
    }
    get(t1);
    get(t2);
    if (wordOp) f.op(signed ? (rem ? 'i32.rem_s' : 'i32.div_s') : rem ? 'i32.rem_u' : 'i32.div_u');
    else f.op(signed ? (rem ? 'i64.rem_s' : 'i64.div_s') : rem ? 'i64.rem_u' : 'i64.div_u');
    if (signed) f.end();
    f.end();
    if (wordOp) f.op('i64.extend_i32_s');
    W(i.rd);
  };
  const mulHigh = (i: Insn): void => {
    operands(i);
    f.get(t1).get(t2).call(FN_MULHU, 'mulhu');
    // Signed high words: subtract the other operand for each negative one (two's complement correction).
    if (i.op === Op.MULH || i.op === Op.MULHSU) f.get(t1).i64(63).op('i64.shr_s').get(t2).op('i64.and').op('i64.sub');
    if (i.op === Op.MULH) f.get(t2).i64(63).op('i64.shr_s').get(t1).op('i64.and').op('i64.sub');
    W(i.rd);
  };

  const length = segments.reduce((sum, s) => sum + s.insns.length, 0);
  if (withText)
    f.comment(
      segments.length === 1
        ? `block at page offset ${segments[0]!.startOff}: ${length} instructions`
        : `region at page offset ${segments[0]!.startOff}: ${length} instructions in ${segments.length} segments`,
    );
  for (const r of cached) state().mem('i64.load', xAt(r)).set(regLocal[r]!);
  f.get(P_PB).op('i64.trunc_f64_s').set(pbi);
  if (segments.length > 1) {
    // loop { block { ... block { br_table (next) } segment 0 } segment 1 ... }: `next` starts at 0.
    f.open('loop');
    for (let s = segments.length - 1; s >= 0; s--) f.open('block');
    f.get(next).brTable(
      segments.map((_, s) => s),
      0,
    );
  }
  segments.forEach((current, s) => {
    seg = current;
    segIndex = s;
    if (segments.length > 1) {
      f.end();
      if (withText) f.comment(`segment ${s} at page offset ${seg.startOff}: ${seg.insns.length} instructions`);
    }
    emitSegment();
  });
  if (segments.length > 1) f.end();
  f.op('unreachable');

  function emitSegment(): void {
    const { insns, endOff, forwardTo } = seg;
    const forwardTargets = [...new Set(forwardTo.filter((t) => t >= 0))].sort((a, b) => b - a);
    f.open('loop');
    for (const t of forwardTargets) {
      open('block');
      forwardAt.set(t, nest);
    }
    let ended = false;
    insns.forEach((i, k) => {
      while (forwardTargets.length > 0 && forwardTargets.at(-1) === k) {
        forwardTargets.pop();
        forwardAt.delete(k);
        close();
      }
      if (withText) f.comment(`${k}: op ${i.op} at +${i.pcOff}`);
      // frrm, frflags, frcsr; any other CSR instruction goes to the hart below.
      if (i.op === Op.CSRRS && fpCsrRead(i, k)) return;
      switch (i.op) {
        // One hart's accesses are in order and other harts run between run() slices: FENCE orders nothing more.
        case Op.NOP:
        case Op.FENCE:
          break;
        case Op.LUI:
          f.i64(i.imm);
          W(i.rd);
          break;
        case Op.AUIPC:
          f.get(pbi)
            .i64(i.pcOff + i.imm)
            .op('i64.add');
          W(i.rd);
          break;
        case Op.JAL:
          f.get(pbi).i64(i.nextOff).op('i64.add');
          W(i.rd);
          if (i.follow) break;
          jumpTo(i.pcOff + i.imm, k);
          ended = true;
          break;
        case Op.JALR:
          // The target as the interpreter computes it, in doubles (hi * 2^32 + lo + imm, then the low bit cleared).
          R(i.r1);
          f.i64(32).op('i64.shr_s').op('i32.wrap_i64').op('f64.convert_i32_s').f64(4294967296).op('f64.mul');
          R(i.r1);
          f.op('i32.wrap_i64').op('f64.convert_i32_u').op('f64.add').f64(i.imm).op('f64.add').set(tf);
          f.get(pbi).i64(i.nextOff).op('i64.add');
          W(i.rd);
          flush();
          state()
            .get(tf)
            .f64(0.5)
            .op('f64.mul')
            .op('f64.floor')
            .f64(2)
            .op('f64.mul')
            .mem('f64.store', at + PC_OFF);
          nPlus(k + 1);
          f.op('return');
          ended = true;
          break;
        case Op.BEQ:
        case Op.BNE:
        case Op.BLT:
        case Op.BGE:
        case Op.BLTU:
        case Op.BGEU: {
          R(i.r1);
          R(i.r2);
          const cmp = {
            [Op.BEQ]: 'i64.eq',
            [Op.BNE]: 'i64.ne',
            [Op.BLT]: 'i64.lt_s',
            [Op.BGE]: 'i64.ge_s',
            [Op.BLTU]: 'i64.lt_u',
            [Op.BGEU]: 'i64.ge_u',
          } as const;
          f.op(cmp[i.op]);
          branch(i.pcOff + i.imm, k);
          break;
        }
        case Op.ADDI:
          bin(i, 'i64.add', true);
          break;
        case Op.XORI:
          bin(i, 'i64.xor', true);
          break;
        case Op.ORI:
          bin(i, 'i64.or', true);
          break;
        case Op.ANDI:
          bin(i, 'i64.and', true);
          break;
        case Op.SLTI:
          compare(i, 'i64.lt_s', true);
          break;
        case Op.SLTIU:
          compare(i, 'i64.lt_u', true);
          break;
        case Op.SLLI:
          shift(i, 'i64.shl', true);
          break;
        case Op.SRLI:
          shift(i, 'i64.shr_u', true);
          break;
        case Op.SRAI:
          shift(i, 'i64.shr_s', true);
          break;
        case Op.ADD:
          bin(i, 'i64.add', false);
          break;
        case Op.SUB:
          bin(i, 'i64.sub', false);
          break;
        case Op.XOR:
          bin(i, 'i64.xor', false);
          break;
        case Op.OR:
          bin(i, 'i64.or', false);
          break;
        case Op.AND:
          bin(i, 'i64.and', false);
          break;
        case Op.MUL:
          bin(i, 'i64.mul', false);
          break;
        case Op.SLL:
          shift(i, 'i64.shl', false);
          break;
        case Op.SRL:
          shift(i, 'i64.shr_u', false);
          break;
        case Op.SRA:
          shift(i, 'i64.shr_s', false);
          break;
        case Op.SLT:
          compare(i, 'i64.lt_s', false);
          break;
        case Op.SLTU:
          compare(i, 'i64.lt_u', false);
          break;
        case Op.ADDIW:
          word(i, 'i32.add', true);
          break;
        case Op.SLLIW:
          word(i, 'i32.shl', true, 31);
          break;
        case Op.SRLIW:
          word(i, 'i32.shr_u', true, 31);
          break;
        case Op.SRAIW:
          word(i, 'i32.shr_s', true, 31);
          break;
        case Op.ADDW:
          word(i, 'i32.add', false);
          break;
        case Op.SUBW:
          word(i, 'i32.sub', false);
          break;
        case Op.SLLW:
          word(i, 'i32.shl', false);
          break;
        case Op.SRLW:
          word(i, 'i32.shr_u', false);
          break;
        case Op.SRAW:
          word(i, 'i32.shr_s', false);
          break;
        case Op.MULW:
          word(i, 'i32.mul', false);
          break;
        case Op.MULH:
        case Op.MULHSU:
        case Op.MULHU:
          mulHigh(i);
          break;
        case Op.DIV:
        case Op.DIVU:
        case Op.REM:
        case Op.REMU:
        case Op.DIVW:
        case Op.DIVUW:
        case Op.REMW:
        case Op.REMUW:
          divide(i);
          break;
        case Op.LR_W:
        case Op.LR_D:
        case Op.SC_W:
        case Op.SC_D:
        case Op.AMO_W:
        case Op.AMO_D:
          atomicOp(i, k);
          break;
        default: {
          const load = LOAD_OPS[i.op];
          const store = STORE_OPS[i.op];
          if (load !== undefined) {
            address(i);
            tlbHit(LOAD_TAG_OFF);
            open('if', I64);
            hostAddress(LOAD_PPN_OFF);
            f.mem(load, 0);
            f.else();
            // Miss, MMIO or fault: the hart's slow path writes rd in memory (and says whether MMIO was touched).
            flush();
            f.i32(i.r1).i32(i.imm).i32(i.op).i32(i.rd).i32(i.pcOff);
            nPlus(k);
            f.call(FN_LD, 'ld');
            open('if');
            exitFlushed(i.nextOff, k + 1);
            close();
            state().mem('i64.load', xAt(i.rd === SINK ? 0 : i.rd >>> 1));
            close();
            W(i.rd);
          } else if (store !== undefined) {
            address(i);
            tlbHit(STORE_TAG_OFF);
            open('if');
            hostAddress(STORE_PPN_OFF);
            R(i.r2);
            f.mem(store[0], 0);
            f.else();
            flush();
            f.i32(i.r1).i32(i.imm).i32(store[1]).i32(i.r2).i32(i.pcOff);
            nPlus(k);
            f.call(FN_ST, 'st');
            // MMIO, or the store cleared this page's code mark: what follows is fetched again.
            open('if');
            exitFlushed(i.nextOff, k + 1);
            close();
            close();
          } else {
            // FP loads, stores, sign moves and double arithmetic have their own path, taken when FP_FAST_OFF allows
            // it; everything else, and those ops when it does not (or the result needs flags), go to the hart.
            const fast = fpFast(i);
            // The hart's execSlow (FP ops: their function first): state is in memory around the call; 1 means the
            // block ends (pc already set).
            flush();
            f.i32(i.w).i32(i.imm).i32(i.rd).i32(i.r1).i32(i.r2).i32(i.pcOff);
            nPlus(k);
            if (i.op === Op.FPOP) f.call(FN_FP, 'fp');
            else f.call(FN_SLOW, 'slow');
            open('if');
            nPlus(k + 1);
            f.op('return');
            close();
            // FP ops write at most rd; FP loads and stores no integer register.
            if (i.op === Op.FPOP) reload(i.rd === SINK ? [] : [i.rd >>> 1]);
            else if (!isFpMem(i.op)) reload(cached);
            if (fast) close();
          }
        }
      }
    });
    if (!ended) leave(endOff, insns.length);
    f.end();
  }

  const text = f.text && `(func $b (param f64 i32 i32 f64 i32) (result i32) ${f.localsText()}\n${f.text.join('\n')})`;
  let key = '';
  const encoded = f.encode();
  for (let i = 0; i < encoded.length; i += 4096)
    key += String.fromCharCode.apply(null, encoded.subarray(i, i + 4096) as unknown as number[]);
  return { body: f, key, text, length, segments: segments.length, segmentSlots: segments.slice(1).map((s) => s.startOff >>> 1) };
}

/**
 * One module holding `blocks` (exported as b0, b1, ...): a module has a fixed compile cost of a few hundred
 * microseconds (measured in docs/performance.md), so hot blocks are compiled in batches.
 */
export function buildModule(blocks: readonly WasmBlock[], sharedMemory = false): Uint8Array {
  const spec: ModuleSpec = {
    types: [
      { params: [F64, I32, I32, F64, I32], results: [I32] },
      { params: [I32, I32, I32, I32, I32, I32], results: [I32] },
      { params: [I32, I32, I32, I32, I32, I32], results: [I32] },
      { params: [I32, I32, I32, I32, I32, I32, I32], results: [I32] },
      { params: [I64, I64], results: [I64] },
    ],
    imports: [
      { name: 'ld', type: 1 },
      { name: 'st', type: 2 },
      { name: 'slow', type: 3 },
      { name: 'fp', type: 3 },
    ],
    memoryPages: 1,
    sharedMemory,
    funcs: [{ type: 4, body: mulhuBody() }, ...blocks.map((b, i) => ({ type: 0, body: b.body, export: `b${i}` }))],
  };
  return encodeModule(spec);
}

/**
 * The module every block call goes through: `d(index, pb, n, limit, ctx, fctx)` calls table entry `index` (a block
 * function), then, while the budget lasts and no helper ended the block, looks the next pc up in the jump cache
 * (layout.ts) and runs the block found there, so a chain of translated blocks costs one call from JS. One export
 * called millions of times also gets V8's fast JS-to-WebAssembly wrapper at once, where each block's own export
 * would go through the generic one until called ~1000 times (measured: docs/performance.md).
 */
export function dispatcherModule(base: number, sharedMemory = false): Uint8Array {
  const f = new FnBody(6);
  const [INDEX, PB, N, LIMIT, CTX, FCTX] = [0, 1, 2, 3, 4, 5];
  const pc = f.local(F64);
  const lo = f.local(I32);
  const j = f.local(I32);
  const ti = f.local(I32);
  const ppn = f.local(I32);
  f.open('block');
  f.open('loop');
  f.get(PB).get(N).get(LIMIT).get(CTX).i32(base).get(INDEX).callIndirect(0).set(N);
  f.get(N).get(LIMIT).op('i32.ge_u').brIf(1);
  f.i32(0)
    .mem('i32.load', base + STOP_OFF)
    .brIf(1);
  f.i32(0)
    .mem('f64.load', base + PC_OFF)
    .tee(pc);
  f.op('i64.trunc_f64_s').op('i32.wrap_i64').tee(lo).i32(1).op('i32.shr_u');
  // jumpCacheSlot (layout.ts)
  f.get(lo)
    .i32(11)
    .op('i32.shr_u')
    .op('i32.xor')
    .i32(JC_SIZE - 1)
    .op('i32.and')
    .set(j);
  f.get(j)
    .i32(3)
    .op('i32.shl')
    .mem('f64.load', base + JC_TAG_OFF);
  f.get(pc).op('f64.ne').brIf(1);
  // Only while the fetch TLB maps the pc's page in this context, to the page the entry was made on (see
  // JC_TAG_OFF).
  f.get(pc).get(lo).i32(4095).op('i32.and').op('f64.convert_i32_u').op('f64.sub').set(PB);
  f.get(lo)
    .i32(12)
    .op('i32.shr_u')
    .i32(TLB_SIZE - 1)
    .op('i32.and')
    .set(ti);
  f.get(ti)
    .i32(3)
    .op('i32.shl')
    .mem('f64.load', base + FETCH_TAG_OFF);
  f.get(PB).get(FCTX).op('f64.add').op('f64.ne').brIf(1);
  f.get(j)
    .i32(2)
    .op('i32.shl')
    .mem('i32.load', base + JC_PPN_OFF)
    .tee(ppn);
  f.get(ti)
    .i32(2)
    .op('i32.shl')
    .mem('i32.load', base + FETCH_PPN_OFF)
    .op('i32.ne')
    .brIf(1);
  f.get(j)
    .i32(2)
    .op('i32.shl')
    .mem('i32.load', base + JC_INDEX_OFF)
    .set(INDEX);
  f.i32(0)
    .get(ppn)
    .mem('i32.store', base + PPN_OFF);
  f.i32(0)
    .get(PB)
    .mem('f64.store', base + PB_OFF);
  f.br(0);
  f.end();
  f.end();
  f.get(N);
  return encodeModule({
    types: [
      { params: [F64, I32, I32, F64, I32], results: [I32] },
      { params: [I32, F64, I32, I32, F64, F64], results: [I32] },
    ],
    imports: [],
    memoryPages: 0,
    sharedMemory,
    tableMin: 1,
    funcs: [{ type: 1, body: f, export: 'd' }],
  });
}

/** Unsigned 64 x 64 high word from 32-bit limbs (WebAssembly has no wide multiply yet). */
function mulhuBody(): FnBody {
  const f = new FnBody(2);
  const aL = f.local(I64);
  const aH = f.local(I64);
  const bL = f.local(I64);
  const bH = f.local(I64);
  const lh = f.local(I64);
  const hl = f.local(I64);
  const M = 0xffffffff;
  f.get(0).i64(M).op('i64.and').set(aL);
  f.get(0).i64(32).op('i64.shr_u').set(aH);
  f.get(1).i64(M).op('i64.and').set(bL);
  f.get(1).i64(32).op('i64.shr_u').set(bH);
  f.get(aL).get(bH).op('i64.mul').set(lh);
  f.get(aH).get(bL).op('i64.mul').set(hl);
  // high = aH*bH + (lh >> 32) + (hl >> 32) + (((aL*bL) >> 32) + (lh & M) + (hl & M)) >> 32
  f.get(aH).get(bH).op('i64.mul');
  f.get(lh).i64(32).op('i64.shr_u').op('i64.add');
  f.get(hl).i64(32).op('i64.shr_u').op('i64.add');
  f.get(aL).get(bL).op('i64.mul').i64(32).op('i64.shr_u');
  f.get(lh).i64(M).op('i64.and').op('i64.add');
  f.get(hl).i64(M).op('i64.and').op('i64.add');
  f.i64(32).op('i64.shr_u').op('i64.add');
  return f;
}
