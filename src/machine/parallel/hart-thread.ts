/**
 * One hart on a thread of its own (issue: parallel vCPUs). The board (Machine, on the VM's thread) keeps every
 * device; this loop runs the hart over the shared linear RAM and reaches the board only through shared memory
 * (layout.ts): MMIO and console requests wait for the board's reply; interrupt lines, IPIs, fences and HSM start
 * arrive as words it checks between runs of `budget` instructions. It sleeps (Atomics.wait) in WFI until its timer
 * deadline or a doorbell, so an idle hart costs no CPU.
 *
 * No Node built-ins: the thread's entry (src/vm/hart-worker.ts) hands it a clock and a way to post messages.
 */
import type { DeviceState } from '../../devices/device.js';
import type { GuestAtomics } from '../../riscv/atomics.js';
import type { CodeShare } from '../../riscv/jit/wasm/share.js';
import { GuestRam } from '../memory.js';
import type { HartPort } from '../hart-port.js';
import type { HartFactory } from '../machine.js';
import { BuiltinSbi, startInSupervisor, type ResetKind } from '../sbi.js';
import { decodeValue, encodeValue } from '../snapshot/values.js';
import { TIMEBASE_HZ } from '../layout.js';
import * as P from './layout.js';
import { HART_REGION_BYTES } from '../../riscv/jit/wasm/layout.js';
import { checkProgress } from '../trap-loop.js';

/** What a hart thread is started with (structured-cloneable: shared buffers and the shared memory). */
export interface HartThreadInit {
  hartId: number;
  harts: number;
  ramBase: number;
  memoryBytes: number;
  /** The shared WebAssembly.Memory of guest RAM (atomics) and its buffer. */
  memory: object;
  buffer: SharedArrayBuffer;
  /** GuestRam.shareTable(). */
  chunkTable: Int32Array;
  /** Every hart's block (HartBlock buffers), by hart id; and the board's. */
  hartBlocks: SharedArrayBuffer[];
  board: SharedArrayBuffer;
  builtinSbi: boolean;
  /** Instructions per run between checks of the shared words. */
  budget: number;
  /**
   * By hart id: where in `memory` (past RAM) that hart's WebAssembly JIT keeps its state, reserved by the board
   * (Bus.wasmState); null, or a hart past the end: the hart interprets.
   */
  jitRegions: (number | null)[];
  /** The name of the channel the VM's hart threads share compiled blocks over (src/riscv/jit/wasm/share.ts). */
  codeChannel: string;
}

export type HartThreadMessage =
  | { kind: 'fault'; hartId: number; message: string; pc: number; recentPcs?: number[]; recentTraps?: string[] }
  | { kind: 'exited'; hartId: number };

export interface HartThreadDeps {
  createHart: HartFactory;
  /** Milliseconds on a clock every thread of the process shares (the board's too). */
  hostNowMs: () => number;
  post(message: HartThreadMessage): void;
  /** Native 64-bit atomics over the shared memory (src/riscv/atomics.ts), or null where there are none. */
  atomics: GuestAtomics | null;
  /** This thread's end of the channel named `codeChannel`; absent: the hart compiles all its blocks itself. */
  joinCodeShare?: (channel: string) => CodeShare;
}

const TICKS_PER_MS = TIMEBASE_HZ / 1000;
const IDLE_WAIT_MS = 1000;
/** How long a requester waits for a fence on another hart before it reports the hart as gone. */
const FENCE_TIMEOUT_MS = 10_000;
const MIP_SSIP = 1;

class HartThreadExit extends Error {}

export class HartThread {
  private readonly blocks: P.HartBlock[];
  private readonly own: P.HartBlock;
  private readonly board: P.BoardBlock;
  private readonly hart: HartPort;
  private readonly ram: GuestRam;
  private appliedLines = -1;
  private sbi: BuiltinSbi | null = null;

  constructor(
    private readonly init: HartThreadInit,
    private readonly deps: HartThreadDeps,
  ) {
    this.blocks = init.hartBlocks.map((b) => new P.HartBlock(b));
    this.own = this.blocks[init.hartId]!;
    this.board = new P.BoardBlock(init.board);
    // This thread never gives RAM back: the board does, and has every hart drop its TLB entries first.
    this.ram = new GuestRam(init.memoryBytes, init.ramBase, { buffer: init.buffer, release: () => false });
    this.ram.joinSharedTable(init.chunkTable);
    const region = init.jitRegions[init.hartId] ?? null;
    let regionTaken = false;
    const bus = {
      ...this.ram.asBus({
        mmioRead: (paddr, size) => this.mmioRead(paddr, size),
        mmioWrite: (paddr, size, value) => this.mmioWrite(paddr, size, value),
      }),
      atomics: deps.atomics,
      // The region the board reserved for this hart: its WebAssembly JIT runs here as on a board's hart.
      ...(region !== null
        ? {
            wasmState: {
              memory: init.memory,
              buffer: init.buffer,
              reserve: (bytes: number) => {
                if (regionTaken || bytes > HART_REGION_BYTES) return null;
                regionTaken = true;
                return region;
              },
              ...(deps.joinCodeShare && init.harts > 1 ? { joinCodeShare: () => deps.joinCodeShare!(init.codeChannel) } : {}),
            },
          }
        : {}),
    };
    this.hart = deps.createHart(bus, { hartId: init.hartId, readTime: () => this.readTime() });
    if (init.builtinSbi) this.installSbi();
    this.loadState();
  }

