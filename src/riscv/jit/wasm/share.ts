/**
 * Sibling sharing: the harts of one VM run the same kernel and mostly the same programs, so a block one hart
 * compiled is one the others will want. Block code is hart-independent (the state region is a parameter,
 * translate.ts), so each hart publishes the modules it compiles, and the others instantiate them instead of
 * interpreting the code until it is hot for them too and compiling it again. Across threads V8 shares a posted
 * module's compiled code, tier-up included, so TurboFan optimizes a block once for every hart.
 *
 * A sibling's block is only ever used for a key the receiving hart computed itself from its own decoded page (see
 * WasmBlockJit.lookup): what is sent says where to look and what to reuse, never what the guest's code is.
 */

import type { Bus, WasmStateArea } from '../../bus.js';

/** One compiled module as the other harts of the VM receive it. */
export interface SharedBatch {
  /** The WebAssembly.Module; its exports b0, b1, ... are the blocks in the order of `blocks`. */
  readonly module: object;
  readonly blocks: readonly SharedBlock[];
}

export interface SharedBlock {
  /** The translation's encoded body (WasmBlock.key). */
  readonly key: string;
  /** Where the publisher installed it: RAM page number, slot; RAM page number, slot; ... */
  readonly sites: readonly number[];
  /** Its region's segments after the first (WasmBlock.segmentSlots), so a receiver rebuilds the same region. */
  readonly segmentSlots: readonly number[];
}

/** A hart's end of the channel over which its VM's harts share compiled blocks. */
export interface CodeShare {
  /** Sends a batch to every other hart (never back to this one). */
  publish(batch: SharedBatch): void;
  /** The next batch another hart published, or null when there is none waiting (never blocks). */
  receive(): SharedBatch | null;
}

const isWasmModule = (m: unknown): boolean => {
  const W = (globalThis as { WebAssembly?: { Module: new (...a: never[]) => object } }).WebAssembly;
  return W !== undefined && m instanceof W.Module;
};
const isCount = (n: unknown): boolean => typeof n === 'number' && Number.isInteger(n) && n >= 0;

/** A batch as it arrives from another thread, checked for shape; null (and dropped) if it is not one. */
export function parseSharedBatch(message: unknown): SharedBatch | null {
  if (typeof message !== 'object' || message === null) return null;
  const { module, blocks } = message as { module?: unknown; blocks?: unknown };
  if (!isWasmModule(module) || !Array.isArray(blocks)) return null;
  for (const b of blocks as unknown[]) {
    if (typeof b !== 'object' || b === null) return null;
    const { key, sites, segmentSlots } = b as Record<string, unknown>;
    if (typeof key !== 'string' || !Array.isArray(sites) || !Array.isArray(segmentSlots)) return null;
    if (sites.length % 2 !== 0 || !sites.every(isCount) || !segmentSlots.every(isCount)) return null;
  }
  return message as SharedBatch;
}

/** Harts of one isolate (a board that runs its harts by turns): each member gets every other member's batches. */
export class LocalCodeShare {
  private readonly queues: SharedBatch[][] = [];

  join(): CodeShare {
    const own: SharedBatch[] = [];
    this.queues.push(own);
    return {
      publish: (batch) => {
        for (const q of this.queues) if (q !== own) q.push(batch);
      },
      receive: () => own.shift() ?? null,
    };
  }
}

/**
 * `bus` offering a new LocalCodeShare to every hart that keeps its WebAssembly state there (harts that take turns
 * in one isolate); unchanged without a state area.
 */
export function withCodeShare(bus: Bus): Bus {
  const area = bus.wasmState;
  if (area === undefined) return bus;
  const share = new LocalCodeShare();
  const wasmState: WasmStateArea = {
    memory: area.memory,
    buffer: area.buffer,
    reserve: (bytes) => area.reserve(bytes),
    joinCodeShare: () => share.join(),
  };
  return { ...bus, wasmState };
}
