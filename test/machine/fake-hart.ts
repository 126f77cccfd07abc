/** A scripted stand-in for the real hart: registers and pending bits only, with `run` driven by a callback. */
import type { HartPort } from '../../src/machine/hart-port.js';

export class FakeHart implements HartPort {
  pc = 0;
  waiting = false;
  instret = 0;
  stimecmp = Infinity;
  mode: 'M' | 'S' = 'M';
  lo = new Uint32Array(32);
  hi = new Uint32Array(32);
  pending = new Set<number>();
  tlbFlushes = 0;
  /** [start, size, asid] of every remote sfence.vma range. */
  rangeFlushes: [number, number, number][] = [];
  decodeFlushes = 0;
  /** What decodeCacheBytes reports until the next trim. */
  decodeBytes = 0;
  trims = 0;
  exitRequests = 0;
  ecallHandler?: (hart: HartPort) => boolean;
  onRun?: (hart: FakeHart, budget: number) => number;

  constructor(readonly hartId: number) {}

  hasPendingInterrupt(): boolean {
    return this.pending.size > 0;
  }
  run(budget: number): number {
    const n = this.onRun ? this.onRun(this, budget) : budget;
    this.instret += n;
    return n;
  }
  requestExit(): void {
    this.exitRequests++;
  }
  reset(pc: number): void {
    this.pc = pc;
    this.mode = 'M';
    this.lo.fill(0);
    this.hi.fill(0);
  }
  getX(i: number): { lo: number; hi: number } {
    return { lo: this.lo[i]!, hi: this.hi[i]! };
  }
  setX(i: number, value: number): void {
    this.lo[i] = value >>> 0;
    this.hi[i] = value < 0 ? Math.floor(value / 0x1_0000_0000) >>> 0 : Math.floor(value / 0x1_0000_0000);
  }
  setPending(bit: number, level: boolean): void {
    if (level) this.pending.add(bit);
    else this.pending.delete(bit);
  }
  flushTlb(): void {
    this.tlbFlushes++;
  }
  flushTlbRange(start: number, size: number, asid: number): void {
    this.rangeFlushes.push([start, size, asid]);
  }
  flushDecodeCache(): void {
    this.decodeFlushes++;
  }
  decodeCacheBytes(): number {
    return this.decodeBytes;
  }
  trimDecodeCache(): void {
    this.trims++;
    this.decodeBytes = 0;
  }
  enterSupervisor(pc: number): void {
    this.pc = pc;
    this.mode = 'S';
  }
  /** Performs an SBI call as S-mode would and returns [a0, a1]. */
  ecall(ext: number, fid: number, ...args: number[]): [number, number] {
    args.forEach((v, i) => this.setX(10 + i, v));
    this.setX(17, ext);
    this.setX(16, fid);
    if (!this.ecallHandler?.(this)) throw new Error('ecall not handled');
    const a0 =
      this.hi[10]! >= 0x8000_0000
        ? (this.hi[10]! - 0x1_0000_0000) * 0x1_0000_0000 + this.lo[10]!
        : this.hi[10]! * 0x1_0000_0000 + this.lo[10]!;
    return [a0, this.hi[11]! * 0x1_0000_0000 + this.lo[11]!];
  }
}
