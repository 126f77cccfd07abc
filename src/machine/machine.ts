/**
 * The virt-compatible board and its run loop: RAM, the MMIO bus, CLINT, PLIC, UART, RTC, syscon, virtio slots,
 * the harts, the boot path (built-in SBI, external firmware or bare metal) and the time-sliced scheduler.
 *
 * It uses no Node built-ins (design.md §1b): images arrive as bytes, console bytes leave through a callback, and
 * time/yielding go through globals that browsers have too. The Node wiring (images, devices, guest reboots) is src/vm/machine-loop.ts.
 */
import type { Bus } from '../riscv/bus.js';
import { type IrqLine, type MmioDevice, type AccessSize } from '../devices/device.js';
import { Clint } from '../devices/clint.js';
import { Plic, MIP_MEIP, MIP_SEIP } from '../devices/plic.js';
import { Ns16550a } from '../devices/uart.js';
import { GoldfishRtc } from '../devices/rtc.js';
import { SifiveTest, type SysconEvent } from '../devices/syscon.js';
import { GuestRam, type LinearRamBacking } from './memory.js';
import { MachineClock } from './clock.js';
import { buildDeviceTree } from './devicetree.js';
import { planBoot, planForRestore, type BootLayout, type FirmwareImage } from './loaders/boot.js';
import { BuiltinSbi, startInSupervisor } from './sbi.js';
import type { HartPort } from './hart-port.js';
import * as L from './layout.js';
import { checkProgress } from './trap-loop.js';
import { applyLines, LINE_MASK } from './parallel/layout.js';
import { HartThreads, hartThreadsSupported, type HartThreadSpawner, type HartsSnapshot } from './parallel/hart-threads.js';
import type { HartThreadMessage } from './parallel/hart-thread.js';
import { decodeValue, encodeValue } from './snapshot/values.js';
import type { DeviceState } from '../devices/device.js';
import type { HartArchState } from '../riscv/hart-state.js';
import { HART_REGION_BYTES } from '../riscv/jit/wasm/layout.js';
import { withCodeShare } from '../riscv/jit/wasm/share.js';

export interface HartFactoryOptions {
  hartId: number;
  /** mtime in ticks (10 MHz). */
  readTime: () => number;
}
export type HartFactory = (bus: Bus, opts: HartFactoryOptions) => HartPort;

export interface MachineOptions {
  /**
   * Guest RAM as one linear buffer when this returns one (src/vm/linear-ram.ts: a WebAssembly.Memory whose pages
   * go back to the host with madvise); else, and by default, an ArrayBuffer per 2 MiB chunk.
   */
  linearRam?: (sizeBytes: number) => LinearRamBacking | null;
  harts: number;
  memoryBytes: number;
  firmware: FirmwareImage;
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  bootargs?: string;
  deterministicTime?: boolean;
  createHart: HartFactory;
  /** The device tree's riscv,isa string; it must describe what the hart implements. */
  isa?: string;
  mmuType?: 'riscv,sv39' | 'riscv,sv48';
  /** Guest console output (UART and SBI console), delivered in batches. */
  onConsoleOutput?: (bytes: Uint8Array) => void;
  rngSeed?: Uint8Array;
  /** Milliseconds, monotonic (performance.now by default). */
  hostNowMs?: () => number;
  /** Instructions per hart per turn; a slice runs turns until SLICE_MS has passed. */
  budget?: number;
  /**
   * The machine will load a saved state before it starts (src/machine/snapshot): boot images are not placed, and
   * unless the firmware is 'none' (a bare-metal kernel, whose symbols the board uses) they may be left out:
   * `firmware` then only says which kind ran (an external firmware's bytes may be empty).
   */
  forRestore?: boolean;
  /**
   * Called after an idle trim freed at least IDLE_TRIM_COLLECT_BYTES of decoded pages: the host can collect
   * the garbage at once (an idle thread allocates too little to collect it for a long time).
   */
  onIdleTrim?: (freedBytes: number) => void;
  /**
   * Runs each hart on a thread of its own (src/machine/parallel) when there are several, RAM is linear in shared
   * memory and time is real; otherwise the harts take turns on this thread. `hostNowMs` must then be a clock every
   * thread of the process shares.
   */
  hartThreads?: HartThreadSpawner;
  /** Instructions a hart thread runs between looks at what other threads asked of it (default 10 000). */
  threadBudget?: number;
}

