/**
 * Block translation for the hart: hot block entries of a decoded page are compiled into JS functions
 * (see codegen.ts) and cached on the page, so they live exactly as long as the decoded page they came from:
 * a store into the page, a fence.i that finds the page changed, or a remapped RAM chunk drops the page and
 * with it every block translated from it.
 *
 * The default engine is the WebAssembly backend (./wasm); this JS backend is chosen with `TYPEVISOR_JIT=1` (or the
 * hart option `jit: { threshold }`), and `TYPEVISOR_JIT=0` runs the interpreter alone, which stays the reference
 * both are tested against. `TYPEVISOR_JIT=eager` translates every block on its first entry (tests use it so short
 * programs run translated code); `TYPEVISOR_JIT=threshold=N` sets the hotness.
 */
import { sar, shl, shr } from '../shift64.js';
import { FP_OPS } from '../fpu/index.js';
import { FP_MNEMONICS } from '../fpu/state.js';
import * as I64 from '../int64.js';
import { generateBlock, PRELUDE, type SlotReader } from './codegen.js';

export { generateBlock, MAX_BLOCK } from './codegen.js';

/** A translated block: see codegen.ts for the contract. */
export type BlockFn = (h: unknown, x: Int32Array, pb: number, n: number, limit: number, ppn: number) => number;

/** What generated code reads from the hart besides its own fields. */
export interface JitEnv {
  loadTag: Float64Array;
  loadView: DataView[];
  loadOff: Int32Array;
  storeTag: Float64Array;
  storeView: DataView[];
  storeOff: Int32Array;
  codePages: Uint8Array;
}

export interface JitOptions {
  /** Entries of a block start before it is translated (0: on the first entry). */
  threshold: number;
  /**
   * The same for code on pages first run in S-mode (the guest kernel's); default `threshold`. TYPEVISOR_JIT unset
   * or `wasm` sets DEFAULT_WASM_SUPERVISOR_THRESHOLD.
   */
  supervisorThreshold?: number;
  /**
   * 'js' (default): blocks become JS functions. 'wasm': WebAssembly modules (./wasm), which needs linear guest
   * RAM with a reserved state region (without it the hart runs the interpreter alone).
   */
  backend?: 'js' | 'wasm';
  /** WebAssembly backend: hot blocks compiled together in one module (default 1 when eager, else 16). */
  batch?: number;
  /**
   * WebAssembly backend: a block takes in the blocks at its hot in-page targets as one function (a region,
   * ./wasm/translate.ts); default true, false translates each block alone.
   */
  regions?: boolean;
}

/** What the run loop needs from a block translator (BlockJit, or WasmBlockJit in ./wasm). */
export interface BlockTranslator {
  readonly options: JitOptions;
  readonly stats: JitStats;
  /**
   * The entry counts and blocks of a newly decoded page of RAM page `ppn`, first run in S-mode when `supervisor`
   * (its blocks are then translated at `supervisorThreshold` entries).
   */
  newPage(ppn: number, supervisor: boolean): PageBlocks;
  /** The block starting at `slot` of the page, translated once hot; null while cold or when none can start there. */
  lookup(blocks: PageBlocks, slot: number, read: SlotReader): BlockFn | null;
  /** Distinct translations held now. */
  readonly heldTranslations: number;
  /** Drops the translations held (an idle guest's memory trim; they are made again when next hot). */
  trim(): void;
}

/**
 * Default hotness. A translation only pays once V8 has optimized it, which takes hundreds of calls: code
 * entered fewer times runs faster on the interpreter (measured on a Linux boot, docs/performance.md).
 */
export const DEFAULT_THRESHOLD = 1000;

/**
 * Default hotness of the WebAssembly backend for user code (docs/performance.md). With one threshold for all code,
 * 2000 had beaten 1000 on the boot and on fork+exec, which are mostly kernel code: that is what
 * DEFAULT_WASM_SUPERVISOR_THRESHOLD is for now. For user code alone, first runs in-process on one boot, 1000
 * against 2000: ash's loop 1.23-1.27 -> 1.10-1.14 s, the pipeline and 400 fork+execs within noise (1.36-1.45 s,
 * 2.9-3.6 s); 500 took ash's loop to 1.02-1.08 s but fork+exec to 3.22-3.33 s.
 */
