/**
 * Offload metadata (src/net/packet/offload.ts): validation against its frame (one named error per failure,
 * never a throw on hostile input), the software fallback (segmenting a TCPv4 super-segment gives back the
 * original bytes in valid segments; completing a left-over checksum gives a frame the parsers accept), and
 * reading metadata that crossed a worker boundary.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { foldChecksum, pseudoHeaderSum } from '../../src/net/packet/checksum.js';
import { parseEthernet } from '../../src/net/packet/ethernet.js';
import { IPPROTO_TCP, IPPROTO_UDP, parseIpv4 } from '../../src/net/packet/ipv4.js';
import { buildTcpFrame, parseTcp } from '../../src/net/packet/tcp.js';
import { buildUdpFrame, parseUdp } from '../../src/net/packet/udp.js';
import {
  MAX_GSO_FRAME_BYTES,
  OFFLOAD_ERRORS,
  OFFLOAD_F_NEEDS_CSUM,
  OFFLOAD_GSO_NONE,
  OFFLOAD_GSO_TCPV4,
  checkOffload,
  completeChecksum,
  readOffload,
  segmentTcp4,
  softwareFrames,
  type FrameOffload,
} from '../../src/net/packet/offload.js';

const SRC = 0x0a000210;
const DST = 0x0a000202;
const TCP_AT = 14 + 20;
const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;

/** The pseudo-header sum a sender leaves in the checksum field with NEEDS_CSUM (folded, not complemented). */
function leavePartial(frame: Uint8Array, l4At: number, protocol: number): void {
  const partial = ~foldChecksum(pseudoHeaderSum(SRC, DST, protocol, frame.length - l4At)) & 0xffff;
  const field = l4At + (protocol === IPPROTO_TCP ? 16 : 6);
  frame[field] = partial >>> 8;
  frame[field + 1] = partial & 0xff;
}

/** A TCPv4 super-segment as Linux hands it to a TSO device: full headers, partial checksum. */
function superSegment(payload: Uint8Array, seq: number, flags: number): Uint8Array {
  const f = buildTcpFrame(0x525400000001, 0x525400000002, SRC, DST, {
    srcPort: 40000,
    dstPort: 5001,
    seq,
    ack: 7,
    flags,
    window: 1000,
    payload,
    timestamp: { value: 1, echo: 2 },
  });
  leavePartial(f, TCP_AT, IPPROTO_TCP);
  return f;
}

const gso = (mss: number): FrameOffload => ({
  flags: OFFLOAD_F_NEEDS_CSUM,
  gsoType: OFFLOAD_GSO_TCPV4,
  gsoSize: mss,
  csumStart: TCP_AT,
  csumOffset: 16,
});

test('offload: segmenting a TCPv4 super-segment gives valid segments whose payloads reassemble to the original', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 65535 - 20 - 32 }),
      fc.integer({ min: 64, max: 9000 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.boolean(),
      (length, mss, seq, fin) => {
        const payload = new Uint8Array(length);
        for (let i = 0; i < length; i++) payload[i] = (i * 31 + seq) & 0xff;
        const frame = superSegment(payload, seq, ACK | PSH | (fin ? FIN : 0));
        assert.equal(checkOffload(frame, gso(mss)), null);
        const segments: Uint8Array[] = [];
        segmentTcp4(frame, mss, (s) => segments.push(s));
        assert.equal(segments.length, Math.max(1, Math.ceil(length / mss)));
        const got = new Uint8Array(length);
        let at = 0;
        segments.forEach((s, i) => {
          assert.equal(typeof parseEthernet(s, MAX_GSO_FRAME_BYTES), 'object');
          if (mss <= 1460) assert.ok(s.length <= 14 + 20 + 32 + 1460, 'segments fit the MTU');
          const ip = parseIpv4(s, 14);
          assert.equal(typeof ip, 'object', `segment ${i}: IPv4 header valid (checksum, length)`);
          const tcp = parseTcp(s, ip as Exclude<typeof ip, string>);
          assert.equal(typeof tcp, 'object', `segment ${i}: TCP checksum valid`);
          const t = tcp as Exclude<typeof tcp, string>;
          assert.ok(t.payload.length <= mss);
          assert.equal(t.seq, (seq + at) >>> 0);
          const last = i === segments.length - 1;
          assert.equal((t.flags & (FIN | PSH)) !== 0, last, 'FIN/PSH only on the last segment');
          assert.deepEqual(t.timestamp, { value: 1, echo: 2 }, 'options copied to every segment');
          got.set(t.payload, at);
          at += t.payload.length;
        });
        assert.equal(at, length);
        assert.deepEqual(got, payload);
      },
    ),
    { numRuns: 60 },
  );
});

