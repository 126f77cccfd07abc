/**
 * The exact segments of one short connection (handshake, one request and one reply, close), with sequence and
 * acknowledgment numbers relative to each side's ISN: any change to what goes on the wire shows up here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpSegment } from '../../src/net/tcp/types.js';
import { connectedPair, type Side } from './tcp-harness.js';

const ISN: Record<Side, number> = { a: 1000, b: 0xfffffff0 }; // b's numbers wrap during the exchange

function flagNames(flags: number): string {
  const names: Array<[number, string]> = [
    [TCP_SYN, 'SYN'],
    [TCP_FIN, 'FIN'],
    [TCP_RST, 'RST'],
    [TCP_PSH, 'PSH'],
    [TCP_ACK, 'ACK'],
  ];
  return names
    .filter(([bit]) => flags & bit)
    .map(([, name]) => name)
    .join('|');
}

function describe(from: Side, at: number, seg: TcpSegment): string {
  const to: Side = from === 'a' ? 'b' : 'a';
  const rel = (n: number, base: number): number => (n - base) >>> 0;
  const ack = seg.flags & TCP_ACK ? ` ack=${rel(seg.ack, ISN[to])}` : '';
  const opts = [seg.mss !== undefined ? `mss ${seg.mss}` : '', seg.windowScale !== undefined ? `ws ${seg.windowScale}` : '']
    .filter(Boolean)
    .join(' ');
  const data = seg.payload.length ? ` "${new TextDecoder().decode(seg.payload)}"` : '';
  return `t=${at} ${from}>${to} ${flagNames(seg.flags)} seq=${rel(seg.seq, ISN[from])}${ack} win=${seg.window}${opts ? ` <${opts}>` : ''}${data}`;
}

test('golden: handshake, request, reply and close, segment by segment', () => {
  const { a, b, link, ra } = connectedPair(
    { initialSeq: ISN.a, timeWaitMs: 2000 },
    { initialSeq: ISN.b, timeWaitMs: 2000, receiveBufferBytes: 128 * 1024, mss: 1400 },
  );
  b.onData = (bytes) => {
    b.consumed(bytes.length);
    if (new TextDecoder().decode(bytes) === 'GET /') b.write(new TextEncoder().encode('HTTP 200'));
  };
  b.onEnd = () => b.end();
  a.write(new TextEncoder().encode('GET /'));
  link.clock.advance(10);
  a.end();
  link.clock.runUntilIdle();
  assert.equal(new TextDecoder().decode(ra.bytes()), 'HTTP 200');
  assert.equal(ra.closed, 'closed');
  assert.deepEqual(
    link.log.map((l) => describe(l.from, l.at, l.seg)),
    [
      't=0 a>b SYN seq=0 win=65535 <mss 1460 ws 3>',
      't=1 b>a SYN|ACK seq=0 ack=1 win=65535 <mss 1400 ws 2>',
      't=2 a>b ACK seq=1 ack=1 win=32768',
      't=50 a>b PSH|ACK seq=1 ack=1 win=32768 "GET /"',
      't=51 b>a PSH|ACK seq=1 ack=6 win=32768 "HTTP 200"',
      // a's right edge stays put for 8 consumed bytes (receiver silly window avoidance): 32767 * 8 = 256 KiB - 8.
      't=52 a>b ACK seq=6 ack=9 win=32767',
      't=60 a>b FIN|ACK seq=6 ack=9 win=32767',
      't=61 b>a FIN|ACK seq=9 ack=7 win=32768',
      't=62 a>b ACK seq=7 ack=10 win=32767',
    ],
  );
  assert.equal(link.clock.now, 2062, 'a leaves TIME-WAIT 2 s after its last ACK');
});
