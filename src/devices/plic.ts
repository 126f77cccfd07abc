/**
 * PLIC (sifive,plic-1.0.0) laid out as on QEMU virt: source priorities at 0x0, pending bits at 0x1000,
 * per-context enable bits at 0x2000 + 0x80*ctx, per-context threshold/claim at 0x200000 + 0x1000*ctx.
 * Contexts are hart0 M, hart0 S, hart1 M, hart1 S, ... Sources are level-triggered through a gateway: a
 * raised line becomes pending once, and is not pending again until the claim is completed.
 */
import { checkState, type DeviceState, type IrqLine, type Metered, type MmioDevice, type Stateful } from './device.js';

const PRIORITY_BASE = 0x0;
const PENDING_BASE = 0x1000;
const ENABLE_BASE = 0x2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x20_0000;
const CONTEXT_STRIDE = 0x1000;
const CONTEXT_THRESHOLD = 0x0;
const CONTEXT_CLAIM = 0x4;
const PRIORITY_MASK = 7; // 3 priority bits, as QEMU virt

export const MIP_SEIP = 9;
export const MIP_MEIP = 11;

export interface PlicState {
  priority: number[];
  pending: number[];
  claimed: number[];
  level: number[];
  enable: number[];
  threshold: number[];
}

export class Plic implements MmioDevice, Stateful<PlicState>, Metered {
  readonly name = 'plic';
  readonly size = 0x60_0000;
  readonly contexts: number;
  private readonly words: number;
  private readonly priority: Uint32Array;
  private readonly pending: Uint32Array;
  private readonly claimed: Uint32Array;
  private readonly level: Uint32Array;
  private readonly enable: Uint32Array; // contexts × words
  private readonly threshold: Uint32Array;
  private readonly output: Uint8Array;
  /** Claims that returned a source, claims that found none, and completions. */
  private claims = 0;
  private emptyClaims = 0;
  private completions = 0;

  /**
   * @param sources number of source ids including the reserved id 0 (QEMU virt: 96 → ids 1..95)
   * @param setContextIrq drives context `ctx`'s output: MEIP of hart ctx>>1 for even ctx, SEIP for odd.
   */
  constructor(
    readonly sources: number,
    harts: number,
    private readonly setContextIrq: (ctx: number, level: boolean) => void,
  ) {
    this.contexts = harts * 2;
    this.words = Math.ceil(sources / 32);
    this.priority = new Uint32Array(sources);
    this.pending = new Uint32Array(this.words);
    this.claimed = new Uint32Array(this.words);
    this.level = new Uint32Array(this.words);
    this.enable = new Uint32Array(this.contexts * this.words);
    this.threshold = new Uint32Array(this.contexts);
    this.output = new Uint8Array(this.contexts);
  }

  /** The interrupt line of source `id` (1..sources-1), for a device. */
  line(id: number): IrqLine {
    if (id <= 0 || id >= this.sources) throw new RangeError(`PLIC source ${id} out of range 1..${this.sources - 1}`);
    return { set: (level) => this.setLevel(id, level) };
  }

  setLevel(id: number, high: boolean): void {
    const w = id >> 5;
    const bit = 1 << (id & 31);
    if (high) {
      this.level[w]! |= bit;
      if (!(this.claimed[w]! & bit)) this.pending[w]! |= bit;
    } else {
      this.level[w]! &= ~bit;
      // A level-triggered source that drops before being claimed is no longer pending.
      this.pending[w]! &= ~bit;
    }
    this.update();
  }

  read(offset: number, size: number): number {
    if (size !== 4 || offset % 4 !== 0) return 0;
    if (offset < PENDING_BASE) {
      const id = (offset - PRIORITY_BASE) >> 2;
      return id < this.sources ? this.priority[id]! : 0;
    }
    if (offset < ENABLE_BASE) {
      const w = (offset - PENDING_BASE) >> 2;
      return w < this.words ? this.pending[w]! : 0;
    }
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2;
      return ctx < this.contexts && w < this.words ? this.enable[ctx * this.words + w]! : 0;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    if (ctx >= this.contexts) return 0;
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (reg === CONTEXT_THRESHOLD) return this.threshold[ctx]!;
    if (reg === CONTEXT_CLAIM) return this.claim(ctx);
    return 0;
  }

