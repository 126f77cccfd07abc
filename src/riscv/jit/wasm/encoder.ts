/**
 * A small WebAssembly binary emitter: just what the block translator needs (one function per module, imported
 * memory and helper functions, i32/i64/f64 locals and the MVP instruction set), plus the few atomic
 * instructions and mutable globals of the guest atomics module (../../atomics.ts). Every instruction is also
 * recorded as a line of WAT-like text, so tests can pin the generated code and a human can read it.
 *
 * Only numbers go in: opcodes come from the table below, immediates are checked integers.
 */

export const I32 = 0x7f;
export const I64 = 0x7e;
export const F64 = 0x7c;
export type ValType = typeof I32 | typeof I64 | typeof F64;
const VOID = 0x40;
const TYPE_NAME: Record<number, string> = { [I32]: 'i32', [I64]: 'i64', [F64]: 'f64' };

/** Instructions without immediates. */
const PLAIN = {
  unreachable: 0x00,
  return: 0x0f,
  drop: 0x1a,
  select: 0x1b,
  'i32.eqz': 0x45,
  'i32.eq': 0x46,
  'i32.ne': 0x47,
  'i32.lt_u': 0x49,
  'i32.lt_s': 0x48,
  'i32.le_u': 0x4d,
  'i32.ge_u': 0x4f,
  'i64.eqz': 0x50,
  'i64.eq': 0x51,
  'i64.ne': 0x52,
  'i64.lt_s': 0x53,
  'i64.lt_u': 0x54,
  'i64.ge_s': 0x59,
  'i64.ge_u': 0x5a,
  'f64.lt': 0x63,
  'f64.eq': 0x61,
  'f64.ne': 0x62,
  'i32.add': 0x6a,
  'i32.sub': 0x6b,
  'i32.mul': 0x6c,
  'i32.div_s': 0x6d,
  'i32.div_u': 0x6e,
  'i32.rem_s': 0x6f,
  'i32.rem_u': 0x70,
  'i32.and': 0x71,
  'i32.or': 0x72,
  'i32.xor': 0x73,
  'i32.shl': 0x74,
  'i32.shr_s': 0x75,
  'i32.shr_u': 0x76,
  'i64.add': 0x7c,
  'i64.sub': 0x7d,
  'i64.mul': 0x7e,
  'i64.div_s': 0x7f,
  'i64.div_u': 0x80,
  'i64.rem_s': 0x81,
  'i64.rem_u': 0x82,
  'i64.and': 0x83,
  'i64.or': 0x84,
  'i64.xor': 0x85,
  'i64.shl': 0x86,
  'i64.shr_s': 0x87,
  'i64.shr_u': 0x88,
  'f64.floor': 0x9c,
  'f64.sqrt': 0x9f,
  'f64.add': 0xa0,
  'f64.sub': 0xa1,
  'f64.mul': 0xa2,
  'f64.div': 0xa3,
  'i32.wrap_i64': 0xa7,
  'i64.extend_i32_s': 0xac,
  'i64.extend_i32_u': 0xad,
  'i64.trunc_f64_s': 0xb0,
  'f64.convert_i32_s': 0xb7,
  'f64.convert_i32_u': 0xb8,
  'f64.convert_i64_s': 0xb9,
  'f64.reinterpret_i64': 0xbf,
  'f32.demote_f64': 0xb6,
  'f64.promote_f32': 0xbb,
  'i32.reinterpret_f32': 0xbc,
  'f32.reinterpret_i32': 0xbe,
  'i64.reinterpret_f64': 0xbd,
} as const;
export type PlainOp = keyof typeof PLAIN;

/** Memory instructions: opcode and natural alignment (log2). */
const MEM = {
  'i32.load': [0x28, 2],
  'i64.load': [0x29, 3],
  'f64.load': [0x2b, 3],
  'i64.load8_s': [0x30, 0],
  'i64.load8_u': [0x31, 0],
  'i64.load16_s': [0x32, 1],
  'i64.load16_u': [0x33, 1],
  'i64.load32_s': [0x34, 2],
  'i64.load32_u': [0x35, 2],
  'i64.store': [0x37, 3],
  'f64.store': [0x39, 3],
  'i64.store8': [0x3c, 0],
  'i64.store16': [0x3d, 1],
  'i64.store32': [0x3e, 2],
  'i32.store': [0x36, 2],
} as const;
export type MemOp = keyof typeof MEM;