/**
 * Asked after each busy slice how long the run loop must rest before the next one (0 = go on). A host that
 * cannot cap the thread from outside (no writable cgroup) enforces a CPU cap this way.
 */
export type RunLoopPacer = () => number;

export type MachineExit =
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'fail'; code: number }
  | { kind: 'fault'; message: string; pc: number; hartId: number; recentPcs?: number[]; recentTraps?: string[] }
  | { kind: 'stopped' };

export interface MachineStats {
  instret: number[];
  hostMsRun: number;
  allocatedRamBytes: number;
  /** Host bytes the harts' decode caches hold. */
  decodeCacheBytes: number;
  /** Blocks the harts' JIT translated (0 on the interpreter; on threads, as of their last report). */
  translatedBlocks: number;
  /** Compiled blocks the harts took from each other instead of compiling (src/riscv/jit/wasm/share.ts). */
  siblingBlocks: number;
  slices: number;
  sleeps: number;
  sbiCalls: number;
}

/** Board-level state that belongs to no device: which harts run, the built-in SBI's HSM states, guest time. */
export interface BoardState {
  /** mtime (10 MHz ticks) at save time: a restored machine's clock continues from here. */
  mtime: number;
  running: boolean[];
  /** HSM state per hart (built-in SBI only, else null). */
  sbiHsm: number[] | null;
}

export type MachineState = 'created' | 'running' | 'paused' | 'exited';

export interface VirtioAttachContext {
  ram: GuestRam;
  irq: IrqLine;
  name: string;
  /** Call when the device changed state from outside the run loop (an async completion), so an idle VM wakes. */
  wake: () => void;
}

export const DEFAULT_ISA = 'rv64imafdc_zicsr_zifencei_zicntr_sstc';
const SLICE_MS = 4;
/** A guest that ran under 2 % of the last 10 s trims its decode caches (trimWhenIdle). */
const IDLE_TRIM_WINDOW_MS = 10_000;
const IDLE_TRIM_BUSY_FRACTION = 0.02;
/** A trim that freed this much is worth a collection (the first after boot frees ~10 MiB; later ones ~1.5). */
export const IDLE_TRIM_COLLECT_BYTES = 4 * 1024 * 1024;
const DEFAULT_BUDGET = 50_000;
/**
 * Per run of a hart thread, as on the board: the most an IPI or a remote fence waits for a busy hart to look
 * (~0.03 ms in translated code, ~0.3 ms interpreted). Runs of 10 k cost a single sha256sum ~8 % against the
 * board's hart: each ends in the run loop and often starts again on the interpreter (bench/smp, 2026-12-01).
 */
const DEFAULT_THREAD_BUDGET = 50_000;
/** Console bytes from hart threads reach the host at most this late (they come one MMIO request at a time). */
const THREAD_OUTPUT_MS = 4;
const MIP_SSIP = 1;
const VIRTIO_MAGIC = 0x74726976; // "virt"

/** An unoccupied virtio-mmio slot: QEMU answers magic, version 2 and device id 0 so drivers skip it. */
class EmptyVirtioSlot implements MmioDevice {
  readonly size = L.VIRTIO_STRIDE;
  constructor(readonly name: string) {}
  read(offset: number): number {
    if (offset === 0x000) return VIRTIO_MAGIC;
    if (offset === 0x004) return 2;
    if (offset === 0x00c) return 0x554d4551; // vendor "QEMU", as QEMU's empty transports report
    return 0;
  }
  write(): void {}
}

interface Mapping {
  base: number;
  end: number;
  dev: MmioDevice;
}

type Yield = (fn: () => void) => void;

function makeYield(): Yield {
  const g = globalThis as { setImmediate?: (fn: () => void) => unknown };
  if (typeof g.setImmediate === 'function') return (fn) => void g.setImmediate!(fn);
  return (fn) => void setTimeout(fn, 0);
}

export class Machine {
  readonly ram: GuestRam;
  readonly clock: MachineClock;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly uart: Ns16550a;
  readonly rtc: GoldfishRtc;
  readonly test: SifiveTest;
  readonly harts: HartPort[] = [];
  readonly bus: Bus;
  readonly plan: BootLayout;
  readonly deviceTree: Uint8Array;
  readonly sbi?: BuiltinSbi;