  write(offset: number, size: number, value: number): void {
    if (size !== 4 || offset % 4 !== 0) return;
    if (offset < PENDING_BASE) {
      const id = offset >> 2;
      if (id > 0 && id < this.sources) this.priority[id] = value & PRIORITY_MASK;
    } else if (offset < ENABLE_BASE) {
      return; // pending bits are read-only
    } else if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2;
      if (ctx < this.contexts && w < this.words) this.enable[ctx * this.words + w] = w === 0 ? value & ~1 : value;
    } else {
      const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
      if (ctx >= this.contexts) return;
      const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
      if (reg === CONTEXT_THRESHOLD) this.threshold[ctx] = value & PRIORITY_MASK;
      else if (reg === CONTEXT_CLAIM) this.complete(ctx, value >>> 0);
    }
    this.update();
  }

  /** Highest-priority pending source enabled for `ctx` above its threshold (ties: lowest id), or 0. */
  private best(ctx: number): number {
    let bestId = 0;
    let bestPrio = this.threshold[ctx]!;
    for (let w = 0; w < this.words; w++) {
      let bits = this.pending[w]! & this.enable[ctx * this.words + w]!;
      while (bits) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const id = w * 32 + b;
        const p = this.priority[id]!;
        if (p > bestPrio) {
          bestPrio = p;
          bestId = id;
        }
      }
    }
    return bestId;
  }

  private claim(ctx: number): number {
    const id = this.best(ctx);
    if (id === 0) this.emptyClaims++;
    else {
      this.claims++;
      const w = id >> 5;
      const bit = 1 << (id & 31);
      this.pending[w]! &= ~bit;
      this.claimed[w]! |= bit;
      this.update();
    }
    return id;
  }

  private complete(ctx: number, id: number): void {
    if (id <= 0 || id >= this.sources) return;
    const w = id >> 5;
    const bit = 1 << (id & 31);
    // The spec ignores completions for sources not enabled in this context.
    if (!(this.enable[ctx * this.words + w]! & bit)) return;
    this.completions++;
    this.claimed[w]! &= ~bit;
    if (this.level[w]! & bit) this.pending[w]! |= bit;
  }

  private update(): void {
    for (let ctx = 0; ctx < this.contexts; ctx++) {
      const level = this.best(ctx) !== 0 ? 1 : 0;
      if (level !== this.output[ctx]) {
        this.output[ctx] = level;
        this.setContextIrq(ctx, level === 1);
      }
    }
  }

  /**
   * A claim that finds nothing is normal once per interrupt (Linux claims until 0); many more of them mean a
   * hart saw its external-interrupt line high after the PLIC had lowered it.
   */
  metrics(): Record<string, number> {
    return { claims: this.claims, emptyClaims: this.emptyClaims, completions: this.completions };
  }

  reset(): void {
    this.priority.fill(0);
    this.pending.fill(0);
    this.claimed.fill(0);
    this.enable.fill(0);
    this.threshold.fill(0);
    // Lines still raised by devices become pending again through the gateway.
    for (let w = 0; w < this.words; w++) this.pending[w] = this.level[w]!;
    this.update();
  }

  saveState(): DeviceState<PlicState> {
    return {
      type: 'plic',
      version: 1,
      data: {
        priority: [...this.priority],
        pending: [...this.pending],
        claimed: [...this.claimed],
        level: [...this.level],
        enable: [...this.enable],
        threshold: [...this.threshold],
      },
    };
  }
  loadState(state: DeviceState<PlicState>): void {
    checkState(state, 'plic', 1);
    const d = state.data;
    if (d.enable.length !== this.enable.length || d.priority.length !== this.priority.length) {
      throw new Error('plic: state shape does not match this machine (sources or harts differ)');
    }
    this.priority.set(d.priority);
    this.pending.set(d.pending);
    this.claimed.set(d.claimed);
    this.level.set(d.level);
    this.enable.set(d.enable);
    this.threshold.set(d.threshold);
    this.output.fill(0);
    for (let ctx = 0; ctx < this.contexts; ctx++) this.setContextIrq(ctx, false);
    this.update();
  }
}
