/**
 * A qcow2 image behind BlockBackend.
 *
 * All metadata changes happen under one async mutex, in an order that keeps the image consistent if the
 * process (or the host) dies between any two writes, so a crash leaves at worst leaked clusters, never a
 * referenced cluster with refcount 0:
 *   - refcount increments, new L2 tables and the L1 entries pointing at them are written through at once
 *     (refcount block -> fsync -> zeroed L2 table -> fsync -> L1 entry);
 *   - guest data is written at once;
 *   - L2 entry changes are kept dirty in the L2 cache and written back by writeback() — on flush(), before
 *     a dirty table would be evicted, or when many frees are pending — as: fsync (data, copied-on-write
 *     data and refcounts are durable) -> L2 tables -> fsync -> refcount decrements of the clusters those
 *     entries stopped referencing (discard, remapped compressed clusters).
 * This is QEMU's cache-dependency ordering, and it keeps fsyncs off the per-request path. With lazy
 * refcounts the dirty bit is set (and fsynced) before the first change, and the next opener rebuilds
 * refcounts from the tables if we never got to clear it.
 */
import { inflateRawSync, constants as zlibConstants } from 'node:zlib';
import { StorageError, type BlockBackend } from '../backend.js';
import { HostFile, checkRequest, type ImageFile } from '../file.js';
import { AsyncMutex } from '../mutex.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  L1E_RESERVED_HI,
  L1E_RESERVED_LO,
  L2E_RESERVED_HI,
  L2E_RESERVED_LO,
  MAX_CLUSTER_BITS,
  OFLAG_COMPRESSED_HI,
  OFLAG_COPIED_HI,
  OFLAG_ZERO_LO,
  QCOW_MAX_REFTABLE_SIZE,
  parseHeader,
  type Qcow2Header,
} from './format.js';
import {
  LruCache,
  corrupt,
  entryHi,
  entryLo,
  entryOffset,
  getRefcount,
  maxRefcount,
  offsetWords,
  refcountBytes,
  setEntry,
  setRefcount,
  view,
} from './tables.js';

/** What one guest cluster maps to, decoded from its L2 entry. */
export type ClusterMapping =
  | { kind: 'unallocated' }
  | { kind: 'zero'; host: number } // host != 0: a preallocated zero cluster
  | { kind: 'normal'; host: number; copied: boolean }
  | { kind: 'compressed'; offset: number; bytes: number };

export interface Qcow2OpenOptions {
  readOnly: boolean;
  /**
   * Open for `check -r`: the file is opened read-write even if the image is marked corrupt or dirty, but
   * guest writes stay refused while it is corrupt, and a dirty image is not repaired behind the checker's back.
   */
  forRepair?: boolean;
  /** L2 tables kept in memory (default: 8 MiB worth); tests shrink it to exercise eviction. */
  l2CacheTables?: number;
  /** Opens the backing file named by the header, or throws if the caller's policy forbids it. */
  openBacking?: (name: string, format: string | null) => Promise<BlockBackend>;
  /** Open the file and read its metadata on the calling thread (OpenDiskOptions.syncOpen). */
  syncOpen?: boolean;
}

/** What an image's first read takes: one cluster of the usual size (qemu-img's and ours' default). */
const COMMON_CLUSTER_BYTES = 64 * 1024;
/** Cache budgets in bytes; with 64 KiB clusters that is 128 L2 tables (64 GiB of mapped disk). */
const L2_CACHE_BYTES = 8 * 2 ** 20;
const REFBLOCK_CACHE_BYTES = 2 * 2 ** 20;
/** A refcount rebuild needs one counter per host cluster; refuse images larger than this many clusters. */
const MAX_SCAN_CLUSTERS = 2 ** 25;

export interface ScanResult {
  /** Expected refcount of each host cluster, from walking the metadata (saturating at 65535). */
  expected: Uint16Array;
  /** Structural problems (bad offsets, reserved bits): corruptions that a refcount rebuild cannot fix. */
  problems: string[];
  /** Offsets of clusters whose L1/L2 entry carries the COPIED flag, and of those without it. */
  copied: number[];
  notCopied: number[];
  allocatedDataClusters: number;
  compressedClusters: number;
  fragmentedClusters: number;
}

export interface CheckReport {
  corruptions: number;
  leaks: number;
  messages: string[];
  allocatedClusters: number;
  totalClusters: number;
  compressedClusters: number;
  fragmentedClusters: number;
  imageEndOffset: number;
  repaired: boolean;
}

export class Qcow2Image implements BlockBackend {
  readonly format = 'qcow2';
  readonly size: number;
  readonly clusterSize: number;
  private readonly clusterBits: number;
  private readonly l2Bits: number;
  private readonly refBits: number;
  private readonly refsPerBlock: number;
  private readonly l2Cache: LruCache<Uint8Array>;
  private readonly refCache: LruCache<Uint8Array>;
  private readonly mutex = new AsyncMutex();
  /** Host offsets of every L2 table and refcount block: data writes must never land on them. */
  private readonly metadataClusters = new Set<number>();
  /** L2 tables (by host offset) whose cached copy has entries not yet written to the file. */
  private readonly dirtyL2 = new Set<number>();
  /** Host ranges that dirty L2 entries stopped referencing: their refcounts drop after writeback. */
  private pendingFrees: [start: number, bytes: number][] = [];
  /** Bytes of host file in use: the file size rounded up to a cluster, grown by our allocations. */
  private fileEnd: number;
  private freeHint = 0;
  private dirtySet = false;
  private closed = false;
  private lastInflated: { offset: number; data: Uint8Array } | null = null;

  private constructor(
    private readonly file: ImageFile,
    readonly header: Qcow2Header,
    private l1: Uint8Array,
    private refTable: Uint8Array,
    fileSize: number,
    readonly backing: BlockBackend | null,
    private writable: boolean,
    l2CacheTables: number | undefined,
  ) {
    this.size = header.size;
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.l2Bits = header.clusterBits - 3;
    this.refBits = 2 ** header.refcountOrder;
    this.refsPerBlock = (this.clusterSize * 8) / this.refBits;
    this.l2Cache = new LruCache(Math.max(2, l2CacheTables ?? L2_CACHE_BYTES / this.clusterSize));
    this.refCache = new LruCache(Math.max(4, REFBLOCK_CACHE_BYTES / this.clusterSize));
    this.fileEnd = this.roundUp(fileSize);
  }

