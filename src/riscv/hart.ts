/**
 * One RV64GC hart (RV64IMAFDC + Zicsr/Zifencei/Zicntr + Sstc, Zba/Zbb/Zbs decoded and executed but not
 * advertised), privileged architecture 1.12 with M/S/U, Sv39/Sv48 and PMP.
 *
 * ## Interface for the machine
 * ```ts
 * const hart = new Hart(bus, { hartId: 0, readTime: () => mtimeTicks });
 * hart.reset(0x8000_0000);          // M-mode at pc, all CSRs at reset values
 * hart.setX(10, 0); hart.setX(11, dtbAddr);
 * hart.ecallHandler = (h) => sbi.handle(h);  // called on ECALL from S-mode; true = handled, pc += 4
 * hart.setPending(MIP_MTIP, true);  // hardware-driven mip bits: MSIP(3) MTIP(7) SEIP(9, OR-ed with the software bit) MEIP(11)
 * const retired = hart.run(100_000); // returns early on WFI (hart.waiting) or requestExit()
 * hart.stimecmp;                     // Sstc deadline (unsigned, as a number) for the machine's timer scheduling
 * hart.flushTlb(); hart.flushDecodeCache(); // remote sfence.vma / fence.i from SBI RFENCE
 * ```
 * Registers: `getX(i)` (a number, exact while |value| < 2^53), `getXLo/getXHi` (int32 halves), `getXHex(i)`,
 * `setX(i, number)`, `setXHalves(i, lo, hi)`; `pc` (get/set), `priv`, `instret`, `waiting`.
 *
 * ## Representation
 * - Integer registers: `x` is an Int32Array; register i is x[2i] (low half) and x[2i+1] (high half).
 *   x[64..65] is a write sink: the decoder maps rd = x0 there so no instruction needs an rd != 0 test.
 * - pc and virtual addresses are JS numbers holding the *signed* 64-bit value. Every canonical Sv39/Sv48
 *   address and every physical address is exact (|v| < 2^53). A register value beyond ±2^53 used as an address
 *   is never canonical, so it faults as the architecture requires; its tval is then the nearest double.
 * - Misaligned loads and stores are performed (as QEMU does); misaligned LR/SC/AMOs raise the misaligned
 *   exception. With C, fetch alignment is 2 bytes and misaligned-fetch can't happen (misa is read-only).
 * - A/D bits are set by the page-table walker in hardware, as QEMU does (Svadu behaviour).
 * - satp writes with an unsupported MODE (anything but Bare/Sv39/Sv48) are ignored entirely.
 * - PMP: 16 entries. With no entry configured every access is allowed (as QEMU does), so firmware that
 *   never touches PMP still runs S-mode code.
 *
 * ## Speed
 * Instructions are decoded once into a per-physical-page decode cache (two int32 words per halfword slot)
 * and executed by one switch. Loads/stores/fetches go through direct-mapped software TLBs whose tags fold in
 * the translation context (effective privilege, SUM, MXR), so the fast path is one compare and a DataView
 * access. Interrupts and the budget are checked when control leaves a page or a branch is taken.
 * With the block JIT on (src/riscv/jit, `jit` option or TYPEVISOR_JIT), hot block entries run as translated
 * functions instead; the interpreter remains the reference and runs everything else.
 *
 * ## Files
 * Hart is the top of a chain of layers in ./hart/ (state, mmu, memory, traps, csrs, arch-state; see
 * docs/architecture.md, "The CPU's files"). This file keeps what switches on `Op`: the decoded-slot format, the
 * decode cache, the run loop and the execute stage.
 */
import { sar, shl, shr } from './shift64.js';
import type { Bus } from './bus.js';
import { FP_OPS } from './fpu/index.js';
import { FFLAG_NX, FP_MNEMONICS, type FpExec } from './fpu/state.js';
import { decode } from './decode.js';
import * as C from './csr.js';
import * as I64 from './int64.js';
import { PageBlocks, type BlockFn } from './jit/index.js';
import { WasmBlockJit } from './jit/wasm/index.js';
import {
  ATOMICS_OFF,
  FP_ARITH_FAST,
  FP_FAST_OFF,
  FP_FFLAGS_SHIFT,
  FP_FRM_SHIFT,
  FP_FS_DIRTY,
  FP_FS_ON,
  JC_INDEX_OFF,
  JC_PPN_OFF,
  JC_SIZE,
  PB_OFF,
  PC_OFF,
  PPN_OFF,
  STOP_OFF,
  jumpCacheSlot,
} from './jit/wasm/layout.js';
import * as K from './hart/constants.js';
import { type HartOptions, type SpareArrays } from './hart/state.js';
import { HartArch } from './hart/arch-state.js';

export type { HartOptions } from './hart/state.js';

export * from './csr.js';

// Imported bindings are copied into module constants: under loaders that compile ESM to CommonJS (tsx),
// every use of an imported name is a getter call, which is measurable on the hot path.
const { r: r64, mul64, mulhu64, mulh64, mulhsu64, div64, divu64, clz32x2, ctz32, popcount32 } = I64;
const {
  CAUSE_BREAKPOINT,
  CAUSE_FETCH_ACCESS,
  CAUSE_LOAD_ACCESS,
  CAUSE_MACHINE_ECALL,
  CAUSE_STORE_ACCESS,
  CAUSE_SUPERVISOR_ECALL,
  CAUSE_USER_ECALL,
  MSTATUS_FS,
  MSTATUS_MIE,
  MSTATUS_MPIE,
  MSTATUS_MPP,
  MSTATUS_MPP_SHIFT,
  MSTATUS_MPRV,
  MSTATUS_SIE,
  MSTATUS_SPIE,
  MSTATUS_SPP,
  MSTATUS_TSR,
  MSTATUS_TVM,
  MSTATUS_TW,
  PRV_M,
  PRV_S,
  PRV_U,
} = C;
const { SINK, PAGE_SLOTS, TLB_MASK, DECODE_CACHE_LIMIT, ACC_FETCH, TWO32, TRAP, S_MEPC, S_SEPC, RES_VALID, RES_LO, RES_HI } = K;

/** Executed operations. Compressed instructions decode to the base operation they expand to. */
export const enum Op {
  DECODE = 0, // slot not decoded yet
  PAGE_END, // sentinel after the last slot of a page
  CROSS, // a 32-bit instruction straddling the page end
  ILLEGAL,
  NOP,
  LUI,
  AUIPC,
  JAL,
  JALR,
  BEQ,
  BNE,
  BLT,
  BGE,
  BLTU,
  BGEU,
  LB,
  LH,
  LW,
  LD,
  LBU,
  LHU,
  LWU,
  SB,
  SH,
  SW,
  SD,
  ADDI,
  SLTI,
  SLTIU,
  XORI,
  ORI,
  ANDI,
  SLLI,
  SRLI,
  SRAI,
  ADD,
  SUB,
  SLL,
  SLT,
  SLTU,
  XOR,
  SRL,
  SRA,
  OR,
  AND,
  ADDIW,
  SLLIW,
  SRLIW,
  SRAIW,
  ADDW,
  SUBW,
  SLLW,
  SRLW,
  SRAW,
  MUL,
  MULW,
  // Everything below runs in execSlow().
  SLOW_START,
  MULH,
  MULHSU,
  MULHU,
  DIV,
  DIVU,
  REM,
  REMU,
  DIVW,
  DIVUW,
  REMW,
  REMUW,
  FENCE,
  FENCE_I,
  ECALL,
  EBREAK,
  SRET,
  MRET,
  WFI,
  SFENCE_VMA,
  CSRRW,
  CSRRS,
  CSRRC,
  CSRRWI,
  CSRRSI,
  CSRRCI,
  LR_W,
  SC_W,
  LR_D,
  SC_D,
  AMO_W,
  AMO_D,
  FLW,
  FLD,
  FSW,
  FSD,
  FPOP,
  // Zba/Zbb/Zbs
  SH1ADD,
  SH2ADD,
  SH3ADD,
  ADD_UW,
  SH1ADD_UW,
  SH2ADD_UW,
  SH3ADD_UW,
  SLLI_UW,
  ANDN,
  ORN,
  XNOR,
  MAX,
  MAXU,
  MIN,
  MINU,
  ROL,
  ROR,
  ROLW,
  RORW,
  RORI,
  RORIW,
  CLZ,
  CTZ,
  CPOP,
  CLZW,
  CTZW,
  CPOPW,
  SEXT_B,
  SEXT_H,
  ZEXT_H,
  ORC_B,
  REV8,
  BCLR,
  BEXT,
  BINV,
  BSET,
  BCLRI,
  BEXTI,
  BINVI,
  BSETI,
}

/**
 * AMO kinds, stored in the decoded rs3-free immediate slot (and passed as is to the cross-thread atomics,
 * atomics.ts). Defined here, with the switch on it: see Op for why.
 */
export const enum Amo {
  SWAP,
  ADD,
  XOR,
  AND,
  OR,
  MIN,
  MAX,
  MINU,
  MAXU,
}

