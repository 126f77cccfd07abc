/**
 * Small helpers over qcow2 tables held as big-endian byte arrays: 64-bit entries split into two u32
 * words (no BigInt on the hot path), refcount entries of any width 1..64 bits, and a bounded LRU cache.
 */
import { StorageError } from '../backend.js';
import { OFFSET_MASK_HI, OFFSET_MASK_LO } from './format.js';

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

// Entries are read and written byte by byte rather than through a DataView: these run for every cluster a
// request touches (and for every table entry an open indexes), and a DataView per access was an allocation each.

/** The big-endian u32 at byte `at` of `buf`. */
export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

export function writeU32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}

export function entryHi(buf: Uint8Array, index: number): number {
  return readU32(buf, index * 8);
}

export function entryLo(buf: Uint8Array, index: number): number {
  return readU32(buf, index * 8 + 4);
}

/** Bits 9..55 of an L1/L2/refcount-table entry: a host byte offset. */
export function entryOffset(hi: number, lo: number): number {
  return (hi & OFFSET_MASK_HI) * 2 ** 32 + ((lo & OFFSET_MASK_LO) >>> 0);
}

export function setEntry(buf: Uint8Array, index: number, hi: number, lo: number): void {
  writeU32(buf, index * 8, hi >>> 0);
  writeU32(buf, index * 8 + 4, lo >>> 0);
}

/** Splits a host offset into entry words (offsets are < 2^56 by construction). */
export function offsetWords(offset: number): [hi: number, lo: number] {
  return [Math.floor(offset / 2 ** 32), offset >>> 0];
}

/** Refcount entries: `bits` = 1 << refcount_order. */
export function getRefcount(block: Uint8Array, index: number, bits: number): number {
  switch (bits) {
    case 8:
      return block[index]!;
    case 16:
      return (block[index * 2]! << 8) | block[index * 2 + 1]!;
    case 32:
      return readU32(block, index * 4);
    case 64: {
      const hi = readU32(block, index * 8);
      // A count this large can only come from a corrupt image; saturate rather than lose precision.
      return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 2 ** 32 + readU32(block, index * 8 + 4);
    }
    default: {
      // 1, 2 or 4 bits, packed from the least significant bit of each byte (QEMU's layout).
      const perByte = 8 / bits;
      const shift = (index % perByte) * bits;
      return (block[Math.floor(index / perByte)]! >> shift) & ((1 << bits) - 1);
    }
  }
}

export function setRefcount(block: Uint8Array, index: number, bits: number, value: number): void {
  switch (bits) {
    case 8:
      block[index] = value;
      return;
    case 16:
      block[index * 2] = value >>> 8;
      block[index * 2 + 1] = value;
      return;
    case 32:
      writeU32(block, index * 4, value >>> 0);
      return;
    case 64:
      writeU32(block, index * 8, Math.floor(value / 2 ** 32));
      writeU32(block, index * 8 + 4, value >>> 0);
      return;
    default: {
      const perByte = 8 / bits;
      const shift = (index % perByte) * bits;
      const byte = Math.floor(index / perByte);
      const mask = ((1 << bits) - 1) << shift;
      block[byte] = (block[byte]! & ~mask) | ((value << shift) & mask);
    }
  }
}

/** The byte range of `block` that holds entry `index` (what a write-through update must write). */
export function refcountBytes(index: number, bits: number): [start: number, length: number] {
  if (bits < 8) return [Math.floor((index * bits) / 8), 1];
  return [(index * bits) / 8, bits / 8];
}

export function maxRefcount(bits: number): number {
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}

/** A least-recently-used map with a fixed entry budget (tables are cluster-sized, so this bounds memory). */
export class LruCache<V> {
  private readonly map = new Map<number, V>();
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: number): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: number, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!);
  }

  delete(key: number): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

export function corrupt(msg: string): StorageError {
  return new StorageError('BAD_IMAGE', `qcow2: ${msg}`);
}