export const DEFAULT_WASM_THRESHOLD = 1000;

/**
 * Default hotness of the WebAssembly backend for code on pages first run in S-mode (the guest kernel's). Kernel
 * code pays a translation back less often than user code: it is entered from many places, its blocks are cut
 * short by CSR accesses, fences and atomics (helper calls), and much of it runs for a phase and never again (a
 * boot's initialisation, one exec's page faults). Against 2000 for both (the default before), in-process on one boot
 * (docs/performance.md): the boot 1.81-1.89 -> 1.65 s, 400 fork+execs 3.8-3.9 -> 3.1-3.2 s, the pipeline
 * 1.42-1.67 -> 1.35 s, ash's loop 1.28-1.30 -> 1.22 s; 4000 gained about half as much, 16000 no more.
 */
export const DEFAULT_WASM_SUPERVISOR_THRESHOLD = 8000;

/**
 * The JIT setting from the environment, for hosts that have one. Unset: the WebAssembly block JIT (it needs
 * linear guest RAM with its state region, src/vm/linear-ram.ts; a hart without one runs the interpreter alone).
 * TYPEVISOR_JIT=0|off: the interpreter alone; wasm|wasm-eager|wasm-threshold=N: WebAssembly blocks;
 * 1|eager|threshold=N: JS blocks. Anything else is refused, so a typo does not silently measure another engine.
 */
export function jitFromEnv(): JitOptions | null {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return parseJitSetting(env?.TYPEVISOR_JIT);
}

/** TYPEVISOR_JIT's value as hart options (see jitFromEnv); null: the interpreter alone. */
export function parseJitSetting(v: string | undefined): JitOptions | null {
  if (v === undefined || v === '' || v === 'wasm')
    return { threshold: DEFAULT_WASM_THRESHOLD, supervisorThreshold: DEFAULT_WASM_SUPERVISOR_THRESHOLD, backend: 'wasm' };
  if (v === '0' || v === 'off') return null;
  if (v === 'wasm-eager') return { threshold: 0, backend: 'wasm' };
  if (v.startsWith('wasm-threshold=')) return { threshold: thresholdOf(v, 'wasm-threshold='), backend: 'wasm' };
  if (v === '1' || v === 'on') return { threshold: DEFAULT_THRESHOLD };
  if (v === 'eager') return { threshold: 0 };
  if (v.startsWith('threshold=')) return { threshold: thresholdOf(v, 'threshold=') };
  throw new Error(`TYPEVISOR_JIT=${v}: expected 0, off, wasm, wasm-eager, wasm-threshold=N, 1, on, eager or threshold=N`);
}

function thresholdOf(v: string, prefix: string): number {
  const n = Number(v.slice(prefix.length));
  if (!Number.isInteger(n) || n < 0 || n >= 0xffff)
    throw new Error(`TYPEVISOR_JIT=${v}: the threshold is an integer from 0 to 65534`);
  return n;
}

/** Per decoded page: entry counts (interpreter and dispatcher) and translated blocks by start slot. */
export class PageBlocks {
  constructor(
    /** The RAM page (RAM offset / 4096) the decoded page holds; -1 for none. */
    readonly ppn = -1,
    /** Entries of a block start on this page before it is translated. */
    readonly threshold = 0,
  ) {}
  readonly hits = new Uint16Array(2048);
  /** Allocated with the page's first translation: most decoded pages never get one. */
  fns: (BlockFn | undefined)[] | null = null;
}

/** The hotness for blocks of a page first run in S-mode (`supervisor`) or not. */
export function pageThreshold(options: JitOptions, supervisor: boolean): number {
  return supervisor ? (options.supervisorThreshold ?? options.threshold) : options.threshold;
}

const FP_FNS = FP_MNEMONICS.map((m) => FP_OPS[m]);

