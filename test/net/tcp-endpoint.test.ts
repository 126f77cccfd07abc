/**
 * The TCP endpoint against another TCP endpoint through a fake link and clock: handshakes, data both ways,
 * every close path, flow control, window scaling, MSS negotiation and loss recovery.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TcpEndpoint } from '../../src/net/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../src/net/tcp/types.js';
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