const OP_OF: Record<string, Op> = {
  lui: Op.LUI,
  auipc: Op.AUIPC,
  jal: Op.JAL,
  jalr: Op.JALR,
  beq: Op.BEQ,
  bne: Op.BNE,
  blt: Op.BLT,
  bge: Op.BGE,
  bltu: Op.BLTU,
  bgeu: Op.BGEU,
  lb: Op.LB,
  lh: Op.LH,
  lw: Op.LW,
  ld: Op.LD,
  lbu: Op.LBU,
  lhu: Op.LHU,
  lwu: Op.LWU,
  sb: Op.SB,
  sh: Op.SH,
  sw: Op.SW,
  sd: Op.SD,
  addi: Op.ADDI,
  slti: Op.SLTI,
  sltiu: Op.SLTIU,
  xori: Op.XORI,
  ori: Op.ORI,
  andi: Op.ANDI,
  slli: Op.SLLI,
  srli: Op.SRLI,
  srai: Op.SRAI,
  add: Op.ADD,
  sub: Op.SUB,
  sll: Op.SLL,
  slt: Op.SLT,
  sltu: Op.SLTU,
  xor: Op.XOR,
  srl: Op.SRL,
  sra: Op.SRA,
  or: Op.OR,
  and: Op.AND,
  addiw: Op.ADDIW,
  slliw: Op.SLLIW,
  srliw: Op.SRLIW,
  sraiw: Op.SRAIW,
  addw: Op.ADDW,
  subw: Op.SUBW,
  sllw: Op.SLLW,
  srlw: Op.SRLW,
  sraw: Op.SRAW,
  mul: Op.MUL,
  mulw: Op.MULW,
  mulh: Op.MULH,
  mulhsu: Op.MULHSU,
  mulhu: Op.MULHU,
  div: Op.DIV,
  divu: Op.DIVU,
  rem: Op.REM,
  remu: Op.REMU,
  divw: Op.DIVW,
  divuw: Op.DIVUW,
  remw: Op.REMW,
  remuw: Op.REMUW,
  fence: Op.FENCE,
  'fence.i': Op.FENCE_I,
  ecall: Op.ECALL,
  ebreak: Op.EBREAK,
  sret: Op.SRET,
  mret: Op.MRET,
  wfi: Op.WFI,
  'sfence.vma': Op.SFENCE_VMA,
  csrrw: Op.CSRRW,
  csrrs: Op.CSRRS,
  csrrc: Op.CSRRC,
  csrrwi: Op.CSRRWI,
  csrrsi: Op.CSRRSI,
  csrrci: Op.CSRRCI,
  'lr.w': Op.LR_W,
  'sc.w': Op.SC_W,
  'lr.d': Op.LR_D,
  'sc.d': Op.SC_D,
  flw: Op.FLW,
  fld: Op.FLD,
  fsw: Op.FSW,
  fsd: Op.FSD,
  sh1add: Op.SH1ADD,
  sh2add: Op.SH2ADD,
  sh3add: Op.SH3ADD,
  'add.uw': Op.ADD_UW,
  'sh1add.uw': Op.SH1ADD_UW,
  'sh2add.uw': Op.SH2ADD_UW,
  'sh3add.uw': Op.SH3ADD_UW,
  'slli.uw': Op.SLLI_UW,
  andn: Op.ANDN,
  orn: Op.ORN,
  xnor: Op.XNOR,
  max: Op.MAX,
  maxu: Op.MAXU,
  min: Op.MIN,
  minu: Op.MINU,
  rol: Op.ROL,
  ror: Op.ROR,
  rolw: Op.ROLW,
  rorw: Op.RORW,
  rori: Op.RORI,
  roriw: Op.RORIW,
  clz: Op.CLZ,
  ctz: Op.CTZ,
  cpop: Op.CPOP,
  clzw: Op.CLZW,
  ctzw: Op.CTZW,
  cpopw: Op.CPOPW,
  'sext.b': Op.SEXT_B,
  'sext.h': Op.SEXT_H,
  'zext.h': Op.ZEXT_H,
  'orc.b': Op.ORC_B,
  rev8: Op.REV8,
  bclr: Op.BCLR,
  bext: Op.BEXT,
  binv: Op.BINV,
  bset: Op.BSET,
  bclri: Op.BCLRI,
  bexti: Op.BEXTI,
  binvi: Op.BINVI,
  bseti: Op.BSETI,
};
const AMO_OF: Record<string, Amo> = {
  amoswap: Amo.SWAP,
  amoadd: Amo.ADD,
  amoxor: Amo.XOR,
  amoand: Amo.AND,
  amoor: Amo.OR,
  amomin: Amo.MIN,
  amomax: Amo.MAX,
  amominu: Amo.MINU,
  amomaxu: Amo.MAXU,
};
const FP_INDEX = new Map<string, number>(FP_MNEMONICS.map((m, i) => [m.replace(/_/g, '.'), i]));
const FP_FNS: FpExec[] = FP_MNEMONICS.map((m) => FP_OPS[m]);

// Decoded slot word 0: op[7:0] | rd[14:8] | rs1[21:15] | rs2[28:22] | step[30:29] (halfwords to the next insn).
// Integer register fields hold 2*index (an offset into x); rd = x0 is stored as 64, the write sink.
export const RD_SHIFT = 8;
export const RS1_SHIFT = 15;
export const RS2_SHIFT = 22;
export const STEP_SHIFT = 29;

/** Distinct do-nothing blocks (they return the budget) that make the block call site megamorphic. */
const WARM_BLOCKS: BlockFn[] = [0, 1, 2, 3, 4, 5, 6, 7].map(
  (i) =>
    // Distinct closures of distinct functions: V8 counts call-site targets by function.
    [
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit + 0,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit - 0,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit | 0,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit * 1,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => +limit,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => limit >> 0,
      (_h: unknown, _x: Int32Array, _pb: number, _n: number, limit: number) => Math.trunc(limit),
    ][i]!,
);
let blockCallSiteWarmed = false;

/** One guest page of decoded instructions, owned by the decode cache and pointed at by the fetch TLB. */
export class DecodedPage {
  /** Two words per halfword slot, plus the PAGE_END sentinel slot. */
  readonly code: Int32Array;
  /** The page's memory, and a copy of the halfwords the decoded slots came from (checked after fence.i). */
  readonly live: Uint16Array | null;
  readonly snap: Uint16Array;
  /** Blocks translated from this page (they die with it). */
  jitBlocks: PageBlocks | null = null;
  constructor(
    readonly ppn: number,
    readonly view: DataView | null,
    readonly viewOffset: number,
    /** The hart's code epoch this page was last known to match memory in. */
    public epoch: number,
    /** The arrays of a page dropped while nothing ran (HartMmu.spareArrays), to reuse instead of allocating. */
    spare?: SpareArrays,
  ) {
    if (spare === undefined) {
      this.code = new Int32Array((PAGE_SLOTS + 2) * 2);
      this.snap = new Uint16Array(PAGE_SLOTS);
    } else {
      this.code = spare.code.fill(Op.DECODE);
      this.snap = spare.snap;
    }
    this.code[PAGE_SLOTS * 2] = Op.PAGE_END;
    this.live = view ? new Uint16Array(view.buffer, view.byteOffset + viewOffset, PAGE_SLOTS) : null;
    if (this.live) this.snap.set(this.live);
  }
  /** True when memory still holds the bytes every decoded slot was decoded from. */
  unchanged(): boolean {
    const a = this.live!;
    const b = this.snap;
    for (let i = 0; i < PAGE_SLOTS; i++) if (a[i] !== b[i]) return false;
    return true;
  }
}

/** Fields the hart writes at run time, each with a probe value of the kind it will hold (see settleFields). */
const SETTLE_FIELDS: readonly [string, number | boolean][] = [
  ['instret', 0.5],
  ['trapTval', 0.5],
  ['jitPc', 0.5],
  ['codeEpoch', 1],
  ['trapCause', 1],
  ['valLo', 1],
  ['valHi', 1],
  ['retiredInRun', 1],
  ['jitN', 1],
  ['exitRequested', true],
  ['mmioTouched', true],
  ['jumpCacheFilled', true],
];

export class Hart extends HartArch {
  constructor(bus: Bus, opts: HartOptions) {
    super(bus, opts);
    if (this.jit !== null && !blockCallSiteWarmed) {
      // Make runBlocks' call site megamorphic before real blocks reach it: V8 then never inlines a block
      // into it (or it into run()), so a new block target does not deoptimize and recompile the run loop.
      blockCallSiteWarmed = true;
      for (const fn of WARM_BLOCKS) this.runBlocks(fn, this.scratch, 0, 0, 0);
    }
    if (this.jit instanceof WasmBlockJit) this.bindWasmJit(this.jit);
    // A chunk's backing changed: TLB entries and decoded pages may point at the old (zero) buffer.
    bus.onRamRemap((chunkIndex) => this.chunkRemapped(chunkIndex));
    this.reset(bus.ramBase);
    this.settleFields();
  }

