/**
 * The board's side of hart threads (src/machine/parallel/hart-threads.ts) against a stand-in hart thread
 * (flush-race-worker.ts) that replays an interleaving of the TLB flush the board asks when RAM goes back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import * as P from '../../src/machine/parallel/layout.js';
import { HartThreads, type HartThreadsHost } from '../../src/machine/parallel/hart-threads.js';

test("the board's TLB flush is rung when done, even after a report of earlier fences took its waiter bit", async () => {
  const result = new SharedArrayBuffer(8);
  const host: HartThreadsHost = {
    mmioRead: () => undefined,
    mmioWrite: () => false,
    consoleWrite: () => {},
    consoleRead: () => -1,
    systemReset: () => {},
    afterRequests: () => {},
    onThreadMessage: () => {},
  };
  let worker: Worker | null = null;
  const threads = new HartThreads(
    (init) => {
      worker = new Worker(new URL('./flush-race-worker.js', import.meta.url), {
        workerData: { hart: init.hartBlocks[0], board: init.board, result },
      });
      return { terminate: () => void worker!.terminate() };
    },
    host,
    {
      harts: 1,
      ramBase: 0x8000_0000,
      memoryBytes: 0,
      memory: {},
      buffer: new SharedArrayBuffer(8),
      chunkTable: new Int32Array(new SharedArrayBuffer(4)),
      builtinSbi: false,
      budget: 1000,
      jitRegions: [null],
      codeChannel: 'unused',
    },
  );
  threads.start({ states: [new Uint8Array(0)], running: [true], hsm: null }, { offsetMs: 0, skipTicks: 0 });
  threads.flushTlbs();
  const out = new Int32Array(result);
  // flushTlbs returned: the stand-in reported the board's ticket (or its thread ended). Its last report must have
  // named the board, which had named itself again after the earlier report took its bit.
  while (Atomics.load(out, 1) === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(out[0]! & P.FENCE_WAITER_BOARD, P.FENCE_WAITER_BOARD, `waiters of the last report: ${out[0]}`);
  threads.stop();
  await (worker as Worker | null)?.terminate();
});
