/**
 * Guest atomics that are atomic across threads: RISC-V AMOs and the compare-and-swap behind SC, as native
 * WebAssembly atomic instructions over guest RAM's shared WebAssembly.Memory.
 *
 * Why not a lock, nor JS's Atomics: when harts run on several threads, an AMO must be atomic against every
 * other hart's accesses, plain stores included (Linux's qspinlock mixes plain stores and AMOs on one word), so
 * only a hardware read-modify-write will do; and JS's 64-bit Atomics work on BigInt, which costs an allocation
 * per operation. A tiny module with `i32/i64.atomic.rmw.*` takes and returns int32 halves instead.
 *
 * amomin/amomax/amominu/amomaxu have no WebAssembly instruction: they are a compare-and-swap loop inside the
 * module. SC is a compare-and-swap against the value LR read (as QEMU's TCG does): it succeeds when memory
 * still holds that value, which admits an ABA the architecture would fail, and which no correct use of LR/SC
 * can tell apart.
 *
 * Offsets are byte offsets into the memory (RAM offset r is byte r, see Bus.atomics); every access must be
 * naturally aligned (the hart raises the misaligned exception before it gets here).
 */
import { Amo } from './hart.js';
import { encodeModule, FnBody, I32, I64, type AtomicOp, type ModuleSpec } from './jit/wasm/encoder.js';

const AMO_KINDS = 9;