  /**
   * V8 tracks for each field of the hart's hidden class whether it was written since construction ("const") and
   * whether it has only held small integers; the first run-time write that breaks either deoptimizes all the
   * optimized code that relied on it (run(), the slow paths), and TurboFan compiles it again. During a boot that
   * happened to these fields one after the other, a dozen deoptimizations of run() per isolate, in every hart
   * thread's too. Writing each once here, with a value of the kind it will hold (a double for addresses and
   * counts), settles the hidden class before any code is optimized against it.
   */
  private settleFields(): void {
    const self = this as unknown as Record<string, number | boolean>;
    for (const [field, probe] of SETTLE_FIELDS) {
      // A renamed field would otherwise be added here as a new one, settling nothing.
      if (!(field in self)) throw new Error(`Hart.settleFields: no field '${field}'`);
      const v = self[field]!;
      self[field] = probe;
      self[field] = v;
    }
  }

  /**
   * Gives the WebAssembly JIT its helpers: the slow paths its blocks import (they keep the precise-trap contract:
   * jitPc/jitN are set before anything can trap) and the wrapper that runs a block as a BlockFn.
   */
  private bindWasmJit(jit: WasmBlockJit): void {
    const { buffer, base } = jit.region;
    const pcAt = new Float64Array(buffer, base + PC_OFF, 1);
    // The running block's page base and RAM page (the dispatcher updates them as it chains), and the stop flag.
    const pbAt = new Float64Array(buffer, base + PB_OFF, 1);
    const ppnAt = new Int32Array(buffer, base + PPN_OFF, 1);
    const stopAt = new Int32Array(buffer, base + STOP_OFF, 1);
    const jcTag = this.jumpCacheTags!;
    const jcIndex = new Int32Array(buffer, base + JC_INDEX_OFF, JC_SIZE);
    const jcPpn = new Int32Array(buffer, base + JC_PPN_OFF, JC_SIZE);
    const fpFastAt = new Int32Array(buffer, base + FP_FAST_OFF, 1);
    // The blocks' SC compares-and-swaps against LR's value only when other threads can write RAM.
    new Int32Array(buffer, base + ATOMICS_OFF, 1)[0] = this.atomics !== null ? 1 : 0;
    const fp = this.fp;
    // What the blocks' FP paths may assume (layout.ts); mstatus, frm and fflags only change in the hart's code.
    const refreshFpFast = (): void => {
      fpFastAt[0] =
        ((this.mstatus & MSTATUS_FS) === MSTATUS_FS ? FP_FS_DIRTY : 0) |
        ((this.mstatus & MSTATUS_FS) !== 0 ? FP_FS_ON : 0) |
        (fp.frm === 0 && (fp.fflags & FFLAG_NX) !== 0 ? FP_ARITH_FAST : 0) |
        (fp.frm << FP_FRM_SHIFT) |
        (fp.fflags << FP_FFLAGS_SHIFT);
    };
    const x = this.x;
    const fetchTag = this.fetchTag;
    const slow = (w: number, imm: number, rd: number, r1: number, r2: number, pcOff: number, nBefore: number): number => {
      const pc = pbAt[0]! + pcOff;
      this.pcValue = pc;
      this.retiredInRun = nBefore;
      this.jitN = nBefore;
      this.jitPc = pc;
      const ended = this.execSlow(w, imm, rd, r1, r2);
      refreshFpFast();
      if (ended) {
        pcAt[0] = this.pcValue;
        stopAt[0] = 1;
        return 1;
      }
      if (this.codePages[ppnAt[0]!] !== 0) return 0;
      pcAt[0] = pc + (w >>> STEP_SHIFT) * 2;
      stopAt[0] = 1;
      return 1;
    };
    jit.bind({
      region: jit.region,
      ld: (r1, imm, op, rd, pcOff, nBefore) => {
        this.jitN = nBefore;
        this.jitPc = pbAt[0]! + pcOff;
        this.loadSlow(x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm, op);
        x[rd] = this.valLo;
        x[rd + 1] = this.valHi;
        if (!this.mmioTouched) return 0;
        this.mmioTouched = false;
        stopAt[0] = 1;
        return 1;
      },
      st: (r1, imm, size, r2, pcOff, nBefore) => {
        this.jitN = nBefore;
        this.jitPc = pbAt[0]! + pcOff;
        this.storeSlow(x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm, size, x[r2]!, x[r2 + 1]!);
        if (!this.mmioTouched && this.codePages[ppnAt[0]!] !== 0) return 0;
        this.mmioTouched = false;
        stopAt[0] = 1;
        return 1;
      },
      slow,
      fp: (w, imm, rd, r1, r2, pcOff, nBefore) => {
        jit.stats.fpHelperCalls++;
        if ((this.mstatus & MSTATUS_FS) !== 0) {
          if (FP_FNS[imm & 0xff]!(this.fp, x, rd >>> 1, r1 >>> 1, r2 >>> 1, (imm >>> 8) & 31, (imm >>> 13) & 7)) {
            this.mstatus |= MSTATUS_FS;
            refreshFpFast();
            return 0;
          }
        }
        return slow(w, imm, rd, r1, r2, pcOff, nBefore);
      },
      wrap: (dispatch, index) => (_h, _x, pb, n, limit, ppn) => {
        // Called at the block's first pc: when the fetch TLB maps it (PMP allows it), later exits to this pc
        // chain here inside the dispatcher.
        const pc = this.pcValue;
        const fctx = this.fetchCtx;
        const off = pc & 0xfff;
        if (fetchTag[(pc >>> 12) & TLB_MASK] === pc - off + fctx) {
          const j = jumpCacheSlot(pc);
          jcTag[j] = pc;
          this.jumpCacheFilled = true;
          jcIndex[j] = index;
          jcPpn[j] = ppn;
        }
        pbAt[0] = pb;
        ppnAt[0] = ppn;
        stopAt[0] = this.irqPending || this.exitRequested ? 1 : 0;
        refreshFpFast();
        const r = dispatch(index, pb, n, limit, this.dataCtx, fctx);
        this.pcValue = pcAt[0]!;
        return r;
      },
    });
  }

  private readonly scratch = new DecodedPage(-1, null, 0, 0);
  private readonly jitSlotReader = (slot: number): { w: number; imm: number } => {
    const page = this.currentPage!;
    if ((page.code[slot * 2]! & 0xff) === Op.DECODE) this.decodeSlot(page, slot);
    this.slotWords.w = page.code[slot * 2]!;
    this.slotWords.imm = page.code[slot * 2 + 1]!;
    return this.slotWords;
  };
  private readonly slotWords = { w: 0, imm: 0 };

  /**
   * Frees every decoded page, this isolate's shared decodes and the JIT's translations (an idle guest's memory
   * trim); they are decoded and translated again when next run.
   */
  trimDecodeCache(): void {
    this.dropDecodeCache();
    this.currentPage = null;
    resetPackCache();
    this.jit?.trim();
  }

