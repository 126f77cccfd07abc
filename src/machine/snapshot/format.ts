/**
 * The machine state container (format version 1): pure bytes, no Node built-ins.
 *
 *   preamble  "TVMSTATE" | u32 format version | u32 flags (0) | u64 file length
 *   section*  "SECT" | u32 kind | u32 name length | u64 payload length | u32 payload CRC-32C | u32 header CRC-32C
 *             | name (UTF-8) | pad to 8 | payload | pad to 8
 *   trailer   "TEND" | u32 section count | u64 0
 *
 * All integers little-endian. The header CRC covers the section header's first 24 bytes and its name. A `value`
 * section's payload is one encoded StateValue (values.ts) and its CRC covers all of it. A `chunks` section (RAM)
 * is a table followed by page-aligned chunk data; its CRC covers the table, and every chunk carries its own CRC,
 * so chunks can be read (and checked) one at a time, on first touch, long after the file was opened.
 */
import { crc32c } from './crc32c.js';
import { SnapshotError } from './errors.js';
import { decodeValue, encodeValue, type StateValue } from './values.js';

export const STATE_MAGIC = 'TVMSTATE';
export const STATE_FORMAT_VERSION = 1;
const SECTION_MAGIC = 0x54434553; // "SECT"
const TRAILER_MAGIC = 0x444e4554; // "TEND"
const PREAMBLE = 24;
const SECTION_FIXED = 28;
const TRAILER = 16;
const MAX_NAME = 64;
const CHUNK_ALIGN = 4096;
const CHUNK_TABLE_HEAD = 16;
const CHUNK_ENTRY = 24;
const CHUNK_ZERO = 1;

export const KIND_VALUE = 1;
export const KIND_CHUNKS = 2;

/** Random access to the bytes of a state file (an in-memory buffer, or a file read with pread). */
export interface ByteSource {
  readonly size: number;
  /** `length` bytes at `offset` (fewer at the end), read into `into` (and returned) when given. */
  read(offset: number, length: number, into?: Uint8Array): Uint8Array;
}

export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (offset, length, into) => {
      const part = bytes.subarray(offset, offset + length);
      if (!into) return part;
      into.set(part);
      return into.subarray(0, part.length);
    },
  };
}

/** One chunk of RAM to store: its index and bytes (null: all zero, stored as a flag). */
export interface ChunkInput {
  index: number;
  bytes: Uint8Array | null;
}

export type SectionInput =
  | { kind: 'value'; name: string; value: unknown }
  | { kind: 'chunks'; name: string; chunkSize: number; chunkCount: number; chunks: ChunkInput[] };

const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/**
 * Lays out a state file as a list of byte parts (chunk data is referenced, not copied) and its total length, so
 * the caller can write it with one vectored write.
 */
export function encodeStateFile(sections: SectionInput[]): { parts: Uint8Array[]; length: number } {
  const parts: Uint8Array[] = [];
  let length = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    length += b.length;
  };
  const pad = (n: number): void => {
    if (n > 0) push(new Uint8Array(n));
  };
  const preamble = new Uint8Array(PREAMBLE);
  push(preamble);
  const names = new Set<string>();
  for (const s of sections) {
    if (names.has(s.name)) throw new Error(`duplicate section ${s.name}`);
    names.add(s.name);
    const name = new TextEncoder().encode(s.name);
    if (name.length === 0 || name.length > MAX_NAME) throw new Error(`bad section name ${s.name}`);
    const headerLen = SECTION_FIXED + name.length;
    const payloadStart = length + headerLen + pad8(headerLen);
    let payload: Uint8Array[];
    let payloadLen: number;
    let payloadCrc: number;
    if (s.kind === 'value') {
      const bytes = encodeValue(s.value);
      payload = [bytes];
      payloadLen = bytes.length;
      payloadCrc = crc32c(bytes);
    } else {
      const tableLen = CHUNK_TABLE_HEAD + CHUNK_ENTRY * s.chunks.length;
      const table = new Uint8Array(tableLen);
      const tv = new DataView(table.buffer);
      tv.setUint32(0, s.chunkSize, true);
      tv.setUint32(4, s.chunkCount, true);
      tv.setUint32(8, s.chunks.length, true);
      payload = [table];
      let at = payloadStart + tableLen;
      s.chunks.forEach((c, i) => {
        const e = CHUNK_TABLE_HEAD + i * CHUNK_ENTRY;
        tv.setUint32(e, c.index, true);
        if (!c.bytes) {
          tv.setUint32(e + 4, CHUNK_ZERO, true);
          return;
        }
        const gap = (CHUNK_ALIGN - (at % CHUNK_ALIGN)) % CHUNK_ALIGN;
        if (gap) payload.push(new Uint8Array(gap));
        at += gap;
        tv.setUint32(e + 8, c.bytes.length, true);
        tv.setUint32(e + 12, crc32c(c.bytes), true);
        setU64(tv, e + 16, at);
        payload.push(c.bytes);
        at += c.bytes.length;
      });
      payloadLen = at - payloadStart;
      payloadCrc = crc32c(table);
    }
    const header = new Uint8Array(headerLen);
    const hv = new DataView(header.buffer);
    hv.setUint32(0, SECTION_MAGIC, true);
    hv.setUint32(4, s.kind === 'value' ? KIND_VALUE : KIND_CHUNKS, true);
    hv.setUint32(8, name.length, true);
    setU64(hv, 12, payloadLen);
    hv.setUint32(20, payloadCrc, true);
    header.set(name, SECTION_FIXED);
    hv.setUint32(24, crc32c(name, crc32c(header.subarray(0, 24))), true);
    push(header);
    pad(pad8(headerLen));
    for (const p of payload) push(p);
    pad(pad8(payloadLen));
  }
  const trailer = new Uint8Array(TRAILER);
  const trv = new DataView(trailer.buffer);
  trv.setUint32(0, TRAILER_MAGIC, true);
  trv.setUint32(4, sections.length, true);
  push(trailer);
  const pv = new DataView(preamble.buffer);
  preamble.set(new TextEncoder().encode(STATE_MAGIC), 0);
  pv.setUint32(8, STATE_FORMAT_VERSION, true);
  setU64(pv, 16, length);
  return { parts, length };
}