  private readonly mappings: Mapping[] = [];
  private readonly virtioSlots: MmioDevice[] = [];
  private virtioUsed = 0;
  private readonly running: boolean[];
  private readonly hostNow: () => number;
  private readonly budget: number;
  /** The WebAssembly JIT state regions of the harts' threads, reserved once (the board's harts keep theirs). */
  private threadJitRegions: (number | null)[] | undefined;
  private readonly yieldFn = makeYield();
  private stateValue: MachineState = 'created';
  private pendingExit: MachineExit | null = null;
  private sleepTimer: ReturnType<typeof setTimeout> | null = null;
  /** A rest imposed by the pacer; unlike an idle sleep, interrupts do not end it (that would defeat the cap). */
  private paceTimer: ReturnType<typeof setTimeout> | null = null;
  private pacer: RunLoopPacer | null = null;
  private scheduled = false;
  private outBuf: number[] = [];
  private hostMsRun = 0;
  private slices = 0;
  private sleeps = 0;
  private tohost: number | undefined;
  private exitResolve!: (e: MachineExit) => void;
  /** The harts' threads while they run on threads of their own (the harts here are then their parked copies). */
  private threads: HartThreads | null = null;
  private tickTimer: ReturnType<typeof setTimeout> | null = null;
  /** When tickTimer fires (host ms). */
  private tickDue = 0;
  private outputTimer: ReturnType<typeof setTimeout> | null = null;

  readonly exited: Promise<MachineExit>;
  onExit?: (e: MachineExit) => void;

  /** The options without the boot images: those are copied into RAM once and not kept (an idle VM's memory). */
  private readonly opts: Omit<MachineOptions, 'kernel' | 'initrd' | 'firmware'>;

  constructor(opts: MachineOptions) {
    const { kernel, initrd, firmware, ...rest } = opts;
    this.opts = rest;
    if (!Number.isInteger(opts.harts) || opts.harts < 1 || opts.harts > 8)
      throw new RangeError(`harts must be 1..8, got ${opts.harts}`);
    this.exited = new Promise((r) => (this.exitResolve = r));
    this.hostNow = opts.hostNowMs ?? (() => performance.now());
    this.budget = opts.budget ?? DEFAULT_BUDGET;
    this.ram = new GuestRam(opts.memoryBytes, L.DRAM_BASE, opts.linearRam?.(opts.memoryBytes) ?? null);
    this.clock = new MachineClock(!!opts.deterministicTime, this.hostNow, () => this.totalInstret());
    this.running = new Array<boolean>(opts.harts).fill(false);

    this.clint = new Clint(opts.harts, {
      setHartIrq: (h, bit, level) => this.setHartIrq(h, bit, level),
      readTime: () => this.clock.now(),
      setTime: (t) => {
        this.clock.set(t);
        this.publishClock();
      },
    });
    this.plic = new Plic(L.PLIC_NUM_SOURCES, opts.harts, (ctx, level) =>
      this.setHartIrq(ctx >> 1, ctx & 1 ? MIP_SEIP : MIP_MEIP, level),
    );
    this.uart = new Ns16550a(this.plic.line(L.UART0_IRQ), (b) => this.output(b));
    this.rtc = new GoldfishRtc(this.plic.line(L.RTC_IRQ));
    this.test = new SifiveTest((e) => this.onSyscon(e));
    this.map(L.CLINT_BASE, this.clint);
    this.map(L.PLIC_BASE, this.plic);
    this.map(L.UART0_BASE, this.uart);
    this.map(L.TEST_BASE, this.test);
    this.map(L.RTC_BASE, this.rtc);
    for (let i = 0; i < L.VIRTIO_COUNT; i++) {
      const slot = new EmptyVirtioSlot(`virtio-empty@${(L.VIRTIO_BASE + i * L.VIRTIO_STRIDE).toString(16)}`);
      this.virtioSlots.push(slot);
      this.map(L.VIRTIO_BASE + i * L.VIRTIO_STRIDE, slot);
    }

    const bus = this.ram.asBus({ mmioRead: (p, s) => this.mmioRead(p, s), mmioWrite: (p, s, v) => this.mmioWrite(p, s, v) });
    // Several harts share the blocks they compile. A hart alone gets no share: its blocks then keep its state
    // region's address as constants, which single-hart loops run ~7 % faster with.
    this.bus = opts.harts > 1 ? withCodeShare(bus) : bus;
    for (let h = 0; h < opts.harts; h++)
      this.harts.push(opts.createHart(this.bus, { hartId: h, readTime: () => this.clock.now() }));

    // Boot: place the images, describe the board, and set up the boot hart(s).
    const { placements, ...layout } =
      opts.forRestore && !kernel && !initrd && firmware.kind !== 'none'
        ? planForRestore({ ramBase: this.ram.base, ramSize: this.ram.size, firmware: firmware.kind })
        : planBoot({ ramBase: this.ram.base, ramSize: this.ram.size, kernel, initrd, firmware });
    this.plan = layout;
    // A machine built to load a saved state gets all of its RAM from the state: placing the images would be
    // wasted work (tens of MiB copied, then released).
    if (!opts.forRestore) {
      for (const p of placements) {
        this.ram.write(p.addr, p.bytes);
        if (p.zeroFill) this.ram.discard(p.addr + p.bytes.length, p.zeroFill);
      }
    }
    this.deviceTree = this.buildDeviceTree();
    if (!opts.forRestore) this.ram.write(this.plan.fdtAddr, this.deviceTree);
    this.tohost = this.plan.symbols?.get('tohost');

    const fdt = this.plan.fdtAddr;
    if (firmware.kind === 'builtin') {
      this.sbi = new BuiltinSbi({
        harts: this.harts,
        ram: this.ram,
        consoleWrite: (bytes) => bytes.forEach((b) => this.output(b)),
        consoleRead: () => this.uart.takeInput(),
        systemReset: (kind) => this.requestExit(kind === 'shutdown' ? { kind: 'poweroff' } : { kind: 'reboot' }),
        setHartRunning: (h, r) => (this.running[h] = r),
      });
      this.sbi.install();
      const boot = this.harts[0]!;
      boot.reset(this.plan.entry);
      boot.enterSupervisor(this.plan.entry);
      boot.setX(10, 0); // a0 = hartid
      boot.setX(11, fdt); // a1 = FDT
      this.running[0] = true;
    } else {
      if (this.plan.dynamicInfoAddr !== undefined && this.plan.kernelAddr !== undefined)
        this.writeDynamicInfo(this.plan.dynamicInfoAddr, this.plan.kernelAddr);
      // External firmware and bare metal start every hart at the entry in M-mode, as hardware does.
      this.harts.forEach((h, i) => {
        h.reset(this.plan.entry);
        h.setX(10, i);
        h.setX(11, fdt);
        if (this.plan.dynamicInfoAddr !== undefined) h.setX(12, this.plan.dynamicInfoAddr);
        this.running[i] = true;
      });
    }
  }