  get readOnly(): boolean {
    return !this.writable;
  }

  get lazyRefcounts(): boolean {
    return (this.header.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0;
  }

  get dirty(): boolean {
    return (this.header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0;
  }

  get corrupt(): boolean {
    return (this.header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0;
  }

  static async open(path: string, opts: Qcow2OpenOptions): Promise<Qcow2Image> {
    const file = opts.syncOpen ? HostFile.openSync(path, opts.readOnly) : await HostFile.open(path, opts.readOnly);
    return Qcow2Image.openFile(file, opts);
  }

  /**
   * A qcow2 image over an already open file (a HostFile, or a MemoryFile in tests and fuzzing); takes ownership
   * of it (closed on failure and by close()). `opts.readOnly` must match how the file was opened.
   */
  static async openFile(file: ImageFile, opts: Qcow2OpenOptions): Promise<Qcow2Image> {
    const path = file.path;
    // The synchronous reads of a VM thread's own open (HostFile only).
    const sync = opts.syncOpen === true && file instanceof HostFile ? file : undefined;
    let backing: BlockBackend | null = null;
    try {
      const fileSize = sync ? sync.sizeSync() : await file.size();
      // The header, its extensions and the backing file's name all lie in the first cluster: read that much (a
      // 64 KiB cluster unless the header says more), not the largest a cluster can be (2 MiB per image of a chain).
      let head = new Uint8Array(Math.min(fileSize, COMMON_CLUSTER_BYTES));
      if (sync) sync.readSync(0, head);
      else await file.read(0, head);
      const clusterBytes = head.length >= 24 ? 2 ** Math.min(new DataView(head.buffer).getUint32(20), MAX_CLUSTER_BITS) : 0;
      if (clusterBytes > head.length && fileSize > head.length) {
        head = new Uint8Array(Math.min(fileSize, clusterBytes));
        if (sync) sync.readSync(0, head);
        else await file.read(0, head);
      }
      const header = parseHeader(head, fileSize);
      if (!opts.readOnly) {
        if (header.incompatibleFeatures & INCOMPAT_CORRUPT && !opts.forRepair) {
          throw new StorageError(
            'BAD_IMAGE',
            `qcow2: ${path} is marked corrupt; it can only be opened read-only (repair with 'typevisor disk check -r all')`,
          );
        }
        if (header.nbSnapshots > 0) {
          throw new StorageError('UNSUPPORTED', 'qcow2: writing to images with internal snapshots is not supported');
        }
      }
      const l1 = new Uint8Array(header.l1Size * 8);
      const refTable = new Uint8Array(header.refcountTableClusters * 2 ** header.clusterBits);
      // Side by side: each read is a trip through the I/O thread pool, and a restore opens a whole backing chain.
      if (sync) {
        sync.readSync(header.l1TableOffset, l1);
        sync.readSync(header.refcountTableOffset, refTable);
      } else await Promise.all([file.read(header.l1TableOffset, l1), file.read(header.refcountTableOffset, refTable)]);
      if (header.backingFile !== null) {
        if (!opts.openBacking)
          throw new StorageError('UNSUPPORTED', `qcow2: ${path} has a backing file, which is not allowed here`);
        backing = await opts.openBacking(header.backingFile, header.backingFormat);
      }
      const corruptBit = (header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0;
      const writable = !opts.readOnly && !corruptBit;
      const image = new Qcow2Image(file, header, l1, refTable, fileSize, backing, writable, opts.l2CacheTables);
      image.indexMetadata();
      if (!opts.readOnly && !opts.forRepair) await image.prepareForWriting();
      return image;
    } catch (err) {
      await backing?.close().catch(() => undefined);
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  // ---------------------------------------------------------------- BlockBackend

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkOpen();
    checkRequest(this.size, offset, into.length);
    return this.mutex.run(() => this.readLocked(offset, into));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    checkRequest(this.size, offset, data.length);
    return this.mutex.run(() => this.writeLocked(offset, data));
  }

  async flush(): Promise<void> {
    this.checkOpen();
    return this.mutex.run(async () => {
      await this.writeback();
      await this.file.sync();
    });
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRequest(this.size, offset, length);
    return this.mutex.run(() => this.zeroLocked(offset, length));
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRequest(this.size, offset, length);
    return this.mutex.run(() => this.zeroLocked(offset, length));
  }

  allocatedBytes(): Promise<number> {
    return this.file.allocatedBytes();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.mutex.run(async () => {
        if (this.file.readOnly) return;
        // A session that marked the image corrupt writes no more metadata.
        if (this.writable) await this.writeback();
        await this.file.sync();
        if (this.dirtySet && this.writable) {
          // Clean close with lazy refcounts: everything is on disk, refcounts included.
          await this.setIncompatible(this.header.incompatibleFeatures & ~INCOMPAT_DIRTY);
          await this.file.sync();
        }
      });
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }

  /** True when [offset, offset+length) certainly reads as zeros (used by convert to keep output sparse). */
  async isZeroRange(offset: number, length: number): Promise<boolean> {
    checkRequest(this.size, offset, length);
    return this.mutex.run(async () => {
      const first = Math.floor(offset / this.clusterSize);
      const last = Math.floor((offset + length - 1) / this.clusterSize);
      for (let gc = first; gc <= last; gc++) {
        const m = await this.lookup(gc);
        if (m.kind === 'zero') continue;
        if (m.kind === 'unallocated' && this.backing === null) continue;
        return false;
      }
      return true;
    });
  }

  /** The guest-cluster mapping, for tests and `disk info`. */
  async mapping(guestCluster: number): Promise<ClusterMapping> {
    return this.mutex.run(() => this.lookup(guestCluster));
  }

  // ---------------------------------------------------------------- lookup

  private roundUp(bytes: number): number {
    return Math.ceil(bytes / this.clusterSize) * this.clusterSize;
  }

  private l2TableOffset(l1Index: number): number {
    const hi = entryHi(this.l1, l1Index);
    const lo = entryLo(this.l1, l1Index);
    if (hi & L1E_RESERVED_HI || lo & L1E_RESERVED_LO) throw corrupt(`L1 entry ${l1Index} has reserved bits set`);
    const off = entryOffset(hi, lo);
    if (off !== 0) this.checkMetadataOffset(off, `L2 table of L1 entry ${l1Index}`);
    return off;
  }

  /** A metadata cluster must be aligned, inside the file, and not the header, L1 table or refcount table. */
  private checkMetadataOffset(off: number, what: string): void {
    if (off % this.clusterSize !== 0) throw corrupt(`${what} at 0x${off.toString(16)} is not cluster aligned`);
    if (off + this.clusterSize > this.fileEnd) throw corrupt(`${what} at 0x${off.toString(16)} is beyond the end of the file`);
    if (this.overlapsFixedMetadata(off)) throw corrupt(`${what} at 0x${off.toString(16)} overlaps the image header or tables`);
  }

  private overlapsFixedMetadata(off: number): boolean {
    const h = this.header;
    const cs = this.clusterSize;
    if (off < cs) return true;
    const within = (start: number, bytes: number): boolean => off + cs > start && off < start + bytes;
    return within(h.l1TableOffset, h.l1Size * 8) || within(h.refcountTableOffset, h.refcountTableClusters * cs);
  }

  private async loadL2(off: number): Promise<Uint8Array> {
    let table = this.l2Cache.get(off);
    if (!table) {
      // Loading may evict the least recently used table: never let that drop unwritten entries.
      if (this.dirtyL2.size > 0 && this.l2Cache.size >= this.l2Cache.capacity) await this.writeback();
      table = new Uint8Array(this.clusterSize);
      await this.file.read(off, table);
      this.l2Cache.set(off, table);
    }
    return table;
  }

  private async lookup(gc: number): Promise<ClusterMapping> {
    const l1Index = Math.floor(gc / 2 ** this.l2Bits);
    const l2Off = this.l2TableOffset(l1Index);
    if (l2Off === 0) return { kind: 'unallocated' };
    const table = await this.loadL2(l2Off);
    return this.decodeL2(table, gc % 2 ** this.l2Bits);
  }

  private decodeL2(table: Uint8Array, index: number): ClusterMapping {
    const hi = entryHi(table, index);
    const lo = entryLo(table, index);
    if (hi & OFLAG_COMPRESSED_HI) return this.decodeCompressed(hi, lo);
    if (hi & L2E_RESERVED_HI || lo & L2E_RESERVED_LO) throw corrupt(`L2 entry has reserved bits set`);
    const host = entryOffset(hi, lo);
    if (host !== 0) {
      if (host % this.clusterSize !== 0) throw corrupt(`data cluster at 0x${host.toString(16)} is not cluster aligned`);
      if (host + this.clusterSize > this.fileEnd) {
        throw corrupt(`data cluster at 0x${host.toString(16)} is beyond the end of the file`);
      }
    }
    if (lo & OFLAG_ZERO_LO) {
      if (this.header.version < 3) throw corrupt('zero flag set in a version 2 image');
      return { kind: 'zero', host };
    }
    if (host === 0) return { kind: 'unallocated' };
    return { kind: 'normal', host, copied: (hi & OFLAG_COPIED_HI) !== 0 };
  }

  /** Compressed descriptor: host byte offset in bits 0..x-1, extra 512-byte sectors in bits x..61, x = 62 - (cluster_bits - 8). */
  private decodeCompressed(hi: number, lo: number): ClusterMapping {
    // x is 49..61 (cluster_bits 9..21), so the offset's high part and the whole sector count sit in the high
    // word: plain number arithmetic, no BigInt on the read path.
    const sizeBits = this.clusterBits - 8;
    const xHi = 62 - sizeBits - 32;
    const offset = (hi & ((1 << xHi) - 1)) * 2 ** 32 + (lo >>> 0);
    const sectors = ((hi >>> xHi) & ((1 << sizeBits) - 1)) + 1;
    const bytes = sectors * 512 - (offset % 512);
    if (offset === 0 || offset + bytes > this.fileEnd) {
      throw corrupt(`compressed cluster at 0x${offset.toString(16)} (+${bytes}) is outside the file`);
    }
    return { kind: 'compressed', offset, bytes };
  }

  private async inflate(m: { offset: number; bytes: number }): Promise<Uint8Array> {
    if (this.lastInflated?.offset === m.offset) return this.lastInflated.data;
    const packed = new Uint8Array(m.bytes);
    await this.file.read(m.offset, packed);
    let out: Uint8Array;
    try {
      out = inflateRawSync(packed, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: this.clusterSize });
    } catch (err) {
      throw corrupt(`compressed cluster at 0x${m.offset.toString(16)} does not inflate: ${(err as Error).message}`);
    }
    if (out.length !== this.clusterSize) {
      throw corrupt(`compressed cluster at 0x${m.offset.toString(16)} inflates to ${out.length} bytes, not ${this.clusterSize}`);
    }
    this.lastInflated = { offset: m.offset, data: out };
    return out;
  }

  // ---------------------------------------------------------------- read

  private async readLocked(offset: number, into: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < into.length) {
      const gOff = offset + pos;
      const gc = Math.floor(gOff / this.clusterSize);
      const inOff = gOff % this.clusterSize;
      let n = Math.min(this.clusterSize - inOff, into.length - pos);
      const m = await this.lookup(gc);
      if (m.kind === 'normal') {
        // Extend over following clusters stored right after this one: one pread instead of many.
        let next = gc + 1;
        while (pos + n < into.length) {
          const nm = await this.lookup(next);
          if (nm.kind !== 'normal' || nm.host !== m.host + (next - gc) * this.clusterSize) break;
          n += Math.min(this.clusterSize, into.length - pos - n);
          next++;
        }
      }
      await this.readMapped(m, gOff, inOff, into.subarray(pos, pos + n));
      pos += n;
    }
  }

  private async readMapped(m: ClusterMapping, gOff: number, inOff: number, out: Uint8Array): Promise<void> {
    switch (m.kind) {
      case 'zero':
        out.fill(0);
        return;
      case 'normal':
        await this.file.read(m.host + inOff, out);
        return;
      case 'compressed':
        out.set((await this.inflate(m)).subarray(inOff, inOff + out.length));
        return;
      case 'unallocated':
        await this.readBacking(gOff, out);
        return;
    }
  }

  private async readBacking(gOff: number, out: Uint8Array): Promise<void> {
    const b = this.backing;
    const inBacking = b ? Math.max(0, Math.min(out.length, b.size - gOff)) : 0;
    if (b && inBacking > 0) await b.read(gOff, out.subarray(0, inBacking));
    out.fill(0, inBacking);
  }

  // ---------------------------------------------------------------- write

  private async writeLocked(offset: number, data: Uint8Array): Promise<void> {
    await this.markDirty();
    const pending: { gc: number; content: Uint8Array; old: ClusterMapping; partial: boolean }[] = [];
    let pos = 0;
    while (pos < data.length) {
      const gOff = offset + pos;
      const gc = Math.floor(gOff / this.clusterSize);
      const inOff = gOff % this.clusterSize;
      const n = Math.min(this.clusterSize - inOff, data.length - pos);
      const slice = data.subarray(pos, pos + n);
      const m = await this.lookup(gc);
      if (m.kind === 'normal' && m.copied) {
        this.checkDataTarget(m.host);
        await this.file.write(m.host + inOff, slice);
      } else if (n === this.clusterSize) {
        pending.push({ gc, content: slice, old: m, partial: false });
      } else {
        // Partial write to a cluster we must (re)allocate: copy the rest of it from where it reads now.
        const content = new Uint8Array(this.clusterSize);
        await this.readMapped(m, gc * this.clusterSize, 0, content);
        content.set(slice, inOff);
        pending.push({ gc, content, old: m, partial: true });
      }
      pos += n;
    }
    if (pending.length === 0) return;

    for (const p of pending) await this.ensureL2(p.gc);
    const hosts: number[] = [];
    for (let i = 0; i < pending.length; i++) hosts.push(await this.allocCluster());
    for (let i = 0; i < pending.length;) {
      // Coalesce runs of consecutive host clusters that hold consecutive guest clusters into one write.
      let j = i + 1;
      while (
        j < pending.length &&
        hosts[j] === hosts[j - 1]! + this.clusterSize &&
        pending[j]!.gc === pending[j - 1]!.gc + 1 &&
        !pending[j]!.partial &&
        !pending[j - 1]!.partial
      )
        j++;
      if (j - i > 1 && pending[i]!.content.buffer === data.buffer) {
        const start = pending[i]!.content.byteOffset;
        await this.file.write(hosts[i]!, new Uint8Array(data.buffer, start, (j - i) * this.clusterSize));
      } else {
        for (let k = i; k < j; k++) await this.file.write(hosts[k]!, pending[k]!.content);
      }
      i = j;
    }
    // The new L2 entries stay dirty in the cache: writeback() makes the data (including copied-on-write
    // parts) and the refcounts durable before any of them reaches the file.
    for (let i = 0; i < pending.length; i++) {
      const [hi, lo] = offsetWords(hosts[i]!);
      await this.setL2Entry(pending[i]!.gc, hi | OFLAG_COPIED_HI, lo);
    }
    await this.freeOld(pending.map((p) => p.old));
  }

  /** A data write must never land on metadata, even if a corrupt L2 entry says so. */
  private checkDataTarget(host: number): void {
    if (this.overlapsFixedMetadata(host) || this.metadataClusters.has(host)) {
      void this.markCorrupt();
      throw corrupt(`data cluster at 0x${host.toString(16)} overlaps metadata; image marked corrupt`);
    }
  }

  /** Clusters that a remapping made unreferenced: their refcounts drop only after the new L2 entries are durable. */
  private async freeOld(olds: ClusterMapping[]): Promise<void> {
    for (const m of olds) {
      if ((m.kind === 'normal' || m.kind === 'zero') && m.host !== 0) this.pendingFrees.push([m.host, this.clusterSize]);
      else if (m.kind === 'compressed') this.pendingFrees.push([m.offset, m.bytes]);
    }
    if (this.pendingFrees.length > 4096) await this.writeback();
  }

  /** Writes dirty L2 tables back in the crash-safe order described at the top of this file. */
  private async writeback(): Promise<void> {
    if (this.dirtyL2.size === 0 && this.pendingFrees.length === 0) return;
    await this.file.barrier();
    for (const off of this.dirtyL2) {
      const table = this.l2Cache.get(off);
      if (!table) throw new StorageError('IO', 'qcow2: internal error: dirty L2 table left the cache');
      await this.file.write(off, table);
    }
    this.dirtyL2.clear();
    if (this.pendingFrees.length === 0) return;
    await this.file.barrier();
    const frees = this.pendingFrees;
    this.pendingFrees = [];
    for (const [start, bytes] of frees) {
      const first = Math.floor(start / this.clusterSize);
      const last = Math.floor((start + bytes - 1) / this.clusterSize);
      for (let c = first; c <= last; c++) await this.updateRefcount(c, -1);
    }
    this.lastInflated = null;
  }

  private async zeroLocked(offset: number, length: number): Promise<void> {
    const cs = this.clusterSize;
    const end = offset + length;
    const firstFull = Math.ceil(offset / cs) * cs;
    const lastFull = Math.floor(end / cs) * cs;
    if (firstFull >= lastFull) {
      if (length > 0) await this.zeroPartial(offset, length);
      return;
    }
    if (offset < firstFull) await this.zeroPartial(offset, firstFull - offset);
    if (lastFull < end) await this.zeroPartial(lastFull, end - lastFull);
    await this.markDirty();
    // Whole clusters: with a backing file they must become zero clusters (or the backing would show
    // through); without one, unallocated reads as zeros already.
    const needZeroFlag = this.backing !== null;
    if (needZeroFlag && this.header.version < 3) {
      // Version 2 has no zero flag: write real zeros.
      for (let pos = firstFull; pos < lastFull; pos += cs) await this.writeLocked(pos, new Uint8Array(cs));
      return;
    }
    const olds: ClusterMapping[] = [];
    for (let gc = firstFull / cs; gc < lastFull / cs; gc++) {
      const m = await this.lookup(gc);
      if (m.kind === 'zero' && m.host === 0) continue;
      if (m.kind === 'unallocated' && !needZeroFlag) continue;
      if (needZeroFlag) await this.ensureL2(gc);
      await this.setL2Entry(gc, 0, needZeroFlag ? OFLAG_ZERO_LO : 0);
      olds.push(m);
    }
    await this.freeOld(olds);
  }

  /** Zeroes a range by writing zeros, skipping clusters that already read as zeros (no allocation for them). */
  private async zeroPartial(offset: number, length: number): Promise<void> {
    const end = offset + length;
    for (let pos = offset; pos < end;) {
      const next = Math.min(end, (Math.floor(pos / this.clusterSize) + 1) * this.clusterSize);
      const m = await this.lookup(Math.floor(pos / this.clusterSize));
      if (m.kind !== 'zero' && !(m.kind === 'unallocated' && this.backing === null)) {
        await this.writeLocked(pos, new Uint8Array(next - pos));
      }
      pos = next;
    }
  }

  /** Makes sure the L2 table for guest cluster gc exists: allocate, zero it, then link it from L1. */
  private async ensureL2(gc: number): Promise<void> {
    const l1Index = Math.floor(gc / 2 ** this.l2Bits);
    if (this.l2TableOffset(l1Index) !== 0) return;
    const off = await this.allocCluster();
    if (!this.lazyRefcounts) await this.file.barrier();
    const table = new Uint8Array(this.clusterSize);
    await this.file.write(off, table);
    await this.file.barrier();
    this.metadataClusters.add(off);
    if (this.dirtyL2.size > 0 && this.l2Cache.size >= this.l2Cache.capacity) await this.writeback();
    this.l2Cache.set(off, table);
    const [hi, lo] = offsetWords(off);
    setEntry(this.l1, l1Index, hi | OFLAG_COPIED_HI, lo);
    await this.file.write(this.header.l1TableOffset + l1Index * 8, this.l1.subarray(l1Index * 8, l1Index * 8 + 8));
  }

  private async setL2Entry(gc: number, hi: number, lo: number): Promise<void> {
    const l2Off = this.l2TableOffset(Math.floor(gc / 2 ** this.l2Bits));
    if (l2Off === 0) throw new StorageError('IO', 'qcow2: internal error: L2 table missing');
    const table = await this.loadL2(l2Off);
    const index = gc % 2 ** this.l2Bits;
    setEntry(table, index, hi, lo);
    this.dirtyL2.add(l2Off);
  }

  // ---------------------------------------------------------------- refcounts

  private refTableEntries(): number {
    return this.refTable.length / 8;
  }

  private refBlockOffset(blockIndex: number): number {
    if (blockIndex >= this.refTableEntries()) return 0;
    const hi = entryHi(this.refTable, blockIndex);
    const lo = entryLo(this.refTable, blockIndex);
    if (lo & 0x1ff) throw corrupt(`refcount table entry ${blockIndex} has reserved bits set`);
    const off = entryOffset(hi, lo);
    if (hi & 0xff000000) throw corrupt(`refcount table entry ${blockIndex} is out of range`);
    if (off !== 0) this.checkMetadataOffset(off, `refcount block ${blockIndex}`);
    return off;
  }

  private async loadRefBlock(off: number): Promise<Uint8Array> {
    let block = this.refCache.get(off);
    if (!block) {
      block = new Uint8Array(this.clusterSize);
      await this.file.read(off, block);
      this.refCache.set(off, block);
    }
    return block;
  }

  async refcount(cluster: number): Promise<number> {
    const off = this.refBlockOffset(Math.floor(cluster / this.refsPerBlock));
    if (off === 0) return 0;
    return getRefcount(await this.loadRefBlock(off), cluster % this.refsPerBlock, this.refBits);
  }

  private async writeRefEntry(blockOff: number, block: Uint8Array, index: number): Promise<void> {
    const [start, len] = refcountBytes(index, this.refBits);
    await this.file.write(blockOff + start, block.subarray(start, start + len));
  }

  private async updateRefcount(cluster: number, delta: number): Promise<void> {
    const bi = Math.floor(cluster / this.refsPerBlock);
    const off = this.refBlockOffset(bi);
    if (off === 0) {
      if (delta < 0) {
        await this.markCorrupt();
        throw corrupt(`freeing cluster ${cluster}, which has no refcount block; image marked corrupt`);
      }
      throw new StorageError('IO', 'qcow2: internal error: refcount block missing');
    }
    const block = await this.loadRefBlock(off);
    const index = cluster % this.refsPerBlock;
    const value = getRefcount(block, index, this.refBits) + delta;
    if (value < 0) {
      await this.markCorrupt();
      throw corrupt(`refcount of cluster ${cluster} would drop below zero; image marked corrupt`);
    }
    if (value > maxRefcount(this.refBits)) throw new StorageError('IO', `qcow2: refcount of cluster ${cluster} overflows`);
    setRefcount(block, index, this.refBits, value);
    await this.writeRefEntry(off, block, index);
    if (value === 0 && cluster < this.freeHint) this.freeHint = cluster;
  }

  /** Finds a cluster with refcount 0, sets its refcount to 1 (written through) and returns its byte offset. */
  private async allocCluster(): Promise<number> {
    for (;;) {
      const c = this.freeHint;
      if ((c + 1) * this.clusterSize > Number.MAX_SAFE_INTEGER / 2) throw new StorageError('IO', 'qcow2: image file too large');
      const bi = Math.floor(c / this.refsPerBlock);
      if (bi >= this.refTableEntries()) {
        await this.growRefTable();
        continue;
      }
      const blockOff = this.refBlockOffset(bi);
      if (blockOff === 0) {
        await this.createRefBlock(bi, c);
        this.freeHint = c + 1;
        continue;
      }
      const block = await this.loadRefBlock(blockOff);
      for (let j = c % this.refsPerBlock; j < this.refsPerBlock; j++) {
        const cluster = bi * this.refsPerBlock + j;
        const off = cluster * this.clusterSize;
        // Nothing can reference a cluster at or past the end of the file (an L2 entry or a table there is refused
        // as corrupt), so a count there is a leak (a crash between a refcount update and the data write) or garbage
        // (a refcount block that is really data): either way the cluster is free. Trusting such counts let one
        // hostile refcount block push allocation a whole block's coverage past the end of the image.
        if (getRefcount(block, j, this.refBits) !== 0 && off < this.fileEnd) continue;
        if (this.overlapsFixedMetadata(off) || this.metadataClusters.has(off)) {
          await this.markCorrupt();
          throw corrupt(`metadata cluster ${cluster} has refcount 0; image marked corrupt`);
        }
        setRefcount(block, j, this.refBits, 1);
        await this.writeRefEntry(blockOff, block, j);
        this.freeHint = cluster + 1;
        this.fileEnd = Math.max(this.fileEnd, off + this.clusterSize);
        return off;
      }
      this.freeHint = (bi + 1) * this.refsPerBlock;
    }
  }

  /** A missing refcount block is placed at the free cluster `c` it must describe, so it covers itself. */
  private async createRefBlock(bi: number, c: number): Promise<void> {
    const off = c * this.clusterSize;
    const block = new Uint8Array(this.clusterSize);
    setRefcount(block, c - bi * this.refsPerBlock, this.refBits, 1);
    await this.file.write(off, block);
    await this.file.barrier();
    this.refCache.set(off, block);
    this.metadataClusters.add(off);
    this.fileEnd = Math.max(this.fileEnd, off + this.clusterSize);
    const [hi, lo] = offsetWords(off);
    setEntry(this.refTable, bi, hi, lo);
    await this.file.write(this.header.refcountTableOffset + bi * 8, this.refTable.subarray(bi * 8, bi * 8 + 8));
  }

  /**
   * Grows the refcount table: a new, larger table plus the refcount blocks that describe it are written
   * past the end of the image (aligned to a refcount-block boundary so no existing block covers them),
   * made durable, and only then does the header switch to them; the old table's clusters are freed last.
   */
  private async growRefTable(): Promise<void> {
    const cs = this.clusterSize;
    const per = this.refsPerBlock;
    const oldEntries = this.refTableEntries();
    const start = Math.max(Math.ceil(this.fileEnd / cs / per) * per, oldEntries * per);
    let blocks = 1;
    let tableClusters: number;
    for (;;) {
      tableClusters = Math.ceil((Math.max(oldEntries, start / per + blocks) * 8) / cs);
      const need = Math.ceil((blocks + tableClusters) / per);
      if (need <= blocks) break;
      blocks = need;
    }
    if (tableClusters * cs > QCOW_MAX_REFTABLE_SIZE) throw new StorageError('IO', 'qcow2: refcount table would exceed 8 MiB');
    const used = blocks + tableClusters;
    for (let k = 0; k < blocks; k++) {
      const block = new Uint8Array(cs);
      for (let c = k * per; c < Math.min(used, (k + 1) * per); c++) setRefcount(block, c - k * per, this.refBits, 1);
      await this.file.write((start + k) * cs, block);
    }
    const table = new Uint8Array(tableClusters * cs);
    table.set(this.refTable);
    for (let k = 0; k < blocks; k++) {
      const [hi, lo] = offsetWords((start + k) * cs);
      setEntry(table, start / per + k, hi, lo);
    }
    const tableOff = (start + blocks) * cs;
    await this.switchRefTable(tableOff, table, tableClusters);
    await this.file.sync();
    const oldOff = this.header.refcountTableOffset;
    const oldClusters = this.header.refcountTableClusters;
    this.header.refcountTableOffset = tableOff;
    this.header.refcountTableClusters = tableClusters;
    this.refTable = table;
    this.fileEnd = Math.max(this.fileEnd, (start + used) * cs);
    for (let k = 0; k < blocks; k++) this.metadataClusters.add((start + k) * cs);
    for (let c = 0; c < oldClusters; c++) await this.updateRefcount(oldOff / cs + c, -1);
  }

  /**
   * Writes a new refcount table at `tableOff`, makes it durable, and only then points the header's
   * refcount_table_offset/refcount_table_clusters at it (that header write is left for the caller to sync).
   */
  private async switchRefTable(tableOff: number, table: Uint8Array, tableClusters: number): Promise<void> {
    await this.file.write(tableOff, table);
    await this.file.sync();
    const hdr = new Uint8Array(12);
    const [hi, lo] = offsetWords(tableOff);
    view(hdr).setUint32(0, hi);
    view(hdr).setUint32(4, lo);
    view(hdr).setUint32(8, tableClusters);
    await this.file.write(48, hdr);
  }

  // ---------------------------------------------------------------- header flags

  private async setIncompatible(bits: number): Promise<void> {
    this.header.incompatibleFeatures = bits;
    const buf = new Uint8Array(8);
    view(buf).setUint32(4, bits);
    await this.file.write(72, buf);
  }

  /** With lazy refcounts, the dirty bit goes to disk (fsynced) before the first metadata change. */
  private async markDirty(): Promise<void> {
    if (!this.lazyRefcounts || this.dirtySet) return;
    await this.setIncompatible(this.header.incompatibleFeatures | INCOMPAT_DIRTY);
    await this.file.sync();
    this.dirtySet = true;
  }

  private async markCorrupt(): Promise<void> {
    if (!this.writable || this.header.version < 3) {
      this.writable = false;
      return;
    }
    try {
      await this.setIncompatible(this.header.incompatibleFeatures | INCOMPAT_CORRUPT);
      await this.file.sync();
    } finally {
      this.writable = false;
    }
  }

  private async prepareForWriting(): Promise<void> {
    if (this.header.version === 3 && this.header.autoclearFeatures !== 0) {
      // Autoclear bits describe extensions we do not maintain (e.g. bitmaps): clear them, as the spec says.
      this.header.autoclearFeatures = 0;
      await this.file.write(88, new Uint8Array(8));
    }
    if (this.dirty) {
      await this.rebuildRefcounts(false);
      this.dirtySet = false;
    }
  }

  private indexMetadata(): void {
    for (let i = 0; i < this.header.l1Size; i++) {
      const off = entryOffset(entryHi(this.l1, i), entryLo(this.l1, i));
      if (off !== 0) this.metadataClusters.add(off);
    }
    for (let i = 0; i < this.refTableEntries(); i++) {
      const off = entryOffset(entryHi(this.refTable, i), entryLo(this.refTable, i));
      if (off !== 0) this.metadataClusters.add(off);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('IO', 'disk is closed');
  }

  private checkWritable(): void {
    this.checkOpen();
    if (!this.writable) {
      throw new StorageError('READ_ONLY', this.corrupt ? 'qcow2: image is marked corrupt (read-only)' : 'disk is read-only');
    }
  }

  // ---------------------------------------------------------------- check and repair

  /**
   * Walks every metadata structure and counts references per host cluster (what the refcounts should be).
   * Never trusts an offset: bad ones become `problems`, not reads.
   */
  private async scan(countRefcountStructures: boolean): Promise<ScanResult> {
    const cs = this.clusterSize;
    const nClusters = this.fileEnd / cs;
    if (nClusters > MAX_SCAN_CLUSTERS) throw new StorageError('UNSUPPORTED', 'qcow2: image too large to check');
    if (this.header.nbSnapshots > 0)
      throw new StorageError('UNSUPPORTED', 'qcow2: checking images with internal snapshots is not supported');
    const r: ScanResult = {
      expected: new Uint16Array(nClusters),
      problems: [],
      copied: [],
      notCopied: [],
      allocatedDataClusters: 0,
      compressedClusters: 0,
      fragmentedClusters: 0,
    };
    const ref = (off: number, bytes: number, what: string): boolean => {
      if (off + bytes > this.fileEnd) {
        r.problems.push(`ERROR ${what} at offset 0x${off.toString(16)} is beyond the end of the image file`);
        return false;
      }
      for (let c = Math.floor(off / cs); c <= Math.floor((off + bytes - 1) / cs); c++) {
        if (r.expected[c]! < 0xffff) r.expected[c]!++;
      }
      return true;
    };
    ref(0, cs, 'header');
    if (this.header.l1Size > 0) ref(this.header.l1TableOffset, this.header.l1Size * 8, 'L1 table');
    if (countRefcountStructures) {
      ref(this.header.refcountTableOffset, this.header.refcountTableClusters * cs, 'refcount table');
      for (let i = 0; i < this.refTableEntries(); i++) {
        const hi = entryHi(this.refTable, i);
        const lo = entryLo(this.refTable, i);
        const off = entryOffset(hi, lo);
        if (off === 0) continue;
        if (off % cs !== 0 || lo & 0x1ff || hi & 0xff000000)
          r.problems.push(`ERROR refcount block ${i} is not cluster aligned; refcount table corrupted`);
        else ref(off, cs, `refcount block ${i}`);
      }
    }
    const table = new Uint8Array(cs);
    let lastHost = -1;
    for (let i = 0; i < this.header.l1Size; i++) {
      const hi = entryHi(this.l1, i);
      const lo = entryLo(this.l1, i);
      const l2Off = entryOffset(hi, lo);
      if (hi & L1E_RESERVED_HI || lo & L1E_RESERVED_LO) r.problems.push(`ERROR L1 entry ${i} has reserved bits set`);
      if (l2Off === 0) continue;
      if (l2Off % cs !== 0) {
        r.problems.push(`ERROR L2 table offset 0x${l2Off.toString(16)} (L1 entry ${i}) is not cluster aligned`);
        continue;
      }
      if (!ref(l2Off, cs, `L2 table (L1 entry ${i})`)) continue;
      (hi & OFLAG_COPIED_HI ? r.copied : r.notCopied).push(l2Off);
      await this.file.read(l2Off, table);
      for (let j = 0; j < cs / 8; j++) {
        const ehi = entryHi(table, j);
        const elo = entryLo(table, j);
        if (ehi === 0 && elo === 0) continue;
        const guest = (i * (cs / 8) + j) * cs;
        if (ehi & OFLAG_COMPRESSED_HI) {
          let m: ClusterMapping;
          try {
            m = this.decodeCompressed(ehi, elo);
          } catch (err) {
            r.problems.push(`ERROR compressed cluster for guest offset 0x${guest.toString(16)}: ${(err as Error).message}`);
            continue;
          }
          if (m.kind === 'compressed' && ref(m.offset, m.bytes, 'compressed cluster')) r.compressedClusters++;
          r.allocatedDataClusters++;
          continue;
        }
        if (ehi & L2E_RESERVED_HI || elo & L2E_RESERVED_LO) {
          r.problems.push(`ERROR L2 entry for guest offset 0x${guest.toString(16)} has reserved bits set`);
        }
        const host = entryOffset(ehi, elo);
        if (elo & OFLAG_ZERO_LO && this.header.version < 3) r.problems.push('ERROR zero flag in a version 2 image');
        if (host === 0) continue;
        if (host % cs !== 0) {
          r.problems.push(`ERROR data cluster offset 0x${host.toString(16)} is not cluster aligned`);
          continue;
        }
        if (!ref(host, cs, 'data cluster')) continue;
        if (!(elo & OFLAG_ZERO_LO)) r.allocatedDataClusters++;
        if (lastHost !== -1 && host !== lastHost + cs) r.fragmentedClusters++;
        lastHost = host;
        (ehi & OFLAG_COPIED_HI ? r.copied : r.notCopied).push(host);
      }
    }
    return r;
  }

  /** Reads every on-disk refcount straight from the file (not the cache), for comparison. */
  private async onDiskRefcounts(count: number): Promise<{ values: Float64Array; problems: string[] }> {
    const values = new Float64Array(count);
    const problems: string[] = [];
    const block = new Uint8Array(this.clusterSize);
    for (let bi = 0; bi < this.refTableEntries() && bi * this.refsPerBlock < count; bi++) {
      const hi = entryHi(this.refTable, bi);
      const lo = entryLo(this.refTable, bi);
      const off = entryOffset(hi, lo);
      if (off === 0 || off % this.clusterSize !== 0 || lo & 0x1ff || hi & 0xff000000) continue;
      if (off + this.clusterSize > this.fileEnd) {
        problems.push(`ERROR refcount block ${bi} is outside the image`);
        continue;
      }
      await this.file.read(off, block);
      for (let j = 0; j < this.refsPerBlock && bi * this.refsPerBlock + j < count; j++) {
        values[bi * this.refsPerBlock + j] = getRefcount(block, j, this.refBits);
      }
    }
    return { values, problems };
  }

  /**
   * Like `qemu-img check`: corruptions are clusters whose refcount is below their references (or bad
   * metadata); leaks are clusters whose refcount is above them. `repair` rebuilds the refcount
   * structures from the references ('leaks' or 'all'); 'all' also clears the corrupt bit when the
   * remaining metadata is sound.
   */
  async check(repair: 'none' | 'leaks' | 'all' = 'none'): Promise<CheckReport> {
    return this.mutex.run(async () => {
      if (!this.file.readOnly) await this.writeback();
      const s = await this.scan(true);
      const { values, problems } = await this.onDiskRefcounts(s.expected.length);
      const messages = [...s.problems, ...problems];
      let corruptions = messages.length;
      let leaks = 0;
      for (let c = 0; c < s.expected.length; c++) {
        const have = values[c]!;
        const want = s.expected[c]!;
        if (have === want) continue;
        if (have < want) {
          corruptions++;
          messages.push(`ERROR cluster ${c} refcount=${have} reference=${want}`);
        } else {
          leaks++;
          messages.push(`Leaked cluster ${c} refcount=${have} reference=${want}`);
        }
      }
      for (const off of s.copied) {
        const rc = values[off / this.clusterSize];
        if (rc !== undefined && rc !== 1) {
          corruptions++;
          messages.push(`ERROR OFLAG_COPIED at offset 0x${off.toString(16)}: refcount=${rc}`);
        }
      }
      const structural = s.problems.length + problems.length;
      let repaired = false;
      if (repair !== 'none' && (leaks > 0 || corruptions > 0 || this.dirty)) {
        if (!this.writableFile()) throw new StorageError('READ_ONLY', 'qcow2: repair needs the image opened read-write');
        if (structural === 0 || repair === 'leaks') {
          await this.rebuildRefcounts(repair === 'all' && structural === 0);
          repaired = true;
        }
      }
      return {
        corruptions,
        leaks,
        messages,
        allocatedClusters: s.allocatedDataClusters,
        totalClusters: Math.ceil(this.size / this.clusterSize),
        compressedClusters: s.compressedClusters,
        fragmentedClusters: s.fragmentedClusters,
        imageEndOffset: this.fileEnd,
        repaired,
      };
    });
  }

  private writableFile(): boolean {
    return !this.file.readOnly;
  }

  /**
   * Rebuilds the refcount table and blocks from the metadata walk: new structures go past the end of
   * the file, are made durable, then the header switches to them in one write, clearing the dirty bit
   * (and the corrupt bit if asked). The old structures become free clusters.
   */
  private async rebuildRefcounts(clearCorrupt: boolean): Promise<void> {
    const cs = this.clusterSize;
    const per = this.refsPerBlock;
    const s = await this.scan(false);
    if (s.problems.length > 0) throw corrupt(`cannot rebuild refcounts: ${s.problems[0]}`);
    const base = s.expected.length;
    let blocks = 1;
    let tableClusters: number;
    for (;;) {
      tableClusters = Math.ceil((blocks * 8) / cs);
      const need = Math.ceil((base + blocks + tableClusters) / per);
      if (need <= blocks) break;
      blocks = need;
    }
    if (tableClusters * cs > QCOW_MAX_REFTABLE_SIZE) throw new StorageError('IO', 'qcow2: refcount table would exceed 8 MiB');
    const total = base + blocks + tableClusters;
    const counts = new Uint16Array(total);
    counts.set(s.expected);
    counts.fill(1, base);
    const table = new Uint8Array(tableClusters * cs);
    for (let k = 0; k < blocks; k++) {
      const block = new Uint8Array(cs);
      for (let c = k * per; c < Math.min(total, (k + 1) * per); c++) {
        setRefcount(block, c - k * per, this.refBits, Math.min(counts[c]!, maxRefcount(this.refBits)));
      }
      await this.file.write((base + k) * cs, block);
      const [hi, lo] = offsetWords((base + k) * cs);
      setEntry(table, k, hi, lo);
    }
    const tableOff = (base + blocks) * cs;
    await this.switchRefTable(tableOff, table, tableClusters);
    let flags = this.header.incompatibleFeatures & ~INCOMPAT_DIRTY;
    if (clearCorrupt) flags &= ~INCOMPAT_CORRUPT;
    await this.setIncompatible(flags);
    await this.file.sync();
    // Old refcount blocks are free clusters now; forget them.
    for (let i = 0; i < this.refTableEntries(); i++) {
      this.metadataClusters.delete(entryOffset(entryHi(this.refTable, i), entryLo(this.refTable, i)));
    }
    this.header.refcountTableOffset = tableOff;
    this.header.refcountTableClusters = tableClusters;
    this.refTable = table;
    this.refCache.clear();
    for (let k = 0; k < blocks; k++) this.metadataClusters.add((base + k) * cs);
    this.fileEnd = Math.max(this.fileEnd, total * cs);
    this.freeHint = 0;
    if (clearCorrupt && this.header.version === 3) this.writable = !this.file.readOnly;
  }
}
