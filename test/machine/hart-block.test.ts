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

/** Applies what the board would, into a list. */
function drain(block: P.HartBlock): [number, number, number][] {
  const got: [number, number, number][] = [];
  block.takeWrites((paddr, size, value) => got.push([paddr, size, value]));
  return got;
}

test('posted writes reach the board in order, with their full 32-bit addresses and values', () => {
  const block = P.HartBlock.create();
  assert.equal(block.postWrite(0x1000_0000, 1, 0x41), 'ring', 'the first write into an empty ring rings the board');
  assert.equal(block.postWrite(0x0c20_1004, 4, 0xffff_fff0), 'posted', 'the board has not taken the first yet');
  assert.deepEqual(drain(block), [
    [0x1000_0000, 1, 0x41],
    [0x0c20_1004, 4, 0xffff_fff0],
  ]);
  assert.deepEqual(drain(block), [], 'each write is applied once');
  assert.equal(block.postWrite(0x1000_0000, 1, 0x42), 'ring', 'an emptied ring rings again');
});

test('a full ring refuses a write (the hart then waits for the board), and wraps after the board takes them', () => {
  const block = P.HartBlock.create();
  for (let i = 0; i < P.POST_ENTRIES; i++) assert.notEqual(block.postWrite(0x1000_0000, 1, i), 'full');
  assert.equal(block.postWrite(0x1000_0000, 1, 999), 'full');
  const first = drain(block);
  assert.equal(first.length, P.POST_ENTRIES);
  assert.deepEqual(
    first.map((e) => e[2]),
    Array.from({ length: P.POST_ENTRIES }, (_, i) => i),
  );
  // Counters past the ring's size, and past 2^31 (they wrap as Int32).
  block.i32[P.H_POST_TAIL] = 0x7fff_fffe;
  block.i32[P.H_POST_HEAD] = 0x7fff_fffe;
  for (let i = 0; i < 5; i++) block.postWrite(0x1000_0000, 1, 100 + i);
  assert.deepEqual(
    drain(block).map((e) => e[2]),
    [100, 101, 102, 103, 104],
  );
});

test('a write posted while the board finished a batch is rung for or seen by its next look', () => {
  const block = P.HartBlock.create();
  block.postWrite(0x1000_0000, 1, 1);
  // The board read the tail (1 entry) and applied it, but had not stored the head yet, when the hart posted the
  // second write: the hart saw the head behind its old tail and did not ring.
  let second: string | undefined;
  const got: number[] = [];
  block.takeWrites((_p, _s, value) => {
    got.push(value);
    if (second === undefined) second = block.postWrite(0x1000_0000, 1, 2);
  });
  assert.equal(second, 'posted', 'no ring: the board had not stored its head');
  // So the board must have looked again after storing its head, and applied it in the same call.
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(drain(block), []);
});
