/**
 * Adapts the real RV64 hart (src/riscv/hart.ts) to the machine's HartPort, and puts a hart into the state
 * OpenSBI leaves it in before jumping to an S-mode kernel (used by the built-in SBI firmware).
 */
import type { Bus } from '../riscv/bus.js';
import * as C from '../riscv/csr.js';
import { Hart, type HartOptions } from '../riscv/hart.js';
import { warmUpInterpreter } from '../riscv/hart/warmup.js';
import { DEFAULT_THRESHOLD, DEFAULT_WASM_THRESHOLD, jitFromEnv } from '../riscv/jit/index.js';
import { HART_STATE_TYPE, HART_STATE_VERSION, type HartArchState } from '../riscv/hart-state.js';
import { checkState, type DeviceState } from '../devices/device.js';
import type { HartPort } from './hart-port.js';
import type { HartFactoryOptions } from './machine.js';

const TWO32 = 0x1_0000_0000;
const MIP_SSIP = 1;
const MIP_STIP = 5;

// Exceptions delegated to S-mode. With the built-in firmware nothing runs in M-mode, so every exception S-mode
// or U-mode can raise goes to the kernel, except ecall from S (that is the SBI call itself).
const MEDELEG_ALL_BUT_SBI =
  (1 << 0) | // instruction address misaligned
  (1 << 1) | // instruction access fault
  (1 << 2) | // illegal instruction
  (1 << 3) | // breakpoint
  (1 << 4) | // load address misaligned
  (1 << 5) | // load access fault
  (1 << 6) | // store/AMO address misaligned
  (1 << 7) | // store/AMO access fault
  (1 << 8) | // ecall from U
  (1 << 12) | // instruction page fault
  (1 << 13) | // load page fault
  (1 << 15); // store/AMO page fault
const MIDELEG_S = (1 << 1) | (1 << 5) | (1 << 9); // SSI, STI, SEI

const TRAP_RING = 16;
const ECALL_FROM_U = 8;
const ECALL_FROM_S = 9;
const ECALL_FROM_M = 11;

export class HartAdapter implements HartPort {
  private handler?: (hart: HartPort) => boolean;
  // A ring of the last traps (cause, interrupt, epc, tval): cheap, and the first thing to look at after a fault.
  private readonly trapRing = new Float64Array(TRAP_RING * 4);
  private trapCount = 0;
  // The run of identical exceptions (a guest trapping at one pc forever makes no progress).
  private sameRun = 0;
  private lastCause = -1;
  private lastEpc = 0;
  private lastTval = 0;

  constructor(readonly hart: Hart) {
    hart.onTrap = (_h, cause, interrupt, tval, epc) => {
      const i = (this.trapCount++ % TRAP_RING) * 4;
      this.trapRing[i] = cause;
      this.trapRing[i + 1] = interrupt ? 1 : 0;
      this.trapRing[i + 2] = epc;
      this.trapRing[i + 3] = tval;
      if (interrupt) return;
      if (cause === ECALL_FROM_U || cause === ECALL_FROM_S || cause === ECALL_FROM_M) {
        this.sameRun = 0;
        this.lastCause = -1;
      } else if (cause === this.lastCause && epc === this.lastEpc && tval === this.lastTval) this.sameRun++;
      else {
        this.sameRun = 1;
        this.lastCause = cause;
        this.lastEpc = epc;
        this.lastTval = tval;
      }
    };
  }

  sameTrapRun(): number {
    return this.sameRun;
  }

  resetTrapRun(): void {
    this.sameRun = 0;
    this.lastCause = -1;
  }

  recentTraps(): string[] {
    const out: string[] = [];
    const n = Math.min(this.trapCount, TRAP_RING);
    for (let k = this.trapCount - n; k < this.trapCount; k++) {
      const i = (k % TRAP_RING) * 4;
      const hex = (v: number): string => (v < 0 ? '-0x' + (-v).toString(16) : '0x' + v.toString(16));
      out.push(
        `${this.trapRing[i + 1] ? 'interrupt' : 'exception'} ${this.trapRing[i]} epc=${hex(this.trapRing[i + 2]!)} tval=${hex(this.trapRing[i + 3]!)}`,
      );
    }
    return out;
  }

  get hartId(): number {
    return this.hart.hartId;
  }
  get pc(): number {
    return this.hart.pc;
  }
  set pc(v: number) {
    this.hart.pc = v;
  }
  get waiting(): boolean {
    return this.hart.waiting;
  }
  hasPendingInterrupt(): boolean {
    return (this.hart.mip & this.hart.mie) !== 0;
  }
  get instret(): number {
    return this.hart.instret;
  }
  get stimecmp(): number {
    return this.hart.stimecmp;
  }
  set stimecmp(v: number) {
    if (!Number.isFinite(v) || v >= 2 ** 64) this.hart.writeCsr(C.CSR_STIMECMP, -1, -1);
    else this.hart.writeCsr(C.CSR_STIMECMP, (v % TWO32) | 0, Math.floor(v / TWO32) | 0);
  }
  get ecallHandler(): ((hart: HartPort) => boolean) | undefined {
    return this.handler;
  }
  set ecallHandler(fn: ((hart: HartPort) => boolean) | undefined) {
    this.handler = fn;
    this.hart.ecallHandler = fn ? () => fn(this) : undefined;
  }

