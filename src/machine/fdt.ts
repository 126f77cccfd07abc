/**
 * A flattened device tree (FDT, devicetree specification v0.4 §5) writer: version 17 blobs with a
 * de-duplicated string table, a memory reservation block and phandle allocation.
 * Everything is big-endian, as the format requires.
 */

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 0x1;
const FDT_END_NODE = 0x2;
const FDT_PROP = 0x3;
const FDT_END = 0x9;
const FDT_VERSION = 17;
const FDT_LAST_COMP_VERSION = 16;
const HEADER_SIZE = 40;

export type PropValue = Uint8Array;

/** Property value encoders. */
export const prop = {
  empty(): PropValue {
    return new Uint8Array(0);
  },
  u32(...values: number[]): PropValue {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setUint32(i * 4, v >>> 0));
    return b;
  },
  /** 64-bit cells as two u32 cells each (values up to 2^53). */
  u64(...values: number[]): PropValue {
    const cells: number[] = [];
    for (const v of values) cells.push(Math.floor(v / 0x1_0000_0000), v % 0x1_0000_0000);
    return prop.u32(...cells);
  },
  str(s: string): PropValue {
    return prop.strs(s);
  },
  /** A string list: each NUL-terminated, concatenated. */
  strs(...list: string[]): PropValue {
    const parts = list.map((s) => new TextEncoder().encode(s + '\0'));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  },
  bytes(b: Uint8Array): PropValue {
    return b.slice();
  },
};

export class FdtNode {
  readonly props: [string, PropValue][] = [];
  readonly children: FdtNode[] = [];
  constructor(readonly name: string) {}

  set(name: string, value: PropValue): this {
    const existing = this.props.find((p) => p[0] === name);
    if (existing) existing[1] = value;
    else this.props.push([name, value]);
    return this;
  }
  child(name: string): FdtNode {
    const n = new FdtNode(name);
    this.children.push(n);
    return n;
  }
  find(path: string): FdtNode | undefined {
    const [first, ...rest] = path.split('/').filter(Boolean);
    if (first === undefined) return this;
    return this.children.find((c) => c.name === first)?.find(rest.join('/'));
  }
}

export interface MemoryReservation {
  address: number;
  size: number;
}

/** Holds the tree and hands out phandles. */
export class DeviceTree {
  readonly root = new FdtNode('');
  readonly reservations: MemoryReservation[] = [];
  private nextPhandle = 1;
  bootCpuId = 0;

  /** Gives `node` a fresh phandle and returns it. */
  phandle(node: FdtNode): number {
    const existing = node.props.find((p) => p[0] === 'phandle');
    if (existing) return new DataView(existing[1].buffer).getUint32(0);
    const id = this.nextPhandle++;
    node.set('phandle', prop.u32(id));
    return id;
  }

  /** `padding` bytes of free space after the strings block let firmware (OpenSBI) add nodes in place. */
  toBlob(padding = 0): Uint8Array {
    return serialize(this.root, this.reservations, this.bootCpuId, padding);
  }
}

class ByteWriter {
  private buf = new Uint8Array(4096);
  private dv = new DataView(this.buf.buffer);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.ensure(4);
    this.dv.setUint32(this.length, v >>> 0);
    this.length += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  align4(): void {
    const pad = (4 - (this.length % 4)) % 4;
    this.ensure(pad);
    for (let i = 0; i < pad; i++) this.buf[this.length++] = 0;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function serialize(root: FdtNode, reservations: MemoryReservation[], bootCpuId: number, padding: number): Uint8Array {
  const strings = new ByteWriter();
  const stringOffsets = new Map<string, number>();
  const nameOffset = (name: string): number => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      stringOffsets.set(name, off);
      strings.bytes(new TextEncoder().encode(name + '\0'));
    }
    return off;
  };

