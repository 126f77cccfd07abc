/**
 * Out-of-order segments held until the gap before them fills. Pieces never overlap (a new segment keeps only the
 * bytes no held piece covers), so the bytes held never exceed the receive window the caller trims to, and the number
 * of pieces is capped: a segment that would need more pieces than that is dropped (the sender retransmits it).
 */
import { seqAdd, seqDiff } from './seq.js';

interface Piece {
  seq: number;
  data: Uint8Array;
}

export class Reassembly {
  private pieces: Piece[] = [];
  private held = 0;

  constructor(private readonly maxPieces: number) {}

  /** Bytes currently held. */
  get bytes(): number {
    return this.held;
  }

  get count(): number {
    return this.pieces.length;
  }

  /**
   * Holds a copy of the parts of data (starting at seq, which lies after base = RCV.NXT) that no held piece covers.
   * Returns false when it had to drop them for want of piece slots.
   */
  insert(seq: number, data: Uint8Array, base: number): boolean {
    const start = seqDiff(seq, base);
    const end = start + data.length;
    if (data.length === 0 || start <= 0) return true;
    const gaps: Array<[number, number]> = [];
    let cursor = start;
    for (const p of this.pieces) {
      const ps = seqDiff(p.seq, base);
      const pe = ps + p.data.length;
      if (pe <= cursor) continue;
      if (ps >= end) break;
      if (ps > cursor) gaps.push([cursor, ps]);
      cursor = pe;
      if (cursor >= end) break;
    }
    if (cursor < end) gaps.push([cursor, end]);
    if (gaps.length === 0) return true;
    if (this.pieces.length + gaps.length > this.maxPieces) return false;
    for (const [from, to] of gaps) {
      this.pieces.push({ seq: seqAdd(base, from), data: data.slice(from - start, to - start) });
      this.held += to - from;
    }
    this.pieces.sort((a, b) => seqDiff(a.seq, base) - seqDiff(b.seq, base));
    return true;
  }

  /** The next bytes that start at or before base (trimmed to start at base), or undefined if a gap remains. */
  takeNext(base: number): Uint8Array | undefined {
    while (this.pieces.length > 0) {
      const p = this.pieces[0]!;
      const ps = seqDiff(p.seq, base);
      if (ps > 0) return undefined;
      this.pieces.shift();
      this.held -= p.data.length;
      if (ps + p.data.length > 0) return p.data.subarray(-ps);
    }
    return undefined;
  }

  clear(): void {
    this.pieces = [];
    this.held = 0;
  }
}
