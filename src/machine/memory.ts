import type { Bus, WasmStateArea } from '../riscv/bus.js';

export const RAM_BASE = 0x8000_0000;
/** 2 MiB chunks: Linux's free-page-reporting order, so a reported block frees whole chunks (design.md §3). */
export const CHUNK_SHIFT = 21;
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
export const PAGE_SIZE = 4096;

export class GuestMemoryError extends Error {
  constructor(
    readonly code: 'OUT_OF_RANGE' | 'BAD_LENGTH',
    message: string,
  ) {
    super(message);
    this.name = 'GuestMemoryError';
  }
}

const ZERO_CHUNK = new DataView(new ArrayBuffer(CHUNK_SIZE));

/**
 * Gives a lazily restored chunk its bytes (its full length): into `into` when given (the chunk's range of a linear
 * RAM), which it then returns, or in a buffer of its own.
 */
export type LazyChunkFill = (index: number, into: Uint8Array | null) => Uint8Array;

/**
 * Guest RAM as one linear buffer (a WebAssembly.Memory's, for a WebAssembly JIT or harts on several threads)
 * instead of a separate ArrayBuffer per chunk. Its untouched pages must cost the host nothing (anonymous memory,
 * zero pages), and `release` must give a range's pages back to the host so that it reads as zeros afterwards
 * (madvise MADV_DONTNEED), returning false where it could not (the range is then zeroed by hand, and stays
 * resident). src/vm/linear-ram.ts makes one on Linux.
 */
export interface LinearRamBacking {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  release(offset: number, length: number): boolean;
  /**
   * The WebAssembly.Memory `buffer` belongs to, when the bytes past RAM (rounded up to 64 KiB) are free for the
   * WebAssembly JIT's hart state (Bus.wasmState).
   */
  readonly memory?: object;
  /**
   * `release` on another thread (for RAM that is done with, which no one reads meanwhile); resolves with whether
   * the range went back.
   */
  releaseOffThread?(offset: number, length: number): Promise<boolean>;
  /** The shared WebAssembly.Memory `buffer` belongs to (harts on other threads import it for their atomics). */
  readonly sharedMemory?: object;
}

/**
 * Guest RAM backed by lazily allocated chunks. A read of an untouched chunk sees zeros and allocates nothing;
 * a released chunk goes back to the host (the ArrayBuffer becomes garbage) and reads as zeros again.
 */
export class GuestRam {
  readonly base: number;
  readonly size: number;
  readonly chunkShift = CHUNK_SHIFT;
  private readonly chunks: (DataView | null)[];
  private readonly remapListeners: ((chunkIndex: number) => void)[] = [];
  private allocated = 0;
  /** Chunks still to be read from a restored snapshot on first touch (1 = pending); null when none are. */
  private lazyPending: Uint8Array | null = null;
  private lazyLeft = 0;
  private lazyFill: LazyChunkFill | null = null;
  /** One buffer for all of RAM (LinearRamBacking), or null for a separate ArrayBuffer per chunk. */
  private readonly linear: LinearRamBacking | null;
  /**
   * Linear RAM that harts on other threads write too (src/machine/parallel): which chunks hold data lives here, in
   * shared memory, one Int32 per chunk (1 = written), then the count of written chunks. Null: this thread alone.
   */
  private table: Int32Array | null = null;