  /** Runs until the board says exit (or the hart faults); then posts why it ended. */
  run(): void {
    const c = this.own.i32;
    const hart = this.hart;
    const budget = this.init.budget;
    const stats = this.own.stats;
    Atomics.store(c, P.H_STATE, P.STATE_RUNNING);
    let runs = 0;
    // Every word another thread posts here is followed by a ring, so an unchanged doorbell means nothing new: a
    // busy hart's loop is then one load between runs. `serviced` is the doorbell value the last look answered.
    let serviced: number | null = null;
    let t0 = this.deps.hostNowMs();
    try {
      for (;;) {
        const bell = Atomics.load(c, P.H_DOORBELL);
        if (bell !== serviced) {
          serviced = bell;
          this.service();
          const cmd = Atomics.load(c, P.H_CMD);
          if (cmd === P.CMD_EXIT) break;
          if (cmd === P.CMD_PARK) {
            this.park();
            serviced = null;
            continue;
          }
        }
        if (c[P.H_RUNNING] === 0) {
          Atomics.wait(c, P.H_DOORBELL, bell, IDLE_WAIT_MS);
          t0 = this.deps.hostNowMs();
          continue;
        }
        if (hart.waiting && !hart.hasPendingInterrupt()) {
          const now = this.readTime();
          if (now < hart.stimecmp) {
            this.sleep(bell, Math.min((hart.stimecmp - now) / TICKS_PER_MS, IDLE_WAIT_MS));
            t0 = this.deps.hostNowMs();
            continue;
          }
        }
        const retired = hart.run(budget);
        // One clock read per run: this run's end is the next one's start (the look between them is a load).
        const t1 = this.deps.hostNowMs();
        stats[P.S_RUN_MS] = stats[P.S_RUN_MS]! + (t1 - t0);
        t0 = t1;
        stats[P.S_INSTRET] = hart.instret;
        if ((++runs & 255) === 0) {
          stats[P.S_DECODE_BYTES] = hart.decodeCacheBytes?.() ?? 0;
          stats[P.S_JIT_BLOCKS] = hart.translatedBlocks?.() ?? 0;
          stats[P.S_JIT_SIBLING_BLOCKS] = hart.siblingBlocks?.() ?? 0;
          stats[P.S_SBI_CALLS] = this.sbi?.calls ?? 0;
        }
        checkProgress(hart);
        // Waiting with its deadline passed but the timer interrupt masked: idle until something rings.
        if (retired === 0 && hart.waiting) {
          this.sleep(bell, IDLE_WAIT_MS);
          t0 = this.deps.hostNowMs();
        }
      }
    } catch (err) {
      if (!(err instanceof HartThreadExit)) {
        this.deps.post({
          kind: 'fault',
          hartId: this.init.hartId,
          message: err instanceof Error ? err.message : String(err),
          pc: hart.pc,
          recentPcs: hart.recentPcs?.(),
          recentTraps: hart.recentTraps?.(),
        });
      }
    }
    Atomics.store(c, P.H_STATE, P.STATE_EXITED);
    Atomics.notify(c, P.H_STATE);
    this.board.ring();
    this.deps.post({ kind: 'exited', hartId: this.init.hartId });
  }

  private sleep(bell: number, ms: number): void {
    this.own.stats[P.S_WAITS]!++;
    Atomics.wait(this.own.i32, P.H_DOORBELL, bell, ms);
  }

  /** mtime as the board's MachineClock computes it, from the same host clock. */
  private readTime(): number {
    const clock = this.board.clock;
    return Math.floor((this.deps.hostNowMs() - clock[P.C_OFFSET_MS]!) * TICKS_PER_MS) + clock[P.C_SKIP_TICKS]!;
  }