  get state(): MachineState {
    return this.stateValue;
  }

  /** Attaches a virtio-mmio device in the next free slot; returns the slot index. */
  attachVirtio(factory: (ctx: VirtioAttachContext) => MmioDevice): number {
    const slot = this.virtioUsed;
    if (slot >= L.VIRTIO_COUNT) throw new Error(`all ${L.VIRTIO_COUNT} virtio-mmio slots are in use`);
    const base = L.VIRTIO_BASE + slot * L.VIRTIO_STRIDE;
    const dev = factory({
      ram: this.ram,
      irq: this.plic.line(L.VIRTIO_IRQ_FIRST + slot),
      name: `virtio@${base.toString(16)}`,
      wake: () => this.wake(),
    });
    this.virtioSlots[slot] = dev;
    const m = this.mappings.find((x) => x.base === base)!;
    m.dev = dev;
    this.virtioUsed++;
    return slot;
  }

  /** Devices attached to virtio slots, in slot order. */
  get virtioDevices(): MmioDevice[] {
    return this.virtioSlots.slice(0, this.virtioUsed);
  }

  /** Board-level state for snapshots (src/machine/snapshot); devices and harts save their own. */
  saveBoardState(): BoardState {
    return { mtime: this.clock.now(), running: [...this.running], sbiHsm: this.sbi ? [...this.sbi.hsm] : null };
  }

  /** Restores board-level state into a machine that has not started; throws a RangeError on a mismatch. */
  loadBoardState(s: BoardState): void {
    if (this.stateValue !== 'created') throw new RangeError('state can only be loaded before the machine starts');
    if (s.running.length !== this.harts.length)
      throw new RangeError(`${s.running.length} harts in the state, ${this.harts.length} here`);
    if ((s.sbiHsm === null) !== !this.sbi) throw new RangeError('the state and this machine differ in firmware (built-in SBI)');
    if (s.sbiHsm && s.sbiHsm.length !== this.harts.length) throw new RangeError('SBI HSM state per hart does not match');
    if (!Number.isFinite(s.mtime) || s.mtime < 0) throw new RangeError(`mtime ${s.mtime}`);
    s.running.forEach((r, i) => (this.running[i] = r));
    if (s.sbiHsm && this.sbi) s.sbiHsm.forEach((v, i) => (this.sbi!.hsm[i] = v));
    this.clock.set(s.mtime);
  }