  constructor(sizeBytes: number, base = RAM_BASE, linear: LinearRamBacking | null = null) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % PAGE_SIZE !== 0) {
      throw new GuestMemoryError('BAD_LENGTH', `RAM size must be a positive multiple of 4 KiB, got ${sizeBytes}`);
    }
    if (linear && linear.buffer.byteLength < sizeBytes)
      throw new GuestMemoryError('BAD_LENGTH', `linear RAM of ${linear.buffer.byteLength} bytes cannot hold ${sizeBytes}`);
    this.base = base;
    this.size = sizeBytes;
    this.linear = linear;
    this.chunks = new Array<DataView | null>(Math.ceil(sizeBytes / CHUNK_SIZE)).fill(null);
  }

  /** Linear RAM in a shared WebAssembly.Memory (what harts on other threads need), or null. */
  get sharedLinear(): { memory: object; buffer: SharedArrayBuffer } | null {
    const l = this.linear;
    if (!l?.sharedMemory || !(l.buffer instanceof SharedArrayBuffer)) return null;
    return { memory: l.sharedMemory, buffer: l.buffer };
  }

  /** How RAM is held: 'linear' (one buffer) or 'chunks' (an ArrayBuffer per 2 MiB chunk). */
  get backing(): 'linear' | 'chunks' {
    return this.linear ? 'linear' : 'chunks';
  }

  /** Number of chunks that hold host memory right now. */
  get allocatedChunks(): number {
    return this.table ? Atomics.load(this.table, this.chunks.length) : this.allocated;
  }
  get allocatedBytes(): number {
    return this.allocatedChunks * CHUNK_SIZE;
  }

  /**
   * Moves the record of written chunks into shared memory, for harts on other threads (which adopt it with
   * joinSharedTable): from then on any thread's first write to a chunk marks it there. Reads of a chunk no one
   * wrote see the buffer itself (untouched anonymous memory reads as zeros and costs nothing), never a private
   * zero chunk: a hart on another thread could write it meanwhile, and a cached zero chunk would hide that.
   * Chunks still pending from a lazy restore are read first. Linear RAM on a SharedArrayBuffer only.
   */
  shareTable(): Int32Array {
    if (this.table) return this.table;
    if (!this.linear || !(this.linear.buffer instanceof SharedArrayBuffer))
      throw new GuestMemoryError('BAD_LENGTH', 'only linear RAM in shared memory can be shared between threads');
    if (this.lazyLeft > 0) this.fillLazyChunks(Infinity);
    const n = this.chunks.length;
    const table = new Int32Array(new SharedArrayBuffer((n + 1) * 4));
    for (let i = 0; i < n; i++) table[i] = this.chunks[i] ? 1 : 0;
    table[n] = this.allocated;
    this.table = table;
    return table;
  }

  /** Joins the table another thread's shareTable made (a hart thread over the same linear memory). */
  joinSharedTable(table: Int32Array): void {
    if (!this.linear || table.length !== this.chunks.length + 1)
      throw new GuestMemoryError('BAD_LENGTH', `a shared chunk table of ${table.length - 1} chunks for ${this.chunks.length}`);
    this.table = table;
  }

  /** The shared-table path of chunk(): the chunk's range of the buffer, marked written on a first write. */
  private sharedChunk(index: number, forWrite: boolean): DataView {
    const t = this.table!;
    if (forWrite && Atomics.load(t, index) === 0 && Atomics.compareExchange(t, index, 0, 1) === 0)
      Atomics.add(t, this.chunks.length, 1);
    return (this.chunks[index] ??= this.newChunkView(index));
  }

  /** The shared-table path of releaseChunk(). */
  private releaseShared(index: number): boolean {
    const t = this.table!;
    if (index < 0 || index >= this.chunks.length || Atomics.compareExchange(t, index, 1, 0) !== 1) return false;
    Atomics.sub(t, this.chunks.length, 1);
    const view = (this.chunks[index] ??= this.newChunkView(index));
    // Listeners (the board) make every hart drop its TLB entries for the chunk before the guest hears it is done:
    // a store through an old entry would write the chunk without marking it.
    this.notifyRemap(index);
    if (!this.linear!.release(view.byteOffset, view.byteLength)) {
      new Uint8Array(view.buffer, view.byteOffset, view.byteLength).fill(0);
      return false;
    }
    return true;
  }

  contains(paddr: number, length = 1): boolean {
    return paddr >= this.base && length >= 0 && paddr + length <= this.base + this.size;
  }

  chunk(paddr: number, forWrite: boolean): DataView | null {
    const rel = paddr - this.base;
    if (rel < 0 || rel >= this.size) return null;
    const index = Math.floor(rel / CHUNK_SIZE);
    if (this.table) return this.sharedChunk(index, forWrite);
    const existing = this.chunks[index];
    if (existing) return existing;
    if (this.lazyLeft > 0 && this.lazyPending![index]) return this.fillLazyChunk(index);
    if (!forWrite) return ZERO_CHUNK;
    const fresh = this.newChunkView(index);
    this.chunks[index] = fresh;
    this.allocated++;
    this.notifyRemap(index);
    return fresh;
  }

  /** Gives a whole chunk back to the host. Returns true when host memory was actually released. */
  releaseChunk(index: number): boolean {
    if (this.table) return this.releaseShared(index);
    if (this.lazyLeft > 0 && this.lazyPending![index]) this.dropLazy(index);
    if (index < 0 || index >= this.chunks.length || !this.chunks[index]) return false;
    const view = this.chunks[index]!;
    this.chunks[index] = null;
    this.allocated--;
    this.notifyRemap(index);
    // The pages must read as zeros when the chunk is next allocated.
    if (this.linear && !this.linear.release(view.byteOffset, view.byteLength)) {
      new Uint8Array(view.buffer, view.byteOffset, view.byteLength).fill(0);
      return false;
    }
    return true;
  }

  /** A zeroed view for a chunk about to be written: fresh memory, or its range of the linear buffer. */
  private newChunkView(index: number): DataView {
    const length = Math.min(CHUNK_SIZE, this.size - index * CHUNK_SIZE);
    return this.linear ? new DataView(this.linear.buffer, index * CHUNK_SIZE, length) : new DataView(new ArrayBuffer(length));
  }

  /**
   * Zeroes [paddr, paddr+length) and releases every chunk the range covers completely
   * (balloon inflate, free page reporting, discard). Returns the bytes of host memory released.
   */
  discard(paddr: number, length: number): number {
    this.check(paddr, length);
    let released = 0;
    let p = paddr;
    const end = paddr + length;
    while (p < end) {
      const rel = p - this.base;
      const index = Math.floor(rel / CHUNK_SIZE);
      const chunkStart = this.base + index * CHUNK_SIZE;
      const chunkEnd = Math.min(chunkStart + CHUNK_SIZE, this.base + this.size);
      const stop = Math.min(end, chunkEnd);
      if (p === chunkStart && stop === chunkEnd) {
        if (this.releaseChunk(index)) released += chunkEnd - chunkStart;
      } else {
        const c =
          (this.lazyLeft > 0 && this.lazyPending![index]) || (this.table && this.table[index])
            ? this.chunk(p, true)
            : this.chunks[index];
        if (c) new Uint8Array(c.buffer, c.byteOffset + p - chunkStart, stop - p).fill(0);
      }
      p = stop;
    }
    return released;
  }

  /**
   * Snapshot restore: forgets every chunk, then marks `indexes` as holding data that `fill(index)` supplies on
   * first touch (or through fillLazyChunks). `fill` returns the chunk's bytes (its full length) or throws; on
   * linear RAM it is handed the chunk's own range to read into, and returns it.
   */
  setLazyChunks(indexes: readonly number[], fill: LazyChunkFill): void {
    if (this.table) throw new GuestMemoryError('BAD_LENGTH', 'a restore cannot load into RAM that hart threads share');
    for (let i = 0; i < this.chunks.length; i++) if (this.chunks[i]) this.releaseChunk(i);
    this.lazyPending = new Uint8Array(this.chunks.length);
    this.lazyLeft = 0;
    for (const i of indexes) {
      if (!Number.isInteger(i) || i < 0 || i >= this.chunks.length) throw new GuestMemoryError('OUT_OF_RANGE', `chunk ${i}`);
      if (!this.lazyPending[i]) this.lazyLeft++;
      this.lazyPending[i] = 1;
    }
    this.lazyFill = fill;
    if (this.lazyLeft === 0) this.endLazy();
  }

  /**
   * Gives all of RAM back to the host, for a board that is done with (a guest reboot or a revert replaced it): it
   * reads as zeros afterwards, and must not be written again. Chunks would go with the board's garbage, but a
   * linear memory's pages stay resident until V8 collects it, which nothing hurries: its size is not counted
   * against the isolate (src/vm/linear-ram.ts). Resolves once the host has the pages. A linear memory's go back
   * off this thread (a busy guest's 100+ MiB take 5-20 ms to unmap, which a revert would wait for) and one chunk
   * at a time: a single madvise over all of it would hold the process's mmap lock that long, stalling the next
   * board's allocations on the other threads.
   */
  async dispose(): Promise<void> {
    if (this.lazyLeft > 0) this.endLazy();
    if (this.table) {
      for (let i = 0; i < this.chunks.length; i++) this.releaseShared(i);
      return;
    }
    const offThread = this.linear?.releaseOffThread;
    const later: DataView[] = [];
    for (let i = 0; i < this.chunks.length; i++) {
      const view = this.chunks[i];
      if (!view) continue;
      if (!offThread) {
        this.releaseChunk(i);
        continue;
      }
      this.chunks[i] = null;
      this.allocated--;
      this.notifyRemap(i);
      later.push(view);
    }
    for (const view of later) await offThread!.call(this.linear, view.byteOffset, view.byteLength);
  }

  /** Chunks of a restored snapshot not read yet. */
  get lazyChunksLeft(): number {
    return this.lazyLeft;
  }

  /** Reads up to `max` pending chunks (background prefetch after a restore); returns how many are left. */
  fillLazyChunks(max: number): number {
    for (let i = 0; i < this.chunks.length && max > 0 && this.lazyLeft > 0; i++) {
      if (this.lazyPending![i]) {
        this.fillLazyChunk(i);
        max--;
      }
    }
    return this.lazyLeft;
  }

  /** Indexes of the chunks that hold data (allocated, or pending from a restore), ascending. */
  storedChunkIndexes(): number[] {
    const out: number[] = [];
    const t = this.table;
    for (let i = 0; i < this.chunks.length; i++)
      if (t ? Atomics.load(t, i) === 1 : this.chunks[i] || (this.lazyLeft > 0 && this.lazyPending![i])) out.push(i);
    return out;
  }

  /** The bytes of chunk `index` (a view, not a copy), reading it first if it is pending; null when it is zero. */
  chunkBytes(index: number): Uint8Array | null {
    if (this.table && Atomics.load(this.table, index) !== 1) return null;
    const c = this.chunk(this.base + index * CHUNK_SIZE, false);
    if (!c || c === ZERO_CHUNK) return null;
    return new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
  }

  private fillLazyChunk(index: number): DataView {
    const length = Math.min(CHUNK_SIZE, this.size - index * CHUNK_SIZE);
    let dv: DataView;
    if (this.linear) {
      // Read straight into the chunk's range of the buffer: no 2 MiB buffer and copy per chunk on the guest's path.
      dv = this.newChunkView(index);
      const target = new Uint8Array(dv.buffer, dv.byteOffset, length);
      const bytes = this.lazyFill!(index, target);
      if (bytes.length !== length) throw new GuestMemoryError('BAD_LENGTH', `restored chunk ${index} has ${bytes.length} bytes`);
      if (bytes !== target) target.set(bytes);
    } else {
      const bytes = this.lazyFill!(index, null);
      if (bytes.length !== length) throw new GuestMemoryError('BAD_LENGTH', `restored chunk ${index} has ${bytes.length} bytes`);
      const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === length ? bytes : bytes.slice();
      dv = new DataView(owned.buffer as ArrayBuffer);
    }
    this.dropLazy(index);
    this.chunks[index] = dv;
    this.allocated++;
    this.notifyRemap(index);
    return dv;
  }

  private dropLazy(index: number): void {
    this.lazyPending![index] = 0;
    if (--this.lazyLeft === 0) this.endLazy();
  }

  private endLazy(): void {
    this.lazyPending = null;
    this.lazyFill = null;
    this.lazyLeft = 0;
  }

  onRemap(listener: (chunkIndex: number) => void): void {
    this.remapListeners.push(listener);
  }

  /** Copies guest memory into `dst` (DMA read). Throws GuestMemoryError outside RAM. */
  read(paddr: number, dst: Uint8Array): void {
    this.check(paddr, dst.length);
    let done = 0;
    while (done < dst.length) {
      const p = paddr + done;
      const c = this.chunk(p, false)!;
      const off = (p - this.base) % CHUNK_SIZE;
      const n = Math.min(dst.length - done, c.byteLength - off);
      dst.set(new Uint8Array(c.buffer, c.byteOffset + off, n), done);
      done += n;
    }
  }

  /** Copies `src` into guest memory (DMA write). Throws GuestMemoryError outside RAM. */
  write(paddr: number, src: Uint8Array): void {
    this.check(paddr, src.length);
    let done = 0;
    while (done < src.length) {
      const p = paddr + done;
      const c = this.chunk(p, true)!;
      const off = (p - this.base) % CHUNK_SIZE;
      const n = Math.min(src.length - done, c.byteLength - off);
      new Uint8Array(c.buffer, c.byteOffset + off, n).set(src.subarray(done, done + n));
      done += n;
    }
  }

  readU8(paddr: number): number {
    this.check(paddr, 1);
    return this.chunk(paddr, false)!.getUint8((paddr - this.base) % CHUNK_SIZE);
  }
  readU16(paddr: number): number {
    return this.small(paddr, 2)
      ? this.chunk(paddr, false)!.getUint16((paddr - this.base) % CHUNK_SIZE, true)
      : this.slowRead(paddr, 2);
  }
  readU32(paddr: number): number {
    return this.small(paddr, 4)
      ? this.chunk(paddr, false)!.getUint32((paddr - this.base) % CHUNK_SIZE, true)
      : this.slowRead(paddr, 4);
  }
  /** A 64-bit little-endian value as a JS number; throws when it does not fit in 53 bits (a hostile address). */
  readU64(paddr: number): number {
    const lo = this.readU32(paddr);
    const hi = this.readU32(paddr + 4);
    if (hi >= 0x20_0000) throw new GuestMemoryError('OUT_OF_RANGE', `64-bit value at 0x${paddr.toString(16)} exceeds 2^53`);
    return hi * 0x1_0000_0000 + lo;
  }
  writeU8(paddr: number, value: number): void {
    this.check(paddr, 1);
    this.chunk(paddr, true)!.setUint8((paddr - this.base) % CHUNK_SIZE, value);
  }
  writeU16(paddr: number, value: number): void {
    if (this.small(paddr, 2)) this.chunk(paddr, true)!.setUint16((paddr - this.base) % CHUNK_SIZE, value, true);
    else this.write(paddr, new Uint8Array([value & 0xff, (value >>> 8) & 0xff]));
  }
  writeU32(paddr: number, value: number): void {
    if (this.small(paddr, 4)) this.chunk(paddr, true)!.setUint32((paddr - this.base) % CHUNK_SIZE, value >>> 0, true);
    else {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, value >>> 0, true);
      this.write(paddr, b);
    }
  }
  writeU64(paddr: number, value: number): void {
    this.writeU32(paddr, value % 0x1_0000_0000);
    this.writeU32(paddr + 4, Math.floor(value / 0x1_0000_0000));
  }

  /** Adapts this RAM plus an MMIO dispatcher into the hart's Bus. */
  asBus(mmio: Pick<Bus, 'mmioRead' | 'mmioWrite'>): Bus {
    const wasmState = this.wasmStateArea();
    return {
      ...(wasmState ? { wasmState } : {}),
      ramBase: this.base,
      ramSize: this.size,
      chunkShift: this.chunkShift,
      ramChunk: (paddr, forWrite) => this.chunk(paddr, forWrite),
      mmioRead: (paddr, size) => mmio.mmioRead(paddr, size),
      mmioWrite: (paddr, size, value) => mmio.mmioWrite(paddr, size, value),
      onRamRemap: (listener) => this.onRemap(listener),
    };
  }

  /** The reserved bytes past RAM of a linear memory, handed out in 8-aligned pieces (Bus.wasmState). */
  private wasmStateArea(): WasmStateArea | null {
    const linear = this.linear;
    if (!linear?.memory) return null;
    let next = Math.ceil(this.size / 65536) * 65536;
    return {
      memory: linear.memory,
      buffer: linear.buffer,
      reserve: (bytes) => {
        const at = next;
        const end = at + Math.ceil(bytes / 8) * 8;
        if (end > linear.buffer.byteLength) return null;
        next = end;
        return at;
      },
    };
  }

  private small(paddr: number, n: number): boolean {
    this.check(paddr, n);
    return ((paddr - this.base) % CHUNK_SIZE) + n <= CHUNK_SIZE;
  }
  private slowRead(paddr: number, n: number): number {
    const b = new Uint8Array(n);
    this.read(paddr, b);
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
    return v;
  }
  private check(paddr: number, length: number): void {
    if (!Number.isSafeInteger(paddr) || !Number.isSafeInteger(length) || !this.contains(paddr, length)) {
      throw new GuestMemoryError(
        'OUT_OF_RANGE',
        `guest physical range 0x${paddr.toString(16)}+${length} is outside RAM 0x${this.base.toString(16)}+0x${this.size.toString(16)}`,
      );
    }
  }
  private notifyRemap(index: number): void {
    for (const l of this.remapListeners) l(index);
  }
}
