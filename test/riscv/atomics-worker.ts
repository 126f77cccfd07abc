/**
 * One hart on its own thread for test/riscv/atomics-threads.test.ts: a real Hart over a minimal Bus on the
 * shared memory the test made (RAM at offset 0, each hart's WebAssembly JIT state past it), with the
 * cross-thread atomics when asked. It waits at a barrier so all harts start together, runs bare-metal code
 * from `entry` until `_end` (or `_trap`: then it reports mcause), and posts what it did.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Bus } from '../../src/riscv/bus.js';
import { createGuestAtomics } from '../../src/riscv/atomics.js';
import { Hart, CSR_MCAUSE, CSR_MTVEC, type HartOptions } from '../../src/riscv/hart.js';
import { HART_REGION_BYTES } from '../../src/riscv/jit/wasm/layout.js';

export interface HartJob {
  memory: { buffer: SharedArrayBuffer };
  ramBase: number;
  /** A power of two: RAM is one chunk. */
  ramSize: number;
  /** Byte offset of an int32 the harts count up on at the start barrier. */
  barrierOff: number;
  harts: number;
  hartId: number;
  entry: number;
  end: number;
  trap: number;
  atomics: boolean;
  jit: HartOptions['jit'];
}

export interface HartReport {
  hartId: number;
  instructions: number;
  /** 'end', or the mcause of the trap it stopped in. */
  stop: 'end' | number;
  atomics: boolean;
  jitBlocks: number;
}

const job = workerData as HartJob;
const buffer = job.memory.buffer;
const ram = new DataView(buffer, 0, job.ramSize);
const atomics = job.atomics ? createGuestAtomics(job.memory) : null;
if (job.atomics && !atomics) throw new Error('no WebAssembly threads for guest atomics');
// Each hart's WebAssembly JIT state: its own region past RAM.
const stateAt = job.ramSize + job.hartId * HART_REGION_BYTES;
let reserved = false;
const bus: Bus = {
  ramBase: job.ramBase,
  ramSize: job.ramSize,
  chunkShift: Math.log2(job.ramSize),
  ramChunk: (pa) => (pa >= job.ramBase && pa < job.ramBase + job.ramSize ? ram : null),
  mmioRead: () => undefined,
  mmioWrite: () => false,
  onRamRemap: () => {},
  wasmState: {
    memory: job.memory,
    buffer,
    reserve: (bytes) => {
      if (reserved || bytes > HART_REGION_BYTES) return null;
      reserved = true;
      return stateAt;
    },
  },
  atomics,
};
const hart = new Hart(bus, { hartId: job.hartId, readTime: () => 0, jit: job.jit });
hart.reset(job.entry);
hart.writeCsr(CSR_MTVEC, job.trap, 0);
hart.setX(10, job.hartId);

const barrier = new Int32Array(buffer, job.barrierOff, 1);
Atomics.add(barrier, 0, 1);
while (Atomics.load(barrier, 0) < job.harts) {
  // spin: the harts start within microseconds of each other
}
let instructions = 0;
while (hart.pc !== job.end && hart.pc !== job.trap) instructions += hart.run(1000);
const h = hart as unknown as { readCsr(c: number): boolean; valLo: number };
h.readCsr(CSR_MCAUSE);
const report: HartReport = {
  hartId: job.hartId,
  instructions,
  stop: hart.pc === job.end ? 'end' : h.valLo,
  atomics: atomics !== null,
  jitBlocks: hart.jitStats?.blocks ?? 0,
};
parentPort!.postMessage(report);