  // ---- the run loop ----
  /** Executes up to `budget` instructions (a few more at most when a page is straight-line code); returns the count retired. */
  run(budget: number): number {
    this.exitRequested = false;
    this.res[RES_VALID] = 0;
    this.updateSstc();
    if (this.waiting) {
      if (!this.irqPending) return 0;
      this.waiting = false;
    }
    const x = this.x;
    const loadTag = this.loadTag;
    const loadView = this.loadView;
    const loadOff = this.loadOff;
    const storeTag = this.storeTag;
    const storeView = this.storeView;
    const storeOff = this.storeOff;
    const fetchTag = this.fetchTag;
    const fetchPage = this.fetchPage;
    const jit = this.jit;
    const atomics = this.atomics;
    // With the JIT on, the interpreter counts the entries of in-page branch targets and stops at hot ones,
    // so they reach the translator; `hits` belongs to the page being interpreted (null: no counting).
    let follow = budget;
    let hot = 0; // the threshold of the page `hits` belongs to
    let inBlock = false;
    let n = 0;
    // These are read by the trap handler (catch) to find the faulting pc, so they live outside the try.
    /* eslint-disable no-useless-assignment */
    let hits: PageBlocks | null = null;
    let pageBase = 0;
    let slot = 0;
    let code: Int32Array = this.scratch.code;
    let fetching = true;
    let tgt = 0; // out-of-page jump target
    /* eslint-enable no-useless-assignment */
    while (n < budget && !this.exitRequested && !this.waiting) {
      if (this.irqPending) {
        const cause = this.pendingInterrupt();
        if (cause >= 0) this.takeTrap(cause, true, 0, this.pcValue);
      }
      const pc0 = this.pcValue;
      pageBase = pc0 - (pc0 & 0xfff);
      slot = (pc0 & 0xfff) >>> 1;
      const ctx = this.dataCtx;
      const fctx = this.fetchCtx;
      try {
        fetching = true;
        code = this.fetchPageFor(pc0);
        if (slot === PAGE_SLOTS - 1) code = this.maybeCross(code, pc0);
        fetching = false;
        hits = null;
        if (jit !== null && code !== this.scratch.code) {
          const page = this.currentPage!;
          hits = page.jitBlocks ??= jit.newPage(page.ppn, this.privLevel === PRV_S);
          hot = hits.threshold;
          const block = jit.lookup(hits, slot, this.jitSlotReader);
          if (block !== null) {
            inBlock = true;
            n = this.runBlocks(block, page, pageBase, n, budget);
            inBlock = false;
            continue;
          }
        }
        inner: for (;;) {
          const i2 = slot << 1;
          const w = code[i2]!;
          const imm = code[i2 + 1]!;
          const rd = (w >>> RD_SHIFT) & 0x7f;
          const r1 = (w >>> RS1_SHIFT) & 0x7f;
          const r2 = (w >>> RS2_SHIFT) & 0x7f;
          n++;
          jump: {
            switch (w & 0xff) {
              case Op.DECODE:
                n--;
                if (code === this.scratch.code) {
                  this.pcValue = pageBase + slot * 2;
                  break inner;
                }
                this.decodeSlot(this.currentPage!, slot);
                continue inner;
              case Op.PAGE_END:
                n--;
                this.pcValue = pageBase + 4096;
                break inner;
              case Op.CROSS:
                n--;
                this.pcValue = pageBase + slot * 2;
                break inner;
              case Op.NOP:
                break;
              case Op.LUI:
                x[rd] = imm;
                x[rd + 1] = imm >> 31;
                break;
              case Op.AUIPC: {
                const v = pageBase + slot * 2 + imm;
                x[rd] = v | 0;
                x[rd + 1] = Math.floor(v / TWO32) | 0;
                break;
              }
              case Op.JAL: {
                const off = slot * 2 + imm;
                const ret = pageBase + slot * 2 + (w >>> STEP_SHIFT) * 2;
                x[rd] = ret | 0;
                x[rd + 1] = Math.floor(ret / TWO32) | 0;
                if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                  slot = off >>> 1;
                  continue inner;
                }
                tgt = pageBase + off;
                break jump;
              }
              case Op.JALR: {
                const t = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm;
                const target = t - (t & 1);
                const ret = pageBase + slot * 2 + (w >>> STEP_SHIFT) * 2;
                x[rd] = ret | 0;
                x[rd + 1] = Math.floor(ret / TWO32) | 0;
                const off = target - pageBase;
                if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                  slot = off >>> 1;
                  continue inner;
                }
                tgt = target;
                break jump;
              }
              case Op.BEQ:
                if (x[r1] === x[r2] && x[r1 + 1] === x[r2 + 1]) {
                  const off = slot * 2 + imm;
                  if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                    slot = off >>> 1;
                    continue inner;
                  }
                  tgt = pageBase + off;
                  break jump;
                }
                break;
              case Op.BNE:
                if (x[r1] !== x[r2] || x[r1 + 1] !== x[r2 + 1]) {
                  const off = slot * 2 + imm;
                  if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                    slot = off >>> 1;
                    continue inner;
                  }
                  tgt = pageBase + off;
                  break jump;
                }
                break;
              case Op.BLT:
              case Op.BGE: {
                const ah = x[r1 + 1]!;
                const bh = x[r2 + 1]!;
                const lt = ah < bh || (ah === bh && x[r1]! >>> 0 < x[r2]! >>> 0);
                if (lt === ((w & 0xff) === Op.BLT)) {
                  const off = slot * 2 + imm;
                  if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                    slot = off >>> 1;
                    continue inner;
                  }
                  tgt = pageBase + off;
                  break jump;
                }
                break;
              }
              case Op.BLTU:
              case Op.BGEU: {
                const ah = x[r1 + 1]! >>> 0;
                const bh = x[r2 + 1]! >>> 0;
                const lt = ah < bh || (ah === bh && x[r1]! >>> 0 < x[r2]! >>> 0);
                if (lt === ((w & 0xff) === Op.BLTU)) {
                  const off = slot * 2 + imm;
                  if (off >= 0 && off < 4096 && n < follow && (hits === null || staysCold(hits, off >>> 1, hot))) {
                    slot = off >>> 1;
                    continue inner;
                  }
                  tgt = pageBase + off;
                  break jump;
                }
                break;
              }
              case Op.LB:
              case Op.LH:
              case Op.LW:
              case Op.LD:
              case Op.LBU:
              case Op.LHU:
              case Op.LWU: {
                const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm;
                const off = va & 0xfff;
                const ti = (va >>> 12) & TLB_MASK;
                const op = w & 0xff;
                if (loadTag[ti] === va - off + ctx && off <= 4088) {
                  const dv = loadView[ti]!;
                  const o = loadOff[ti]! + off;
                  switch (op) {
                    case Op.LB: {
                      const v = dv.getInt8(o);
                      x[rd] = v;
                      x[rd + 1] = v >> 31;
                      break;
                    }
                    case Op.LH: {
                      const v = dv.getInt16(o, true);
                      x[rd] = v;
                      x[rd + 1] = v >> 31;
                      break;
                    }
                    case Op.LW: {
                      const v = dv.getInt32(o, true);
                      x[rd] = v;
                      x[rd + 1] = v >> 31;
                      break;
                    }
                    case Op.LD:
                      if (atomics === null) {
                        x[rd] = dv.getInt32(o, true);
                        x[rd + 1] = dv.getInt32(o + 4, true);
                      } else {
                        // Harts on other threads: one access (see read8).
                        this.read8(dv, o);
                        x[rd] = this.valLo;
                        x[rd + 1] = this.valHi;
                      }
                      break;
                    case Op.LBU:
                      x[rd] = dv.getUint8(o);
                      x[rd + 1] = 0;
                      break;
                    case Op.LHU:
                      x[rd] = dv.getUint16(o, true);
                      x[rd + 1] = 0;
                      break;
                    default:
                      x[rd] = dv.getInt32(o, true);
                      x[rd + 1] = 0;
                  }
                } else {
                  this.loadSlow(va, op);
                  x[rd] = this.valLo;
                  x[rd + 1] = this.valHi;
                  if (this.mmioTouched) {
                    // A device access is a block boundary: its side effects (interrupts, exit requests) are seen now.
                    this.mmioTouched = false;
                    slot += w >>> STEP_SHIFT;
                    this.pcValue = pageBase + slot * 2;
                    break inner;
                  }
                }
                break;
              }
              case Op.SB:
              case Op.SH:
              case Op.SW:
              case Op.SD: {
                const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm;
                const off = va & 0xfff;
                const ti = (va >>> 12) & TLB_MASK;
                const op = w & 0xff;
                if (storeTag[ti] === va - off + ctx && off <= 4088) {
                  const dv = storeView[ti]!;
                  const o = storeOff[ti]! + off;
                  if (op === Op.SD) {
                    if (atomics === null) {
                      dv.setInt32(o, x[r2]!, true);
                      dv.setInt32(o + 4, x[r2 + 1]!, true);
                    } else this.write8(dv, o, x[r2]!, x[r2 + 1]!);
                  } else if (op === Op.SW) dv.setInt32(o, x[r2]!, true);
                  else if (op === Op.SH) dv.setInt16(o, x[r2]!, true);
                  else dv.setInt8(o, x[r2]!);
                } else {
                  this.storeSlow(va, op === Op.SB ? 1 : op === Op.SH ? 2 : op === Op.SW ? 4 : 8, x[r2]!, x[r2 + 1]!);
                  if (this.mmioTouched) {
                    this.mmioTouched = false;
                    slot += w >>> STEP_SHIFT;
                    this.pcValue = pageBase + slot * 2;
                    break inner;
                  }
                }
                break;
              }
              case Op.ADDI: {
                const a = x[r1]!;
                const lo = (a + imm) | 0;
                x[rd + 1] = (x[r1 + 1]! + (imm >> 31) + (lo >>> 0 < a >>> 0 ? 1 : 0)) | 0;
                x[rd] = lo;
                break;
              }
              case Op.SLTI: {
                const ah = x[r1 + 1]!;
                const bh = imm >> 31;
                x[rd] = ah < bh || (ah === bh && x[r1]! >>> 0 < imm >>> 0) ? 1 : 0;
                x[rd + 1] = 0;
                break;
              }
              case Op.SLTIU: {
                const ah = x[r1 + 1]! >>> 0;
                const bh = (imm >> 31) >>> 0;
                x[rd] = ah < bh || (ah === bh && x[r1]! >>> 0 < imm >>> 0) ? 1 : 0;
                x[rd + 1] = 0;
                break;
              }
              case Op.XORI:
                x[rd + 1] = x[r1 + 1]! ^ (imm >> 31);
                x[rd] = x[r1]! ^ imm;
                break;
              case Op.ORI:
                x[rd + 1] = x[r1 + 1]! | (imm >> 31);
                x[rd] = x[r1]! | imm;
                break;
              case Op.ANDI:
                x[rd + 1] = x[r1 + 1]! & (imm >> 31);
                x[rd] = x[r1]! & imm;
                break;
              case Op.SLLI:
                shl(x, rd, x[r1]!, x[r1 + 1]!, imm);
                break;
              case Op.SRLI:
                shr(x, rd, x[r1]!, x[r1 + 1]!, imm);
                break;
              case Op.SRAI:
                sar(x, rd, x[r1]!, x[r1 + 1]!, imm);
                break;
              case Op.ADD: {
                const a = x[r1]!;
                const lo = (a + x[r2]!) | 0;
                x[rd + 1] = (x[r1 + 1]! + x[r2 + 1]! + (lo >>> 0 < a >>> 0 ? 1 : 0)) | 0;
                x[rd] = lo;
                break;
              }
              case Op.SUB: {
                const a = x[r1]!;
                const b = x[r2]!;
                x[rd + 1] = (x[r1 + 1]! - x[r2 + 1]! - (a >>> 0 < b >>> 0 ? 1 : 0)) | 0;
                x[rd] = (a - b) | 0;
                break;
              }
              case Op.SLL:
                shl(x, rd, x[r1]!, x[r1 + 1]!, x[r2]! & 63);
                break;
              case Op.SRL:
                shr(x, rd, x[r1]!, x[r1 + 1]!, x[r2]! & 63);
                break;
              case Op.SRA:
                sar(x, rd, x[r1]!, x[r1 + 1]!, x[r2]! & 63);
                break;
              case Op.SLT: {
                const ah = x[r1 + 1]!;
                const bh = x[r2 + 1]!;
                x[rd] = ah < bh || (ah === bh && x[r1]! >>> 0 < x[r2]! >>> 0) ? 1 : 0;
                x[rd + 1] = 0;
                break;
              }
              case Op.SLTU: {
                const ah = x[r1 + 1]! >>> 0;
                const bh = x[r2 + 1]! >>> 0;
                x[rd] = ah < bh || (ah === bh && x[r1]! >>> 0 < x[r2]! >>> 0) ? 1 : 0;
                x[rd + 1] = 0;
                break;
              }
              case Op.XOR:
                x[rd + 1] = x[r1 + 1]! ^ x[r2 + 1]!;
                x[rd] = x[r1]! ^ x[r2]!;
                break;
              case Op.OR:
                x[rd + 1] = x[r1 + 1]! | x[r2 + 1]!;
                x[rd] = x[r1]! | x[r2]!;
                break;
              case Op.AND:
                x[rd + 1] = x[r1 + 1]! & x[r2 + 1]!;
                x[rd] = x[r1]! & x[r2]!;
                break;
              case Op.ADDIW: {
                const v = (x[r1]! + imm) | 0;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SLLIW: {
                const v = x[r1]! << imm;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SRLIW: {
                const v = (x[r1]! >>> imm) | 0;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SRAIW: {
                const v = x[r1]! >> imm;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.ADDW: {
                const v = (x[r1]! + x[r2]!) | 0;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SUBW: {
                const v = (x[r1]! - x[r2]!) | 0;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SLLW: {
                const v = x[r1]! << (x[r2]! & 31);
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SRLW: {
                const v = (x[r1]! >>> (x[r2]! & 31)) | 0;
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.SRAW: {
                const v = x[r1]! >> (x[r2]! & 31);
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.MUL:
                mul64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!);
                x[rd] = r64[0]!;
                x[rd + 1] = r64[1]!;
                break;
              case Op.MULW: {
                const v = Math.imul(x[r1]!, x[r2]!);
                x[rd] = v;
                x[rd + 1] = v >> 31;
                break;
              }
              case Op.FPOP:
                if (
                  (this.mstatus & MSTATUS_FS) !== 0 &&
                  FP_FNS[imm & 0xff]!(this.fp, x, rd >>> 1, r1 >>> 1, r2 >>> 1, (imm >>> 8) & 31, (imm >>> 13) & 7)
                ) {
                  this.mstatus |= MSTATUS_FS;
                  break;
                }
                // FS is Off or the rounding mode is reserved (nothing was written): execSlow raises the trap.
                this.pcValue = pageBase + slot * 2;
                this.execSlow(w, imm, rd, r1, r2);
                break;
              default:
                this.pcValue = pageBase + slot * 2;
                this.retiredInRun = n - 1;
                if (this.execSlow(w, imm, rd, r1, r2)) {
                  // Control left the straight line (xret, trap-free jump, CSR write, fence.i...).
                  break inner;
                }
            }
            slot += w >>> STEP_SHIFT;
            continue inner;
          }
          // A taken branch or jump left the page: follow it through the fetch TLB without leaving the loop.
          const toff = tgt & 0xfff;
          const fti = (tgt >>> 12) & TLB_MASK;
          if (fetchTag[fti] === tgt - toff + fctx && n < follow && jit === null) {
            const p = fetchPage[fti]!;
            this.currentPage = p;
            code = p.code;
            pageBase = tgt - toff;
            slot = toff >>> 1;
            continue inner;
          }
          this.pcValue = tgt;
          break inner;
        }
      } catch (e) {
        if (e !== TRAP) throw e;
        if (inBlock) {
          // Translated code recorded where it was: the count before the faulting instruction, and its pc.
          inBlock = false;
          n = this.jitN;
          pageBase = this.jitPc - (this.jitPc & 0xfff);
          slot = (this.jitPc & 0xfff) >>> 1;
        } else if (!fetching) n--; // the faulting instruction did not retire
        budget--; // traps use budget too, so a trap storm (e.g. mtvec at unmapped memory) still ends run()
        follow = budget;
        this.takeTrap(this.trapCause, false, this.trapTval, pageBase + slot * 2);
      }
      x[SINK] = 0;
      x[SINK + 1] = 0;
    }
    this.instret += n;
    this.retiredInRun = 0;
    return n;
  }

  /**
   * Runs translated blocks from `block`, chaining to the next one while it is translated and reachable
   * through the fetch TLB (same privilege, address space and unflushed mapping); anything else goes back to
   * run(). Kept out of run() so the calls to many different block functions do not churn run()'s optimized code.
   */
  private runBlocks(block: BlockFn, page: DecodedPage, pageBase: number, n: number, budget: number): number {
    const x = this.x;
    const fetchTag = this.fetchTag;
    for (;;) {
      n = block(this, x, pageBase, n, budget, page.ppn);
      if (n >= budget || this.irqPending || this.exitRequested || this.waiting) return n;
      const pc = this.pcValue;
      const toff = pc & 0xfff;
      const fti = (pc >>> 12) & TLB_MASK;
      if (fetchTag[fti] !== pc - toff + this.fetchCtx) return n;
      const next = this.fetchPage[fti]!;
      const fn = next.jitBlocks?.fns?.[toff >>> 1];
      if (fn === undefined) return n;
      block = fn;
      page = next;
      this.currentPage = next;
      pageBase = pc - toff;
    }
  }

  private currentPage: DecodedPage | null = null;

  /** Looks up (or builds) the decoded page for `pc` through the fetch TLB. Throws TRAP on a fetch fault. */
  private fetchPageFor(pc: number): Int32Array {
    const off = pc & 0xfff;
    const ti = (pc >>> 12) & TLB_MASK;
    if (this.fetchTag[ti] === pc - off + this.fetchCtx) {
      const p = this.fetchPage[ti]!;
      this.currentPage = p;
      return p.code;
    }
    const pa = this.translate(pc, ACC_FETCH, this.privLevel, 2);
    const page = this.decodedPageAt(pa, pc);
    if (this.pmpAllows(pa - (pa & 0xfff), 4096, ACC_FETCH, this.privLevel)) {
      this.fetchTag[ti] = pc - off + this.fetchCtx;
      this.fetchPage[ti] = page;
      this.fetchPpn[ti] = page.ppn;
    }
    this.currentPage = page;
    return page.code;
  }

  private decodedPageAt(pa: number, va: number): DecodedPage {
    const rel = pa - this.bus.ramBase;
    if (rel < 0 || rel >= this.bus.ramSize) this.raise(CAUSE_FETCH_ACCESS, va);
    const ppn = Math.floor(rel / 4096);
    let page = this.decodeCache.get(ppn);
    if (page) {
      if (page.epoch === this.codeEpoch) return page;
      if (page.unchanged()) {
        page.epoch = this.codeEpoch;
        return page;
      }
      this.decodeCache.delete(ppn);
    }
    if (this.decodeCache.size >= DECODE_CACHE_LIMIT) this.dropDecodeCache();
    const view = this.bus.ramChunk(pa, false);
    if (!view) this.raise(CAUSE_FETCH_ACCESS, va);
    page = new DecodedPage(ppn, view, (rel - (rel & 0xfff)) & this.chunkMask, this.codeEpoch, this.spareArrays.pop());
    this.decodeCache.set(ppn, page);
    this.codePages[ppn] = 1;
    // Stores to this page must now take the slow path, which invalidates the decoded copy.
    this.storeTag.fill(NaN);
    return page;
  }

  /** Fills one slot of a decoded page from RAM. */
  private decodeSlot(page: DecodedPage, slot: number): void {
    const live = page.live!;
    const lowHalf = live[slot]!;
    page.snap[slot] = lowHalf;
    let insn = lowHalf;
    if ((lowHalf & 3) === 3) {
      if (slot === PAGE_SLOTS - 1) {
        page.code[slot * 2] = Op.CROSS;
        return;
      }
      const highHalf = live[slot + 1]!;
      page.snap[slot + 1] = highHalf;
      insn = lowHalf | (highHalf << 16) | 0;
    }
    packDecoded(page.code, slot, insn);
  }

  /** A 32-bit instruction straddling two pages is fetched through both translations into a scratch page. */
  private maybeCross(code: Int32Array, pc: number): Int32Array {
    const page = this.currentPage!;
    if (code[(PAGE_SLOTS - 1) * 2] === Op.DECODE) this.decodeSlot(page, PAGE_SLOTS - 1);
    if ((code[(PAGE_SLOTS - 1) * 2]! & 0xff) !== Op.CROSS) return code;
    const low = page.view!.getUint16(page.viewOffset + 4094, true);
    const pa2 = this.translate(pc + 2, ACC_FETCH, this.privLevel, 2);
    const view2 = pa2 >= this.bus.ramBase && pa2 < this.bus.ramBase + this.bus.ramSize ? this.bus.ramChunk(pa2, false) : null;
    if (!view2) this.raise(CAUSE_FETCH_ACCESS, pc + 2);
    const high = view2.getUint16((pa2 - this.bus.ramBase) & this.chunkMask, true);
    const s = this.scratch.code;
    s.fill(0);
    packDecoded(s, PAGE_SLOTS - 1, low | (high << 16) | 0);
    return s;
  }

  // ---- slow memory paths ----
  /** Load through translation; result in valLo/valHi. Installs a load-TLB entry for RAM pages. */
  private loadSlow(va: number, op: number): void {
    const size = op === Op.LB || op === Op.LBU ? 1 : op === Op.LH || op === Op.LHU ? 2 : op === Op.LD ? 8 : 4;
    this.loadRaw(va, size);
    const lo = this.valLo;
    switch (op) {
      case Op.LB:
        this.valLo = (lo << 24) >> 24;
        this.valHi = this.valLo >> 31;
        break;
      case Op.LH:
        this.valLo = (lo << 16) >> 16;
        this.valHi = this.valLo >> 31;
        break;
      case Op.LW:
        this.valHi = lo >> 31;
        break;
      case Op.LBU:
      case Op.LHU:
      case Op.LWU:
        this.valHi = 0;
        break;
      default:
        break;
    }
  }

  // ---- everything that is not on the hot path ----
  /** Executes a rare instruction. Returns true when the run loop must re-fetch from this.pcValue. */
  private execSlow(w: number, imm: number, rd: number, r1: number, r2: number): boolean {
    const x = this.x;
    const op = w & 0xff;
    const pc = this.pcValue;
    const next = pc + (w >>> STEP_SHIFT) * 2;
    switch (op) {
      case Op.ILLEGAL:
        this.illegal(imm);
      // eslint-disable-next-line no-fallthrough
      case Op.MULH:
        mulh64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!);
        break;
      case Op.MULHSU:
        mulhsu64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!);
        break;
      case Op.MULHU:
        mulhu64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!);
        break;
      case Op.DIV:
      case Op.REM:
        div64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!, op === Op.REM);
        break;
      case Op.DIVU:
      case Op.REMU:
        divu64(x[r1]!, x[r1 + 1]!, x[r2]!, x[r2 + 1]!, op === Op.REMU);
        break;
      case Op.DIVW:
      case Op.REMW: {
        const a = x[r1]!;
        const b = x[r2]!;
        let v: number;
        if (b === 0) v = op === Op.DIVW ? -1 : a;
        else if (a === -2147483648 && b === -1) v = op === Op.DIVW ? a : 0;
        else v = op === Op.DIVW ? Math.trunc(a / b) | 0 : (a % b) | 0;
        r64[0] = v;
        r64[1] = v >> 31;
        break;
      }
      case Op.DIVUW:
      case Op.REMUW: {
        const a = x[r1]! >>> 0;
        const b = x[r2]! >>> 0;
        const v = b === 0 ? (op === Op.DIVUW ? -1 : a | 0) : (op === Op.DIVUW ? Math.floor(a / b) : a % b) | 0;
        r64[0] = v;
        r64[1] = v >> 31;
        break;
      }
      case Op.FENCE:
        return false;
      case Op.FENCE_I:
        this.flushDecodeCache();
        this.pcValue = next;
        return true;
      case Op.ECALL: {
        if (this.privLevel === PRV_S && this.ecallHandler && this.ecallHandler(this)) {
          this.pcValue = pc + 4;
          return true;
        }
        this.raise(
          this.privLevel === PRV_U ? CAUSE_USER_ECALL : this.privLevel === PRV_S ? CAUSE_SUPERVISOR_ECALL : CAUSE_MACHINE_ECALL,
          0,
        );
      }
      // eslint-disable-next-line no-fallthrough
      case Op.EBREAK:
        this.raise(CAUSE_BREAKPOINT, pc);
      // eslint-disable-next-line no-fallthrough
      case Op.MRET: {
        if (this.privLevel !== PRV_M) this.illegal(imm);
        const st = this.mstatus;
        const mpp = (st & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
        let ns = (st & ~(MSTATUS_MIE | MSTATUS_MPP)) | (st & MSTATUS_MPIE ? MSTATUS_MIE : 0) | MSTATUS_MPIE;
        if (mpp !== PRV_M) ns &= ~MSTATUS_MPRV;
        this.mstatus = ns;
        this.privLevel = mpp;
        this.pcValue = this.get64(S_MEPC);
        this.afterPrivChange();
        return true;
      }
      case Op.SRET: {
        if (this.privLevel === PRV_U || (this.privLevel === PRV_S && this.mstatus & MSTATUS_TSR)) this.illegal(imm);
        const st = this.mstatus;
        const spp = st & MSTATUS_SPP ? PRV_S : PRV_U;
        this.mstatus =
          (((st & ~(MSTATUS_SIE | MSTATUS_SPP | MSTATUS_MPRV)) | (st & MSTATUS_SPIE ? MSTATUS_SIE : 0) | MSTATUS_SPIE) >>> 0) | 0;
        this.privLevel = spp;
        this.pcValue = this.get64(S_SEPC);
        this.afterPrivChange();
        return true;
      }
      case Op.WFI:
        if (this.privLevel === PRV_U || (this.privLevel === PRV_S && this.mstatus & MSTATUS_TW)) this.illegal(imm);
        this.pcValue = next;
        if (((this.mipHw | this.mipSw) & this.mie) === 0) this.waiting = true;
        return true;
      case Op.SFENCE_VMA:
        if (this.privLevel === PRV_U || (this.privLevel === PRV_S && this.mstatus & MSTATUS_TVM)) this.illegal(imm);
        {
          const asid = r2 === 0 ? -1 : x[r2]! & 0xffff;
          if (r1 !== 0) this.flushTlbPage(x[r1 + 1]! * TWO32 + (x[r1]! >>> 0), asid);
          else this.flushTlbAsid(asid);
        }
        this.pcValue = next;
        return true;
      case Op.CSRRW:
      case Op.CSRRS:
      case Op.CSRRC:
      case Op.CSRRWI:
      case Op.CSRRSI:
      case Op.CSRRCI:
        this.execCsr(op, imm, rd, r1, w);
        this.pcValue = next;
        return true;
      case Op.LR_W:
      case Op.LR_D: {
        const size = op === Op.LR_W ? 4 : 8;
        const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0);
        const pa = this.amoAddress(va, size, true);
        if (this.atomics !== null && this.loadReservedAtomic(pa, size)) break;
        this.physRead(pa, size, va, CAUSE_LOAD_ACCESS);
        this.res[RES_VALID] = 1;
        this.res[RES_LO] = this.valLo;
        this.res[RES_HI] = this.valHi;
        this.resAddr[0] = pa - this.bus.ramBase;
        r64[0] = this.valLo;
        r64[1] = this.valHi;
        break;
      }
      case Op.SC_W:
      case Op.SC_D: {
        const size = op === Op.SC_W ? 4 : 8;
        const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0);
        const pa = this.amoAddress(va, size, false);
        let ok = this.res[RES_VALID] !== 0 && this.resAddr[0] === pa - this.bus.ramBase;
        this.res[RES_VALID] = 0;
        if (ok && this.atomics !== null && this.ramView(pa, true) !== null) ok = this.storeConditionalAtomic(pa, size, r2);
        else if (ok) this.physWrite(pa, size, x[r2]!, x[r2 + 1]!, va);
        r64[0] = ok ? 0 : 1;
        r64[1] = 0;
        break;
      }
      case Op.AMO_W:
      case Op.AMO_D:
        this.execAmo(op === Op.AMO_W ? 4 : 8, imm, r1, r2);
        break;
      case Op.FLW:
      case Op.FLD:
      case Op.FSW:
      case Op.FSD:
        this.execFpMem(op, imm, rd, r1, r2);
        return false;
      case Op.FPOP: {
        if ((this.mstatus & MSTATUS_FS) === 0) this.illegal(this.rawBits(pc));
        const fi = imm & 0xff;
        const ok = FP_FNS[fi]!(this.fp, x, rd >>> 1, r1 >>> 1, r2 >>> 1, (imm >>> 8) & 31, (imm >>> 13) & 7);
        x[SINK] = x[SINK + 1] = 0;
        if (!ok) this.illegal(this.rawBits(pc));
        this.mstatus |= MSTATUS_FS;
        return false;
      }
      default:
        this.execBitmanip(op, imm, r1, r2);
    }
    x[rd] = r64[0]!;
    x[rd + 1] = r64[1]!;
    return false;
  }

  /** The instruction bits at pc (for illegal-instruction tval from ops whose slot holds other data). */
  private rawBits(pc: number): number {
    const page = this.currentPage;
    if (page && page.view) {
      const o = page.viewOffset + (pc & 0xfff);
      const low = page.view.getUint16(o, true);
      if ((low & 3) !== 3) return low;
      if ((pc & 0xfff) < 4094) return (low | (page.view.getUint16(o + 2, true) << 16)) >>> 0;
    }
    return 0;
  }

  private execAmo(size: number, kind: number, r1: number, r2: number): void {
    const x = this.x;
    const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0);
    const pa = this.amoAddress(va, size, false);
    if (this.atomics !== null && this.amoAtomic(pa, size, kind, r2)) return;
    this.physRead(pa, size, va, CAUSE_STORE_ACCESS);
    const alo = this.valLo;
    const ahi = this.valHi;
    let blo = x[r2]!;
    let bhi = size === 8 ? x[r2 + 1]! : blo >> 31;
    switch (kind) {
      case Amo.SWAP:
        break;
      case Amo.ADD: {
        const lo = (alo + blo) | 0;
        bhi = (ahi + bhi + (lo >>> 0 < alo >>> 0 ? 1 : 0)) | 0;
        blo = lo;
        break;
      }
      case Amo.XOR:
        blo ^= alo;
        bhi ^= ahi;
        break;
      case Amo.AND:
        blo &= alo;
        bhi &= ahi;
        break;
      case Amo.OR:
        blo |= alo;
        bhi |= ahi;
        break;
      default: {
        const signed = kind === Amo.MIN || kind === Amo.MAX;
        const ah = signed ? ahi : ahi >>> 0;
        const bh = signed ? bhi : bhi >>> 0;
        const aLess = ah < bh || (ah === bh && alo >>> 0 < blo >>> 0);
        const wantMin = kind === Amo.MIN || kind === Amo.MINU;
        if (aLess === wantMin) {
          blo = alo;
          bhi = ahi;
        }
      }
    }
    this.physWrite(pa, size, blo, bhi, va);
    r64[0] = alo;
    r64[1] = ahi;
  }

  /**
   * LR on RAM with cross-thread atomics: an atomic load whose value SC will compare against. False for MMIO
   * (the plain path then reads it).
   */
  private loadReservedAtomic(pa: number, size: number): boolean {
    // Not forWrite: a chunk still to be restored is filled, an untouched one reads as zeros in the memory too.
    if (this.ramView(pa, false) === null) return false;
    const lo = this.atomics!.load(size as 4 | 8, pa - this.bus.ramBase);
    const hi = this.atomics!.oldHi;
    this.res[RES_VALID] = 1;
    this.res[RES_LO] = lo;
    this.res[RES_HI] = hi;
    this.resAddr[0] = pa - this.bus.ramBase;
    r64[0] = lo;
    r64[1] = hi;
    return true;
  }

  /** SC on RAM (its chunk allocated) with cross-thread atomics: a compare-and-swap against what LR read. */
  private storeConditionalAtomic(pa: number, size: number, r2: number): boolean {
    const ppn = Math.floor((pa - this.bus.ramBase) / 4096);
    if (this.codePages[ppn]) this.invalidateCode(ppn);
    return this.atomics!.cas(
      size as 4 | 8,
      pa - this.bus.ramBase,
      this.res[RES_LO]!,
      this.res[RES_HI]!,
      this.x[r2]!,
      this.x[r2 + 1]!,
    );
  }

  /** An AMO on RAM with cross-thread atomics; false for MMIO (the plain path then runs it). */
  private amoAtomic(pa: number, size: number, kind: number, r2: number): boolean {
    if (this.ramView(pa, true) === null) return false;
    // As physWrite: a write to a page with decoded code drops the decoded copy.
    const ppn = Math.floor((pa - this.bus.ramBase) / 4096);
    if (this.codePages[ppn]) this.invalidateCode(ppn);
    r64[0] = this.atomics!.amo(kind, size as 4 | 8, pa - this.bus.ramBase, this.x[r2]!, this.x[r2 + 1]!);
    r64[1] = this.atomics!.oldHi;
    return true;
  }

  private execFpMem(op: number, imm: number, rd: number, r1: number, r2: number): void {
    if ((this.mstatus & MSTATUS_FS) === 0) this.illegal(this.rawBits(this.pcValue));
    const x = this.x;
    const va = x[r1 + 1]! * TWO32 + (x[r1]! >>> 0) + imm;
    const f = this.fp.i32;
    if (op === Op.FLW || op === Op.FLD) {
      const size = op === Op.FLW ? 4 : 8;
      this.loadRaw(va, size);
      const fd = rd >>> 1;
      f[2 * fd] = this.valLo;
      f[2 * fd + 1] = size === 4 ? -1 : this.valHi;
      this.mstatus |= MSTATUS_FS;
    } else {
      const fs = r2 >>> 1;
      this.storeSlow(va, op === Op.FSW ? 4 : 8, f[2 * fs]!, f[2 * fs + 1]!);
    }
  }

  private execBitmanip(op: number, imm: number, r1: number, r2: number): void {
    const x = this.x;
    const alo = x[r1]!;
    const ahi = x[r1 + 1]!;
    const blo = x[r2]!;
    const bhi = x[r2 + 1]!;
    let lo: number;
    let hi = 0;
    const tmp = r64;
    switch (op) {
      case Op.SH1ADD:
      case Op.SH2ADD:
      case Op.SH3ADD:
      case Op.SH1ADD_UW:
      case Op.SH2ADD_UW:
      case Op.SH3ADD_UW:
      case Op.ADD_UW: {
        const uw = op === Op.SH1ADD_UW || op === Op.SH2ADD_UW || op === Op.SH3ADD_UW || op === Op.ADD_UW;
        const s =
          op === Op.SH1ADD || op === Op.SH1ADD_UW ? 1 : op === Op.SH2ADD || op === Op.SH2ADD_UW ? 2 : op === Op.ADD_UW ? 0 : 3;
        shl(tmp, 0, alo, uw ? 0 : ahi, s);
        const l = (tmp[0]! + blo) | 0;
        tmp[1] = (tmp[1]! + bhi + (l >>> 0 < tmp[0]! >>> 0 ? 1 : 0)) | 0;
        tmp[0] = l;
        return;
      }
      case Op.SLLI_UW:
        shl(tmp, 0, alo, 0, imm);
        return;
      case Op.ANDN:
        lo = alo & ~blo;
        hi = ahi & ~bhi;
        break;
      case Op.ORN:
        lo = alo | ~blo;
        hi = ahi | ~bhi;
        break;
      case Op.XNOR:
        lo = ~(alo ^ blo);
        hi = ~(ahi ^ bhi);
        break;
      case Op.MAX:
      case Op.MIN:
      case Op.MAXU:
      case Op.MINU: {
        const signed = op === Op.MAX || op === Op.MIN;
        const ah = signed ? ahi : ahi >>> 0;
        const bh = signed ? bhi : bhi >>> 0;
        const aLess = ah < bh || (ah === bh && alo >>> 0 < blo >>> 0);
        const pickA = aLess === (op === Op.MIN || op === Op.MINU);
        lo = pickA ? alo : blo;
        hi = pickA ? ahi : bhi;
        break;
      }
      case Op.ROL:
      case Op.ROR:
      case Op.RORI: {
        let s = (op === Op.RORI ? imm : blo) & 63;
        if (op === Op.ROL) s = (64 - s) & 63;
        // rotate right by s
        shr(tmp, 0, alo, ahi, s);
        const l1 = tmp[0]!;
        const h1 = tmp[1]!;
        shl(tmp, 0, alo, ahi, (64 - s) & 63);
        lo = s === 0 ? alo : l1 | tmp[0]!;
        hi = s === 0 ? ahi : h1 | tmp[1]!;
        break;
      }
      case Op.ROLW:
      case Op.RORW:
      case Op.RORIW: {
        let s = (op === Op.RORIW ? imm : blo) & 31;
        if (op === Op.ROLW) s = (32 - s) & 31;
        lo = s === 0 ? alo : (alo >>> s) | (alo << (32 - s));
        hi = lo >> 31;
        break;
      }
      case Op.CLZ:
        lo = clz32x2(alo, ahi);
        break;
      case Op.CTZ:
        lo = alo !== 0 ? ctz32(alo) : 32 + ctz32(ahi);
        break;
      case Op.CPOP:
        lo = popcount32(alo) + popcount32(ahi);
        break;
      case Op.CLZW:
        lo = Math.clz32(alo);
        break;
      case Op.CTZW:
        lo = ctz32(alo);
        break;
      case Op.CPOPW:
        lo = popcount32(alo);
        break;
      case Op.SEXT_B:
        lo = (alo << 24) >> 24;
        hi = lo >> 31;
        break;
      case Op.SEXT_H:
        lo = (alo << 16) >> 16;
        hi = lo >> 31;
        break;
      case Op.ZEXT_H:
        lo = alo & 0xffff;
        break;
      case Op.ORC_B: {
        const orc = (v: number): number =>
          (v & 0xff ? 0xff : 0) | (v & 0xff00 ? 0xff00 : 0) | (v & 0xff0000 ? 0xff0000 : 0) | (v & 0xff000000 ? 0xff000000 : 0);
        lo = orc(alo);
        hi = orc(ahi);
        break;
      }
      case Op.REV8: {
        const bswap = (v: number): number => (v >>> 24) | ((v >>> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24) | 0;
        lo = bswap(ahi);
        hi = bswap(alo);
        break;
      }
      case Op.BCLR:
      case Op.BEXT:
      case Op.BINV:
      case Op.BSET:
      case Op.BCLRI:
      case Op.BEXTI:
      case Op.BINVI:
      case Op.BSETI: {
        const s = (op >= Op.BCLRI ? imm : blo) & 63;
        const mlo = s < 32 ? 1 << s : 0;
        const mhi = s >= 32 ? 1 << (s - 32) : 0;
        const kind = op >= Op.BCLRI ? op - Op.BCLRI : op - Op.BCLR;
        if (kind === 0) {
          lo = alo & ~mlo;
          hi = ahi & ~mhi;
        } else if (kind === 1) {
          lo = (alo & mlo) !== 0 || (ahi & mhi) !== 0 ? 1 : 0;
        } else if (kind === 2) {
          lo = alo ^ mlo;
          hi = ahi ^ mhi;
        } else {
          lo = alo | mlo;
          hi = ahi | mhi;
        }
        break;
      }
      default:
        throw new Error(`hart: unhandled op ${op}`);
    }
    r64[0] = lo;
    r64[1] = hi;
  }

  // ---- CSRs ----
  private execCsr(op: number, csr: number, rd: number, r1: number, w: number): void {
    const x = this.x;
    const isImm = op >= Op.CSRRWI;
    const src = r1 >>> 1; // register index, or the 5-bit uimm
    const kind = isImm ? op - Op.CSRRWI : op - Op.CSRRW; // 0 write, 1 set, 2 clear
    const writes = kind === 0 || src !== 0;
    const bits = this.rawBits(this.pcValue);
    if (((csr >>> 8) & 3) > this.privLevel) this.illegal(bits);
    if (writes && csr >>> 10 === 3) this.illegal(bits);
    let vlo: number;
    let vhi = 0;
    if (isImm) vlo = src;
    else {
      vlo = x[r1]!;
      vhi = x[r1 + 1]!;
    }
    const reads = kind !== 0 || rd !== SINK;
    if (!this.readCsr(csr, kind !== 0)) this.illegal(bits);
    const oldLo = this.valLo;
    const oldHi = this.valHi;
    if (writes) {
      let nlo = vlo;
      let nhi = vhi;
      if (kind === 1) {
        nlo = oldLo | vlo;
        nhi = oldHi | vhi;
      } else if (kind === 2) {
        nlo = oldLo & ~vlo;
        nhi = oldHi & ~vhi;
      }
      if (!this.writeCsr(csr, nlo, nhi)) this.illegal(bits);
    }
    if (reads) {
      x[rd] = oldLo;
      x[rd + 1] = oldHi;
      x[SINK] = x[SINK + 1] = 0;
    }
    void w;
  }
}

