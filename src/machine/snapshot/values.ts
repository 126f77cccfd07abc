/**
 * A small tagged binary encoding for section contents: the structured-clone-friendly values device states are
 * made of (null, booleans, numbers, strings, byte and int32 arrays, arrays, plain objects). The decoder treats its
 * input as hostile: every length is checked against the bytes left, nesting is bounded, and a failure is one
 * SnapshotError naming the section.
 */
import { SnapshotError } from './errors.js';

const T_NULL = 0;
const T_FALSE = 1;
const T_TRUE = 2;
const T_NUMBER = 3;
const T_STRING = 4;
const T_BYTES = 5;
const T_INT32S = 6;
const T_ARRAY = 7;
const T_OBJECT = 8;
const T_UINT32S = 9;

const MAX_DEPTH = 32;

export type StateValue =
  null | boolean | number | string | Uint8Array | Int32Array | Uint32Array | StateValue[] | { [key: string]: StateValue };

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly text = new TextEncoder();

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = this.text.encode(s);
    this.u32(b.length);
    this.bytes(b);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function encodeInto(w: Writer, v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new Error('state value nests too deeply');
  if (v === null || v === undefined) return w.u8(T_NULL);
  if (v === false) return w.u8(T_FALSE);
  if (v === true) return w.u8(T_TRUE);
  if (typeof v === 'number') {
    w.u8(T_NUMBER);
    return w.f64(v);
  }
  if (typeof v === 'string') {
    w.u8(T_STRING);
    return w.string(v);
  }
  if (v instanceof Uint8Array) {
    w.u8(T_BYTES);
    w.u32(v.length);
    return w.bytes(v);
  }
  if (v instanceof Int32Array || v instanceof Uint32Array) {
    w.u8(v instanceof Int32Array ? T_INT32S : T_UINT32S);
    w.u32(v.length);
    return w.bytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  if (Array.isArray(v)) {
    w.u8(T_ARRAY);
    w.u32(v.length);
    for (const e of v) encodeInto(w, e, depth + 1);
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, e]) => e !== undefined);
    w.u8(T_OBJECT);
    w.u32(entries.length);
    for (const [k, e] of entries) {
      w.string(k);
      encodeInto(w, e, depth + 1);
    }
    return;
  }
  throw new Error(`state value of unsupported type ${Object.prototype.toString.call(v)}`);
}

/** Encodes a state value (undefined object members are left out; undefined elsewhere becomes null). */
export function encodeValue(v: unknown): Uint8Array {
  const w = new Writer();
  encodeInto(w, v, 0);
  return w.result();
}

