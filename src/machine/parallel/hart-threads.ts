/**
 * The board's side of harts on threads of their own (hart-thread.ts runs each hart). It starts the threads with
 * each hart's arch state, answers their requests (MMIO, console, reset) as they come (Atomics.waitAsync on the
 * board's doorbell, so the board's event loop stays free for its devices), drives their interrupt lines, and
 * parks them all at an instruction boundary for a pause, a snapshot or exact stats.
 *
 * Threads come from a spawner the host supplies (src/vm/hart-worker.ts on Node): this file has no Node built-ins.
 */
import * as P from './layout.js';
import type { HartThreadInit, HartThreadMessage } from './hart-thread.js';

export interface HartThreadHandle {
  /** Ends the thread (after the board told it to exit). */
  terminate(): void;
}
export type HartThreadSpawner = (init: HartThreadInit, onMessage: (m: HartThreadMessage) => void) => HartThreadHandle;

/** What the board does for its hart threads. */
export interface HartThreadsHost {
  mmioRead(paddr: number, size: 1 | 2 | 4): number | undefined;
  mmioWrite(paddr: number, size: 1 | 2 | 4, value: number): boolean;
  consoleWrite(bytes: Uint8Array): void;
  consoleRead(): number;
  systemReset(kind: 'shutdown' | 'reboot'): void;
  /** After a batch of requests was answered (a device may have armed a timer or asked to exit). */
  afterRequests(): void;
  /** A hart thread faulted or ended on its own. */
  onThreadMessage(m: HartThreadMessage): void;
}

/** What every hart thread is started with; each also gets its id and the shared blocks. */
export type HartThreadsOptions = Omit<HartThreadInit, 'hartId' | 'hartBlocks' | 'board'>;

/** What the board hands its threads at a start or resume, and gets back when they park. */
export interface HartsSnapshot {
  /** Each hart's arch state, encoded (snapshot/values.ts). */
  states: Uint8Array[];
  running: boolean[];
  /** The built-in SBI's HSM states (null: external firmware). */
  hsm: number[] | null;
  /**
   * Each hart's hardware interrupt lines (mip bits MSIP, MTIP, SEIP, MEIP). Devices signal only changes, so at a
   * start they come from the harts' own mip (a restored PLIC does not raise its outputs again); from then on the
   * words the board drives are the truth, and a resume leaves them (absent here).
   */
  lines?: number[];
  /**
   * What other harts asked of a hart after it parked (it parks while they still run): software interrupt bits
   * (an IPI) and an HSM start. The board applies them to the parked states, or a snapshot would lose them.
   */
  late?: { soft: number; start: { pc: number; arg: number } | null }[];
}

/** How long a park may take before the board calls the threads stuck (they stop within one run of `budget`). */
const PARK_TIMEOUT_MS = 10_000;