  /** Console input (host → guest UART). */
  sendConsoleInput(bytes: Uint8Array | number[]): void {
    this.uart.receive(bytes);
    this.wake();
  }

  start(): void {
    if (this.stateValue !== 'created') return;
    this.stateValue = 'running';
    if (this.wantsThreads()) this.startThreads();
    else this.schedule();
  }

  /** Whether the harts run on threads of their own (hartThreads), each in parallel with the others. */
  get hartsOnThreads(): boolean {
    return this.threads !== null;
  }

  pause(): void {
    if (this.stateValue !== 'running') return;
    this.stateValue = 'paused';
    this.clock.pause();
    this.cancelSleep();
    if (this.threads) this.adopt(this.threads.park());
  }

  resume(): void {
    if (this.stateValue !== 'paused') return;
    this.stateValue = 'running';
    this.clock.resume();
    if (this.threads) {
      this.publishClock();
      this.threads.resume(this.handOver(false));
      this.armTick();
      return;
    }
    this.schedule();
  }

  stop(): void {
    if (this.stateValue === 'exited') return;
    this.finish({ kind: 'stopped' });
  }

  /** Installs (or removes, with null) the run loop's pacer; takes effect after the current slice. */
  setPacer(pacer: RunLoopPacer | null): void {
    this.pacer = pacer;
  }

  stats(): MachineStats {
    const t = this.threads && this.stateValue === 'running' ? this.threads : null;
    return {
      instret: this.harts.map((h, i) => (t ? t.instret(i) : h.instret)),
      hostMsRun: this.hostMsRun + (this.threads?.runMs() ?? 0),
      allocatedRamBytes: this.ram.allocatedBytes,
      decodeCacheBytes: t ? t.decodeCacheBytes() : this.harts.reduce((a, h) => a + (h.decodeCacheBytes?.() ?? 0), 0),
      translatedBlocks: t ? t.translatedBlocks() : this.harts.reduce((a, h) => a + (h.translatedBlocks?.() ?? 0), 0),
      siblingBlocks: t ? t.siblingBlocks() : this.harts.reduce((a, h) => a + (h.siblingBlocks?.() ?? 0), 0),
      slices: this.slices,
      sleeps: this.sleeps + (this.threads?.waits() ?? 0),
      sbiCalls: (this.sbi?.calls ?? 0) + (this.threads?.sbiCalls() ?? 0),
    };
  }

  /** Harts currently running (the built-in SBI starts and stops them through HSM). */
  onlineHarts(): number {
    let n = 0;
    const t = this.threads && this.stateValue === 'running' ? this.threads : null;
    this.running.forEach((r, i) => (n += (t ? t.running(i) : r) ? 1 : 0));
    return n;
  }

  /** Wakes an idle run loop (device completion, console input). Safe to call any time. */
  wake(): void {
    if (this.stateValue !== 'running' || !this.sleepTimer) return;
    this.cancelSleep();
    this.schedule();
  }