/**
 * For the interpreter at a taken in-page branch with the JIT on: true while the target stays cold (counting
 * the entry), false once it is hot or translated, so the run loop hands it to the translator.
 */
function staysCold(blocks: PageBlocks, slot: number, threshold: number): boolean {
  const h = blocks.hits[slot]!;
  if (h >= threshold) return false;
  blocks.hits[slot] = h + 1;
  return true;
}

/** The decoded slot words of one instruction, as the run loop and the JIT see them (for tests and tools). */
export function decodedWords(insn: number): { w: number; imm: number } {
  const words = new Int32Array(2);
  packDecodedUncached(words, 0, insn | 0);
  return { w: words[0]!, imm: words[1]! };
}

/**
 * Decoded words depend only on the instruction bits (immediates are pc-relative), so identical instructions
 * share one decode: a kernel repeats the same loads, moves and returns thousands of times.
 */
const packCache = new Map<number, number>();
const packWords = new Int32Array(2);
const PACK_CACHE_LIMIT = 1 << 18;
/** The decoded words of packCache's entries, by index (allocated on first use, dropped by resetPackCache). */
let packStoreW0 = new Int32Array(0);
let packStoreW1 = new Int32Array(0);

/** Forgets the shared decodes; the index arrays are replaced, so the memory they touched goes back. */
function resetPackCache(): void {
  packCache.clear();
  packStoreW0 = new Int32Array(0);
  packStoreW1 = new Int32Array(0);
}