test('offload: a checksum left to the receiver is completed so the parsers accept the frame (TCP and UDP)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 1400 }), (payload) => {
      const tcp = superSegment(payload, 1, ACK);
      assert.equal(parseTcp(tcp, parseIpv4(tcp, 14) as never), 'BadTcpChecksum', 'partial before');
      const o: FrameOffload = {
        flags: OFFLOAD_F_NEEDS_CSUM,
        gsoType: OFFLOAD_GSO_NONE,
        gsoSize: 0,
        csumStart: TCP_AT,
        csumOffset: 16,
      };
      assert.equal(checkOffload(tcp, o), null);
      const out: Uint8Array[] = [];
      softwareFrames(tcp, o, (f) => out.push(f));
      assert.equal(out.length, 1);
      assert.notEqual(out[0], tcp, 'a copy: the original may be shared');
      assert.equal(typeof parseTcp(out[0]!, parseIpv4(out[0]!, 14) as never), 'object');
      const udp = buildUdpFrame(0x525400000001, 0x525400000002, SRC, DST, 1234, 53, payload);
      leavePartial(udp, TCP_AT, IPPROTO_UDP);
      completeChecksum(udp, TCP_AT, 6);
      assert.equal(typeof parseUdp(udp, parseIpv4(udp, 14) as never), 'object');
    }),
    { numRuns: 40 },
  );
});

test('offload: each malformed metadata is refused by name', () => {
  const frame = superSegment(new Uint8Array(3000), 1, ACK);
  const small = superSegment(new Uint8Array(100), 1, ACK);
  const plain = { flags: 0, gsoType: OFFLOAD_GSO_NONE, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  const cases: [Uint8Array, FrameOffload, string][] = [
    [frame, { ...gso(1460), flags: 4 }, 'OffloadBadFlags'],
    [frame, { ...gso(1460), flags: 3 }, 'OffloadBadFlags'],
    [frame, { ...gso(1460), gsoType: 4 }, 'OffloadBadGsoType'],
    [frame, { ...gso(1460), gsoType: 0x81 }, 'OffloadBadGsoType'],
    [frame, gso(1), 'OffloadBadGsoSize'],
    [frame, { ...gso(1460), flags: 0 }, 'OffloadGsoWithoutChecksum'],
    [frame, { ...gso(1460), csumStart: frame.length - 17 }, 'OffloadChecksumOutsideFrame'],
    [frame, { ...gso(1460), csumStart: 2 }, 'OffloadChecksumOutsideFrame'],
    [new Uint8Array(MAX_GSO_FRAME_BYTES + 1), gso(1460), 'OffloadFrameTooLong'],
    [frame, { ...plain, flags: OFFLOAD_F_NEEDS_CSUM, csumStart: TCP_AT, csumOffset: 16 }, 'OffloadFrameTooLong'],
    [frame.subarray(0, frame.length - 1), gso(1460), 'OffloadGsoNotTcp4'],
    [new Uint8Array(200).fill(0x45), gso(1460), 'OffloadGsoNotTcp4'],
    [frame, { ...gso(1460), csumOffset: 6 }, 'OffloadGsoChecksumMismatch'],
  ];
  const seen = new Set<string>();
  for (const [f, o, want] of cases) {
    assert.equal(checkOffload(f, o), want, JSON.stringify(o));
    seen.add(want);
  }
  assert.deepEqual([...seen].sort(), [...OFFLOAD_ERRORS].sort(), 'every named error has a case');
  assert.equal(checkOffload(small, gso(1460)), null, 'a super-segment smaller than one MSS is still valid');
  assert.equal(checkOffload(small, plain), null);
});

test('offload: hostile metadata and frames never throw; segmenting accepted ones stays bounded', () => {
  const u16 = fc.integer({ min: 0, max: 0xffff });
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 3000 }),
      fc.record({
        flags: fc.integer({ min: 0, max: 7 }),
        gsoType: fc.constantFrom(0, 1, 3, 4, 5, 0x81),
        gsoSize: u16,
        csumStart: u16,
        csumOffset: u16,
      }),
      (f, o) => {
        const error = checkOffload(f, o);
        if (error !== null) {
          assert.ok(OFFLOAD_ERRORS.includes(error));
          return;
        }
        let n = 0;
        softwareFrames(f, o, () => n++);
        assert.ok(n >= 1 && n <= Math.ceil(f.length / 64) + 1);
      },
    ),
    { numRuns: 300 },
  );
  // Valid headers with random bytes after them (a guest's TSO frame with garbage options and payload).
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 4000 }), fc.integer({ min: 0, max: 0xffff }), (tail, mss) => {
      const f = superSegment(tail, 5, ACK);
      f[TCP_AT + 12] = (tail[0] ?? 0) & 0xf0;
      const error = checkOffload(f, gso(mss));
      if (error === null) softwareFrames(f, gso(mss), () => {});
    }),
  );
});

test('offload: metadata read from a worker message must be five in-range integers', () => {
  assert.deepEqual(readOffload(gso(1460)), gso(1460));
  for (const bad of [
    null,
    1,
    'x',
    [],
    { ...gso(1), gsoSize: 1.5 },
    { ...gso(1), flags: -1 },
    { ...gso(1), csumStart: 70000 },
    { flags: 1 },
  ])
    assert.equal(readOffload(bad), null, JSON.stringify(bad));
});
