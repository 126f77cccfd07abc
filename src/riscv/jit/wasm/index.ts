/**
 * The WebAssembly block JIT: hot block entries of a decoded page become WebAssembly modules (translate.ts) that
 * import the guest RAM's memory, where the hart keeps its registers and TLB (layout.ts). Same life cycle as the
 * JS translator's blocks (../index.ts): cached on the decoded page, dropped with it.
 *
 * The default engine (TYPEVISOR_JIT unset or `wasm`: threshold DEFAULT_WASM_THRESHOLD), also `wasm-eager`,
 * `wasm-threshold=N`, or the hart option `jit: { threshold, backend: 'wasm' }`; it needs linear guest RAM with its
 * state region reserved (src/vm/linear-ram.ts, the default), and without that the hart runs the interpreter alone.
 */
import type { SlotReader } from '../codegen.js';
import { PageBlocks, pageThreshold, type BlockFn, type BlockTranslator, type JitOptions, type JitStats } from '../index.js';
import { buildModule, dispatcherModule, translateBlock, type WasmBlock } from './translate.js';
import type { WasmStateRegion } from './layout.js';
import type { CodeShare, SharedBatch } from './share.js';

export { HART_REGION_BYTES, type WasmStateRegion } from './layout.js';
export { buildModule, translateBlock, type WasmBlock } from './translate.js';
export { LocalCodeShare, parseSharedBatch, type CodeShare, type SharedBatch } from './share.js';

/** The dispatcher's export: runs the block at table `index` and the ones it chains to, (pb, n, limit, ctx, fctx) => n'. */
export type WasmDispatch = (index: number, pb: number, n: number, limit: number, ctx: number, fctx: number) => number;

/** What a hart gives the WebAssembly JIT: its state region, the slow paths blocks import, and the call wrapper. */
export interface WasmHartPort {
  readonly region: WasmStateRegion;
  /** Load slow path: rd = load(x[r1] + imm) with the hart's loadSlow; 1 when MMIO was touched (the block ends). */
  ld(r1: number, imm: number, op: number, rd: number, pcOff: number, nBefore: number): number;
  /** Store slow path; 1 when MMIO was touched or the block's page lost its code mark (the block ends). */
  st(r1: number, imm: number, size: number, r2: number, pcOff: number, nBefore: number): number;
  /** execSlow for one instruction; 1 when the block ends (the next pc is already stored). */
  slow(w: number, imm: number, rd: number, r1: number, r2: number, pcOff: number, nBefore: number): number;
  /** An FP op: its FP function when FS is on and the rounding mode valid, else as `slow` (which traps). */
  fp(w: number, imm: number, rd: number, r1: number, r2: number, pcOff: number, nBefore: number): number;
  /** Makes the hart's BlockFn for the block at table `index` (it sets the helpers' page context, reads the next pc). */
  wrap(dispatch: WasmDispatch, index: number): BlockFn;
}

const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
      Table: new (d: { element: 'anyfunc'; initial: number }) => WasmTable;
    };
  }
).WebAssembly;

interface WasmTable {
  readonly length: number;
  grow(delta: number): number;
  set(index: number, fn: unknown): void;
}

/** Table entries (blocks) a hart may have; past it, new blocks stay interpreted (indices are never reused). */
const TABLE_LIMIT = 1 << 16;

/** hits[] value of a block waiting in a batch (thresholds stay below it). */
const PENDING = 0xffff;
/** Dispatcher entries of pending blocks after which a partial batch is compiled anyway. */
const FLUSH_AFTER = 4096;
/** Default batch: blocks compiled together in one module. */
export const DEFAULT_BATCH = 16;

/** Lookups of cold blocks between two checks for batches from sibling harts. */
const RECEIVE_EVERY = 1024;

/** A sibling's module, instantiated here on the first use of any of its blocks. */
interface SiblingBatch {
  readonly batch: SharedBatch;
  adopted: boolean;
}

interface Pending {
  block: WasmBlock;
  /** Page slots waiting for this block (identical code on several pages shares one translation). */
  targets: { blocks: PageBlocks; slot: number }[];
}