/**
 * Atomic memory instructions (threads proposal, prefix 0xFE): sub-opcode and natural alignment (log2), which an
 * atomic instruction must state exactly. They trap on a misaligned address.
 */
const ATOMIC = {
  'i32.atomic.load': [0x10, 2],
  'i64.atomic.load': [0x11, 3],
  'i64.atomic.store': [0x18, 3],
  'i32.atomic.rmw.add': [0x1e, 2],
  'i64.atomic.rmw.add': [0x1f, 3],
  'i32.atomic.rmw.and': [0x2c, 2],
  'i64.atomic.rmw.and': [0x2d, 3],
  'i32.atomic.rmw.or': [0x33, 2],
  'i64.atomic.rmw.or': [0x34, 3],
  'i32.atomic.rmw.xor': [0x3a, 2],
  'i64.atomic.rmw.xor': [0x3b, 3],
  'i32.atomic.rmw.xchg': [0x41, 2],
  'i64.atomic.rmw.xchg': [0x42, 3],
  'i32.atomic.rmw.cmpxchg': [0x48, 2],
  'i64.atomic.rmw.cmpxchg': [0x49, 3],
} as const;
export type AtomicOp = keyof typeof ATOMIC;

function checkInt(v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`wasm encoder: immediate ${v} out of range`);
}

/**
 * A growable byte buffer, the encoder's output. Numbers in a plain array cost 8 bytes each and a copy per growth
 * step: a hart thread translating a guest's new code allocated ~50 MB/s that way, and with its small young
 * generation spent a sixth of a core in garbage collection (docs/performance.md).
 */