  const struct = new ByteWriter();
  const emit = (node: FdtNode): void => {
    struct.u32(FDT_BEGIN_NODE);
    struct.bytes(new TextEncoder().encode(node.name + '\0'));
    struct.align4();
    for (const [name, value] of node.props) {
      struct.u32(FDT_PROP);
      struct.u32(value.length);
      struct.u32(nameOffset(name));
      struct.bytes(value);
      struct.align4();
    }
    for (const c of node.children) emit(c);
    struct.u32(FDT_END_NODE);
  };
  emit(root);
  struct.u32(FDT_END);

  const rsv = new ByteWriter();
  for (const r of reservations) {
    for (const v of [r.address, r.size]) {
      rsv.u32(Math.floor(v / 0x1_0000_0000));
      rsv.u32(v % 0x1_0000_0000);
    }
  }
  for (let i = 0; i < 4; i++) rsv.u32(0);

  const offRsv = HEADER_SIZE; // 8-byte aligned as required
  const offStruct = offRsv + rsv.length;
  const offStrings = offStruct + struct.length;
  const total = offStrings + strings.length;
  const out = new Uint8Array((total + padding + 7) & ~7);
  const dv = new DataView(out.buffer);
  const header = [
    FDT_MAGIC,
    out.length,
    offStruct,
    offStrings,
    offRsv,
    FDT_VERSION,
    FDT_LAST_COMP_VERSION,
    bootCpuId,
    strings.length,
    struct.length,
  ];
  header.forEach((v, i) => dv.setUint32(i * 4, v >>> 0));
  out.set(rsv.result(), offRsv);
  out.set(struct.result(), offStruct);
  out.set(strings.result(), offStrings);
  return out;
}

export class FdtParseError extends Error {
  constructor(message: string) {
    super(`FDT: ${message}`);
    this.name = 'FdtParseError';
  }
}

/** A minimal reader (tests and the boot path use it to check what was written). */
export function parseFdt(blob: Uint8Array): FdtNode {
  if (blob.length < HEADER_SIZE) throw new FdtParseError('blob shorter than the header');
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (dv.getUint32(0) !== FDT_MAGIC) throw new FdtParseError('bad magic');
  const total = dv.getUint32(4);
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  if (total > blob.length || offStruct >= total || offStrings > total) throw new FdtParseError('offsets outside the blob');
  const dec = new TextDecoder();
  const cstr = (at: number, limit: number): [string, number] => {
    let end = at;
    while (end < limit && blob[end] !== 0) end++;
    if (end >= limit) throw new FdtParseError('unterminated string');
    return [dec.decode(blob.subarray(at, end)), end + 1];
  };
  let p = offStruct;
  const stack: FdtNode[] = [];
  let root: FdtNode | undefined;
  for (;;) {
    if (p + 4 > total) throw new FdtParseError('struct block runs past the end');
    const token = dv.getUint32(p);
    p += 4;
    if (token === FDT_BEGIN_NODE) {
      const [name, next] = cstr(p, total);
      p = (next + 3) & ~3;
      const node = new FdtNode(name);
      if (stack.length) stack[stack.length - 1]!.children.push(node);
      else root = node;
      stack.push(node);
    } else if (token === FDT_PROP) {
      const len = dv.getUint32(p);
      const nameOff = dv.getUint32(p + 4);
      p += 8;
      if (p + len > total || !stack.length) throw new FdtParseError('bad property');
      const [name] = cstr(offStrings + nameOff, total);
      stack[stack.length - 1]!.props.push([name, blob.slice(p, p + len)]);
      p = (p + len + 3) & ~3;
    } else if (token === FDT_END_NODE) {
      if (!stack.pop()) throw new FdtParseError('unbalanced END_NODE');
    } else if (token === 4) {
      // FDT_NOP
    } else if (token === FDT_END) {
      if (!root || stack.length) throw new FdtParseError('unbalanced tree');
      return root;
    } else throw new FdtParseError(`unknown token ${token}`);
  }
}