  // ---- run loop -------------------------------------------------------------------------------------------

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.yieldFn(() => {
      this.scheduled = false;
      this.slice();
    });
  }

  private slice(): void {
    if (this.stateValue !== 'running') return;
    const t0 = this.hostNow();
    this.slices++;
    let idle = false;
    try {
      for (;;) {
        let ran = false;
        const now = this.clock.now();
        for (let h = 0; h < this.harts.length; h++) {
          if (!this.running[h]) continue;
          const hart = this.harts[h]!;
          // A hart in WFI runs again once an interrupt is pending or its Sstc deadline has passed.
          if (hart.waiting && now < hart.stimecmp && !hart.hasPendingInterrupt()) continue;
          this.currentHart = h;
          const retired = hart.run(this.budget);
          checkProgress(hart);
          // A waiting hart whose Sstc deadline passed while STIE is masked stays asleep: that is idle, not work.
          if (retired > 0 || !hart.waiting) ran = true;
          if (this.pendingExit) break;
        }
        const t = this.clock.now();
        this.clint.updateTimers(t);
        this.rtc.poll();
        if (this.tohost !== undefined) this.checkHtif();
        if (this.pendingExit) break;
        if (!ran) {
          idle = true;
          break;
        }
        if (this.hostNow() - t0 >= SLICE_MS) break;
      }
    } catch (err) {
      const hart = this.harts[this.currentHart]!;
      this.pendingExit = {
        kind: 'fault',
        message: err instanceof Error ? err.message : String(err),
        pc: hart.pc,
        hartId: this.currentHart,
        recentPcs: hart.recentPcs?.(),
        recentTraps: hart.recentTraps?.(),
      };
    }
    this.hostMsRun += this.hostNow() - t0;
    this.flushOutput();
    if (this.pendingExit) {
      this.finish(this.pendingExit);
      return;
    }
    if (idle) this.sleepUntilDeadline();
    else if (this.pacer) this.paceOrContinue(this.pacer());
    else this.schedule();
  }

  private paceOrContinue(restMs: number): void {
    if (!(restMs > 0)) return this.schedule();
    this.paceTimer = setTimeout(() => {
      this.paceTimer = null;
      this.schedule();
    }, restMs);
  }

  private currentHart = 0;
  /** The idle-trim window: when it began (host ms) and hostMsRun then. */
  private trimWindowStart = -1;
  private trimWindowRun = 0;

  /**
   * A guest that has been nearly idle for a while gives its decoded pages back (an idle VM's largest fixed cost
   * after its RAM); the few pages its idle loop runs are decoded again in microseconds when it wakes.
   */
  private trimWhenIdle(): void {
    const now = this.hostNow();
    if (this.trimWindowStart < 0) {
      this.trimWindowStart = now;
      this.trimWindowRun = this.hostMsRun;
      return;
    }
    const elapsed = now - this.trimWindowStart;
    if (elapsed < IDLE_TRIM_WINDOW_MS) return;
    if ((this.hostMsRun - this.trimWindowRun) / elapsed < IDLE_TRIM_BUSY_FRACTION) {
      let freed = 0;
      for (const h of this.harts) {
        freed += h.decodeCacheBytes?.() ?? 0;
        h.trimDecodeCache?.();
      }
      if (freed >= IDLE_TRIM_COLLECT_BYTES) this.opts.onIdleTrim?.(freed);
    }
    this.trimWindowStart = now;
    this.trimWindowRun = this.hostMsRun;
  }

  private sleepUntilDeadline(): void {
    this.trimWhenIdle();
    let deadline = this.clint.nextDeadline();
    const now = this.clock.now();
    for (let h = 0; h < this.harts.length; h++) {
      // A deadline already behind us has fired (its STIP is pending, masked): only a future one can wake us.
      const cmp = this.harts[h]!.stimecmp;
      if (this.running[h] && cmp > now) deadline = Math.min(deadline, cmp);
    }
    if (!this.running.some(Boolean)) deadline = Infinity;
    if (this.clock.deterministic && Number.isFinite(deadline) && deadline < 2 ** 53) {
      this.clock.advanceTo(deadline);
      this.schedule();
      return;
    }
    let ms = Math.min(this.clock.msUntil(deadline), this.rtc.msUntilAlarm());
    if (!Number.isFinite(ms)) ms = 1000; // nothing armed: wake now and then anyway (a cheap safety net)
    this.sleeps++;
    this.sleepTimer = setTimeout(
      () => {
        this.sleepTimer = null;
        this.schedule();
      },
      Math.min(ms, 1000),
    );
  }

  private cancelSleep(): void {
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    if (this.paceTimer) clearTimeout(this.paceTimer);
    this.paceTimer = null;
  }

  private requestExit(e: MachineExit): void {
    if (!this.pendingExit) this.pendingExit = e;
    for (const h of this.harts) h.requestExit();
  }

  private finish(e: MachineExit): void {
    if (this.stateValue === 'exited') return;
    this.flushOutput();
    this.stateValue = 'exited';
    this.cancelSleep();
    this.stopThreads();
    this.exitResolve(e);
    this.onExit?.(e);
  }

  private totalInstret(): number {
    let n = 0;
    for (const h of this.harts) n += h.instret;
    return n;
  }

  // ---- devices and bus ------------------------------------------------------------------------------------

  private map(base: number, dev: MmioDevice): void {
    this.mappings.push({ base, end: base + dev.size, dev });
  }

  private lastMapping: Mapping | null = null;

  private find(paddr: number): Mapping | undefined {
    const last = this.lastMapping;
    if (last && paddr >= last.base && paddr < last.end) return last;
    for (const m of this.mappings) {
      if (paddr >= m.base && paddr < m.end) {
        this.lastMapping = m;
        return m;
      }
    }
    return undefined;
  }

  private mmioRead(paddr: number, size: AccessSize): number | undefined {
    const m = this.find(paddr);
    if (!m || paddr + size > m.end) return undefined;
    return m.dev.read(paddr - m.base, size);
  }

  private mmioWrite(paddr: number, size: AccessSize, value: number): boolean {
    const m = this.find(paddr);
    if (!m || paddr + size > m.end) return false;
    m.dev.write(paddr - m.base, size, value);
    return true;
  }

  private setHartIrq(hartId: number, bit: number, level: boolean): void {
    const hart = this.harts[hartId];
    if (!hart) return;
    hart.setPending(bit, level);
    if (this.threads) this.threads.setLine(hartId, bit, level);
    else if (level) this.wake();
  }

  // ---- harts on threads of their own ----------------------------------------------------------------------------

  private wantsThreads(): boolean {
    return (
      this.opts.hartThreads !== undefined &&
      this.harts.length > 1 &&
      !this.clock.deterministic &&
      this.tohost === undefined &&
      this.ram.sharedLinear !== null &&
      this.harts.every((h) => h.saveArchState && h.loadArchState) &&
      hartThreadsSupported()
    );
  }

  private startThreads(): void {
    const shared = this.ram.sharedLinear!;
    const chunkTable = this.ram.shareTable();
    this.threads = new HartThreads(
      this.opts.hartThreads!,
      {
        mmioRead: (p, size) => this.mmioRead(p, size),
        mmioWrite: (p, size, v) => this.mmioWrite(p, size, v),
        consoleWrite: (bytes) => bytes.forEach((b) => this.output(b)),
        consoleRead: () => this.uart.takeInput(),
        systemReset: (kind) => this.requestExit(kind === 'shutdown' ? { kind: 'poweroff' } : { kind: 'reboot' }),
        afterRequests: () => this.afterThreadRequests(),
        onThreadMessage: (m) => this.onThreadMessage(m),
      },
      {
        harts: this.harts.length,
        ramBase: this.ram.base,
        memoryBytes: this.ram.size,
        memory: shared.memory,
        buffer: shared.buffer,
        chunkTable,
        builtinSbi: this.sbi !== undefined,
        budget: this.opts.threadBudget ?? DEFAULT_THREAD_BUDGET,
        jitRegions: (this.threadJitRegions ??= this.harts.map(() => this.bus.wasmState?.reserve(HART_REGION_BYTES) ?? null)),
        // Unique per start: a channel's name is its identity in the process, and other VMs may share the process.
        codeChannel: `typevisor-code-${crypto.randomUUID()}`,
      },
    );
    // Shared RAM tells of a chunk only when it goes back to the host: no hart may keep a TLB entry for it.
    this.ram.onRemap(() => this.threads?.flushTlbs());
    this.threads.start(this.handOver(true), this.clock.base());
    this.armTick();
  }

  /** The harts' states for their threads: from the copies here (a boot, a loaded snapshot, or a pause). */
  private handOver(withLines: boolean): HartsSnapshot {
    const states = this.harts.map((h) => h.saveArchState!() as DeviceState<HartArchState>);
    return {
      states: states.map((s) => encodeValue(s)),
      running: [...this.running],
      hsm: this.sbi ? Array.from(this.sbi.hsm) : null,
      ...(withLines ? { lines: states.map((s) => s.data.mipHw & LINE_MASK) } : {}),
    };
  }

  /** Takes parked threads' states into the copies here, so snapshots and stats read them exactly. */
  private adopt(s: HartsSnapshot): void {
    this.harts.forEach((h, i) => h.loadArchState!(decodeValue(s.states[i]!, `hart${i}`) as unknown as DeviceState));
    s.running.forEach((r, i) => (this.running[i] = r));
    if (s.hsm && this.sbi) s.hsm.forEach((v, i) => (this.sbi!.hsm[i] = v));
    s.late?.forEach((late, i) => {
      const h = this.harts[i]!;
      applyLines(h, s.lines?.[i] ?? 0);
      if (late.soft & (1 << MIP_SSIP)) h.setPending(MIP_SSIP, true);
      if (late.start) {
        startInSupervisor(h, late.start.pc, late.start.arg);
        this.running[i] = true;
      }
    });
  }

  private publishClock(): void {
    const b = this.clock.base();
    this.threads?.publishClock(b.offsetMs, b.skipTicks);
  }

  private stopThreads(): void {
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    if (this.outputTimer) clearTimeout(this.outputTimer);
    this.outputTimer = null;
    this.threads?.stop();
  }

  /**
   * The board's own timers while harts run on threads: CLINT deadlines and the RTC alarm. A timer already due no
   * later is kept: this runs after every batch of the harts' requests (each console byte is one), and a tick that
   * comes early only looks again.
   */
  private armTick(): void {
    if (this.stateValue !== 'running') {
      if (this.tickTimer) clearTimeout(this.tickTimer);
      this.tickTimer = null;
      return;
    }
    let ms = Math.min(this.clock.msUntil(this.clint.nextDeadline()), this.rtc.msUntilAlarm());
    if (!Number.isFinite(ms)) ms = 1000;
    ms = Math.min(ms, 1000);
    const due = this.hostNow() + ms;
    if (this.tickTimer && this.tickDue <= due) return;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickDue = due;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = null;
      this.clint.updateTimers(this.clock.now());
      this.rtc.poll();
      this.afterThreadRequests();
    }, ms);
  }

  private afterThreadRequests(): void {
    if (this.stateValue === 'exited') return;
    if (this.pendingExit) {
      this.finish(this.pendingExit);
      return;
    }
    if (this.outBuf.length && !this.outputTimer)
      this.outputTimer = setTimeout(() => {
        this.outputTimer = null;
        this.flushOutput();
      }, THREAD_OUTPUT_MS);
    if (this.stateValue === 'running') {
      // A request may have moved a CLINT deadline or the RTC alarm.
      this.clint.updateTimers(this.clock.now());
      this.armTick();
    }
  }

  private onThreadMessage(m: HartThreadMessage): void {
    if (m.kind !== 'fault' || this.stateValue === 'exited') return;
    this.finish({
      kind: 'fault',
      message: m.message,
      pc: m.pc,
      hartId: m.hartId,
      recentPcs: m.recentPcs,
      recentTraps: m.recentTraps,
    });
  }

  private onSyscon(e: SysconEvent): void {
    this.requestExit(e.kind === 'fail' ? { kind: 'fail', code: e.code } : e);
  }

  private output(b: number): void {
    this.harts[this.currentHart]?.resetTrapRun?.(); // console output is progress
    this.outBuf.push(b);
    if (this.outBuf.length >= 4096) this.flushOutput();
  }

  private flushOutput(): void {
    if (!this.outBuf.length) return;
    const bytes = Uint8Array.from(this.outBuf);
    this.outBuf = [];
    this.opts.onConsoleOutput?.(bytes);
  }

  /** HTIF: a bare-metal program writes (code << 1) | 1 to `tohost` to exit. */
  private checkHtif(): void {
    const addr = this.tohost!;
    if (!this.ram.contains(addr, 8)) return;
    const lo = this.ram.readU32(addr);
    const hi = this.ram.readU32(addr + 4);
    if (lo === 0 && hi === 0) return;
    if (lo & 1) {
      const code = (lo >>> 1) | ((hi & 1) << 31);
      this.requestExit(code === 0 ? { kind: 'poweroff' } : { kind: 'fail', code });
    }
    this.ram.writeU32(addr, 0);
    this.ram.writeU32(addr + 4, 0);
  }

  private buildDeviceTree(): Uint8Array {
    const dt = buildDeviceTree({
      harts: this.opts.harts,
      ramBase: this.ram.base,
      ramSize: this.ram.size,
      isa: this.opts.isa ?? DEFAULT_ISA,
      mmuType: this.opts.mmuType ?? 'riscv,sv48',
      bootargs: this.opts.bootargs ?? '',
      initrd: this.plan.initrd,
      reserved: this.plan.firmwareRegion ? { ...this.plan.firmwareRegion, name: 'mmode_resv0' } : undefined,
      rngSeed: this.opts.rngSeed,
    });
    // 4 KiB of slack lets OpenSBI add its reserved-memory nodes in place.
    return dt.toBlob(4096);
  }

  /** fw_dynamic_info (OpenSBI include/sbi/fw_dynamic.h), version 2. */
  private writeDynamicInfo(addr: number, kernel: number): void {
    const FW_DYNAMIC_INFO_MAGIC = 0x4942534f; // "OSBI"
    const NEXT_MODE_S = 1;
    const fields = [FW_DYNAMIC_INFO_MAGIC, 2, kernel, NEXT_MODE_S, 0, 0]; // magic, version, next_addr, next_mode, options, boot_hart
    fields.forEach((v, i) => this.ram.writeU64(addr + i * 8, v));
  }
}
