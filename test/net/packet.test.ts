import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { internetChecksum } from '../../src/net/packet/checksum.js';
import {
  parseEthernet,
  parseMac,
  formatMac,
  readMac,
  ETHERTYPE_IPV4,
  ETHERTYPE_ARP,
  BROADCAST_MAC,
  isMulticastMac,
} from '../../src/net/packet/ethernet.js';
import { parseIpv4, parseIp, formatIp, writeIpv4Header, IPPROTO_UDP } from '../../src/net/packet/ipv4.js';
import { parseArp, buildArpFrame, ARP_REQUEST } from '../../src/net/packet/arp.js';
import { parseIcmp, buildIcmpEchoFrame, ICMP_ECHO_REQUEST } from '../../src/net/packet/icmp.js';
import { parseUdp, buildUdpFrame } from '../../src/net/packet/udp.js';
import { parseTcp, buildTcpFrame } from '../../src/net/packet/tcp.js';
import { TCP_ACK, TCP_SYN, type TcpSegment } from '../../src/net/tcp/types.js';
import type { Ipv4Header } from '../../src/net/packet/ipv4.js';

const MAC_A = parseMac('52:54:00:12:34:56');
const MAC_B = parseMac('52:55:0a:00:02:02');
const IP_A = parseIp('10.0.2.15')!;
const IP_B = parseIp('10.0.2.2')!;

function ipOf(frame: Uint8Array): Ipv4Header {
  const eth = parseEthernet(frame);
  assert.equal(typeof eth, 'object');
  const ip = parseIpv4(frame, 14);
  if (typeof ip === 'string') assert.fail(ip);
  return ip;
}

test('checksum: the RFC 1071 example and a textbook IPv4 header', () => {
  // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2 (checksum = ~ddf2 = 220d).
  assert.equal(internetChecksum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0, 8), 0x220d);
  const hdr = Uint8Array.from([0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7]);
  assert.equal(internetChecksum(hdr, 0, 20), 0xb861);
  const built = new Uint8Array(20 + 0x73 - 20);
  writeIpv4Header(built, 0, parseIp('192.168.0.1')!, parseIp('192.168.0.199')!, IPPROTO_UDP, 0x73 - 20);
  // Our header sets DF and TTL 64 like the vector, so the checksum must match it exactly.
  assert.equal((built[10] << 8) | built[11], 0xb861);
});

test('MAC and IP text round trips', () => {
  assert.equal(formatMac(MAC_A), '52:54:00:12:34:56');
  assert.equal(formatMac(BROADCAST_MAC), 'ff:ff:ff:ff:ff:ff');
  assert.ok(isMulticastMac(BROADCAST_MAC));
  assert.ok(isMulticastMac(parseMac('01:00:5e:00:00:01')));
  assert.ok(!isMulticastMac(MAC_A));
  assert.throws(() => parseMac('52:54:00:12:34'), { name: 'MacParseError' });
  assert.equal(parseIp('256.0.0.1'), undefined);
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (ip) => parseIp(formatIp(ip)) === ip));
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => parseMac(formatMac(readMac(b, 0))) === readMac(b, 0)),
  );
});

test('ethernet: named errors', () => {
  assert.equal(parseEthernet(new Uint8Array(13)), 'FrameTooShort');
  assert.equal(parseEthernet(new Uint8Array(1515)), 'FrameTooLong');
  const f = new Uint8Array(60);
  f[12] = 0x81;
  assert.equal(parseEthernet(f), 'VlanTagged');
  f[12] = 0x05;
  f[13] = 0xdc;
  assert.equal(parseEthernet(f), 'UnknownEtherType');
});

