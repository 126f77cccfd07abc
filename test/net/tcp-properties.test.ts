/**
 * fast-check properties of the TCP endpoint: whatever a bounded lossy, duplicating, reordering link does, both byte
 * streams arrive exact; whatever hostile segments a guest sends, the endpoint never throws, stays within its
 * buffers and emits only well-formed segments.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import { TcpEndpoint } from '../../src/net/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpSegment } from '../../src/net/tcp/types.js';
import { Link, PORT_A, PORT_B, connectedPair, randomBytes, type LinkVerdict } from './tcp-harness.js';
import { lossyTransfer } from './tcp-scenarios.js';

const verdict: fc.Arbitrary<LinkVerdict> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({}) },
  { weight: 2, arbitrary: fc.constant({ copies: 0 }) },
  { weight: 1, arbitrary: fc.constant({ copies: 2 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 40 }).map((delayMs) => ({ delayMs })) },
);

test('any bounded pattern of loss, duplication and reordering delivers both streams byte-exact', () => {
  const seen = { retransmits: 0, fastRetransmits: 0, outOfOrder: 0, windowBelowMss: 0 };
  fc.assert(
    fc.property(
      fc.record({
        faults: fc.array(verdict, { maxLength: 300, size: 'max' }),
        sizeAB: fc.integer({ min: 0, max: 120_000 }),
        sizeBA: fc.integer({ min: 0, max: 60_000 }),
        seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        mssA: fc.integer({ min: 64, max: 1460 }),
        mssB: fc.integer({ min: 64, max: 1460 }),
        rcvA: fc.integer({ min: 4096, max: 512 * 1024 }),
        rcvB: fc.integer({ min: 4096, max: 512 * 1024 }),
        sndA: fc.integer({ min: 1024, max: 300 * 1024 }),
        consumeDelayB: fc.integer({ min: 0, max: 30 }),
        isnA: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        isnB: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      }),
      (p) => {
        const { link, a, b, ra, rb, ab, ba } = lossyTransfer(p);
        assert.deepEqual(rb.bytes(), ab);
        assert.deepEqual(ra.bytes(), ba);
        assert.ok(ra.ended && rb.ended);
        assert.equal(ra.closed, 'closed');
        assert.equal(rb.closed, 'closed');
        assert.equal(link.clock.pending, 0, 'closed endpoints leave no timers behind');
        const sa = a.stats();
        const sb = b.stats();
        if (sa.retransmits + sb.retransmits > 0) seen.retransmits++;
        if (sa.fastRetransmits + sb.fastRetransmits > 0) seen.fastRetransmits++;
        if (sa.outOfOrderSegments + sb.outOfOrderSegments > 0) seen.outOfOrder++;
        const synAck = link.log.find((l) => l.from === 'b')!.seg;
        const scale = 2 ** (synAck.windowScale ?? 0);
        if (link.log.some((l) => l.from === 'b' && !(l.seg.flags & TCP_SYN) && l.seg.window * scale < p.mssA)) {
          seen.windowBelowMss++;
        }
      },
    ),
    fuzzParams(Number(process.env.TCP_PROPERTY_RUNS ?? 60), 0x7c9),
  );
  for (const [what, runs] of Object.entries(seen)) assert.ok(runs >= 3, `only ${runs} runs had ${what}`);
});

interface HostileStep {
  kind: 'segment' | 'write' | 'consume' | 'end' | 'time' | 'flush';
  flags: number;
  seqOffset: number;
  ackOffset: number;
  window: number;
  length: number;
  mss?: number;
  windowScale?: number;
  amount: number;
}

/** Offsets from the numbers the endpoint expects: mostly plausible (so segments get past the checks), some wild. */
const offset: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -3, max: 3 }) },
  { weight: 4, arbitrary: fc.integer({ min: -5000, max: 70_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) },
);

const hostileStep: fc.Arbitrary<HostileStep> = fc.record({
  kind: fc.oneof(
    { weight: 12, arbitrary: fc.constant('segment' as const) },
    { weight: 1, arbitrary: fc.constant('write' as const) },
    { weight: 1, arbitrary: fc.constant('consume' as const) },
    { weight: 1, arbitrary: fc.constant('time' as const) },
    { weight: 1, arbitrary: fc.constant('flush' as const) },
    { weight: 1, arbitrary: fc.constant('end' as const) },
  ),
  flags: fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_FIN, TCP_RST, TCP_SYN, TCP_SYN | TCP_ACK),
  ),
  seqOffset: offset,
  ackOffset: offset,
  window: fc.integer({ min: 0, max: 0xffff }),
  length: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 9000 })),
  mss: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  windowScale: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
  amount: fc.integer({ min: 0, max: 100_000 }),
});