  /** Applies what other threads asked of this hart: interrupt lines, IPIs, fences, an HSM start. */
  private service(): void {
    const c = this.own.i32;
    const hart = this.hart;
    this.serviceLines();
    if (Atomics.load(c, P.H_SOFT_SET) !== 0) {
      const soft = Atomics.exchange(c, P.H_SOFT_SET, 0);
      if (soft & (1 << MIP_SSIP)) hart.setPending(MIP_SSIP, true);
    }
    this.serviceFlushes();
    const start = this.own.takeStart();
    if (start) {
      startInSupervisor(hart, start.pc, start.arg);
      Atomics.store(c, P.H_RUNNING, 1);
    }
  }

  /** Drives the hart's mip from the lines the board last set. */
  private serviceLines(): void {
    const lines = Atomics.load(this.own.i32, P.H_LINES) & P.LINE_MASK;
    if (lines === this.appliedLines) return;
    P.applyLines(this.hart, lines, this.appliedLines < 0 ? P.LINE_MASK : lines ^ this.appliedLines);
    this.appliedLines = lines;
  }

  private serviceFlushes(): void {
    const asked = this.own.takeFlushes();
    if (asked === null) return;
    if (asked.what & P.FLUSH_TLB) this.hart.flushTlb();
    if (asked.what & P.FLUSH_DECODE) this.hart.flushDecodeCache();
    const waiters = this.own.doneFlushes(asked.ticket);
    if (waiters === 0) return;
    this.blocks.forEach((b, h) => {
      if (waiters & (1 << h)) b.ring();
    });
    if (waiters & P.FENCE_WAITER_BOARD) this.board.ring();
  }

  /** Writes the arch state for the board and waits until it says run (or exit); then takes the state it gives back. */
  private park(): void {
    const c = this.own.i32;
    const bytes = encodeValue(this.hart.saveArchState!());
    if (bytes.length > P.STATE_AREA_BYTES) throw new Error(`hart state of ${bytes.length} bytes does not fit`);
    this.own.state.set(bytes);
    c[P.H_STATE_BYTES] = bytes.length;
    this.own.stats[P.S_INSTRET] = this.hart.instret;
    this.own.stats[P.S_SBI_CALLS] = this.sbi?.calls ?? 0;
    Atomics.store(c, P.H_STATE, P.STATE_PARKED);
    Atomics.notify(c, P.H_STATE);
    this.board.ring();
    for (;;) {
      const bell = Atomics.load(c, P.H_DOORBELL);
      this.serviceFlushes();
      const cmd = Atomics.load(c, P.H_CMD);
      if (cmd === P.CMD_EXIT) throw new HartThreadExit();
      if (cmd === P.CMD_RUN) break;
      Atomics.wait(c, P.H_DOORBELL, bell, IDLE_WAIT_MS);
    }
    this.loadState();
    Atomics.store(c, P.H_STATE, P.STATE_RUNNING);
    Atomics.notify(c, P.H_STATE);
  }

  /** Loads the arch state the board wrote into this hart's state area. */
  private loadState(): void {
    const n = this.own.i32[P.H_STATE_BYTES]!;
    const bytes = this.own.state.slice(0, n);
    this.hart.loadArchState!(decodeValue(bytes, `hart${this.init.hartId}`) as unknown as DeviceState);
    this.appliedLines = -1; // unknown: the loaded mip holds the lines as they were; apply every current one over it
  }

  // ---- requests to the board ------------------------------------------------------------------------------------

  private call(op: number, a: number, b: number, c3: number): number {
    const c = this.own.i32;
    c[P.H_RPC_OP] = op;
    c[P.H_RPC_A] = a;
    c[P.H_RPC_B] = b;
    c[P.H_RPC_C] = c3;
    Atomics.store(c, P.H_RPC, P.RPC_CALL);
    this.board.ring();
    while (Atomics.load(c, P.H_RPC) !== P.RPC_DONE) {
      Atomics.wait(c, P.H_RPC, P.RPC_CALL, 100);
      if (Atomics.load(c, P.H_CMD) === P.CMD_EXIT) throw new HartThreadExit();
    }
    Atomics.store(c, P.H_RPC, P.RPC_IDLE);
    // The access may have changed a line: a PLIC claim or complete lowers or raises SEIP. The board set the
    // new level before it replied, and the guest must see it now, as on a board's own hart. With the old level
    // the guest's handler would return into the same interrupt and claim nothing, again and again, until the
    // next run boundary.
    this.serviceLines();
    return c[P.H_RPC_RESULT]!;
  }

  private mmioRead(paddr: number, size: 1 | 2 | 4): number | undefined {
    // Every device sits below 4 GiB (src/machine/layout.ts); the request carries 32-bit addresses.
    if (!(paddr >= 0 && paddr < 0x1_0000_0000)) return undefined;
    const value = this.call(P.OP_MMIO_READ, paddr | 0, size, 0);
    if (this.own.i32[P.H_RPC_C] === 1) return undefined;
    return value >>> 0;
  }