test('ARP: build and parse round trip; bad header', () => {
  const f = buildArpFrame(ARP_REQUEST, MAC_A, IP_A, 0, IP_B, BROADCAST_MAC);
  const eth = parseEthernet(f);
  assert.ok(typeof eth === 'object' && eth.etherType === ETHERTYPE_ARP && eth.dst === BROADCAST_MAC);
  assert.deepEqual(parseArp(f, 14), { op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetMac: 0, targetIp: IP_B });
  f[15] = 6;
  assert.equal(parseArp(f, 14), 'BadArpHeader');
  assert.equal(parseArp(f.subarray(0, 30), 14), 'FrameTooShort');
});

test('IPv4: each named error', () => {
  const good = buildUdpFrame(MAC_B, MAC_A, IP_A, IP_B, 1000, 53, new Uint8Array(10));
  const mutate = (fn: (f: Uint8Array) => void, fixChecksum = true) => {
    const f = good.slice();
    fn(f);
    if (fixChecksum) {
      f[24] = 0;
      f[25] = 0;
      const c = internetChecksum(f, 14, 14 + (f[14] & 0xf) * 4 > f.length ? 34 : 14 + Math.max(20, (f[14] & 0xf) * 4));
      f[24] = c >>> 8;
      f[25] = c & 0xff;
    }
    return parseIpv4(f, 14);
  };
  assert.equal(typeof parseIpv4(good, 14), 'object');
  assert.equal(parseIpv4(good.subarray(0, 30), 14), 'FrameTooShort');
  assert.equal(
    mutate((f) => (f[14] = 0x65)),
    'BadIpVersion',
  );
  assert.equal(
    mutate((f) => (f[14] = 0x44)),
    'BadIpHeaderLength',
  );
  assert.equal(
    mutate((f) => (f[14] = 0x4f)),
    'BadIpHeaderLength',
  );
  assert.equal(
    mutate((f) => (f[17] = 0xff)),
    'BadIpTotalLength',
  );
  assert.equal(
    mutate((f) => (f[17] = 10)),
    'BadIpTotalLength',
  );
  assert.equal(
    mutate((f) => (f[22] ^= 1), false),
    'BadIpChecksum',
  );
  assert.equal(
    mutate((f) => (f[20] = 0x20)),
    'IpFragment',
  );
  assert.equal(
    mutate((f) => (f[21] = 0x08)),
    'IpFragment',
  );
  // Ethernet padding after the datagram is ignored.
  const padded = new Uint8Array(good.length + 6);
  padded.set(good);
  const ip = parseIpv4(padded, 14);
  assert.ok(typeof ip === 'object' && ip.payloadLength === 18);
  assert.equal(typeof parseUdp(padded, ip), 'object');
});

test('ICMP echo: round trip and errors', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ maxLength: 1400 }),
      (id, seq, data) => {
        const f = buildIcmpEchoFrame(MAC_B, MAC_A, IP_A, IP_B, ICMP_ECHO_REQUEST, id, seq, data);
        const m = parseIcmp(f, ipOf(f));
        assert.ok(typeof m === 'object');
        assert.equal(m.type, ICMP_ECHO_REQUEST);
        assert.equal(m.id, id);
        assert.equal(m.seq, seq);
        assert.deepEqual(Array.from(m.data), Array.from(data));
        f[f.length - 1 - (data.length > 0 ? 0 : 1)] ^= 0x40;
        assert.equal(parseIcmp(f, ipOf(f)), 'BadIcmpChecksum');
      },
    ),
  );
});

test('UDP: round trip, zero checksum accepted, errors', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ maxLength: 1472 }),
      (sp, dp, data) => {
        const f = buildUdpFrame(MAC_B, MAC_A, IP_A, IP_B, sp, dp, data);
        const u = parseUdp(f, ipOf(f));
        assert.ok(typeof u === 'object');
        assert.equal(u.srcPort, sp);
        assert.equal(u.dstPort, dp);
        assert.deepEqual(Array.from(u.payload), Array.from(data));
      },
    ),
  );
  const f = buildUdpFrame(MAC_B, MAC_A, IP_A, IP_B, 1, 2, Uint8Array.from([1, 2, 3]));
  f[42] ^= 1;
  assert.equal(parseUdp(f, ipOf(f)), 'BadUdpChecksum');
  f[40] = 0;
  f[41] = 0;
  assert.equal(typeof parseUdp(f, ipOf(f)), 'object', 'a zero checksum means none was computed');
  f[39] = 7;
  assert.equal(parseUdp(f, ipOf(f)), 'BadUdpLength');
  f[39] = 12;
  assert.equal(parseUdp(f, ipOf(f)), 'BadUdpLength');
});