/** Concatenates encodeStateFile's parts (tests, small machines). */
export function encodeStateBytes(sections: SectionInput[]): Uint8Array {
  const { parts, length } = encodeStateFile(sections);
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface SectionRef {
  name: string;
  kind: number;
  offset: number;
  length: number;
  crc: number;
}

/** Where one stored RAM chunk lives in the file. */
export interface ChunkRef {
  index: number;
  zero: boolean;
  offset: number;
  length: number;
  crc: number;
}

export interface ChunkTable {
  chunkSize: number;
  chunkCount: number;
  chunks: ChunkRef[];
}

/**
 * A parsed state file: the preamble, every section header and the trailer are checked when it is opened; section
 * payloads are read and checked when asked for.
 */
export class StateFile {
  private readonly sections = new Map<string, SectionRef>();

  constructor(private readonly src: ByteSource) {
    if (src.size < PREAMBLE) throw new SnapshotError('TRUNCATED', 'file', `only ${src.size} bytes`);
    const pre = src.read(0, PREAMBLE);
    if (new TextDecoder().decode(pre.subarray(0, 8)) !== STATE_MAGIC)
      throw new SnapshotError('BAD_MAGIC', 'file', 'not a typevisor machine state file');
    const pv = view(pre);
    const version = pv.getUint32(8, true);
    if (version !== STATE_FORMAT_VERSION)
      throw new SnapshotError(
        'UNSUPPORTED_VERSION',
        'file',
        `format version ${version}, this build reads ${STATE_FORMAT_VERSION}`,
      );
    const declared = getU64(pv, 16);
    if (declared !== src.size)
      throw new SnapshotError(
        declared > src.size ? 'TRUNCATED' : 'BAD_SECTION_HEADER',
        'file',
        `the file is ${src.size} bytes, its preamble says ${declared}`,
      );
    let pos = PREAMBLE;
    let last = 'preamble';
    for (;;) {
      if (pos + 4 > src.size) throw new SnapshotError('TRUNCATED', 'file', `no trailer after section '${last}'`);
      const magic = view(src.read(pos, 4)).getUint32(0, true);
      if (magic === TRAILER_MAGIC) {
        if (pos + TRAILER !== src.size) throw new SnapshotError('BAD_SECTION_HEADER', 'file', 'bytes after the trailer');
        const count = view(src.read(pos, TRAILER)).getUint32(4, true);
        if (count !== this.sections.size)
          throw new SnapshotError('BAD_SECTION_HEADER', 'file', `trailer counts ${count} sections, found ${this.sections.size}`);
        break;
      }
      if (magic !== SECTION_MAGIC)
        throw new SnapshotError('BAD_SECTION_HEADER', `after ${last}`, `no section header at byte ${pos}`);
      if (pos + SECTION_FIXED > src.size) throw new SnapshotError('TRUNCATED', `after ${last}`, 'section header cut short');
      const fixed = src.read(pos, SECTION_FIXED).slice();
      const fv = view(fixed);
      const nameLen = fv.getUint32(8, true);
      if (nameLen === 0 || nameLen > MAX_NAME)
        throw new SnapshotError('BAD_SECTION_HEADER', `after ${last}`, `section name length ${nameLen}`);
      if (pos + SECTION_FIXED + nameLen > src.size)
        throw new SnapshotError('TRUNCATED', `after ${last}`, 'section name cut short');
      const nameBytes = src.read(pos + SECTION_FIXED, nameLen);
      if (crc32c(nameBytes, crc32c(fixed.subarray(0, 24))) !== fv.getUint32(24, true))
        throw new SnapshotError('CHECKSUM_MISMATCH', `after ${last}`, `the section header at byte ${pos} is corrupt`);
      const name = new TextDecoder().decode(nameBytes);
      const kind = fv.getUint32(4, true);
      if (kind !== KIND_VALUE && kind !== KIND_CHUNKS)
        throw new SnapshotError('BAD_SECTION_HEADER', name, `unknown kind ${kind}`);
      if (this.sections.has(name)) throw new SnapshotError('BAD_SECTION_HEADER', name, 'appears twice');
      const headerLen = SECTION_FIXED + nameLen;
      const offset = pos + headerLen + pad8(headerLen);
      const length = getU64(fv, 12);
      if (offset + length > src.size) throw new SnapshotError('TRUNCATED', name, `payload of ${length} bytes cut short`);
      this.sections.set(name, { name, kind, offset, length, crc: fv.getUint32(20, true) });
      pos = offset + length + pad8(length);
      last = name;
    }
  }

  names(): string[] {
    return [...this.sections.keys()];
  }
  has(name: string): boolean {
    return this.sections.has(name);
  }

  /** The decoded value of a `value` section, after checking its CRC. */
  value(name: string): StateValue {
    const s = this.section(name, KIND_VALUE);
    const bytes = this.src.read(s.offset, s.length);
    if (crc32c(bytes) !== s.crc) throw new SnapshotError('CHECKSUM_MISMATCH', name, 'contents are corrupt');
    return decodeValue(bytes, name);
  }

  /** The chunk table of a `chunks` section, checked (CRC, bounds, order); chunk data is not read. */
  chunkTable(name: string): ChunkTable {
    const s = this.section(name, KIND_CHUNKS);
    if (s.length < CHUNK_TABLE_HEAD) throw new SnapshotError('BAD_VALUE', name, 'chunk table cut short');
    const head = view(this.src.read(s.offset, CHUNK_TABLE_HEAD).slice());
    const stored = head.getUint32(8, true);
    const tableLen = CHUNK_TABLE_HEAD + stored * CHUNK_ENTRY;
    if (tableLen > s.length) throw new SnapshotError('BAD_VALUE', name, `table of ${stored} chunks is longer than the section`);
    const table = this.src.read(s.offset, tableLen).slice();
    if (crc32c(table) !== s.crc) throw new SnapshotError('CHECKSUM_MISMATCH', name, 'chunk table is corrupt');
    const tv = view(table);
    const chunkSize = tv.getUint32(0, true);
    const chunkCount = tv.getUint32(4, true);
    const chunks: ChunkRef[] = [];
    const end = s.offset + s.length;
    let prev = -1;
    for (let i = 0; i < stored; i++) {
      const e = CHUNK_TABLE_HEAD + i * CHUNK_ENTRY;
      const ref: ChunkRef = {
        index: tv.getUint32(e, true),
        zero: (tv.getUint32(e + 4, true) & CHUNK_ZERO) !== 0,
        length: tv.getUint32(e + 8, true),
        crc: tv.getUint32(e + 12, true),
        offset: getU64(tv, e + 16),
      };
      if (ref.index <= prev || ref.index >= chunkCount)
        throw new SnapshotError('BAD_VALUE', name, `chunk ${ref.index} is out of order or beyond ${chunkCount} chunks`);
      if (
        !ref.zero &&
        (ref.length === 0 || ref.length > chunkSize || ref.offset < s.offset + tableLen || ref.offset + ref.length > end)
      )
        throw new SnapshotError('BAD_VALUE', name, `chunk ${ref.index} lies outside its section`);
      prev = ref.index;
      chunks.push(ref);
    }
    return { chunkSize, chunkCount, chunks };
  }

  /** Reads one chunk's bytes and checks its CRC. */
  readChunk(section: string, ref: ChunkRef, into?: Uint8Array): Uint8Array {
    const bytes = this.readChunkUnchecked(section, ref, into);
    checkChunk(section, ref, bytes);
    return bytes;
  }

  /** Reads one chunk's bytes without checking them: the caller checks them (checkChunk) before trusting them. */
  readChunkUnchecked(section: string, ref: ChunkRef, into?: Uint8Array): Uint8Array {
    const bytes = this.src.read(ref.offset, ref.length, into);
    if (bytes.length !== ref.length) throw new SnapshotError('TRUNCATED', section, `chunk ${ref.index} cut short`);
    return bytes;
  }

  private section(name: string, kind: number): SectionRef {
    const s = this.sections.get(name);
    if (!s) throw new SnapshotError('MISSING_SECTION', name, 'not in the file');
    if (s.kind !== kind) throw new SnapshotError('BAD_SECTION_HEADER', name, `kind ${s.kind}, expected ${kind}`);
    return s;
  }
}

/** Checks a chunk's bytes (as read from the file) against its CRC. */
export function checkChunk(section: string, ref: ChunkRef, bytes: Uint8Array): void {
  if (crc32c(bytes) !== ref.crc) throw new SnapshotError('CHECKSUM_MISMATCH', section, `RAM chunk ${ref.index} is corrupt`);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(n / 0x1_0000_0000), true);
}
function getU64(v: DataView, at: number): number {
  return v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
}