export interface GuestAtomics {
  /**
   * The AMO `kind` (an Amo) of `size` bytes at byte offset `off` with operand (lo, hi) (hi is ignored for size 4).
   * Returns the old value's low 32 bits; its high half is then in `oldHi` (for size 4, the sign extension).
   */
  amo(kind: number, size: 4 | 8, off: number, lo: number, hi: number): number;
  /** Atomic load (LR): the low 32 bits, the high half in `oldHi` (for size 4, the sign extension). */
  load(size: 4 | 8, off: number): number;
  /** Compare-and-swap (SC): true when memory held (expectLo, expectHi) and now holds (newLo, newHi). */
  cas(size: 4 | 8, off: number, expectLo: number, expectHi: number, newLo: number, newHi: number): boolean;
  /**
   * An 8-byte aligned store of (lo, hi) in one access. RVWMO makes aligned loads and stores single-copy atomic;
   * two 4-byte halves would let another hart read half an old value (a PTE, a 64-bit counter). Loads use load(8).
   */
  store64(off: number, lo: number, hi: number): void;
  /** The high half of the value the last amo or load returned. */
  readonly oldHi: number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

type AmoFn = (off: number, lo: number, hi: number) => number;
type LoadFn = (off: number) => number;
type CasFn = (off: number, expectLo: number, expectHi: number, newLo: number, newHi: number) => number;
type StoreFn = (off: number, lo: number, hi: number) => void;

// Function types of the module.
const T_AMO = 0;
const T_LOAD = 1;
const T_CAS = 2;
const T_HI = 3;
const T_STORE = 4;
/** Global 0: the high half of the last old value. */
const G_HI = 0;

const RMW: Partial<Record<Amo, [AtomicOp, AtomicOp]>> = {
  [Amo.SWAP]: ['i32.atomic.rmw.xchg', 'i64.atomic.rmw.xchg'],
  [Amo.ADD]: ['i32.atomic.rmw.add', 'i64.atomic.rmw.add'],
  [Amo.XOR]: ['i32.atomic.rmw.xor', 'i64.atomic.rmw.xor'],
  [Amo.AND]: ['i32.atomic.rmw.and', 'i64.atomic.rmw.and'],
  [Amo.OR]: ['i32.atomic.rmw.or', 'i64.atomic.rmw.or'],
};

/** Pushes the i64 made of the i32 locals `lo` and `hi`. */
function pair(f: FnBody, lo: number, hi: number): void {
  f.get(lo).op('i64.extend_i32_u').get(hi).op('i64.extend_i32_u').i64(32).op('i64.shl').op('i64.or');
}

/** Returns the low half of the value on the stack (held in i64 local `tmp`), its high half going to G_HI. */
function returnSplit64(f: FnBody, tmp: number): void {
  f.tee(tmp).i64(32).op('i64.shr_u').op('i32.wrap_i64').globalSet(G_HI);
  f.get(tmp).op('i32.wrap_i64');
}

/** Returns the i32 on the stack (held in i32 local `tmp`), its sign extension going to G_HI. */
function returnSplit32(f: FnBody, tmp: number): void {
  f.tee(tmp).i32(31).op('i32.shr_s').globalSet(G_HI);
  f.get(tmp);
}

/** `(off, lo, hi) -> old lo` for one AMO kind and size. */
function amoBody(kind: Amo, wide: boolean): FnBody {
  const f = new FnBody(3);
  const [OFF, LO, HI] = [0, 1, 2];
  const t = wide ? I64 : I32;
  const b = f.local(t);
  const old = f.local(t);
  const next = f.local(t);
  const seen = f.local(t);
  if (wide) pair(f, LO, HI);
  else f.get(LO);
  f.set(b);
  const rmw = RMW[kind];
  if (rmw) {
    f.get(OFF)
      .get(b)
      .atomic(rmw[wide ? 1 : 0], 0);
  } else {
    // min/max: compare-and-swap until no other hart wrote in between.
    const signed = kind === Amo.MIN || kind === Amo.MAX;
    const wantMin = kind === Amo.MIN || kind === Amo.MINU;
    const less = wide ? (signed ? 'i64.lt_s' : 'i64.lt_u') : signed ? 'i32.lt_s' : 'i32.lt_u';
    f.get(OFF)
      .atomic(wide ? 'i64.atomic.load' : 'i32.atomic.load', 0)
      .set(old);
    f.open('loop');
    f.get(old).get(b);
    // select keeps `old` when it already is the min (max).
    if (wantMin) f.get(old).get(b);
    else f.get(b).get(old);
    f.op(less).op('select');
    f.set(next);
    f.get(OFF)
      .get(old)
      .get(next)
      .atomic(wide ? 'i64.atomic.rmw.cmpxchg' : 'i32.atomic.rmw.cmpxchg', 0);
    // seen := what memory held; retry when that was not `old`.
    f.tee(seen)
      .get(old)
      .op(wide ? 'i64.ne' : 'i32.ne');
    f.get(seen).set(old).brIf(0);
    f.end();
    f.get(old);
  }
  if (wide) returnSplit64(f, old);
  else returnSplit32(f, old);
  return f;
}

function loadBody(wide: boolean): FnBody {
  const f = new FnBody(1);
  const tmp = f.local(wide ? I64 : I32);
  f.get(0).atomic(wide ? 'i64.atomic.load' : 'i32.atomic.load', 0);
  if (wide) returnSplit64(f, tmp);
  else returnSplit32(f, tmp);
  return f;
}

/** `(off, expectLo, expectHi, newLo, newHi) -> 1 | 0`. */
function casBody(wide: boolean): FnBody {
  const f = new FnBody(5);
  const expect = f.local(wide ? I64 : I32);
  if (wide) pair(f, 1, 2);
  else f.get(1);
  f.set(expect);
  f.get(0).get(expect);
  if (wide) pair(f, 3, 4);
  else f.get(3);
  f.atomic(wide ? 'i64.atomic.rmw.cmpxchg' : 'i32.atomic.rmw.cmpxchg', 0);
  f.get(expect).op(wide ? 'i64.eq' : 'i32.eq');
  return f;
}

/** `(off, lo, hi)`: one 8-byte atomic store. */
function storeBody(): FnBody {
  const f = new FnBody(3);
  f.get(0);
  pair(f, 1, 2);
  f.atomic('i64.atomic.store', 0);
  return f;
}

/** The module: exports a0..a8 (32-bit AMOs by kind), d0..d8 (64-bit), lw/ld, cw/cd, sd and hi. */
export function guestAtomicsModule(): Uint8Array {
  const funcs: ModuleSpec['funcs'] = [];
  for (let k = 0; k < AMO_KINDS; k++) funcs.push({ type: T_AMO, body: amoBody(k, false), export: `a${k}` });
  for (let k = 0; k < AMO_KINDS; k++) funcs.push({ type: T_AMO, body: amoBody(k, true), export: `d${k}` });
  funcs.push({ type: T_LOAD, body: loadBody(false), export: 'lw' });
  funcs.push({ type: T_LOAD, body: loadBody(true), export: 'ld' });
  funcs.push({ type: T_CAS, body: casBody(false), export: 'cw' });
  funcs.push({ type: T_CAS, body: casBody(true), export: 'cd' });
  funcs.push({ type: T_HI, body: new FnBody(0).globalGet(G_HI), export: 'hi' });
  funcs.push({ type: T_STORE, body: storeBody(), export: 'sd' });
  return encodeModule({
    types: [
      { params: [I32, I32, I32], results: [I32] },
      { params: [I32], results: [I32] },
      { params: [I32, I32, I32, I32, I32], results: [I32] },
      { params: [], results: [I32] },
      { params: [I32, I32, I32], results: [] },
    ],
    imports: [],
    memoryPages: 0,
    sharedMemory: true,
    globals: [{}],
    funcs,
  });
}

class WasmGuestAtomics implements GuestAtomics {
  private readonly amo32: AmoFn[];
  private readonly amo64: AmoFn[];
  private readonly lw: LoadFn;
  private readonly ld: LoadFn;
  private readonly cw: CasFn;
  private readonly cd: CasFn;
  private readonly hi: () => number;
  private readonly sd: StoreFn;
  constructor(exports: Record<string, unknown>) {
    this.amo32 = Array.from({ length: AMO_KINDS }, (_, k) => exports[`a${k}`] as AmoFn);
    this.amo64 = Array.from({ length: AMO_KINDS }, (_, k) => exports[`d${k}`] as AmoFn);
    this.lw = exports.lw as LoadFn;
    this.ld = exports.ld as LoadFn;
    this.cw = exports.cw as CasFn;
    this.cd = exports.cd as CasFn;
    this.hi = exports.hi as () => number;
    this.sd = exports.sd as StoreFn;
  }
  store64(off: number, lo: number, hi: number): void {
    this.sd(off, lo, hi);
  }
  amo(kind: number, size: 4 | 8, off: number, lo: number, hi: number): number {
    return (size === 8 ? this.amo64 : this.amo32)[kind]!(off, lo, hi);
  }
  load(size: 4 | 8, off: number): number {
    return size === 8 ? this.ld(off) : this.lw(off);
  }
  cas(size: 4 | 8, off: number, expectLo: number, expectHi: number, newLo: number, newHi: number): boolean {
    return (size === 8 ? this.cd : this.cw)(off, expectLo, expectHi, newLo, newHi) !== 0;
  }
  get oldHi(): number {
    return this.hi();
  }
}

/**
 * Atomics over `memory`, a shared WebAssembly.Memory (each thread makes its own: the module's state is per
 * instance); null when the memory is not shared or this engine has no WebAssembly threads.
 */
export function createGuestAtomics(memory: object): GuestAtomics | null {
  const Wasm = (globalThis as unknown as { WebAssembly?: WasmApi & { Memory: abstract new (...a: never[]) => object } })
    .WebAssembly;
  if (!Wasm || !(memory instanceof Wasm.Memory)) return null;
  const buffer = (memory as { buffer: unknown }).buffer;
  if (typeof SharedArrayBuffer === 'undefined' || !(buffer instanceof SharedArrayBuffer)) return null;
  try {
    const instance = new Wasm.Instance(new Wasm.Module(guestAtomicsModule()), { env: { mem: memory } });
    return new WasmGuestAtomics(instance.exports);
  } catch {
    return null; // no threads support in this engine
  }
}