export class WasmBlockJit implements BlockTranslator {
  readonly stats: Required<JitStats> = {
    backend: 'wasm',
    blocks: 0,
    translatedInsns: 0,
    compiled: 0,
    compileMs: 0,
    instantiateMs: 0,
    regionSegments: 0,
    fpHelperCalls: 0,
    siblingModules: 0,
    siblingBlocks: 0,
  };
  /** This hart's compiled blocks by encoded body. */
  private readonly byKey = new Map<string, BlockFn>();
  private readonly pending = new Map<string, Pending>();
  private waits = 0;
  private readonly batch: number;
  private port: WasmHartPort | null = null;
  private imports: object | null = null;
  /** Every block function, called through the dispatcher (see dispatcherModule). */
  private readonly table = new Wasm.Table({ element: 'anyfunc', initial: 256 });
  private nextIndex = 0;
  private dispatch: WasmDispatch | null = null;
  /** Guest RAM's memory is shared (the default, src/vm/linear-ram.ts): modules must import it as such. */
  private readonly sharedMemory: boolean;
  /** Why compiling stopped (the engine refused a module), or null. */
  failure: string | null = null;
  /** Blocks sibling harts compiled and this one has not used yet, by key. */
  private readonly siblingKeys = new Map<string, SiblingBatch>();
  /** Where siblings installed their blocks: RAM page number → slot → the region's other segments. */
  private readonly hints = new Map<number, Map<number, readonly number[]>>();
  /** The newest page blocks of each RAM page, to mark a slot hot when a sibling's block for it arrives. */
  private readonly pages = new Map<number, PageBlocks>();
  private coldLookups = 0;
  /** The state region's byte in this hart's code, or null when the code must serve any hart (with siblings). */
  private readonly stateBase: number | null;
  constructor(
    readonly region: WasmStateRegion,
    readonly options: JitOptions,
    /** The channel to the VM's other harts (share.ts), or null when this hart is alone. */
    private readonly share: CodeShare | null = null,
  ) {
    this.batch = options.batch ?? (options.threshold === 0 ? 1 : DEFAULT_BATCH);
    this.stateBase = share === null ? region.base : null;
    this.sharedMemory = typeof SharedArrayBuffer !== 'undefined' && region.buffer instanceof SharedArrayBuffer;
  }

  /** Connects the hart (done once the hart's methods exist). */
  bind(port: WasmHartPort): void {
    this.port = port;
    this.imports = { env: { mem: port.region.memory, ld: port.ld, st: port.st, slow: port.slow, fp: port.fp } };
    try {
      const dispatcher = new Wasm.Instance(new Wasm.Module(dispatcherModule(port.region.base, this.sharedMemory)), {
        env: { mem: port.region.memory, tbl: this.table },
      });
      this.dispatch = dispatcher.exports.d as WasmDispatch;
    } catch (e) {
      this.fail(e);
    }
  }

  newPage(ppn: number, supervisor: boolean): PageBlocks {
    const page = new PageBlocks(ppn, pageThreshold(this.options, supervisor));
    if (this.share === null) return page;
    this.receive();
    this.pages.set(ppn, page);
    const hinted = this.hints.get(ppn);
    if (hinted !== undefined) for (const slot of hinted.keys()) this.markHot(page, slot);
    return page;
  }

  lookup(blocks: PageBlocks, slot: number, read: SlotReader): BlockFn | null {
    const fn = blocks.fns?.[slot];
    if (fn !== undefined) return fn;
    const h = blocks.hits[slot]!;
    if (h === PENDING) {
      if (++this.waits >= FLUSH_AFTER) this.flush();
      return blocks.fns?.[slot] ?? null;
    }
    if (h < blocks.threshold || this.nextIndex + this.pending.size >= TABLE_LIMIT || this.failure !== null) {
      if (h < 0xfffe) blocks.hits[slot] = h + 1;
      if (this.share !== null && ++this.coldLookups >= RECEIVE_EVERY) this.receive();
      return null;
    }
    // A sibling's block for this slot: translated with its region's segments, to get its key.
    const hint = this.hints.get(blocks.ppn)?.get(slot);
    const hot = hint !== undefined ? (s: number): boolean => hint.includes(s) : this.regionHot(blocks);
    const block = translateBlock(read, slot, this.stateBase, false, hot);
    if (block === null) {
      blocks.hits[slot] = 0;
      return null;
    }
    const compiled = this.byKey.get(block.key) ?? this.fromSibling(block.key);
    if (compiled !== undefined) {
      this.install(blocks, slot, compiled, block.length);
      return compiled;
    }
    if (hint !== undefined) {
      // The page holds other code than the sibling's block came from (its RAM was reused): count from zero here.
      this.hints.get(blocks.ppn)!.delete(slot);
      blocks.hits[slot] = 0;
      return null;
    }
    let p = this.pending.get(block.key);
    if (p === undefined) {
      p = { block, targets: [] };
      this.pending.set(block.key, p);
    }
    p.targets.push({ blocks, slot });
    blocks.hits[slot] = PENDING;
    if (this.pending.size >= this.batch) this.flush();
    return blocks.fns?.[slot] ?? null;
  }

  /**
   * Which in-page targets join a region: those entered at least an eighth as often as the threshold (the
   * interpreter counts entries of in-page branch targets), and those already translated or waiting to be.
   */
  private regionHot(blocks: PageBlocks): ((slot: number) => boolean) | null {
    if (this.options.regions === false) return null;
    const least = blocks.threshold >>> 3;
    return (slot) => blocks.hits[slot]! >= least || blocks.fns?.[slot] !== undefined;
  }

