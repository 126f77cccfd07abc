/**
 * The fence handshake between hart threads (src/machine/parallel/layout.ts), word by word on one thread: a
 * requester posts its fences before its ticket, the target reports the ticket it read before taking the fences,
 * and it rings whoever waits. The interleavings that lost a fence or a wake-up are replayed here by writing the
 * shared words as the other thread would have at that moment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as P from '../../src/machine/parallel/layout.js';

test('a fence is done once the target reports its ticket, and the target names who waits', () => {
  const target = P.HartBlock.create();
  assert.equal(target.takeFlushes(), null, 'nothing asked yet');
  const bell = target.i32[P.H_DOORBELL]!;
  const ticket = target.requestFlush(P.FLUSH_TLB, 1 << 2);
  assert.equal(target.i32[P.H_DOORBELL], bell + 1, 'the request rings the target');
  assert.equal(target.flushed(ticket), false);
  const asked = target.takeFlushes();
  assert.deepEqual(asked, { what: P.FLUSH_TLB, ticket });
  assert.equal(target.flushed(ticket), false, 'taken is not done');
  assert.equal(target.doneFlushes(asked!.ticket), 1 << 2, 'hart 2 waits and is to be rung');
  assert.equal(target.flushed(ticket), true);
  assert.equal(target.takeFlushes(), null);
  // Two requesters, the board among them, answered by one take.
  const a = target.requestFlush(P.FLUSH_TLB, 1 << 0);
  const b = target.requestFlush(P.FLUSH_DECODE, P.FENCE_WAITER_BOARD);
  const both = target.takeFlushes()!;
  assert.deepEqual(both, { what: P.FLUSH_TLB | P.FLUSH_DECODE, ticket: b });
  assert.equal(target.doneFlushes(both.ticket), (1 << 0) | P.FENCE_WAITER_BOARD);
  assert.ok(target.flushed(a) && target.flushed(b));
});

test('a ticket whose fences an earlier take already took is still reported done', () => {
  const target = P.HartBlock.create();
  // The target read the ticket counter (0) just before a requester posted its fences and took its ticket (1);
  // its exchange then took those fences with the old ticket.
  const early = { what: 0, ticket: target.i32[P.H_FLUSH_REQ]! };
  const ticket = target.requestFlush(P.FLUSH_TLB, 1 << 1);
  early.what = Atomics.exchange(target.i32, P.H_FLUSH, 0);
  assert.equal(early.what, P.FLUSH_TLB, 'the early take got the fences');
  target.doneFlushes(early.ticket);
  assert.equal(target.flushed(ticket), false, 'but reported only the old ticket');
  // The next look must report ticket 1 although no fence bits are left: the fences were done after they were
  // posted. (Looking at the fence bits alone, it returned early and the requester waited forever.)
  const next = target.takeFlushes();
  assert.deepEqual(next, { what: 0, ticket });
  target.doneFlushes(next!.ticket);
  assert.equal(target.flushed(ticket), true);
});

test('a waiter named again after the target took the waiters is rung by the next report', () => {
  const target = P.HartBlock.create();
  const ticket = target.requestFlush(P.FLUSH_TLB, 1 << 3);
  // An earlier report (of other fences) took the waiter bits before this fence was done.
  assert.equal(target.doneFlushes(0), 1 << 3);
  // The requester names itself again before it looks and sleeps, so the report of its ticket rings it.
  target.addFlushWaiter(1 << 3);
  const asked = target.takeFlushes()!;
  assert.equal(asked.ticket, ticket);
  assert.equal(target.doneFlushes(asked.ticket), 1 << 3);
});

test('a hart that has exited counts as flushed: it holds no translations', () => {
  const target = P.HartBlock.create();
  const ticket = target.requestFlush(P.FLUSH_TLB, 1);
  Atomics.store(target.i32, P.H_STATE, P.STATE_EXITED);
  assert.equal(target.flushed(ticket), true);
});
