/**
 * The edges of a connection's life as the NAT drives it: work queued before the handshake, a guest that gives up
 * while the host side is still connecting, lost handshake segments, TIME-WAIT meeting a reused port pair, and the
 * rate limit on answers to junk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TcpEndpoint, TcpNotASynError, isConnectionRequest } from '../../src/net/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpSegment } from '../../src/net/tcp/types.js';
import { Link, PORT_A, PORT_B, Recorder, connectedPair } from './tcp-harness.js';

const EMPTY = new Uint8Array(0);

function guestSyn(seq: number): TcpSegment {
  return {
    srcPort: PORT_A,
    dstPort: PORT_B,
    seq,
    ack: 0,
    flags: TCP_SYN,
    window: 65535,
    mss: 1460,
    windowScale: 7,
    payload: EMPTY,
  };
}

test('fromSyn takes only a connection request', () => {
  assert.equal(isConnectionRequest(guestSyn(1)), true);
  const link = new Link();
  for (const flags of [TCP_SYN | TCP_ACK, TCP_ACK, TCP_SYN | TCP_RST, 0]) {
    assert.throws(
      () => TcpEndpoint.fromSyn({ ...guestSyn(1), flags }, { localPort: PORT_B, remotePort: PORT_A }, link.io('b')),
      TcpNotASynError,
    );
  }
});

test('data and FIN queued before accept() go out once the handshake completes', () => {
  const link = new Link();
  const ra = new Recorder();
  let b: TcpEndpoint | undefined;
  link.onSyn = (syn) => {
    b = TcpEndpoint.fromSyn(syn, { localPort: PORT_B, remotePort: PORT_A }, link.io('b'));
    // The host answered and closed before the NAT even accepted.
    assert.equal(b.write(new TextEncoder().encode('banner\n')), true);
    b.end();
    return b;
  };
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B }, link.io('a'));
  ra.attach(a);
  link.endpoints.a = a;
  link.clock.advance(5);
  assert.ok(b);
  assert.equal(link.log.filter((l) => l.from === 'b').length, 0);
  b.accept();
  link.clock.advance(10);
  assert.equal(new TextDecoder().decode(ra.bytes()), 'banner\n');
  assert.ok(ra.ended);
  assert.equal(b.state, 'FIN-WAIT-2');
  a.end();
  link.clock.runUntilIdle();
  assert.equal(b.state, 'CLOSED');
  assert.equal(ra.closed, 'closed');
});

test('while accept() is pending only an exact RST matters: the guest giving up closes it as reset', () => {
  const link = new Link();
  const b = TcpEndpoint.fromSyn(guestSyn(1000), { localPort: PORT_B, remotePort: PORT_A }, link.io('b'));
  let closed: string | undefined;
  b.onClose = (r) => (closed = r);
  b.handleSegment(guestSyn(1000)); // the guest repeats its SYN
  b.handleSegment({ ...guestSyn(1000), flags: TCP_ACK, ack: 5 });
  b.handleSegment({ ...guestSyn(1000), flags: TCP_RST, seq: 1005 });
  assert.equal(b.state, 'SYN-RECEIVED');
  assert.equal(link.log.length, 0, 'nothing is sent before accept()');
  b.handleSegment({ ...guestSyn(1000), flags: TCP_RST, seq: 1001 });
  assert.equal(closed, 'reset');
  b.accept();
  assert.equal(link.log.length, 0, 'accept() after close does nothing');
});

test('a lost SYN-ACK is sent again when the guest repeats its SYN, and by our own timer', () => {
  const link = new Link();
  const b = TcpEndpoint.fromSyn(guestSyn(1000), { localPort: PORT_B, remotePort: PORT_A, initialSeq: 77 }, link.io('b'));
  b.accept();
  b.handleSegment(guestSyn(1000));
  link.clock.advance(1000); // the initial RTO
  const synAcks = link.log.filter((l) => l.seg.flags === (TCP_SYN | TCP_ACK));
  assert.equal(synAcks.length, 3);
  for (const l of synAcks) {
    assert.equal(l.seg.seq, 77);
    assert.equal(l.seg.ack, 1001);
    assert.equal(l.seg.windowScale, 3);
  }
  b.handleSegment({ ...guestSyn(1001), flags: TCP_ACK, ack: 78, window: 1000 });
  assert.equal(b.state, 'ESTABLISHED');
  assert.equal(b.stats().sendWindow, 1000 * 128, 'the guest window is scaled by its offer');
});

test('a SYN reusing the port pair ends TIME-WAIT at once; the NAT then sees CLOSED and opens anew', () => {
  const { a, b, ra, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  a.end();
  link.clock.advance(5);
  b.end();
  link.clock.advance(5);
  assert.equal(a.state, 'TIME-WAIT');
  // The guest ("a" here is the side in TIME-WAIT; its peer reconnects from the same port with a later ISN).
  a.handleSegment({
    srcPort: PORT_B,
    dstPort: PORT_A,
    seq: 5002 + 100_000,
    ack: 0,
    flags: TCP_SYN,
    window: 65535,
    payload: EMPTY,
  });
  assert.equal(a.state, 'CLOSED');
  assert.equal(ra.closed, 'closed');
  void b;
});

test('TIME-WAIT answers a repeated FIN with an ACK and starts its wait again', () => {
  const { a, b, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  a.end();
  link.clock.advance(5);
  b.end();
  link.clock.advance(5);
  assert.equal(a.state, 'TIME-WAIT');
  link.endpoints.b = undefined; // b is gone: nothing answers a's ACKs with a RST
  link.clock.advance(1500);
  const before = link.log.length;
  a.handleSegment({
    srcPort: PORT_B,
    dstPort: PORT_A,
    seq: 5001,
    ack: 1002,
    flags: TCP_FIN | TCP_ACK,
    window: 1000,
    payload: EMPTY,
  });
  const answer = link.log.slice(before);
  assert.equal(answer.length, 1);
  assert.equal(answer[0]!.seg.flags, TCP_ACK);
  assert.equal(answer[0]!.seg.ack, 5002);
  link.clock.advance(1500);
  assert.equal(a.state, 'TIME-WAIT', 'the repeated FIN restarted the 2 s wait');
  link.clock.advance(600);
  assert.equal(a.state, 'CLOSED');
});

test('answers to junk are rate-limited: a flood of in-window RSTs draws at most 100 challenge ACKs a second', () => {
  const { b, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  const before = link.log.filter((l) => l.from === 'b').length;
  for (let i = 0; i < 10_000; i++) {
    b.handleSegment({ srcPort: PORT_A, dstPort: PORT_B, seq: 1002 + i, ack: 0, flags: TCP_RST, window: 0, payload: EMPTY });
  }
  assert.equal(b.state, 'ESTABLISHED');
  assert.equal(link.log.filter((l) => l.from === 'b').length - before, 100);
  assert.equal(b.stats().challengeAcksSuppressed, 9_900);
  link.clock.advance(1000);
  b.handleSegment({ srcPort: PORT_A, dstPort: PORT_B, seq: 1500, ack: 0, flags: TCP_RST, window: 0, payload: EMPTY });
  assert.equal(link.log.filter((l) => l.from === 'b').length - before, 101, 'the budget refills after a second');
});

test('after close every method is a harmless no-op', () => {
  const { a, link } = connectedPair();
  a.abort();
  const before = link.log.length;
  assert.equal(a.write(new Uint8Array(10)), false);
  a.end();
  a.consumed(10);
  a.flush();
  a.abort();
  a.refuse();
  a.handleSegment({ srcPort: PORT_B, dstPort: PORT_A, seq: 0, ack: 0, flags: TCP_RST, window: 0, payload: EMPTY });
  assert.equal(link.log.length, before);
  link.clock.advance(10); // the RST reaches b, which closes too
  assert.equal(link.clock.pending, 0, 'no timer outlives the endpoints');
});

test('a malformed segment from a buggy caller (negative, fractional, NaN, oversized fields) is normalized, not thrown on', () => {
  const { b, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000 });
  const junk = [-1, 2 ** 40, 0.5, Number.NaN, Infinity, -Infinity];
  for (const v of junk) {
    b.handleSegment({
      srcPort: v,
      dstPort: v,
      seq: v,
      ack: v,
      flags: v,
      window: v,
      mss: v,
      windowScale: v,
      payload: new Uint8Array(3),
    });
    b.handleSegment({
      srcPort: PORT_A,
      dstPort: PORT_B,
      seq: v,
      ack: 5001,
      flags: TCP_ACK,
      window: v,
      payload: null as unknown as Uint8Array,
    });
  }
  assert.equal(b.state, 'ESTABLISHED');
  for (const l of link.log) {
    assert.ok(Number.isInteger(l.seg.seq) && l.seg.seq >= 0 && l.seg.seq < 2 ** 32);
    assert.ok(Number.isInteger(l.seg.ack) && l.seg.ack >= 0 && l.seg.ack < 2 ** 32);
  }
});

test("Linux-style zero-window probes and keepalives (an old byte's number, no data) draw an ACK with our window", () => {
  const { b, rb, link } = connectedPair({ initialSeq: 1000 }, { initialSeq: 5000, receiveBufferBytes: 64 * 1024 });
  rb.autoConsume = false;
  const before = link.log.length;
  b.handleSegment({ srcPort: PORT_A, dstPort: PORT_B, seq: 1000, ack: 5001, flags: TCP_ACK, window: 1000, payload: EMPTY });
  const answer = link.log.slice(before);
  assert.equal(answer.length, 1);
  assert.equal(answer[0]!.from, 'b');
  assert.equal(answer[0]!.seg.flags, TCP_ACK);
  assert.equal(answer[0]!.seg.ack, 1001);
  assert.equal(answer[0]!.seg.window * 2, 64 * 1024, 'the current window (64 KiB, scale 1)');
  assert.equal(b.state, 'ESTABLISHED');
});
