/**
 * A stand-in hart thread for hart-threads-board.test.ts: it answers the board's TLB flush the way a real hart
 * can when its report of earlier fences races with the board's request, and says what its last report returned.
 */
import { workerData } from 'node:worker_threads';
import * as P from '../../src/machine/parallel/layout.js';

const { hart, board, result } = workerData as { hart: SharedArrayBuffer; board: SharedArrayBuffer; result: SharedArrayBuffer };
const block = new P.HartBlock(hart);
const boardBlock = new P.BoardBlock(board);
const out = new Int32Array(result);
const c = block.i32;

// Wait for the board's request (a ticket past the last one done).
while (Atomics.load(c, P.H_FLUSH_REQ) === Atomics.load(c, P.H_FLUSH_DONE))
  Atomics.wait(c, P.H_DOORBELL, Atomics.load(c, P.H_DOORBELL), 10);
// A report of an earlier ticket (other fences, taken before this request) takes the waiter bits and rings them.
if (block.doneFlushes(Atomics.load(c, P.H_FLUSH_DONE)) & P.FENCE_WAITER_BOARD) boardBlock.ring();
// The board, rung but not done, must name itself again before it sleeps; give it up to 2 s to do so.
const t0 = Date.now();
while ((Atomics.load(c, P.H_FLUSH_WAITERS) & P.FENCE_WAITER_BOARD) === 0 && Date.now() - t0 < 2000)
  Atomics.wait(c, P.H_DOORBELL, Atomics.load(c, P.H_DOORBELL), 1);
const asked = block.takeFlushes()!;
const waiters = block.doneFlushes(asked.ticket);
out[0] = waiters;
if (waiters & P.FENCE_WAITER_BOARD) boardBlock.ring();
Atomics.store(out, 1, 1);
