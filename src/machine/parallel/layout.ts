/**
 * The shared memory through which a board and its hart threads talk (src/machine/parallel): one block per hart,
 * and one for the board. Words are Int32 (Atomics), a hart's counters Float64 (written by its thread alone).
 *
 * Who writes what:
 * - the board: a hart's interrupt lines, its command, the clock, replies to its requests;
 * - any hart: another hart's doorbell, software interrupt bits, flush requests, HSM start;
 * - the hart itself: its state, acknowledgements, requests to the board, counters.
 */

/** A hart thread sleeps on this word; anyone who wants its attention adds 1 and notifies. */
export const H_DOORBELL = 0;
/** Levels of the hardware lines (bit = mip bit: MSIP 3, MTIP 7, SEIP 9, MEIP 11), driven by the board's devices. */
export const H_LINES = 1;
/** Software interrupt bits to set in mip (SSIP from another hart's SBI IPI), taken by the hart with exchange. */
export const H_SOFT_SET = 2;
/** Flush requests (FLUSH_TLB | FLUSH_DECODE), taken with exchange. */
export const H_FLUSH = 3;
/** Flush tickets issued, and the last one the hart completed (a requester waits until DONE reaches its ticket). */
export const H_FLUSH_REQ = 4;
export const H_FLUSH_DONE = 5;
/** The board's command (CMD_*). */
export const H_CMD = 6;
/** The hart thread's state (STATE_*), notified on every change. */
export const H_STATE = 7;
/** HSM start: a flag, then pc and opaque as 32-bit halves. */
export const H_START = 8;
export const H_START_PC_LO = 9;
export const H_START_PC_HI = 10;
export const H_START_ARG_LO = 11;
export const H_START_ARG_HI = 12;
/** 1 while the hart is started (SBI HSM or firmware), else it sleeps until started. */
export const H_RUNNING = 13;
/**
 * Who waits for this hart's fences: bit h for hart h, FENCE_WAITER_BOARD for the board. The hart rings each
 * when it has done them, so a waiter sleeps on its own doorbell and still hears the fences asked of it.
 */
export const H_FLUSH_WAITERS = 14;
/** The hart's request to the board: RPC_IDLE, RPC_CALL (hart → board) or RPC_DONE (board → hart). */
export const H_RPC = 16;
export const H_RPC_OP = 17;
export const H_RPC_A = 18;
export const H_RPC_B = 19;
export const H_RPC_C = 20;
export const H_RPC_RESULT = 21;
/** Bytes of arch state in the state area (written with STATE_PARKED). */
export const H_STATE_BYTES = 22;
export const H_INTS = 48;

/** Float64 counters at this byte offset: retired instructions, host ms spent running, decode-cache bytes. */
const STATS_OFFSET = H_INTS * 4;
export const S_INSTRET = 0;
export const S_RUN_MS = 1;
export const S_DECODE_BYTES = 2;
export const S_WAITS = 3;
/** Blocks the hart's JIT translated (0 on the interpreter). */
export const S_JIT_BLOCKS = 4;
/** Compiled blocks it took from its sibling harts (src/riscv/jit/wasm/share.ts). */
export const S_JIT_SIBLING_BLOCKS = 5;
/** Calls to the built-in SBI on the hart's thread. */
export const S_SBI_CALLS = 6;
const STATS_COUNT = 8;

/** Request payload (console bytes), then the architectural state area. */
const DATA_OFFSET = STATS_OFFSET + STATS_COUNT * 8;
export const DATA_BYTES = 4096;
const STATE_OFFSET = DATA_OFFSET + DATA_BYTES;
export const STATE_AREA_BYTES = 32 * 1024;
const HART_BLOCK_BYTES = STATE_OFFSET + STATE_AREA_BYTES;

/** The hardware interrupt lines the board drives into a hart's mip (MSIP, MTIP, SEIP, MEIP), and their mask. */
export const LINE_BITS: readonly number[] = [3, 7, 9, 11];
export const LINE_MASK = LINE_BITS.reduce((m, bit) => m | (1 << bit), 0);

/** Drives the lines of `changed` (a mask) on `hart` to their levels in `lines`. */
export function applyLines(hart: { setPending(bit: number, level: boolean): void }, lines: number, changed = LINE_MASK): void {
  for (const bit of LINE_BITS) if (changed & (1 << bit)) hart.setPending(bit, (lines & (1 << bit)) !== 0);
}

const TWO32 = 0x1_0000_0000;

export const FLUSH_TLB = 1;
export const FLUSH_DECODE = 2;

export const CMD_RUN = 0;
/** Stop at the next boundary, write the arch state, and wait. */
export const CMD_PARK = 1;
/** Leave the loop for good. */
export const CMD_EXIT = 2;

export const STATE_STARTING = 0;
export const STATE_RUNNING = 1;
export const STATE_PARKED = 2;
export const STATE_EXITED = 3;

export const RPC_IDLE = 0;
export const RPC_CALL = 1;
export const RPC_DONE = 2;

/** What a hart asks of the board. */
export const OP_MMIO_READ = 1; // A = paddr, B = size → RESULT value, C = 1 when it faulted
export const OP_MMIO_WRITE = 2; // A = paddr, B = size, C = value → RESULT 1 ok / 0 fault
export const OP_CONSOLE_WRITE = 3; // A = byte count in the data area
export const OP_CONSOLE_READ = 4; // → RESULT byte or -1
export const OP_SYSTEM_RESET = 5; // A = 0 shutdown, 1 reboot

