import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  MAX_FRAME_BYTES,
  RateLimitError,
  RateLimiter,
  checkRateLimitSpec,
  limitsAnything,
  type RateLimitSpec,
} from '../../src/net/rate-limiter.js';

const near = (actual: number, expected: number, tolerance = 1e-6): void =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not ${expected} ± ${tolerance}`);

test('a byte bucket starts full, empties, and refills at its rate up to its burst', () => {
  const l = new RateLimiter({ bytesPerSecond: 10_000, burstBytes: 5_000 }, 0);
  assert.equal(l.available(0).bytes, 5_000);
  assert.equal(l.available(0).packets, null, 'no packet dimension');
  assert.ok(l.tryConsume(0, 3_000));
  assert.ok(l.tryConsume(0, 2_000));
  assert.ok(!l.tryConsume(0, 1), 'empty');
  // 10,000 B/s = 10 B/ms.
  near(l.msUntilAvailable(0, 1_500), 150);
  assert.ok(!l.tryConsume(149, 1_500));
  assert.ok(l.tryConsume(150, 1_500));
  near(l.available(150).bytes!, 0);
  // Refill stops at the burst, however long the wait.
  assert.equal(l.available(1_000_000).bytes, 5_000);
});

test('a refused request takes nothing from any bucket (bytes and packets together)', () => {
  const l = new RateLimiter({ bytesPerSecond: 1_000_000, packetsPerSecond: 10, burstPackets: 2 }, 0);
  assert.ok(l.tryConsume(0, 100));
  assert.ok(l.tryConsume(0, 100));
  const before = l.available(0);
  assert.ok(!l.tryConsume(0, 100), 'packets exhausted');
  assert.deepEqual(l.available(0), before, 'the byte bucket was not charged for the refused packet');
  // 10 packets/s: one packet every 100 ms.
  near(l.msUntilAvailable(0, 100), 100);
  assert.ok(l.tryConsume(100, 100));
});

test('packets per second over a long run: N packets in N/rate seconds', () => {
  const l = new RateLimiter({ packetsPerSecond: 1000 }, 0);
  let sent = 0;
  for (let now = 0; now <= 10_000; now += 0.5) while (l.tryConsume(now, 1518)) sent++;
  // 10 s at 1000/s, plus the initial burst (a tenth of a second: 100 packets).
  assert.equal(sent, 10_000 + 100);
});

test('byte rate over a simulated second with timer-style waits: within 1% of the rate (+ burst)', () => {
  const rate = 2 * 1024 * 1024;
  const l = new RateLimiter({ bytesPerSecond: rate }, 0);
  let now = 0;
  let bytes = 0;
  while (now < 5000) {
    if (l.tryConsume(now, 1514)) bytes += 1514;
    else now += Math.max(1, Math.ceil(l.msUntilAvailable(now, 1514)));
  }
  const expected = rate * 5 + l.spec.burstBytes!;
  assert.ok(Math.abs(bytes - expected) / expected < 0.01, `${bytes} vs ${expected}`);
});

test('default bursts: a tenth of a second of the rate, at least one maximum frame / one packet', () => {
  assert.equal(new RateLimiter({ bytesPerSecond: 2 * 1024 * 1024 }, 0).spec.burstBytes, 209_716);
  assert.equal(new RateLimiter({ bytesPerSecond: 1000 }, 0).spec.burstBytes, MAX_FRAME_BYTES);
  assert.equal(new RateLimiter({ packetsPerSecond: 5 }, 0).spec.burstPackets, 1);
  assert.equal(new RateLimiter({ packetsPerSecond: 1000 }, 0).spec.burstPackets, 100);
});

test('a request larger than the burst passes from a full bucket and leaves a debt that the rate repays', () => {
  const l = new RateLimiter({ bytesPerSecond: 2000, burstBytes: 2000 }, 0);
  assert.ok(l.tryConsume(0, 5000), 'full bucket: the large request passes');
  near(l.available(0).bytes!, -3000);
  // It must wait until the bucket is full again: 5000 tokens at 2 B/ms.
  near(l.msUntilAvailable(0, 5000), 2500);
  assert.ok(!l.tryConsume(2499, 5000));
  assert.ok(l.tryConsume(2500, 5000));
});

test('reconfigure keeps the fill (clamped to the new burst), changes the rate from now on, adds and removes dimensions', () => {
  const l = new RateLimiter({ bytesPerSecond: 10_000, burstBytes: 10_000 }, 0);
  assert.ok(l.tryConsume(0, 6_000));
  l.reconfigure({ bytesPerSecond: 1_000, burstBytes: 20_000 }, 100);
  // 100 ms at the old rate refilled 1000: 5000 left, kept.
  near(l.available(100).bytes!, 5_000);
  near(l.available(1100).bytes!, 6_000, 1e-6); // new rate: 1 B/ms
  l.reconfigure({ bytesPerSecond: 1_000, burstBytes: 2_000 }, 1100);
  assert.equal(l.available(1100).bytes, 2_000, 'clamped to the smaller burst');
  l.reconfigure({ bytesPerSecond: 1_000, burstBytes: 2_000, packetsPerSecond: 1, burstPackets: 3 }, 1100);
  assert.equal(l.available(1100).packets, 3, 'a new dimension starts full');
  assert.ok(!l.unlimited);
  l.reconfigure({}, 1100);
  assert.ok(l.unlimited);
  assert.ok(l.tryConsume(1100, 1e9, 1e9), 'no dimension: everything passes');
  // A debt survives a reconfigure.
  const d = new RateLimiter({ bytesPerSecond: 1000, burstBytes: 2000 }, 0);
  d.tryConsume(0, 10_000);
  d.reconfigure({ bytesPerSecond: 1000, burstBytes: 4000 }, 0);
  near(d.available(0).bytes!, -8_000);
});

test('a clock that steps back adds no tokens', () => {
  const l = new RateLimiter({ bytesPerSecond: 1000, burstBytes: 2000 }, 1000);
  l.tryConsume(1000, 2000);
  assert.equal(l.available(500).bytes, 0);
  assert.equal(l.available(1000).bytes, 0);
  near(l.available(1500).bytes!, 500);
});

test('validation: one named error per problem; the constructor and reconfigure throw it', () => {
  const cases: [RateLimitSpec, string][] = [
    [{ bytesPerSecond: 0 }, 'InvalidRate'],
    [{ bytesPerSecond: -5 }, 'InvalidRate'],
    [{ bytesPerSecond: NaN }, 'InvalidRate'],
    [{ packetsPerSecond: Infinity }, 'InvalidRate'],
    [{ packetsPerSecond: '100' as unknown as number }, 'InvalidRate'],
    [{ bytesPerSecond: 1e6, burstBytes: 0 }, 'InvalidBurst'],
    [{ bytesPerSecond: 1e6, burstBytes: Infinity }, 'InvalidBurst'],
    [{ bytesPerSecond: 1e6, burstBytes: 1517 }, 'BurstTooSmall'],
    [{ packetsPerSecond: 10, burstPackets: 0.5 }, 'BurstTooSmall'],
    [{ burstBytes: 10_000 }, 'BurstWithoutRate'],
    [{ bytesPerSecond: 1e6, burstPackets: 10 }, 'BurstWithoutRate'],
  ];
  for (const [spec, kind] of cases) {
    const err = checkRateLimitSpec(spec);
    assert.ok(err instanceof RateLimitError, JSON.stringify(spec));
    assert.equal(err.kind, kind, JSON.stringify(spec));
    assert.throws(
      () => new RateLimiter(spec, 0),
      (e: unknown) => e instanceof RateLimitError && e.kind === kind,
    );
  }
  const ok = new RateLimiter({ bytesPerSecond: 1e6 }, 0);
  assert.throws(() => ok.reconfigure({ bytesPerSecond: -1 }, 0), RateLimitError);
  assert.equal(ok.spec.bytesPerSecond, 1e6, 'a refused reconfigure changes nothing');
  assert.equal(checkRateLimitSpec({ bytesPerSecond: 1e6, burstBytes: 1518, packetsPerSecond: 1, burstPackets: 1 }), null);
  assert.ok(!limitsAnything({}) && !limitsAnything(null) && limitsAnything({ packetsPerSecond: 1 }));
});

test('fuzz: over any sequence of requests, what passed never exceeds burst + rate × time + one oversize request', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1000, max: 10_000_000 }),
      fc.integer({ min: MAX_FRAME_BYTES, max: 1_000_000 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 70_000 })), { maxLength: 200 }),
      (rate, burst, steps) => {
        const l = new RateLimiter({ bytesPerSecond: rate, burstBytes: burst }, 0);
        let now = 0;
        let passed = 0;
        let largest = 0;
        for (const [dt, size] of steps) {
          now += dt;
          if (l.tryConsume(now, size)) {
            passed += size;
            largest = Math.max(largest, size);
          }
          const wait = l.msUntilAvailable(now, size);
          assert.ok(wait >= 0 && Number.isFinite(wait));
        }
        assert.ok(passed <= burst + (rate * now) / 1000 + largest + 1e-6);
      },
    ),
  );
});
