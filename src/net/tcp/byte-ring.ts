/**
 * The send buffer: a growable ring of bytes. Byte 0 is the oldest unacknowledged byte; acknowledged bytes are
 * discarded from the front, new bytes appended at the back, and any range can be copied out for (re)transmission.
 */
const INITIAL_CAPACITY = 4096;
/** An emptied ring bigger than this gives its memory back, so idle connections stay small. */
const SHRINK_ABOVE = 64 * 1024;

export class ByteRing {
  private buf = new Uint8Array(INITIAL_CAPACITY);
  private head = 0;
  private len = 0;

  get length(): number {
    return this.len;
  }

  /** Appends a copy of data (the caller may reuse its buffer afterwards). */
  push(data: Uint8Array): void {
    const need = this.len + data.length;
    if (need > this.buf.length) this.grow(need);
    const cap = this.buf.length;
    const tail = (this.head + this.len) & (cap - 1);
    const first = Math.min(data.length, cap - tail);
    this.buf.set(data.subarray(0, first), tail);
    if (first < data.length) this.buf.set(data.subarray(first), 0);
    this.len = need;
  }

  /** A new array holding bytes [offset, offset+count) of the ring; the caller owns it. */
  copy(offset: number, count: number): Uint8Array {
    const out = new Uint8Array(count);
    const cap = this.buf.length;
    const start = (this.head + offset) & (cap - 1);
    const first = Math.min(count, cap - start);
    out.set(this.buf.subarray(start, start + first), 0);
    if (first < count) out.set(this.buf.subarray(0, count - first), first);
    return out;
  }

  /** Drops count bytes from the front. */
  discard(count: number): void {
    const n = Math.min(count, this.len);
    this.head = (this.head + n) & (this.buf.length - 1);
    this.len -= n;
    if (this.len === 0) {
      this.head = 0;
      if (this.buf.length > SHRINK_ABOVE) this.buf = new Uint8Array(INITIAL_CAPACITY);
    }
  }

  clear(): void {
    this.discard(this.len);
  }

  private grow(need: number): void {
    let cap = this.buf.length;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.copy(0, this.len), 0);
    this.buf = next;
    this.head = 0;
  }
}