/**
 * The board block: the board's doorbell (harts add 1 when they post a request or park), the clock (mtime is
 * floor((host ms - C_OFFSET_MS) * ticks per ms) + C_SKIP_TICKS, as MachineClock), and the built-in SBI's HSM
 * state of each hart.
 */
export const B_DOORBELL = 0;
const B_CLOCK_OFFSET = 16;
export const C_OFFSET_MS = 0;
export const C_SKIP_TICKS = 1;
const B_HSM_OFFSET = 32;
export const MAX_HARTS = 8;
/** The board's bit in H_FLUSH_WAITERS. */
export const FENCE_WAITER_BOARD = 1 << MAX_HARTS;
const BOARD_BLOCK_BYTES = B_HSM_OFFSET + MAX_HARTS * 4;

/** One hart's views of its block. */
export class HartBlock {
  readonly i32: Int32Array;
  readonly stats: Float64Array;
  readonly data: Uint8Array;
  readonly state: Uint8Array;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.i32 = new Int32Array(buffer, 0, H_INTS);
    this.stats = new Float64Array(buffer, STATS_OFFSET, STATS_COUNT);
    this.data = new Uint8Array(buffer, DATA_OFFSET, DATA_BYTES);
    this.state = new Uint8Array(buffer, STATE_OFFSET, STATE_AREA_BYTES);
  }
  static create(): HartBlock {
    return new HartBlock(new SharedArrayBuffer(HART_BLOCK_BYTES));
  }
  /** Adds 1 to the doorbell and wakes the hart thread if it sleeps. */
  ring(): void {
    Atomics.add(this.i32, H_DOORBELL, 1);
    Atomics.notify(this.i32, H_DOORBELL);
  }

  /** Asks the hart for an HSM start at `pc` with a1 = `arg`, and rings it. */
  postStart(pc: number, arg: number): void {
    const c = this.i32;
    c[H_START_PC_LO] = (pc % TWO32) | 0;
    c[H_START_PC_HI] = Math.floor(pc / TWO32) | 0;
    c[H_START_ARG_LO] = (arg % TWO32) | 0;
    c[H_START_ARG_HI] = Math.floor(arg / TWO32) | 0;
    Atomics.store(c, H_START, 1);
    this.ring();
  }

  /** Takes a posted HSM start (the hart, or the board from a parked hart), or null when none is posted. */
  takeStart(): { pc: number; arg: number } | null {
    const c = this.i32;
    if (Atomics.load(c, H_START) === 0 || Atomics.exchange(c, H_START, 0) === 0) return null;
    return {
      pc: (c[H_START_PC_HI]! >>> 0) * TWO32 + (c[H_START_PC_LO]! >>> 0),
      arg: (c[H_START_ARG_HI]! >>> 0) * TWO32 + (c[H_START_ARG_LO]! >>> 0),
    };
  }

  /**
   * Asks the hart for the fences in `what` (FLUSH_*), rings it, and returns the ticket flushed() waits for. The
   * fences are posted before the ticket is taken: a hart that sees the ticket (takeFlushes) sees them too.
   */
  requestFlush(what: number, waiter: number): number {
    this.addFlushWaiter(waiter);
    Atomics.or(this.i32, H_FLUSH, what);
    const ticket = Atomics.add(this.i32, H_FLUSH_REQ, 1) + 1;
    this.ring();
    return ticket;
  }

  /**
   * For the hart itself: the fences asked of it since it last took them, and the ticket to report done after
   * doing them (doneFlushes); null when every ticket is done. A ticket whose fences an earlier take already
   * took (they were posted first) is done by that take's fences.
   */
  takeFlushes(): { what: number; ticket: number } | null {
    const ticket = Atomics.load(this.i32, H_FLUSH_REQ);
    if (ticket === Atomics.load(this.i32, H_FLUSH_DONE)) return null;
    return { what: Atomics.exchange(this.i32, H_FLUSH, 0), ticket };
  }

  /** Reports the fences up to `ticket` done and returns who waits for them (H_FLUSH_WAITERS bits) to ring. */
  doneFlushes(ticket: number): number {
    Atomics.store(this.i32, H_FLUSH_DONE, ticket);
    Atomics.notify(this.i32, H_FLUSH_DONE);
    return Atomics.exchange(this.i32, H_FLUSH_WAITERS, 0);
  }

  /** Names `waiter` among those to ring after the next fences (a waiter about to sleep again). */
  addFlushWaiter(waiter: number): void {
    Atomics.or(this.i32, H_FLUSH_WAITERS, waiter);
  }

  /** Whether the hart has done the fences of `ticket` (or has ended, and holds no translations any more). */
  flushed(ticket: number): boolean {
    return Atomics.load(this.i32, H_FLUSH_DONE) - ticket >= 0 || Atomics.load(this.i32, H_STATE) === STATE_EXITED;
  }
}

/** The board block's views. */
export class BoardBlock {
  readonly i32: Int32Array;
  readonly clock: Float64Array;
  readonly hsm: Int32Array;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.i32 = new Int32Array(buffer, 0, 4);
    this.clock = new Float64Array(buffer, B_CLOCK_OFFSET, 2);
    this.hsm = new Int32Array(buffer, B_HSM_OFFSET, MAX_HARTS);
  }
  static create(): BoardBlock {
    return new BoardBlock(new SharedArrayBuffer(BOARD_BLOCK_BYTES));
  }
  ring(): void {
    Atomics.add(this.i32, B_DOORBELL, 1);
    Atomics.notify(this.i32, B_DOORBELL);
  }
}