test('hostile segments never throw, keep every buffer bounded and draw only well-formed segments', () => {
  const RCV = 64 * 1024;
  const SND = 32 * 1024;
  const seen = { delivered: 0, outOfOrder: 0, challenged: 0, reset: 0, ended: 0, acked: 0 };
  fc.assert(
    fc.property(fc.array(hostileStep, { minLength: 1, maxLength: 200, size: 'max' }), fc.boolean(), (steps, passive) => {
      const link = new Link();
      const out: TcpSegment[] = [];
      let ep: TcpEndpoint;
      if (passive) {
        ({ b: ep } = connectedPair({}, { receiveBufferBytes: RCV, sendBufferBytes: SND, mss: 1000 }, link));
      } else {
        ({ a: ep } = connectedPair({ receiveBufferBytes: RCV, sendBufferBytes: SND, mss: 1000 }, {}, link));
      }
      // From here on the guest is the test: the honest peer is cut off and every emitted segment is checked.
      link.endpoints = {};
      link.fault = (_from, seg) => {
        out.push(seg);
        return { copies: 0 };
      };
      const peerPort = passive ? PORT_A : PORT_B;
      const ourPort = passive ? PORT_B : PORT_A;
      const lastOut = (): TcpSegment => link.log.filter((l) => l.seg.srcPort === ourPort).at(-1)!.seg;
      let written = 0;
      let blocked = false;
      // Whether the peer's FIN was ever taken in order (a later hostile RST may still close the endpoint).
      let finTaken = false;
      ep.onDrain = () => (blocked = false);
      for (const s of steps) {
        const last = lastOut();
        switch (s.kind) {
          case 'segment': {
            const seg: TcpSegment = {
              srcPort: peerPort,
              dstPort: ourPort,
              seq: (last.ack + s.seqOffset) >>> 0,
              ack: (last.seq + s.ackOffset) >>> 0,
              flags: s.flags,
              window: s.window,
              payload: randomBytes(s.length, s.seqOffset),
            };
            if (s.mss !== undefined) seg.mss = s.mss;
            if (s.windowScale !== undefined) seg.windowScale = s.windowScale;
            ep.handleSegment(seg);
            break;
          }
          case 'write':
            // The app honours backpressure as the NAT does: after write() says false it waits for onDrain.
            if (!blocked) {
              written += s.amount % 20_000;
              blocked = !ep.write(randomBytes(s.amount % 20_000, s.amount));
            }
            break;
          case 'consume':
            ep.consumed(s.amount);
            break;
          case 'time':
            link.clock.advance(s.amount % 5000);
            break;
          case 'flush':
            ep.flush();
            break;
          case 'end':
            ep.end();
            break;
        }
        if (ep.state === 'CLOSE-WAIT' || ep.state === 'TIME-WAIT' || ep.state === 'LAST-ACK') finTaken = true;
        const st = ep.stats();
        assert.ok(st.reassemblyBytes + st.unconsumed <= RCV, `receive side holds ${st.reassemblyBytes}+${st.unconsumed}`);
        assert.ok(st.receiveWindow <= RCV);
        assert.ok(st.sendBuffered <= SND + 20_000, `send buffer ${st.sendBuffered}`);
      }
      void written;
      const st = ep.stats();
      if (st.bytesIn > 0) seen.delivered++;
      if (st.outOfOrderSegments > 0) seen.outOfOrder++;
      if (st.challengeAcks > 0) seen.challenged++;
      if (ep.state === 'CLOSED') seen.reset++;
      if (finTaken) seen.ended++;
      if (st.sendBuffered < written) seen.acked++;
      link.clock.advance(600_000);
      for (const seg of out) {
        assert.ok(Number.isInteger(seg.seq) && seg.seq >= 0 && seg.seq < 2 ** 32);
        assert.ok(Number.isInteger(seg.ack) && seg.ack >= 0 && seg.ack < 2 ** 32);
        assert.ok(Number.isInteger(seg.window) && seg.window >= 0 && seg.window <= 0xffff);
        assert.ok(seg.payload.length <= 1000);
        assert.equal(seg.srcPort, ourPort);
        assert.equal(seg.dstPort, peerPort);
        assert.equal(seg.flags & TCP_SYN, 0, 'no SYN once established');
      }
      // Bounded output: data segments plus at most a few answers per segment in, and the rate-limited challenges.
      const segmentsIn = steps.filter((s) => s.kind === 'segment').length;
      assert.ok(out.length <= 3 * segmentsIn + 400, `${out.length} segments out for ${segmentsIn} in`);
    }),
    fuzzParams(5 * Number(process.env.TCP_PROPERTY_RUNS ?? 60), 0x7c5e),
  );
  // The generator must reach past the checks, or the property proves little.
  for (const [what, runs] of Object.entries(seen)) assert.ok(runs >= 5, `only ${runs} runs reached '${what}'`);
});

