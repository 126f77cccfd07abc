/**
 * The TCP endpoint against another TCP endpoint through a fake link and clock: handshakes, data both ways,
 * every close path, flow control, window scaling, MSS negotiation and loss recovery.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TcpEndpoint } from '../../src/net/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpSegment } from '../../src/net/tcp/types.js';
import { Link, PORT_A, PORT_B, Recorder, connectedPair, pump, randomBytes } from './tcp-harness.js';

test('handshake: active open meets passive open, both ends ESTABLISHED and told so', () => {
  const { a, b, ra, rb, link } = connectedPair();
  assert.equal(a.state, 'ESTABLISHED');
  assert.equal(b.state, 'ESTABLISHED');
  assert.ok(ra.connected && rb.connected);
  assert.deepEqual(
    link.log.map((l) => `${l.from}:${l.seg.flags}`),
    [`a:${TCP_SYN}`, `b:${TCP_SYN | TCP_ACK}`, `a:${TCP_ACK}`],
  );
});

test('data both ways arrives byte-exact, then both close cleanly through TIME-WAIT', () => {
  const { a, b, ra, rb, link } = connectedPair({ timeWaitMs: 2000 }, { timeWaitMs: 2000 });
  const ab = randomBytes(300_000, 1);
  const ba = randomBytes(200_000, 2);
  pump(a, ab);
  pump(b, ba);
  link.clock.runUntilIdle();
  assert.deepEqual(rb.bytes(), ab);
  assert.deepEqual(ra.bytes(), ba);
  assert.ok(ra.ended && rb.ended);
  assert.equal(ra.closed, 'closed');
  assert.equal(rb.closed, 'closed');
  assert.equal(a.stats().bytesOut, ab.length);
  assert.equal(b.stats().bytesIn, ab.length);
  assert.equal(a.stats().retransmits, 0);
});

test('retransmission after loss: a lost data segment is sent again when the RTO expires', () => {
  const { a, rb, link } = connectedPair();
  let dropped = 0;
  link.fault = (from, seg) => {
    if (from === 'a' && seg.payload.length > 0 && dropped === 0) {
      dropped++;
      return { copies: 0 };
    }
    return {};
  };
  a.write(new TextEncoder().encode('hello'));
  link.clock.advance(100);
  assert.equal(rb.received, 0);
  link.clock.advance(2000);
  assert.equal(new TextDecoder().decode(rb.bytes()), 'hello');
  assert.equal(a.stats().timeouts, 1);
  assert.equal(a.stats().retransmits, 1);
});

test('the passive endpoint sends nothing until accept(); refuse() answers RST|ACK and closes as refused', () => {
  const link = new Link();
  const ra = new Recorder();
  let b: TcpEndpoint | undefined;
  link.onSyn = (syn) => {
    b = TcpEndpoint.fromSyn(syn, { localPort: PORT_B, remotePort: PORT_A }, link.io('b'));
    return b;
  };
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B }, link.io('a'));
  ra.attach(a);
  link.endpoints.a = a;
  link.clock.advance(500);
  assert.ok(b);
  assert.equal(b.state, 'SYN-RECEIVED');
  assert.equal(b.acceptPending, true);
  assert.equal(link.log.filter((l) => l.from === 'b').length, 0);
  let closedB: string | undefined;
  b.onClose = (r) => (closedB = r);
  b.refuse();
  link.clock.advance(10);
  assert.equal(closedB, 'refused');
  assert.equal(ra.closed, 'refused');
  assert.equal(a.state, 'CLOSED');
  const rst = link.log.find((l) => l.from === 'b')!.seg;
  assert.equal(rst.flags, TCP_RST | TCP_ACK);
});

test('abort() resets the peer', () => {
  const { a, rb, link } = connectedPair();
  a.abort();
  link.clock.advance(10);
  assert.equal(rb.closed, 'reset');
  assert.equal(a.state, 'CLOSED');
  assert.equal(link.log.at(-1)!.seg.flags & TCP_RST, TCP_RST);
  assert.equal(link.log.at(-1)!.seg.flags & TCP_FIN, 0);
});

test('handshake the other way: the gateway connects toward the guest (port forward)', () => {
  // Here b (the "guest") is the passive side; a plays the NAT opening a forwarded connection.
  const { a, b } = connectedPair({ initialSeq: 0xfffffff0 }, { initialSeq: 7 });
  assert.equal(a.state, 'ESTABLISHED');
  assert.equal(b.state, 'ESTABLISHED');
});

test('sequence numbers wrap past 2^32 without harm', () => {
  const { a, b, rb, link } = connectedPair({ initialSeq: 0xffffff00 }, { initialSeq: 0xfffff000 });
  const data = randomBytes(100_000, 3);
  pump(a, data);
  pump(b, randomBytes(10_000, 4));
  link.clock.runUntilIdle();
  assert.deepEqual(rb.bytes(), data);
  assert.equal(rb.closed, 'closed');
});

test('half-close: the guest ends first while we keep sending, and the reverse', () => {
  for (const first of ['a', 'b'] as const) {
    const { a, b, ra, rb, link } = connectedPair();
    const ends = first === 'a' ? { closer: a, other: b, rc: ra, ro: rb } : { closer: b, other: a, rc: rb, ro: ra };
    ends.closer.end();
    link.clock.advance(20);
    assert.equal(ends.closer.state, 'FIN-WAIT-2');
    assert.equal(ends.other.state, 'CLOSE-WAIT');
    assert.ok(ends.ro.ended);
    const late = randomBytes(150_000, 5);
    pump(ends.other, late, 8192, false);
    link.clock.advance(2000);
    assert.deepEqual(ends.rc.bytes(), late);
    assert.equal(ends.closer.state, 'FIN-WAIT-2');
    ends.other.end();
    assert.equal(ends.other.state, 'LAST-ACK');
    link.clock.advance(20);
    assert.equal(ends.other.state, 'CLOSED');
    assert.equal(ends.ro.closed, 'closed');
    assert.equal(ends.closer.state, 'TIME-WAIT');
    link.clock.advance(2100);
    assert.equal(ends.closer.state, 'CLOSED');
    assert.equal(ends.rc.closed, 'closed');
  }
});

test('simultaneous close: both FINs cross, both ends pass through CLOSING and TIME-WAIT', () => {
  const { a, b, ra, rb, link } = connectedPair();
  a.end();
  b.end();
  assert.equal(a.state, 'FIN-WAIT-1');
  assert.equal(b.state, 'FIN-WAIT-1');
  link.clock.advance(1);
  assert.equal(a.state, 'CLOSING');
  assert.equal(b.state, 'CLOSING');
  link.clock.advance(1);
  assert.equal(a.state, 'TIME-WAIT');
  assert.equal(b.state, 'TIME-WAIT');
  link.clock.runUntilIdle();
  assert.equal(ra.closed, 'closed');
  assert.equal(rb.closed, 'closed');
});

test('simultaneous open: two SYNs cross and both ends reach ESTABLISHED', () => {
  const link = new Link();
  const ra = new Recorder();
  const rb = new Recorder();
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B, initialSeq: 100 }, link.io('a'));
  const b = TcpEndpoint.connect({ localPort: PORT_B, remotePort: PORT_A, initialSeq: 900 }, link.io('b'));
  ra.attach(a);
  rb.attach(b);
  link.endpoints = { a, b };
  link.clock.advance(10);
  assert.equal(a.state, 'ESTABLISHED');
  assert.equal(b.state, 'ESTABLISHED');
  assert.ok(ra.connected && rb.connected);
  a.write(new Uint8Array([1, 2, 3]));
  link.clock.advance(10);
  assert.deepEqual([...rb.bytes()], [1, 2, 3]);
});

test('RST: only an exact sequence number resets; one merely in the window earns a challenge ACK', () => {
  const { a, b, rb, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  const base = { srcPort: PORT_A, dstPort: PORT_B, ack: 0, window: 0, payload: new Uint8Array(0) };
  const before = b.stats().challengeAcks;
  b.handleSegment({ ...base, seq: 1001 + 100, flags: TCP_RST });
  assert.equal(b.state, 'ESTABLISHED');
  assert.equal(b.stats().challengeAcks, before + 1);
  const challenge = link.log.at(-1)!;
  assert.equal(challenge.from, 'b');
  assert.equal(challenge.seg.flags, TCP_ACK);
  assert.equal(challenge.seg.ack, 1001);
  b.handleSegment({ ...base, seq: 1001 + 10_000_000, flags: TCP_RST }); // outside the window: silently ignored
  assert.equal(b.state, 'ESTABLISHED');
  assert.equal(b.stats().challengeAcks, before + 1);
  b.handleSegment({ ...base, seq: 1001, flags: TCP_RST });
  assert.equal(b.state, 'CLOSED');
  assert.equal(rb.closed, 'reset');
  assert.equal(a.state, 'ESTABLISHED');
});

test('SYN in a synchronized state, ACK of unsent data and out-of-window data each get an ACK and change nothing', () => {
  const { b, rb, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  const base = { srcPort: PORT_A, dstPort: PORT_B, window: 1000, payload: new Uint8Array(0) };
  const acksBefore = link.log.filter((l) => l.from === 'b').length;
  b.handleSegment({ ...base, seq: 1001, ack: 5001, flags: TCP_SYN });
  b.handleSegment({ ...base, seq: 1001, ack: 5001 + 100_000, flags: TCP_ACK, payload: new Uint8Array([9]) });
  b.handleSegment({ ...base, seq: 1001 + 3_000_000, ack: 5001, flags: TCP_ACK, payload: new Uint8Array([9]) });
  b.handleSegment({ ...base, seq: 1001 - 70_000, ack: 5001, flags: TCP_ACK, payload: new Uint8Array([9]) });
  const answers = link.log.filter((l) => l.from === 'b').slice(acksBefore);
  assert.equal(answers.length, 4);
  for (const l of answers) {
    assert.equal(l.seg.flags, TCP_ACK);
    assert.equal(l.seg.ack, 1001);
    assert.equal(l.seg.seq, 5001);
  }
  assert.equal(b.state, 'ESTABLISHED');
  assert.equal(rb.received, 0);
  assert.equal(b.stats().challengeAcks, 4);
});

test('flow control: a reader that does not consume closes the window; consumed() reopens it', () => {
  const { a, b, rb, link } = connectedPair({}, { receiveBufferBytes: 64 * 1024 });
  rb.autoConsume = false;
  const data = randomBytes(500_000, 6);
  const p = pump(a, data, 16 * 1024, true);
  link.clock.advance(5_000);
  assert.equal(rb.received, 64 * 1024);
  assert.equal(b.stats().unconsumed, 64 * 1024);
  assert.equal(b.stats().receiveWindow, 0);
  assert.equal(a.stats().sendWindow, 0);
  assert.ok(a.stats().sendBuffered <= 256 * 1024 + 16 * 1024, 'write() stops at the send buffer');
  assert.ok(a.stats().windowProbes > 0, 'a probes the zero window');
  assert.equal(a.state, 'ESTABLISHED');
  assert.equal(p.done(), false);
  // A long stall kills nothing: probes are not retransmission timeouts.
  link.clock.advance(600_000);
  assert.equal(a.state, 'ESTABLISHED');
  assert.equal(rb.received, 64 * 1024);
  rb.autoConsume = true;
  b.consumed(rb.received);
  link.clock.runUntilIdle();
  assert.deepEqual(rb.bytes(), data);
  assert.ok(rb.ended);
  assert.equal(b.state, 'CLOSE-WAIT');
  assert.ok(b.stats().windowUpdates > 0);
});

test('window scaling: a 1 MiB receive buffer is advertised scaled and carries a big transfer', () => {
  const { a, b, rb, link } = connectedPair({}, { receiveBufferBytes: 1024 * 1024 });
  const syn = link.log[0]!.seg;
  const synAck = link.log[1]!.seg;
  assert.equal(syn.windowScale, 3); // 256 KiB default on a: 262144 >> 3 fits 16 bits
  assert.equal(synAck.windowScale, 5); // 1 MiB >> 5 fits 16 bits
  const data = randomBytes(8 * 1024 * 1024, 7);
  pump(a, data, 64 * 1024);
  let maxWindow = 0;
  link.fault = (from, seg) => {
    if (from === 'b') maxWindow = Math.max(maxWindow, seg.window * 32);
    return {};
  };
  link.clock.runUntilIdle();
  assert.deepEqual(rb.bytes(), data);
  assert.ok(maxWindow > 65535, `scaled window ${maxWindow}`);
  assert.ok(a.stats().sendWindow <= 1024 * 1024);
  assert.equal(b.stats().bytesIn, data.length);
});

test('without the peer offering scaling, neither side scales and windows stay below 64 KiB', () => {
  const link = new Link();
  const ra = new Recorder();
  let b: TcpEndpoint | undefined;
  link.onSyn = (syn) => {
    const { windowScale: _ignored, ...noScale } = syn;
    b = TcpEndpoint.fromSyn(noScale, { localPort: PORT_B, remotePort: PORT_A }, link.io('b'));
    b.accept();
    return b;
  };
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B }, link.io('a'));
  ra.attach(a);
  link.endpoints.a = a;
  link.clock.advance(10);
  assert.ok(b);
  assert.equal(link.log[1]!.seg.windowScale, undefined);
  const data = randomBytes(200_000, 8);
  pump(b, data);
  link.clock.runUntilIdle();
  assert.deepEqual(ra.bytes(), data);
  for (const l of link.log) assert.ok(l.seg.window <= 0xffff);
  assert.ok(b.stats().sendWindow <= 0xffff);
});

test('MSS: each side sends at most the smaller MSS, and 536 when the SYN has no MSS option', () => {
  const { a, b, link } = connectedPair({ mss: 1000 }, { mss: 1460 });
  pump(a, randomBytes(50_000, 9));
  pump(b, randomBytes(50_000, 10));
  link.clock.runUntilIdle();
  const sizes = (side: 'a' | 'b'): number[] => link.log.filter((l) => l.from === side).map((l) => l.seg.payload.length);
  assert.equal(Math.max(...sizes('a')), 1000);
  assert.equal(Math.max(...sizes('b')), 1000);
  assert.equal(link.log[0]!.seg.mss, 1000);
  assert.equal(link.log[1]!.seg.mss, 1460);

  const link2 = new Link();
  const out: number[] = [];
  const ep = TcpEndpoint.fromSyn(
    { srcPort: PORT_A, dstPort: PORT_B, seq: 10, ack: 0, flags: TCP_SYN, window: 65535, payload: new Uint8Array(0) },
    { localPort: PORT_B, remotePort: PORT_A, initialSeq: 500 },
    { ...link2.io('b'), emit: (s) => out.push(s.payload.length) },
  );
  ep.accept();
  ep.handleSegment({
    srcPort: PORT_A,
    dstPort: PORT_B,
    seq: 11,
    ack: 501,
    flags: TCP_ACK,
    window: 65535,
    payload: new Uint8Array(0),
  });
  assert.equal(ep.state, 'ESTABLISHED');
  ep.write(randomBytes(5000, 11));
  assert.equal(Math.max(...out), 536);
});

test('fast retransmit: one lost segment in a stream is repaired by three duplicate ACKs, without a timeout', () => {
  const { a, rb, link } = connectedPair();
  let dataSeen = 0;
  link.fault = (from, seg) => {
    if (from === 'a' && seg.payload.length > 0 && ++dataSeen === 5) return { copies: 0 };
    return {};
  };
  const data = randomBytes(200_000, 12);
  pump(a, data, 200_000, false);
  link.clock.advance(150); // well under the 200 ms RTO floor
  assert.deepEqual(rb.bytes(), data);
  assert.equal(a.stats().fastRetransmits, 1);
  assert.equal(a.stats().timeouts, 0);
  assert.ok(a.stats().dupAcksIn >= 3);
});

test('timeout: a peer that vanishes makes the endpoint give up with a RST and onClose(timeout)', () => {
  const { a, ra, link } = connectedPair({ maxRetransmits: 5 });
  link.fault = (from) => (from === 'a' ? { copies: 0 } : {});
  a.write(new Uint8Array(100));
  const spent = link.clock.runUntilIdle();
  assert.equal(ra.closed, 'timeout');
  assert.equal(a.state, 'CLOSED');
  assert.equal(a.stats().timeouts, 6);
  assert.equal(link.log.at(-1)!.seg.flags & TCP_RST, TCP_RST);
  // The handshake's RTT sample (2 ms) puts the RTO at its 200 ms floor, doubled at each expiry:
  // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4 s.
  assert.equal(spent, 12_600);
});

test('an unanswered SYN times out; a RST|ACK answer means refused', () => {
  const link = new Link();
  const ra = new Recorder();
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B, maxSynRetransmits: 3 }, link.io('a'));
  ra.attach(a);
  link.endpoints.a = a;
  link.clock.runUntilIdle();
  assert.equal(ra.closed, 'timeout');
  assert.equal(link.log.length, 4); // SYN + 3 repeats, no RST in SYN-SENT
  assert.equal(a.stats().retransmits, 3);
});

test('ACK policy: a burst handled in one tick gets one ACK; full segments are ACKed at least every second one', () => {
  const { a, b, link } = connectedPair();
  // Hold a's data segments, then hand them to b in one synchronous batch as the stack would.
  const held: TcpSegment[] = [];
  link.fault = (from, seg) => {
    if (from === 'a' && seg.payload.length > 0) {
      held.push(seg);
      return { copies: 0 };
    }
    return {};
  };
  const acksFromB = (): TcpSegment[] => link.log.filter((l) => l.from === 'b').map((l) => l.seg);
  a.write(randomBytes(1460 * 5, 13));
  assert.equal(held.length, 5);
  const before = acksFromB().length;
  for (const seg of held) b.handleSegment(seg);
  assert.equal(acksFromB().length - before, 2, 'one ACK per two full segments, at once');
  link.clock.advance(0);
  assert.equal(acksFromB().length - before, 3, 'the batch end ACKs the fifth');
  const isn = link.log[0]!.seg.seq;
  assert.equal(acksFromB().at(-1)!.ack, (isn + 1 + 1460 * 5) >>> 0);
  // flush() is the same batch end, on demand.
  held.length = 0;
  a.write(new Uint8Array(10));
  b.handleSegment(held[0]!);
  assert.equal(acksFromB().length - before, 3);
  b.flush();
  assert.equal(acksFromB().length - before, 4);
  assert.equal(acksFromB().at(-1)!.ack, (isn + 1 + 1460 * 5 + 10) >>> 0);
  link.clock.advance(0);
  assert.equal(acksFromB().length - before, 4, 'flush() cancelled the pending batch-end ACK');
});

test('out-of-order segments are held and ACKed at once; the hole fills and delivery is in order', () => {
  const { a, rb, link } = connectedPair();
  let n = 0;
  link.fault = (from, seg) => (from === 'a' && seg.payload.length > 0 && ++n === 1 ? { delayMs: 30 } : {});
  const data = randomBytes(1460 * 2, 14);
  a.write(data);
  link.clock.advance(2);
  assert.equal(rb.received, 0);
  const dup = link.log.at(-1)!;
  assert.equal(dup.from, 'b');
  link.clock.advance(40);
  assert.deepEqual(rb.bytes(), data);
});

test('window updates: consuming less than an MSS of a closed window sends nothing; a worthwhile amount sends one', () => {
  const { a, b, rb, link } = connectedPair({}, { receiveBufferBytes: 16 * 1024 });
  rb.autoConsume = false;
  pump(a, randomBytes(100_000, 15), 100_000, false);
  link.clock.advance(50);
  // 11 full segments filled 16060 bytes; a does not send the silly 324-byte rest.
  const shown = b.stats().receiveWindow;
  assert.equal(shown, 16 * 1024 - 11 * 1460);
  const fromB = (): number => link.log.filter((l) => l.from === 'b').length;
  const before = fromB();
  b.consumed(1000); // below min(MSS, buffer / 2): the guest would only send a silly small segment
  link.clock.advance(0);
  assert.equal(fromB(), before);
  b.consumed(1000); // now 2000 bytes free: worth telling
  link.clock.advance(0);
  assert.equal(fromB(), before + 1);
  const update = link.log.at(-1)!.seg;
  assert.equal(update.payload.length, 0);
  assert.equal(link.log[1]!.seg.windowScale, 0, '16 KiB needs no scaling');
  assert.equal(update.window, shown + 2000);
  assert.equal(b.stats().windowUpdates, 1);
  void a;
});

test('PSH marks only the segment that empties the queue', () => {
  const { a, link } = connectedPair();
  a.write(randomBytes(5000, 16));
  const data = link.log.filter((l) => l.from === 'a' && l.seg.payload.length > 0).map((l) => l.seg);
  assert.deepEqual(
    data.map((s) => s.payload.length),
    [1460, 1460, 1460, 620],
  );
  assert.deepEqual(
    data.map((s) => (s.flags & TCP_PSH) !== 0),
    [false, false, false, true],
  );
});