type WaitAsync = (
  a: Int32Array,
  index: number,
  value: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Whether this engine can run harts on threads (shared memory and Atomics.waitAsync). */
export function hartThreadsSupported(): boolean {
  return typeof SharedArrayBuffer === 'function' && typeof waitAsync === 'function';
}

export class HartThreads {
  readonly blocks: P.HartBlock[];
  readonly board = P.BoardBlock.create();
  private handles: HartThreadHandle[] = [];
  private listening = false;
  private ended = false;

  constructor(
    private readonly spawn: HartThreadSpawner,
    private readonly host: HartThreadsHost,
    private readonly opts: HartThreadsOptions,
  ) {
    if (opts.harts > P.MAX_HARTS) throw new RangeError(`at most ${P.MAX_HARTS} hart threads`);
    this.blocks = Array.from({ length: opts.harts }, () => P.HartBlock.create());
  }

  /** Starts one thread per hart from `from`. */
  start(from: HartsSnapshot, clock: { offsetMs: number; skipTicks: number }): void {
    this.publishClock(clock.offsetMs, clock.skipTicks);
    this.handOver(from);
    const hartBlocks = this.blocks.map((b) => b.buffer);
    for (let h = 0; h < this.opts.harts; h++) {
      const init: HartThreadInit = { ...this.opts, hartId: h, hartBlocks, board: this.board.buffer };
      this.handles.push(this.spawn(init, (m) => this.host.onThreadMessage(m)));
    }
    this.listen();
  }

  /** The clock every hart computes mtime from (MachineClock's offset and skipped ticks). */
  publishClock(offsetMs: number, skipTicks: number): void {
    this.board.clock[P.C_OFFSET_MS] = offsetMs;
    this.board.clock[P.C_SKIP_TICKS] = skipTicks;
  }

  /** Drives a hardware interrupt line (MSIP, MTIP, SEIP, MEIP) of hart `h`. */
  setLine(h: number, bit: number, level: boolean): void {
    const b = this.blocks[h];
    if (!b) return;
    const mask = 1 << bit;
    const before = level ? Atomics.or(b.i32, P.H_LINES, mask) : Atomics.and(b.i32, P.H_LINES, ~mask);
    if (((before & mask) !== 0) !== level) b.ring();
  }

  /** Stops every hart at an instruction boundary and returns their states; answers their requests meanwhile. */
  park(): HartsSnapshot {
    for (const b of this.blocks) {
      Atomics.store(b.i32, P.H_CMD, P.CMD_PARK);
      b.ring();
    }
    this.waitFor((b) => {
      const s = Atomics.load(b.i32, P.H_STATE);
      return s === P.STATE_PARKED || s === P.STATE_EXITED;
    }, 'park');
    return {
      states: this.blocks.map((b) => b.state.slice(0, b.i32[P.H_STATE_BYTES]!)),
      running: this.blocks.map((b) => Atomics.load(b.i32, P.H_RUNNING) === 1),
      hsm: this.opts.builtinSbi ? Array.from(this.board.hsm.subarray(0, this.opts.harts)) : null,
      // The words, not the parked states: a device may have moved a line after its hart parked.
      lines: this.blocks.map((b) => Atomics.load(b.i32, P.H_LINES)),
      // Every hart is parked now: nothing else writes these words until they run again.
      late: this.blocks.map((b) => ({ soft: Atomics.exchange(b.i32, P.H_SOFT_SET, 0), start: b.takeStart() })),
    };
  }

  /** Lets parked harts run on from `from` (the states park returned, or ones the board changed meanwhile). */
  resume(from: HartsSnapshot): void {
    this.handOver(from);
    for (const b of this.blocks) {
      Atomics.store(b.i32, P.H_CMD, P.CMD_RUN);
      b.ring();
    }
  }

  /**
   * Has every hart drop its TLB (and wait until it has): RAM the board gave back must not be written through an
   * old entry. Rare (balloon, free page reporting); answers the harts' requests meanwhile.
   */
  flushTlbs(): void {
    if (this.ended) return;
    const tickets = this.blocks.map((b) => b.requestFlush(P.FLUSH_TLB, P.FENCE_WAITER_BOARD));
    // Named again before each look, as a hart's fence does: a hart's report of earlier fences may have taken the
    // board's bit, and the report of this ticket would then ring no one (the wait would end only at its poll).
    this.waitFor((b, h) => {
      if (b.flushed(tickets[h]!)) return true;
      b.addFlushWaiter(P.FENCE_WAITER_BOARD);
      return b.flushed(tickets[h]!);
    }, 'TLB flush');
  }

  /** Tells every thread to exit and ends them. */
  stop(): void {
    if (this.ended) return;
    this.ended = true;
    for (const b of this.blocks) {
      Atomics.store(b.i32, P.H_CMD, P.CMD_EXIT);
      b.ring();
      Atomics.notify(b.i32, P.H_RPC);
    }
    this.board.ring(); // ends the board's pending wait
    for (const h of this.handles) h.terminate();
    this.handles = [];
  }

  instret(h: number): number {
    return this.blocks[h]!.stats[P.S_INSTRET]!;
  }
  runMs(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_RUN_MS]!, 0);
  }
  translatedBlocks(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_JIT_BLOCKS]!, 0);
  }
  siblingBlocks(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_JIT_SIBLING_BLOCKS]!, 0);
  }
  decodeCacheBytes(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_DECODE_BYTES]!, 0);
  }
  sbiCalls(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_SBI_CALLS]!, 0);
  }
  waits(): number {
    return this.blocks.reduce((a, b) => a + b.stats[P.S_WAITS]!, 0);
  }
  running(h: number): boolean {
    return Atomics.load(this.blocks[h]!.i32, P.H_RUNNING) === 1;
  }
  hsm(): number[] {
    return Array.from(this.board.hsm.subarray(0, this.opts.harts));
  }

  private handOver(from: HartsSnapshot): void {
    this.blocks.forEach((b, h) => {
      const s = from.states[h]!;
      if (s.length > P.STATE_AREA_BYTES) throw new RangeError(`hart ${h}: a state of ${s.length} bytes does not fit`);
      b.state.set(s);
      b.i32[P.H_STATE_BYTES] = s.length;
      Atomics.store(b.i32, P.H_RUNNING, from.running[h] ? 1 : 0);
      if (from.lines) Atomics.store(b.i32, P.H_LINES, from.lines[h]! | 0);
    });
    if (from.hsm) from.hsm.forEach((v, h) => (this.board.hsm[h] = v));
  }

  /** Blocks until `done` holds for every hart, answering their requests (a parking hart may be in one). */
  private waitFor(done: (b: P.HartBlock, h: number) => boolean, what: string): void {
    const t0 = performance.now();
    for (;;) {
      const bell = Atomics.load(this.board.i32, P.B_DOORBELL);
      this.serve();
      if (this.blocks.every(done)) break;
      if (performance.now() - t0 > PARK_TIMEOUT_MS) throw new Error(`hart threads did not ${what} within ${PARK_TIMEOUT_MS} ms`);
      Atomics.wait(this.board.i32, P.B_DOORBELL, bell, 5);
    }
    this.host.afterRequests();
  }

  /** Answers requests whenever a hart rings; never blocks the event loop. */
  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    const loop = (): void => {
      for (;;) {
        if (this.ended) {
          this.listening = false;
          return;
        }
        const bell = Atomics.load(this.board.i32, P.B_DOORBELL);
        if (this.serve()) this.host.afterRequests();
        const w = waitAsync(this.board.i32, P.B_DOORBELL, bell);
        if (w.async) {
          void w.value.then(loop);
          return;
        }
      }
    };
    loop();
  }

  /** Answers every pending request; true when there was one. */
  private serve(): boolean {
    let any = false;
    for (const b of this.blocks) {
      const c = b.i32;
      if (Atomics.load(c, P.H_RPC) !== P.RPC_CALL) continue;
      any = true;
      let result = 0;
      let flag = 0;
      try {
        switch (c[P.H_RPC_OP]) {
          case P.OP_MMIO_READ: {
            const v = this.host.mmioRead(c[P.H_RPC_A]! >>> 0, c[P.H_RPC_B] as 1 | 2 | 4);
            if (v === undefined) flag = 1;
            else result = v | 0;
            break;
          }
          case P.OP_MMIO_WRITE:
            result = this.host.mmioWrite(c[P.H_RPC_A]! >>> 0, c[P.H_RPC_B] as 1 | 2 | 4, c[P.H_RPC_C]! >>> 0) ? 1 : 0;
            break;
          case P.OP_CONSOLE_WRITE: {
            const n = Math.min(Math.max(c[P.H_RPC_A]!, 0), P.DATA_BYTES);
            this.host.consoleWrite(b.data.slice(0, n));
            break;
          }
          case P.OP_CONSOLE_READ:
            result = this.host.consoleRead();
            break;
          case P.OP_SYSTEM_RESET:
            this.host.systemReset(c[P.H_RPC_A] === 0 ? 'shutdown' : 'reboot');
            break;
          default:
            flag = 1;
        }
      } catch {
        // A device that threw on a hostile access: the access faults, the board goes on.
        flag = 1;
        result = 0;
      }
      c[P.H_RPC_RESULT] = result;
      c[P.H_RPC_C] = flag;
      Atomics.store(c, P.H_RPC, P.RPC_DONE);
      Atomics.notify(c, P.H_RPC);
    }
    return any;
  }
}
