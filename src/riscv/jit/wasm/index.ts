/**
 * The WebAssembly block JIT: hot block entries of a decoded page become WebAssembly modules (translate.ts) that
 * import the guest RAM's memory, where the hart keeps its registers and TLB (layout.ts). Same life cycle as the
 * JS translator's blocks (../index.ts): cached on the decoded page, dropped with it.
 *
 * Opt-in: `TYPEVISOR_JIT=wasm` (threshold DEFAULT_WASM_THRESHOLD), `wasm-eager`, `wasm-threshold=N`, or the hart
 * option `jit: { threshold, backend: 'wasm' }`; it needs linear guest RAM reserved for it (TYPEVISOR_RAM=linear,
 * src/vm/linear-ram.ts), and without that the hart runs the interpreter alone.
 */
import type { SlotReader } from '../codegen.js';
import type { BlockFn, BlockTranslator, JitOptions, JitStats, PageBlocks } from '../index.js';
import { translateBlock } from './translate.js';
import type { WasmStateRegion } from './layout.js';

export { HART_REGION_BYTES, type WasmStateRegion } from './layout.js';
export { translateBlock } from './translate.js';

/** The exported block function: (pb, n, limit, ctx) => n'. */
export type WasmBlockExport = (pb: number, n: number, limit: number, ctx: number) => number;

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
  /** Makes the hart's BlockFn from a block export (it sets the helpers' page context and reads the next pc). */
  wrap(fn: WasmBlockExport): BlockFn;
}

const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

/** Compiled modules shared by the isolate's harts (keyed by their bytes, which include the hart's region). */
const modules = new Map<string, object>();
const MODULE_LIMIT = 1 << 13;

const keyOf = (bytes: Uint8Array): string => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return s;
};

export class WasmBlockJit implements BlockTranslator {
  readonly stats: JitStats = { backend: 'wasm', blocks: 0, translatedInsns: 0, compiled: 0, compileMs: 0 };
  private readonly byKey = new Map<string, BlockFn>();
  private port: WasmHartPort | null = null;
  private imports: object | null = null;
  constructor(
    readonly region: WasmStateRegion,
    readonly options: JitOptions,
  ) {}

  /** Connects the hart (done once the hart's methods exist). */
  bind(port: WasmHartPort): void {
    this.port = port;
    this.imports = {
      env: {
        mem: port.region.memory,
        ld: port.ld,
        st: port.st,
        slow: port.slow,
        fp: port.fp,
      },
    };
  }

  lookup(blocks: PageBlocks, slot: number, read: SlotReader): BlockFn | null {
    const fn = blocks.fns?.[slot];
    if (fn !== undefined) return fn;
    const h = blocks.hits[slot]!;
    if (h < this.options.threshold) {
      blocks.hits[slot] = h + 1;
      return null;
    }
    const block = translateBlock(read, slot, this.region.base);
    if (block === null) {
      blocks.hits[slot] = 0;
      return null;
    }
    const key = keyOf(block.bytes);
    let compiled = this.byKey.get(key);
    if (compiled === undefined) {
      compiled = this.instantiate(key, block.bytes);
      if (this.byKey.size >= MODULE_LIMIT) this.byKey.clear();
      this.byKey.set(key, compiled);
    }
    (blocks.fns ??= new Array<BlockFn | undefined>(2048))[slot] = compiled;
    this.stats.blocks++;
    this.stats.translatedInsns += block.length;
    return compiled;
  }

  private instantiate(key: string, bytes: Uint8Array): BlockFn {
    let module = modules.get(key);
    if (module === undefined) {
      const t0 = performance.now();
      module = new Wasm.Module(bytes);
      this.stats.compileMs += performance.now() - t0;
      this.stats.compiled++;
      if (modules.size >= MODULE_LIMIT) modules.clear();
      modules.set(key, module);
    }
    const instance = new Wasm.Instance(module, this.imports!);
    return this.port!.wrap(instance.exports.b as WasmBlockExport);
  }
}