test('hostile segments during the handshake never throw and draw only bounded, well-formed answers', () => {
  const RCV = 64 * 1024;
  const ISS = 4242;
  const PEER_ISN = 7777;
  const seen = { established: 0, closed: 0, stillHandshaking: 0 };
  fc.assert(
    fc.property(
      fc.constantFrom('syn-sent', 'pending', 'syn-received'),
      fc.array(hostileStep, { minLength: 1, maxLength: 100, size: 'max' }),
      (mode, steps) => {
        const link = new Link();
        const out: TcpSegment[] = [];
        link.fault = (_from, seg) => {
          out.push(seg);
          return { copies: 0 };
        };
        const opts = {
          localPort: PORT_B,
          remotePort: PORT_A,
          initialSeq: ISS,
          receiveBufferBytes: RCV,
          sendBufferBytes: RCV,
          mss: 1000,
        };
        const syn: TcpSegment = {
          srcPort: PORT_A,
          dstPort: PORT_B,
          seq: PEER_ISN,
          ack: 0,
          flags: TCP_SYN,
          window: 65535,
          windowScale: 7,
          payload: new Uint8Array(0),
        };
        const ep = mode === 'syn-sent' ? TcpEndpoint.connect(opts, link.io('b')) : TcpEndpoint.fromSyn(syn, opts, link.io('b'));
        if (mode === 'syn-received') ep.accept();
        let blocked = false;
        ep.onDrain = () => (blocked = false);
        for (const s of steps) {
          switch (s.kind) {
            case 'segment': {
              const seg: TcpSegment = {
                srcPort: PORT_A,
                dstPort: PORT_B,
                seq: (PEER_ISN + (mode === 'syn-sent' ? 0 : 1) + s.seqOffset) >>> 0,
                ack: (ISS + 1 + s.ackOffset) >>> 0,
                flags: s.flags,
                window: s.window,
                payload: randomBytes(s.length, s.seqOffset),
              };
              if (s.mss !== undefined) seg.mss = s.mss;
              if (s.windowScale !== undefined) seg.windowScale = s.windowScale;
              ep.handleSegment(seg);
              break;
            }
            case 'write':
              if (!blocked) blocked = !ep.write(randomBytes(s.amount % 20_000, s.amount));
              break;
            case 'consume':
              ep.consumed(s.amount);
              break;
            case 'time':
              link.clock.advance(s.amount % 5000);
              break;
            case 'flush':
              ep.flush();
              break;
            case 'end':
              ep.end();
              break;
          }
          const st = ep.stats();
          assert.ok(st.reassemblyBytes + st.unconsumed <= RCV);
          assert.ok(st.sendBuffered <= 64 * 1024 + 20_000);
        }
        if (ep.state === 'CLOSED') seen.closed++;
        else if (ep.state === 'SYN-SENT' || ep.state === 'SYN-RECEIVED') seen.stillHandshaking++;
        else seen.established++;
        link.clock.advance(600_000);
        for (const seg of out) {
          assert.ok(Number.isInteger(seg.seq) && seg.seq >= 0 && seg.seq < 2 ** 32);
          assert.ok(Number.isInteger(seg.ack) && seg.ack >= 0 && seg.ack < 2 ** 32);
          assert.ok(Number.isInteger(seg.window) && seg.window >= 0 && seg.window <= 0xffff);
          assert.ok(seg.payload.length <= 1000);
          if (seg.flags & TCP_SYN) assert.equal(seg.seq, ISS, 'every SYN or SYN-ACK carries our ISN');
        }
        if (mode === 'pending') assert.equal(out.length, 0, 'nothing at all is sent before accept()');
        const segmentsIn = steps.filter((s) => s.kind === 'segment').length;
        assert.ok(out.length <= 3 * segmentsIn + 400, `${out.length} segments out for ${segmentsIn} in`);
      },
    ),
    fuzzParams(3 * Number(process.env.TCP_PROPERTY_RUNS ?? 60), 0x5a4),
  );
  for (const [what, runs] of Object.entries(seen)) assert.ok(runs >= 3, `only ${runs} runs ended ${what}`);
});