export class ByteSink {
  private buf: Uint8Array;
  length = 0;
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
  }
  push(b: number): void {
    if (this.length === this.buf.length) this.reserve(1);
    this.buf[this.length++] = b;
  }
  pushBytes(bytes: Uint8Array): void {
    if (this.length + bytes.length > this.buf.length) this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  /** The bytes written so far (a view: valid until the next write). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
  private reserve(more: number): void {
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + more));
    next.set(this.bytes());
    this.buf = next;
  }
}

/** Where LEB128 bytes go: a ByteSink, or a plain array (tests). */
interface ByteOut {
  push(b: number): unknown;
}

export function uleb(out: ByteOut, v: number): void {
  checkInt(v, 0, 0xffffffff);
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
}

/** Signed LEB128 of any integer in [-2^63, 2^63) that a double holds exactly. */
export function sleb(out: ByteOut, v: number): void {
  checkInt(v, -(2 ** 63), 2 ** 63 - 1);
  for (;;) {
    const b = v - Math.floor(v / 128) * 128;
    v = Math.floor(v / 128);
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

const F64_BYTES = new DataView(new ArrayBuffer(8));

/** One function body: its locals, code bytes and the WAT-like text of the same code. */
export class FnBody {
  readonly code = new ByteSink();
  /** WAT-like lines, when asked for (tests, debugging): building them costs as much as the code. */
  readonly text: string[] | null;
  private readonly localTypes: ValType[] = [];
  private depth = 1;
  private encoded: Uint8Array | null = null;
  constructor(
    private readonly paramCount: number,
    withText = false,
  ) {
    this.text = withText ? [] : null;
  }

  /** Adds a local; returns its index. */
  local(type: ValType): number {
    this.localTypes.push(type);
    return this.paramCount + this.localTypes.length - 1;
  }

  private line(s: string): void {
    this.text!.push('  '.repeat(this.depth) + s);
  }
  op(name: PlainOp): this {
    this.code.push(PLAIN[name]);
    if (this.text) this.line(name);
    return this;
  }
  i32(v: number): this {
    this.code.push(0x41);
    sleb(this.code, v | 0);
    if (this.text) this.line(`i32.const ${v | 0}`);
    return this;
  }
  i64(v: number): this {
    this.code.push(0x42);
    sleb(this.code, v);
    if (this.text) this.line(`i64.const ${v}`);
    return this;
  }
  f64(v: number): this {
    this.code.push(0x44);
    F64_BYTES.setFloat64(0, v, true);
    for (let i = 0; i < 8; i++) this.code.push(F64_BYTES.getUint8(i));
    if (this.text) this.line(`f64.const ${v}`);
    return this;
  }
  get(i: number): this {
    return this.indexed(0x20, 'local.get', i);
  }
  set(i: number): this {
    return this.indexed(0x21, 'local.set', i);
  }
  tee(i: number): this {
    return this.indexed(0x22, 'local.tee', i);
  }
  mem(name: MemOp, offset: number): this {
    const [opcode, align] = MEM[name];
    this.code.push(opcode);
    uleb(this.code, align);
    uleb(this.code, offset);
    if (this.text) this.line(`${name} offset=${offset}`);
    return this;
  }
  atomic(name: AtomicOp, offset: number): this {
    const [opcode, align] = ATOMIC[name];
    this.code.push(0xfe);
    uleb(this.code, opcode);
    uleb(this.code, align);
    uleb(this.code, offset);
    if (this.text) this.line(`${name} offset=${offset}`);
    return this;
  }
  globalGet(i: number): this {
    return this.indexed(0x23, 'global.get', i);
  }
  globalSet(i: number): this {
    return this.indexed(0x24, 'global.set', i);
  }
  call(fn: number, label: string): this {
    this.code.push(0x10);
    uleb(this.code, fn);
    if (this.text) this.line(`call ${fn} ;; ${label}`);
    return this;
  }
  /** call_indirect through table 0 with function type `type` (the index is on top of the stack). */
  callIndirect(type: number): this {
    this.code.push(0x11);
    uleb(this.code, type);
    this.code.push(0x00);
    if (this.text) this.line(`call_indirect (type ${type})`);
    return this;
  }
  /** Opens a block, loop or if (with an optional result type). */
  open(kind: 'block' | 'loop' | 'if', result?: ValType): this {
    this.code.push(kind === 'block' ? 0x02 : kind === 'loop' ? 0x03 : 0x04);
    this.code.push(result ?? VOID);
    if (this.text) this.line(result === undefined ? kind : `${kind} (result ${TYPE_NAME[result]})`);
    this.depth++;
    return this;
  }
  else(): this {
    this.code.push(0x05);
    this.depth--;
    if (this.text) this.line('else');
    this.depth++;
    return this;
  }
  end(): this {
    this.code.push(0x0b);
    this.depth--;
    if (this.text) this.line('end');
    return this;
  }
  brIf(labelDepth: number): this {
    return this.indexed(0x0d, 'br_if', labelDepth);
  }
  br(labelDepth: number): this {
    return this.indexed(0x0c, 'br', labelDepth);
  }
  /** br_table: branches to `depths[i]` for i on top of the stack, or to `otherwise` when i is out of range. */
  brTable(depths: readonly number[], otherwise: number): this {
    this.code.push(0x0e);
    uleb(this.code, depths.length);
    for (const d of depths) uleb(this.code, d);
    uleb(this.code, otherwise);
    if (this.text) this.line(`br_table ${depths.join(' ')} ${otherwise}`);
    return this;
  }
  /** An instruction whose one immediate is an index (a local, a label depth). */
  private indexed(opcode: number, mnemonic: string, index: number): this {
    this.code.push(opcode);
    uleb(this.code, index);
    if (this.text) this.line(`${mnemonic} ${index}`);
    return this;
  }
  comment(s: string): this {
    if (this.text) this.line(`;; ${s}`);
    return this;
  }

  /** The body as the code section wants it: local declarations, code, end (computed once). */
  encode(): Uint8Array {
    if (this.encoded) return this.encoded;
    const out = new ByteSink(this.code.length + 16);
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    uleb(out, groups.length);
    for (const [count, t] of groups) {
      uleb(out, count);
      out.push(t);
    }
    out.pushBytes(this.code.bytes());
    out.push(0x0b);
    this.encoded = out.bytes();
    return this.encoded;
  }

  /** Local declarations as text, for the dump. */
  localsText(): string {
    return this.localTypes.map((t, i) => `(local ${this.paramCount + i} ${TYPE_NAME[t]})`).join(' ');
  }
}

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

/** The most 64 KiB pages a 32-bit memory can have. */
const MAX_MEMORY_PAGES = 65536;

export interface ModuleSpec {
  types: FuncType[];
  /** Imported functions (module "env"), by type index. */
  imports: { name: string; type: number }[];
  /** Imports the memory as env.mem (minimum `memoryPages`). */
  memoryPages: number;
  /**
   * The memory is a shared one (guest RAM is, src/vm/linear-ram.ts): the import must say so, with a maximum, or
   * instantiation fails. Declared with the largest maximum a memory can have.
   */
  sharedMemory?: boolean;
  /** Imports a funcref table as env.tbl (minimum this many entries), when set. */
  tableMin?: number;
  /** Defined functions: type index, body; the ones with an export name are exported. */
  funcs: { type: number; body: FnBody; export?: string }[];
  /** Defined mutable i32 globals, initially 0 (per instance, so per thread); the ones with an export name are exported. */
  globals?: { export?: string }[];
}

function name(out: ByteSink, s: string): void {
  uleb(out, s.length);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0x7f);
}

function section(out: ByteSink, id: number, content: ByteSink): void {
  out.push(id);
  uleb(out, content.length);
  out.pushBytes(content.bytes());
}

function pushAll(out: ByteSink, bytes: readonly number[]): void {
  for (const b of bytes) out.push(b);
}

export function encodeModule(spec: ModuleSpec): Uint8Array {
  const out = new ByteSink(4096);
  pushAll(out, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const types = new ByteSink();
  uleb(types, spec.types.length);
  for (const t of spec.types) {
    types.push(0x60);
    uleb(types, t.params.length);
    pushAll(types, t.params);
    uleb(types, t.results.length);
    pushAll(types, t.results);
  }
  section(out, 1, types);
  const imports = new ByteSink();
  uleb(imports, spec.imports.length + 1 + (spec.tableMin === undefined ? 0 : 1));
  name(imports, 'env');
  name(imports, 'mem');
  if (spec.sharedMemory) {
    pushAll(imports, [0x02, 0x03]);
    uleb(imports, spec.memoryPages);
    uleb(imports, MAX_MEMORY_PAGES);
  } else {
    pushAll(imports, [0x02, 0x00]);
    uleb(imports, spec.memoryPages);
  }
  if (spec.tableMin !== undefined) {
    name(imports, 'env');
    name(imports, 'tbl');
    pushAll(imports, [0x01, 0x70, 0x00]);
    uleb(imports, spec.tableMin);
  }
  for (const imp of spec.imports) {
    name(imports, 'env');
    name(imports, imp.name);
    imports.push(0x00);
    uleb(imports, imp.type);
  }
  section(out, 2, imports);
  const funcs = new ByteSink();
  uleb(funcs, spec.funcs.length);
  for (const f of spec.funcs) uleb(funcs, f.type);
  section(out, 3, funcs);
  const globals = spec.globals ?? [];
  if (globals.length > 0) {
    const content = new ByteSink();
    uleb(content, globals.length);
    // Each: i32, mutable, initialised by `i32.const 0; end`.
    for (let i = 0; i < globals.length; i++) pushAll(content, [I32, 0x01, 0x41, 0x00, 0x0b]);
    section(out, 6, content);
  }
  const exports = new ByteSink();
  const exported = spec.funcs.map((f, i) => [f, i] as const).filter(([f]) => f.export !== undefined);
  const exportedGlobals = globals.map((g, i) => [g, i] as const).filter(([g]) => g.export !== undefined);
  uleb(exports, exported.length + exportedGlobals.length);
  for (const [f, i] of exported) {
    name(exports, f.export!);
    exports.push(0x00);
    uleb(exports, spec.imports.length + i);
  }
  for (const [g, i] of exportedGlobals) {
    name(exports, g.export!);
    exports.push(0x03);
    uleb(exports, i);
  }
  section(out, 7, exports);
  const code = new ByteSink(spec.funcs.reduce((n, f) => n + f.body.code.length + 32, 16));
  uleb(code, spec.funcs.length);
  for (const f of spec.funcs) {
    const body = f.body.encode();
    uleb(code, body.length);
    code.pushBytes(body);
  }
  section(out, 10, code);
  return out.bytes();
}
