/** An in-memory BlockBackend for device tests, with knobs to delay, reorder and fail requests. */
import { StorageError, type BlockBackend } from '../../../src/storage/backend.js';

export class MemoryBackend implements BlockBackend {
  readonly format = 'memory';
  readonly data: Uint8Array;
  flushes = 0;
  /** Bytes written since the last flush (what a crash would lose). */
  unflushedWrites = 0;
  /** Per-call delay in ms, or a function choosing one per call (to make completions out of order). */
  delay: number | ((op: string, offset: number) => number) = 0;
  /** Make the next operation of this kind fail with an I/O error. */
  failNext: Set<string> = new Set();
  readonly log: string[] = [];
  closed = false;

  constructor(
    readonly size: number,
    readonly readOnly = false,
  ) {
    this.data = new Uint8Array(size);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    await this.step('read', offset, into.length);
    into.set(this.data.subarray(offset, offset + into.length));
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new StorageError('READ_ONLY', 'read-only');
    await this.step('write', offset, data.length);
    this.data.set(data, offset);
    this.noteWritten(offset, data.length);
    this.unflushedWrites += data.length;
  }
  async flush(): Promise<void> {
    await this.step('flush', 0, 0);
    this.flushes++;
    this.unflushedWrites = 0;
  }
  async discard(offset: number, length: number): Promise<void> {
    await this.step('discard', offset, length);
    this.data.fill(0, offset, offset + length);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.step('writeZeroes', offset, length);
    this.data.fill(0, offset, offset + length);
  }
  async allocatedBytes(): Promise<number> {
    return this.size;
  }
  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * Back to a fresh, zeroed disk with no knobs set, so one backend can serve many fuzz cases: zeroes only the
   * ranges written since the last reset (a 1 MiB allocation per case would cost more than the case itself).
   */
  reset(): void {
    if (this.written === 'all') this.data.fill(0);
    else for (const [at, n] of this.written) this.data.fill(0, at, at + n);
    this.written = [];
    this.flushes = 0;
    this.unflushedWrites = 0;
    this.delay = 0;
    this.failNext.clear();
    this.log.length = 0;
    this.closed = false;
  }

  private written: [offset: number, length: number][] | 'all' = [];
  private noteWritten(offset: number, length: number): void {
    if (this.written === 'all') return;
    if (this.written.length >= 64) this.written = 'all';
    else this.written.push([offset, length]);
  }

  private async step(op: string, offset: number, length: number): Promise<void> {
    const ms = typeof this.delay === 'function' ? this.delay(op, offset) : this.delay;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    else await Promise.resolve();
    if (this.failNext.delete(op)) throw new StorageError('IO', `injected ${op} failure`);
    if (op !== 'flush' && (offset < 0 || offset + length > this.size))
      throw new StorageError('OUT_OF_RANGE', `${op} ${offset}+${length}`);
    this.log.push(`${op} ${offset} ${length}`);
  }
}