  private mmioWrite(paddr: number, size: 1 | 2 | 4, value: number): boolean {
    if (!(paddr >= 0 && paddr < 0x1_0000_0000)) return false;
    return this.call(P.OP_MMIO_WRITE, paddr | 0, size, value | 0) === 1;
  }

  private consoleWrite(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; at += P.DATA_BYTES) {
      const part = bytes.subarray(at, at + P.DATA_BYTES);
      this.own.data.set(part);
      this.call(P.OP_CONSOLE_WRITE, part.length, 0, 0);
    }
  }

  // ---- the built-in SBI on this thread ------------------------------------------------------------------------

  private installSbi(): void {
    const id = this.init.hartId;
    const ports: HartPort[] = this.blocks.map((b, i) => (i === id ? this.hart : new RemoteHart(i, b, this)));
    const sbi = (this.sbi = new BuiltinSbi({
      harts: ports,
      ram: this.ram,
      hsmStates: this.board.hsm.subarray(0, this.init.harts),
      consoleWrite: (bytes) => this.consoleWrite(bytes),
      consoleRead: () => this.call(P.OP_CONSOLE_READ, 0, 0, 0),
      systemReset: (kind: ResetKind) => void this.call(P.OP_SYSTEM_RESET, kind === 'shutdown' ? 0 : 1, 0, 0),
      setHartRunning: (h, running) => {
        // Only this hart stops itself (HSM stop); others are started through startHart.
        if (h === id) Atomics.store(this.own.i32, P.H_RUNNING, running ? 1 : 0);
      },
      startHart: (h, start, opaque) => this.blocks[h]!.postStart(start, opaque),
    }));
    this.hart.ecallHandler = (hart) => sbi.handle(hart);
  }

  /**
   * Asks hart `target` for a fence and waits until it has done it: the SBI call returns only then, as Linux
   * expects. Meanwhile this hart does the fences others ask of it, so two harts fencing each other cannot deadlock.
   */
  fence(target: number, what: number): void {
    const block = this.blocks[target]!;
    const me = 1 << this.init.hartId;
    const ticket = block.requestFlush(what, me);
    const t0 = this.deps.hostNowMs();
    // This hart sleeps on its own doorbell: the target rings it when done, and so does any hart that asks a
    // fence of this one meanwhile (two harts fencing each other each wait for the other's answer).
    for (;;) {
      const bell = Atomics.load(this.own.i32, P.H_DOORBELL);
      block.addFlushWaiter(me);
      if (block.flushed(ticket)) return;
      this.serviceFlushes();
      if (Atomics.load(this.own.i32, P.H_CMD) === P.CMD_EXIT) throw new HartThreadExit();
      if (this.deps.hostNowMs() - t0 > FENCE_TIMEOUT_MS) throw new Error(`hart ${target} did not answer a remote fence`);
      Atomics.wait(this.own.i32, P.H_DOORBELL, bell, 1);
    }
  }
}

/** Another thread's hart as the SBI on this thread sees it: IPIs and fences go to it through shared memory. */
class RemoteHart implements HartPort {
  constructor(
    readonly hartId: number,
    private readonly block: P.HartBlock,
    private readonly thread: HartThread,
  ) {}
  setPending(mipBit: number, level: boolean): void {
    if (mipBit !== MIP_SSIP || !level) throw new Error(`hart ${this.hartId}: only an IPI can be sent to another thread`);
    Atomics.or(this.block.i32, P.H_SOFT_SET, 1 << MIP_SSIP);
    this.block.ring();
  }
  flushTlb(): void {
    this.thread.fence(this.hartId, P.FLUSH_TLB);
  }
  /** A ranged sfence.vma becomes a full one: our TLB is flushed whole in microseconds, and ranges are rare. */
  flushTlbRange(): void {
    this.thread.fence(this.hartId, P.FLUSH_TLB);
  }
  flushDecodeCache(): void {
    this.thread.fence(this.hartId, P.FLUSH_DECODE);
  }
  get pc(): number {
    return this.elsewhere();
  }
  get waiting(): boolean {
    return this.elsewhere();
  }
  get instret(): number {
    return this.block.stats[P.S_INSTRET]!;
  }
  get stimecmp(): number {
    return this.elsewhere();
  }
  hasPendingInterrupt(): boolean {
    return this.elsewhere();
  }
  run(): number {
    return this.elsewhere();
  }
  requestExit(): void {
    this.elsewhere();
  }
  reset(): void {
    this.elsewhere();
  }
  getX(): { lo: number; hi: number } {
    return this.elsewhere();
  }
  setX(): void {
    this.elsewhere();
  }
  enterSupervisor(): void {
    this.elsewhere();
  }
  private elsewhere(): never {
    throw new Error(`hart ${this.hartId} runs on another thread`);
  }
}
