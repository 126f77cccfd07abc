/**
 * What the machine needs from a hart. The real Hart (src/riscv/hart.ts) is adapted to this in hart-adapter.ts,
 * which keeps the board, SBI and run loop testable with a scripted fake hart.
 */
import type { DeviceState } from '../devices/device.js';

export const PRIV_U = 0;
export const PRIV_S = 1;
export const PRIV_M = 3;

export interface HartPort {
  readonly hartId: number;
  pc: number;
  /** In WFI with nothing pending: the run loop skips it until an interrupt is pending. */
  readonly waiting: boolean;
  /** An enabled interrupt is pending (mip & mie != 0): a waiting hart must run to wake up. */
  hasPendingInterrupt(): boolean;
  /** Retired instructions since reset. */
  readonly instret: number;
  /** Sstc stimecmp as a number (≥ 2^53 means "never"). */
  stimecmp: number;
  /** Runs up to `budget` instructions; returns how many retired. */
  run(budget: number): number;
  /** Makes a running run() return at the next block boundary. */
  requestExit(): void;
  /** Resets architectural state and sets pc, in M-mode. */
  reset(pc: number): void;
  /** Register i as two unsigned 32-bit halves. */
  getX(i: number): { lo: number; hi: number };
  /** Sets register i from a signed JS number (exact within ±2^53). */
  setX(i: number, value: number): void;
  /** Drives a hardware-owned mip bit (MSIP 3, MTIP 7, SEIP 9, MEIP 11; SSIP 1 and STIP 5 for the built-in SBI). */
  setPending(mipBit: number, level: boolean): void;
  /** ECALL from S-mode, called before trapping; true = handled, the ecall retires. */
  ecallHandler?: (hart: HartPort) => boolean;
  flushTlb(): void;
  /** Remote sfence.vma over [start, start+size) for `asid` (-1: every address space); size 0 or -1 is everything. */
  flushTlbRange(start: number, size: number, asid: number): void;
  flushDecodeCache(): void;
  /** Host bytes held by decoded instruction pages (optional: harts without a decode cache hold none). */
  decodeCacheBytes?(): number;
  /** Blocks the hart's JIT translated so far (optional: 0 on the interpreter). */
  translatedBlocks?(): number;
  /** Of the compiled blocks it holds, those a sibling hart compiled (optional: 0 without code sharing). */
  siblingBlocks?(): number;
  /** Frees the decoded pages (optional): an idle guest's memory trim. */
  trimDecodeCache?(): void;
  /**
   * Puts the hart where OpenSBI leaves it before jumping to the kernel: S-mode at `pc`, delegations set,
   * counters enabled, PMP open, Sstc enabled, FS initial.
   */
  enterSupervisor(pc: number): void;
  /** Architectural state for machine snapshots (named, versioned); absent: this hart cannot be saved. */
  saveArchState?(): DeviceState;
  /** Replaces the architectural state with one saveArchState produced (shape already checked); throws on a bad one. */
  loadArchState?(state: DeviceState): void;
  /** Last N retired pcs, newest last, for fault reports (optional). */
  recentPcs?(): number[];
  /** The last few traps taken, oldest first, as "cause=… epc=… tval=…" lines, for fault reports (optional). */
  recentTraps?(): string[];
  /**
   * How many times in a row the hart has taken the very same exception (cause, epc, tval), interrupts aside;
   * ecalls never count (a loop of system calls is progress). The machine calls a long run a fault (optional).
   */
  sameTrapRun?(): number;
  /** Forgets the current run (the guest showed progress, e.g. console output). */
  resetTrapRun?(): void;
}