function packDecoded(code: Int32Array, slot: number, insn: number): void {
  const i2 = slot * 2;
  const hit = packCache.get(insn);
  if (hit !== undefined) {
    code[i2] = packStoreW0[hit]!;
    code[i2 + 1] = packStoreW1[hit]!;
    return;
  }
  packDecodedUncached(packWords, 0, insn);
  code[i2] = packWords[0]!;
  code[i2 + 1] = packWords[1]!;
  if (packCache.size >= PACK_CACHE_LIMIT) packCache.clear();
  const index = packCache.size;
  if (packStoreW0.length === 0) {
    // Zero-filled mappings: only the pages indexes reach are ever resident.
    packStoreW0 = new Int32Array(PACK_CACHE_LIMIT);
    packStoreW1 = new Int32Array(PACK_CACHE_LIMIT);
  }
  packStoreW0[index] = packWords[0]!;
  packStoreW1[index] = packWords[1]!;
  packCache.set(insn, index);
}

function packDecodedUncached(code: Int32Array, slot: number, insn: number): void {
  const d = decode(insn);
  const step = (insn & 3) === 3 ? 2 : 1;
  const i2 = slot * 2;
  if (!d) {
    code[i2] = Op.ILLEGAL | (step << STEP_SHIFT);
    code[i2 + 1] = (insn & 3) === 3 ? insn : insn & 0xffff;
    return;
  }
  let op: Op | undefined;
  let imm = d.imm;
  const isFp = d.entry.ext === 'F' || d.entry.ext === 'D';
  let rd = d.rd === 0 ? SINK : d.rd * 2;
  let rs1 = d.rs1 * 2;
  const rs2 = d.rs2 * 2;
  const base = d.op;
  if (base.startsWith('amo')) {
    op = base.endsWith('.w') ? Op.AMO_W : Op.AMO_D;
    imm = AMO_OF[base.slice(0, -2)]!;
  } else if (isFp && !(base === 'flw' || base === 'fld' || base === 'fsw' || base === 'fsd')) {
    op = Op.FPOP;
    const fi = FP_INDEX.get(base);
    if (fi === undefined) throw new Error(`hart: no FP op for ${base}`);
    imm = fi | (d.rs3 << 8) | (d.rm << 13);
    // FP ops take raw register numbers; the int/fp distinction is the op's business.
    rd = d.rd * 2;
  } else {
    op = OP_OF[base];
    if (op === undefined) throw new Error(`hart: no executor for ${base}`);
    if (base === 'flw' || base === 'fld') rd = d.rd * 2; // FP destination: raw number (not the sink)
    if (op === Op.CSRRWI || op === Op.CSRRSI || op === Op.CSRRCI) rs1 = d.rs1 * 2; // uimm travels in rs1
  }
  // Ops whose only effect is writing x0 are NOPs (their encodings are hints); loads keep their side effects.
  if (rd === SINK && (op === Op.LUI || op === Op.AUIPC || (op >= Op.ADDI && op <= Op.MULW))) op = Op.NOP;
  // Privileged/system instructions keep the raw bits in imm for illegal-instruction tval.
  if (op === Op.MRET || op === Op.SRET || op === Op.WFI || op === Op.SFENCE_VMA) imm = insn;
  code[i2] = op | (rd << RD_SHIFT) | (rs1 << RS1_SHIFT) | (rs2 << RS2_SHIFT) | (step << STEP_SHIFT);
  code[i2 + 1] = imm;
}