  run(budget: number): number {
    return this.hart.run(budget);
  }
  requestExit(): void {
    this.hart.requestExit();
  }
  reset(pc: number): void {
    this.hart.reset(pc);
  }
  getX(i: number): { lo: number; hi: number } {
    return { lo: this.hart.getXLo(i) >>> 0, hi: this.hart.getXHi(i) >>> 0 };
  }
  setX(i: number, value: number): void {
    this.hart.setX(i, value);
  }
  setPending(mipBit: number, level: boolean): void {
    if (mipBit === MIP_SSIP || (mipBit === MIP_STIP && !this.hart.sstcEnabled)) {
      // Software-writable bits: the guest clears them through sip, so they live in the software half of mip.
      const bit = 1 << mipBit;
      const sw = this.hart.mipSw;
      this.hart.writeCsr(C.CSR_MIP, level ? sw | bit : sw & ~bit, 0);
      return;
    }
    if (mipBit === MIP_STIP) return; // with Sstc, STIP follows stimecmp
    this.hart.setPending(mipBit, level);
  }
  saveArchState(): DeviceState<HartArchState> {
    return { type: HART_STATE_TYPE, version: HART_STATE_VERSION, data: this.hart.saveArchState() };
  }
  loadArchState(state: DeviceState): void {
    checkState(state, HART_STATE_TYPE, HART_STATE_VERSION);
    this.hart.loadArchState(state.data as HartArchState);
  }
  flushTlb(): void {
    this.hart.flushTlb();
  }
  flushTlbRange(start: number, size: number, asid: number): void {
    this.hart.flushTlbRange(start, size, asid);
  }
  trimDecodeCache(): void {
    this.hart.trimDecodeCache();
  }
  decodeCacheBytes(): number {
    return this.hart.decodeCacheBytes();
  }
  translatedBlocks(): number {
    return this.hart.jitStats?.blocks ?? 0;
  }
  siblingBlocks(): number {
    return this.hart.jitStats?.siblingBlocks ?? 0;
  }
  flushDecodeCache(): void {
    this.hart.flushDecodeCache();
  }

  enterSupervisor(pc: number): void {
    const h = this.hart;
    h.writeCsr(C.CSR_MEDELEG, MEDELEG_ALL_BUT_SBI, 0);
    h.writeCsr(C.CSR_MIDELEG, MIDELEG_S, 0);
    h.writeCsr(C.CSR_MCOUNTEREN, -1, 0);
    // As OpenSBI's mstatus_init: Linux never writes scounteren, and U-mode rdtime (the vDSO clock) needs TM.
    h.writeCsr(C.CSR_SCOUNTEREN, 7, 0);
    h.writeCsr(C.CSR_MENVCFG, 0, C.MENVCFG_HI_STCE);
    h.priv = C.PRV_S;
    // FS = Initial so the kernel may use the FPU; SIE = 0 as the SBI spec requires at entry.
    h.writeCsr(C.CSR_MSTATUS, (C.FS_INITIAL << C.MSTATUS_FS_SHIFT) | (C.PRV_S << C.MSTATUS_MPP_SHIFT), 0);
    h.pc = pc;
  }
}

/** `opts` itself, unless TYPEVISOR_JIT asks for an eager JIT: then the same with the default threshold. */
function scratchOptions(opts: HartFactoryOptions): HartOptions {
  const jit = jitFromEnv();
  if (jit === null || jit.threshold !== 0) return opts;
  return { ...opts, jit: { ...jit, threshold: jit.backend === 'wasm' ? DEFAULT_WASM_THRESHOLD : DEFAULT_THRESHOLD } };
}

export function createHart(bus: Bus, opts: HartFactoryOptions): HartPort {
  // The scratch hart is made with this hart's own options, so it trains run() on the very objects real harts
  // bring: their clock (a closure of the same function for every hart; with a clock of its own, the optimized
  // run() inlined that one and deoptimized at the real one) and the JIT options of TYPEVISOR_JIT (an object of
  // another shape deoptimized it at `options.threshold`). Only an eager JIT (tests) is swapped for the default
  // threshold: it would compile every encoding the warm-up tries.
  warmUpInterpreter((scratch) => new Hart(scratch, scratchOptions(opts)), {
    atomics: !!bus.atomics,
    codeShare: bus.wasmState?.joinCodeShare !== undefined,
  });
  return new HartAdapter(new Hart(bus, opts));
}