export interface JitStats {
  backend: 'js' | 'wasm';
  /** Block entries translated (a page's slot that got a function). */
  blocks: number;
  /** Instructions in those blocks. */
  translatedInsns: number;
  /** Distinct block sources compiled with `new Function` (the rest reused an identical translation). */
  compiled: number;
  /** Milliseconds spent compiling them (new Function, or new WebAssembly.Module). */
  compileMs: number;
  /** Milliseconds spent making a compiled block this hart's (the factory call, or new WebAssembly.Instance). */
  instantiateMs: number;
  /** WebAssembly backend: blocks compiled into a region after its first (run inside the region's function). */
  regionSegments?: number;
  /** WebAssembly backend: FP ops translated code handed to the hart's FPU (the rest it did itself). */
  fpHelperCalls?: number;
  /** WebAssembly backend: modules a sibling hart compiled that this one instantiated (wasm/share.ts). */
  siblingModules?: number;
  /** WebAssembly backend: the blocks in those modules. */
  siblingBlocks?: number;
}

type Factory = (e: Record<string, unknown>) => BlockFn;
/**
 * Compiled sources shared by every hart in this isolate: V8 then also shares the optimized code of the
 * closures they make. Bounded: cleared when full (a translation is rebuilt on its next use).
 */
const factories = new Map<string, Factory>();
const FACTORY_LIMIT = 1 << 14;

export class BlockJit implements BlockTranslator {
  private readonly env: Record<string, unknown>;
  readonly stats: JitStats = { backend: 'js', blocks: 0, translatedInsns: 0, compiled: 0, compileMs: 0, instantiateMs: 0 };
  /** This hart's block functions by source: identical code on another page reuses the same function. */
  private readonly bySource = new Map<string, BlockFn>();
  constructor(
    env: JitEnv,
    readonly options: JitOptions,
  ) {
    this.env = { ...env, mul64: I64.mul64, r64: I64.r, fpFns: FP_FNS, shl, shr, sar };
  }

  /** Distinct translations this hart holds (by source). */
  get heldTranslations(): number {
    return this.bySource.size;
  }

  /**
   * Drops every translation: this hart's, and the compiled sources the isolate shares (an idle guest's memory
   * trim, which drops the decoded pages that held them too). Without it an idle VM kept every block it ever
   * translated, tens of MiB of worker heap after a workload, counted against the host's memory budget.
   */
  trim(): void {
    this.bySource.clear();
    factories.clear();
  }

  newPage(ppn: number, supervisor: boolean): PageBlocks {
    return new PageBlocks(ppn, pageThreshold(this.options, supervisor));
  }

  /**
   * The block starting at `slot` of `page`, translating it once it is hot; null while it is cold (the
   * interpreter runs it) or when no block can start there.
   */
  lookup(blocks: PageBlocks, slot: number, read: SlotReader): BlockFn | null {
    const fn = blocks.fns?.[slot];
    if (fn !== undefined) return fn;
    const h = blocks.hits[slot]!;
    if (h < blocks.threshold) {
      blocks.hits[slot] = h + 1;
      return null;
    }
    const src = generateBlock(read, slot);
    if (src === null) {
      blocks.hits[slot] = 0;
      return null;
    }
    let compiled = this.bySource.get(src.body);
    if (compiled === undefined) {
      compiled = this.compile(src.body);
      if (this.bySource.size >= FACTORY_LIMIT) this.bySource.clear();
      this.bySource.set(src.body, compiled);
    }
    (blocks.fns ??= new Array<BlockFn | undefined>(2048))[slot] = compiled;
    this.stats.blocks++;
    this.stats.translatedInsns += src.length;
    return compiled;
  }

  private compile(body: string): BlockFn {
    let make = factories.get(body);
    if (make === undefined) {
      this.stats.compiled++;
      const t0 = performance.now();
      make = new Function(
        'E',
        `"use strict"; ${PRELUDE}\nreturn function block(h, x, pb, n, limit, ppn) {\n${body}\n};`,
      ) as Factory;
      this.stats.compileMs += performance.now() - t0;
      if (factories.size >= FACTORY_LIMIT) factories.clear();
      factories.set(body, make);
    }
    const t0 = performance.now();
    const fn = make(this.env);
    this.stats.instantiateMs += performance.now() - t0;
    return fn;
  }
}