const segArb: fc.Arbitrary<TcpSegment> = fc.record(
  {
    srcPort: fc.integer({ min: 0, max: 0xffff }),
    dstPort: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    ack: fc.integer({ min: 0, max: 0xffffffff }),
    flags: fc.integer({ min: 0, max: 0xff }),
    window: fc.integer({ min: 0, max: 0xffff }),
    mss: fc.integer({ min: 0, max: 0xffff }),
    windowScale: fc.integer({ min: 0, max: 14 }),
    sackPermitted: fc.constant(true),
    timestamp: fc.record({ value: fc.integer({ min: 0, max: 0xffffffff }), echo: fc.integer({ min: 0, max: 0xffffffff }) }),
    payload: fc.uint8Array({ maxLength: 1400 }),
  },
  { requiredKeys: ['srcPort', 'dstPort', 'seq', 'ack', 'flags', 'window', 'payload'] },
);

test('TCP: round trip with every option combination', () => {
  fc.assert(
    fc.property(segArb, (seg) => {
      const f = buildTcpFrame(MAC_B, MAC_A, IP_A, IP_B, seg);
      const parsed = parseTcp(f, ipOf(f));
      assert.ok(typeof parsed === 'object');
      assert.deepEqual(
        { ...parsed, payload: Array.from(parsed.payload) },
        { ...seg, ...(seg.timestamp ? { timestamp: { ...seg.timestamp } } : {}), payload: Array.from(seg.payload) },
      );
    }),
  );
});

test('TCP: named errors for data offset, checksum and options', () => {
  const seg: TcpSegment = {
    srcPort: 1,
    dstPort: 2,
    seq: 3,
    ack: 4,
    flags: TCP_SYN | TCP_ACK,
    window: 100,
    mss: 1460,
    payload: new Uint8Array(0),
  };
  const good = buildTcpFrame(MAC_B, MAC_A, IP_A, IP_B, seg);
  const fixTcp = (f: Uint8Array) => {
    // Recompute the TCP checksum after a mutation so the parser reaches the option checks.
    f[50] = 0;
    f[51] = 0;
    let sum = (IP_A >>> 16) + (IP_A & 0xffff) + (IP_B >>> 16) + (IP_B & 0xffff) + 6 + (f.length - 34);
    for (let i = 34; i < f.length; i += 2) sum += (f[i] << 8) | (f[i + 1] ?? 0);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const c = ~sum & 0xffff;
    f[50] = c >>> 8;
    f[51] = c & 0xff;
    return parseTcp(f, ipOf(f));
  };
  let f = good.slice();
  f[46] = 0x40;
  assert.equal(fixTcp(f), 'BadTcpDataOffset');
  f = good.slice();
  f[46] = 0xf0;
  assert.equal(fixTcp(f), 'BadTcpDataOffset');
  f = good.slice();
  f[40] ^= 1;
  assert.equal(parseTcp(f, ipOf(f)), 'BadTcpChecksum');
  f = good.slice();
  f[55] = 3; // MSS with length 3
  assert.equal(fixTcp(f), 'BadTcpOption');
  f = good.slice();
  f[55] = 9; // runs past the header
  assert.equal(fixTcp(f), 'BadTcpOption');
  f = good.slice();
  f[54] = 30; // unknown kind, length 4: skipped
  assert.equal(typeof fixTcp(f), 'object');
  assert.equal(parseTcp(good.subarray(0, 50), { ...ipOf(good), payloadLength: 16 }), 'BadTcpDataOffset');
  void ETHERTYPE_IPV4;
});
