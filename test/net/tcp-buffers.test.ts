/**
 * The endpoint's building blocks against simple models: sequence arithmetic across the 2^32 wrap, the send ring
 * (push/copy/discard in any order, growing and shrinking), and reassembly (any overlapping, duplicated, stale
 * pieces come out as exactly the stream's bytes, never holding more than the window).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ByteRing } from '../../src/net/tcp/byte-ring.js';
import { Reassembly } from '../../src/net/tcp/reassembly.js';
import { RtoEstimator } from '../../src/net/tcp/rto.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax } from '../../src/net/tcp/seq.js';
import { randomBytes } from './tcp-harness.js';

test('sequence comparisons hold across the wrap for distances below 2^31', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }), (a, d) => {
      const b = seqAdd(a, d);
      assert.ok(seqLt(a, b) && seqLe(a, b) && seqGt(b, a) && seqGe(b, a));
      assert.ok(!seqLt(b, a) && !seqGt(a, b));
      assert.equal(seqDiff(b, a), d);
      assert.equal(seqDiff(a, b), -d);
      assert.equal(seqMax(a, b), b);
      assert.ok(b >= 0 && b < 2 ** 32 && Number.isInteger(b));
    }),
  );
  assert.equal(seqAdd(0xffffffff, 1), 0);
  assert.equal(seqAdd(0, -1), 0xffffffff);
});

test('the send ring behaves like a plain byte queue through any pushes, copies and discards', () => {
  type Op = { push: number } | { discard: number } | { copyAt: number; count: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.integer({ min: 0, max: 20_000 }).map((push) => ({ push })),
    fc.integer({ min: 0, max: 30_000 }).map((discard) => ({ discard })),
    fc.record({ copyAt: fc.nat(30_000), count: fc.nat(5_000) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const ring = new ByteRing();
      let model: number[] = [];
      let seed = 1;
      for (const o of ops) {
        if ('push' in o) {
          const bytes = randomBytes(o.push, seed++);
          ring.push(bytes);
          model = model.concat(Array.from(bytes));
        } else if ('discard' in o) {
          ring.discard(o.discard);
          model = model.slice(Math.min(o.discard, model.length));
        } else if (model.length > 0) {
          const at = o.copyAt % model.length;
          const count = Math.min(o.count, model.length - at);
          assert.deepEqual(Array.from(ring.copy(at, count)), model.slice(at, at + count));
        }
        assert.equal(ring.length, model.length);
      }
      assert.deepEqual(Array.from(ring.copy(0, ring.length)), model);
    }),
    { numRuns: 200 },
  );
});

test('reassembly returns exactly the stream for any overlapping, duplicated or stale pieces, within the window', () => {
  const piece = fc.record({ at: fc.integer({ min: -2000, max: 12_000 }), len: fc.integer({ min: 0, max: 3000 }) });
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.array(piece, { maxLength: 80 }),
      fc.integer({ min: 1, max: 64 }),
      (isn, pieces, maxPieces) => {
        const WINDOW = 10_000;
        const stream = randomBytes(WINDOW + 5000, isn | 1);
        const r = new Reassembly(maxPieces);
        let rcvNxt = isn;
        let delivered = 0;
        for (const p of pieces) {
          // The endpoint trims to [RCV.NXT, window edge] before inserting; do the same.
          const start = Math.max(p.at, delivered);
          const end = Math.min(p.at + p.len, WINDOW);
          if (end <= start) continue;
          const data = stream.subarray(start, end);
          if (start === delivered) {
            delivered = end;
            rcvNxt = seqAdd(isn, delivered);
            for (let next = r.takeNext(rcvNxt); next !== undefined; next = r.takeNext(rcvNxt)) {
              assert.deepEqual(next, stream.subarray(delivered, delivered + next.length));
              delivered += next.length;
              rcvNxt = seqAdd(isn, delivered);
            }
          } else {
            r.insert(seqAdd(isn, start), data, rcvNxt);
          }
          assert.ok(r.bytes <= WINDOW - delivered, `holds ${r.bytes} bytes beyond ${delivered}`);
          assert.ok(r.count <= maxPieces);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('the RTO estimator follows RFC 6298: first sample, smoothing, floor, ceiling and backoff', () => {
  const rto = new RtoEstimator(200, 30_000, 1000);
  assert.equal(rto.rto, 1000);
  assert.equal(rto.srtt, undefined);
  rto.sample(100); // SRTT 100, RTTVAR 50: 100 + 200 = 300
  assert.equal(rto.rto, 300);
  rto.sample(100); // RTTVAR 37.5: 100 + 150 = 250
  assert.equal(rto.rto, 250);
  rto.sample(1); // tiny RTTs meet the 200 ms floor eventually
  for (let i = 0; i < 50; i++) rto.sample(1);
  assert.equal(rto.rto, 200);
  for (let i = 0; i < 20; i++) rto.backoff();
  assert.equal(rto.rto, 30_000);
});