class Reader {
  pos = 0;
  private readonly view: DataView;
  private readonly text = new TextDecoder('utf-8', { fatal: true });
  constructor(
    private readonly b: Uint8Array,
    private readonly section: string,
  ) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  fail(detail: string): never {
    throw new SnapshotError('BAD_VALUE', this.section, `${detail} at byte ${this.pos}`);
  }
  need(n: number): void {
    if (n > this.b.length - this.pos) this.fail(`length ${n} runs past the end`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  take(n: number): Uint8Array {
    this.need(n);
    const out = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  string(): string {
    const n = this.u32();
    try {
      return this.text.decode(this.take(n));
    } catch {
      return this.fail('a string is not valid UTF-8');
    }
  }
}

function decodeFrom(r: Reader, depth: number): StateValue {
  if (depth > MAX_DEPTH) r.fail('values nest too deeply');
  const tag = r.u8();
  switch (tag) {
    case T_NULL:
      return null;
    case T_FALSE:
      return false;
    case T_TRUE:
      return true;
    case T_NUMBER:
      return r.f64();
    case T_STRING:
      return r.string();
    case T_BYTES:
      return r.take(r.u32());
    case T_INT32S:
    case T_UINT32S: {
      const n = r.u32();
      if (n > 0x1000_0000) r.fail('an integer array is too long');
      const bytes = r.take(n * 4);
      return tag === T_INT32S ? new Int32Array(bytes.buffer, 0, n) : new Uint32Array(bytes.buffer, 0, n);
    }
    case T_ARRAY: {
      const n = r.u32();
      r.need(n); // every element takes at least one byte
      const out: StateValue[] = [];
      for (let i = 0; i < n; i++) out.push(decodeFrom(r, depth + 1));
      return out;
    }
    case T_OBJECT: {
      const n = r.u32();
      r.need(n * 5);
      const out: { [key: string]: StateValue } = Object.create(null) as { [key: string]: StateValue };
      for (let i = 0; i < n; i++) {
        const key = r.string();
        if (key in out) r.fail(`key '${key}' appears twice`);
        out[key] = decodeFrom(r, depth + 1);
      }
      // Plain objects again (no prototype games), now that keys are known to be unique strings.
      return Object.assign({}, out);
    }
    default:
      return r.fail(`unknown value tag ${tag}`);
  }
}

/** Decodes one value that must fill `bytes` exactly. */
export function decodeValue(bytes: Uint8Array, section: string): StateValue {
  const r = new Reader(bytes, section);
  const v = decodeFrom(r, 0);
  if (r.pos !== bytes.length) r.fail(`${bytes.length - r.pos} trailing bytes`);
  return v;
}

/**
 * Checks that a decoded value has the shape of `template` (a state freshly saved by the same device): the same
 * object keys, the same kinds of values, typed arrays of the same type, arrays whose elements look like the
 * template's. The device's own loadState then checks sizes and ranges it cares about.
 */
export function checkShape(template: unknown, value: StateValue, section: string, path = ''): void {
  const fail = (what: string): never => {
    throw new SnapshotError('BAD_VALUE', section, `${path || 'value'}: ${what}`);
  };
  if (template === null || template === undefined) {
    if (value !== null && typeof value === 'object') fail('expected a plain value');
    return;
  }
  if (typeof template === 'number') {
    if (value === null) return;
    if (typeof value !== 'number' || !Number.isFinite(value)) fail('expected a finite number');
    return;
  }
  if (typeof template === 'string') {
    if (value !== null && typeof value !== 'string') fail('expected a string');
    return;
  }
  if (typeof template === 'boolean') {
    if (typeof value !== 'boolean') fail('expected a boolean');
    return;
  }
  if (template instanceof Uint8Array || template instanceof Int32Array || template instanceof Uint32Array) {
    if (Object.getPrototypeOf(value) !== Object.getPrototypeOf(template)) fail(`expected a ${template.constructor.name}`);
    return;
  }
  if (Array.isArray(template)) {
    if (!Array.isArray(value)) fail('expected an array');
    const arr = value as StateValue[];
    arr.forEach((e, i) => {
      if (template.length > 0) checkShape(template[0], e, section, `${path}[${i}]`);
      else if (typeof e !== 'number' || !Number.isFinite(e)) fail(`[${i}]: expected a finite number`);
    });
    return;
  }
  if (typeof template === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value))
      fail('expected an object');
    const obj = value as { [key: string]: StateValue };
    if (Object.keys(template).length === 0) {
      // An empty template object is a dictionary (e.g. balloon stats by name): any keys, plain values.
      for (const [k, e] of Object.entries(obj))
        if (e !== null && typeof e === 'object') fail(`member '${k}': expected a plain value`);
        else if (typeof e === 'number' && !Number.isFinite(e)) fail(`member '${k}': expected a finite number`);
      return;
    }
    const want = Object.keys(template).filter((k) => (template as Record<string, unknown>)[k] !== undefined);
    for (const k of Object.keys(obj)) if (!want.includes(k)) fail(`unexpected member '${k}'`);
    for (const k of want) {
      if (!(k in obj)) fail(`missing member '${k}'`);
      checkShape((template as Record<string, unknown>)[k], obj[k]!, section, path ? `${path}.${k}` : k);
    }
  }
}