  /** Compiles the pending blocks as one module and installs them (on pages that may have died meanwhile: harmless). */
  flush(): void {
    const list = [...this.pending.values()];
    this.pending.clear();
    this.waits = 0;
    if (list.length === 0) return;
    const bytes = buildModule(
      list.map((p) => p.block),
      this.sharedMemory,
    );
    const t0 = performance.now();
    let t1: number;
    let fns: BlockFn[];
    let module: object;
    try {
      module = new Wasm.Module(bytes);
      t1 = performance.now();
      const exports = new Wasm.Instance(module, this.imports!).exports;
      const first = this.nextIndex;
      this.reserveTable(list.length);
      fns = list.map((_, i) => {
        this.table.set(first + i, exports[`b${i}`]);
        return this.port!.wrap(this.dispatch!, first + i);
      });
      this.nextIndex += list.length;
    } catch (e) {
      this.fail(e);
      for (const p of list) for (const t of p.targets) t.blocks.hits[t.slot] = 0;
      return;
    }
    this.stats.compileMs += t1 - t0;
    this.stats.instantiateMs += performance.now() - t1;
    this.share?.publish({
      module,
      blocks: list.map((p) => ({
        key: p.block.key,
        sites: p.targets.flatMap((t) => [t.blocks.ppn, t.slot]),
        segmentSlots: p.block.segmentSlots,
      })),
    });
    this.stats.compiled += list.length;
    for (const p of list) this.stats.regionSegments += p.block.segments - 1;
    list.forEach((p, i) => {
      this.byKey.set(p.block.key, fns[i]!);
      for (const t of p.targets) this.install(t.blocks, t.slot, fns[i]!, p.block.length);
    });
  }

  get heldTranslations(): number {
    return this.byKey.size;
  }

  /**
   * Forgets the translations by key and the blocks waiting for a batch (their pages were dropped with the decode
   * cache). The compiled modules stay reachable from the dispatch table, whose slots are never reused (the
   * in-WebAssembly jump cache may still name them): that memory is bounded by TABLE_LIMIT.
   */
  trim(): void {
    this.byKey.clear();
    this.pending.clear();
    this.waits = 0;
    this.siblingKeys.clear();
    this.hints.clear();
    this.pages.clear();
  }

  /** Takes in the batches sibling harts published since the last call: their keys, and where they were hot. */
  private receive(): void {
    const share = this.share;
    if (share === null) return;
    this.coldLookups = 0;
    for (let batch = share.receive(); batch !== null; batch = share.receive()) {
      const sibling: SiblingBatch = { batch, adopted: false };
      for (const b of batch.blocks) {
        if (!this.byKey.has(b.key)) this.siblingKeys.set(b.key, sibling);
        for (let s = 0; s < b.sites.length; s += 2) {
          const ppn = b.sites[s]!;
          const slot = b.sites[s + 1]!;
          if (slot >= 2048) continue;
          let hinted = this.hints.get(ppn);
          if (hinted === undefined) this.hints.set(ppn, (hinted = new Map()));
          hinted.set(slot, b.segmentSlots);
          const page = this.pages.get(ppn);
          if (page !== undefined) this.markHot(page, slot);
        }
      }
    }
  }

  /** Makes a sibling's slot hot here, so the next entry looks for the sibling's block instead of counting on. */
  private markHot(page: PageBlocks, slot: number): void {
    if (page.fns?.[slot] === undefined && page.hits[slot]! < page.threshold) page.hits[slot] = page.threshold;
  }

  /**
   * The block with `key` from a sibling's module, instantiated here with this hart's helpers (every block of
   * the module at once: they were hot together), or undefined.
   */
  private fromSibling(key: string): BlockFn | undefined {
    const sibling = this.siblingKeys.get(key);
    if (sibling === undefined || sibling.adopted) return undefined;
    sibling.adopted = true;
    const { module, blocks } = sibling.batch;
    for (const b of blocks) if (this.siblingKeys.get(b.key) === sibling) this.siblingKeys.delete(b.key);
    if (this.nextIndex + blocks.length > TABLE_LIMIT || this.failure !== null) return undefined;
    const t0 = performance.now();
    try {
      const exports = new Wasm.Instance(module, this.imports!).exports;
      const first = this.nextIndex;
      this.reserveTable(blocks.length);
      blocks.forEach((b, i) => {
        this.table.set(first + i, exports[`b${i}`]);
        if (!this.byKey.has(b.key)) this.byKey.set(b.key, this.port!.wrap(this.dispatch!, first + i));
      });
      this.nextIndex += blocks.length;
    } catch (e) {
      this.fail(e);
      return undefined;
    }
    this.stats.instantiateMs += performance.now() - t0;
    this.stats.siblingModules++;
    this.stats.siblingBlocks += blocks.length;
    return this.byKey.get(key);
  }

  private reserveTable(more: number): void {
    const need = this.nextIndex + more - this.table.length;
    if (need > 0) this.table.grow(Math.max(need, this.table.length));
  }

  /** The engine refused a module (out of code space, say): the guest goes on in the interpreter, translating no more. */
  private fail(e: unknown): void {
    this.failure = e instanceof Error ? e.message : String(e);
    this.pending.clear();
  }

  private install(blocks: PageBlocks, slot: number, fn: BlockFn, length: number): void {
    (blocks.fns ??= new Array<BlockFn | undefined>(2048))[slot] = fn;
    this.stats.blocks++;
    this.stats.translatedInsns += length;
  }
}
