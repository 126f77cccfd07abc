import { foldChecksum, pseudoHeaderSum, sumBytes } from './checksum.js';
import { ETH_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernetHeader, type Mac } from './ethernet.js';
import type { PacketError } from './errors.js';
import { IPPROTO_TCP, IPV4_HEADER_LENGTH, writeIpv4Header, type Ip4, type Ipv4Header } from './ipv4.js';
import type { TcpSegment } from '../tcp/types.js';

export const TCP_HEADER_LENGTH = 20;

const OPT_END = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;
const OPT_WS = 3;
const OPT_SACK_PERMITTED = 4;
const OPT_TIMESTAMP = 8;

/**
 * Parses a TCP segment (RFC 9293) into the TcpSegment the endpoint consumes. The payload is a view over the
 * frame: the endpoint must copy what it keeps. Options: MSS, window scale, SACK-permitted and timestamps are
 * read; SACK blocks and unknown kinds are skipped by their length; a malformed option list is BadTcpOption.
 */
export function parseTcp(frame: Uint8Array, ip: Ipv4Header): TcpSegment | PacketError {
  const o = ip.payloadOffset;
  const length = ip.payloadLength;
  if (length < TCP_HEADER_LENGTH) return 'BadTcpDataOffset';
  const dataOffset = (frame[o + 12] >>> 4) * 4;
  if (dataOffset < TCP_HEADER_LENGTH || dataOffset > length) return 'BadTcpDataOffset';
  const sum = sumBytes(frame, o, o + length, pseudoHeaderSum(ip.src, ip.dst, IPPROTO_TCP, length));
  if (foldChecksum(sum) !== 0) return 'BadTcpChecksum';
  const seg: TcpSegment = {
    srcPort: (frame[o] << 8) | frame[o + 1],
    dstPort: (frame[o + 2] << 8) | frame[o + 3],
    seq: ((frame[o + 4] << 24) | (frame[o + 5] << 16) | (frame[o + 6] << 8) | frame[o + 7]) >>> 0,
    ack: ((frame[o + 8] << 24) | (frame[o + 9] << 16) | (frame[o + 10] << 8) | frame[o + 11]) >>> 0,
    flags: frame[o + 13],
    window: (frame[o + 14] << 8) | frame[o + 15],
    payload: frame.subarray(o + dataOffset, o + length),
  };
  const end = o + dataOffset;
  let i = o + TCP_HEADER_LENGTH;
  while (i < end) {
    const kind = frame[i];
    if (kind === OPT_END) break;
    if (kind === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 'BadTcpOption';
    const len = frame[i + 1];
    if (len < 2 || i + len > end) return 'BadTcpOption';
    switch (kind) {
      case OPT_MSS:
        if (len !== 4) return 'BadTcpOption';
        seg.mss = (frame[i + 2] << 8) | frame[i + 3];
        break;
      case OPT_WS:
        if (len !== 3) return 'BadTcpOption';
        seg.windowScale = frame[i + 2];
        break;
      case OPT_SACK_PERMITTED:
        if (len !== 2) return 'BadTcpOption';
        seg.sackPermitted = true;
        break;
      case OPT_TIMESTAMP:
        if (len !== 10) return 'BadTcpOption';
        seg.timestamp = {
          value: ((frame[i + 2] << 24) | (frame[i + 3] << 16) | (frame[i + 4] << 8) | frame[i + 5]) >>> 0,
          echo: ((frame[i + 6] << 24) | (frame[i + 7] << 16) | (frame[i + 8] << 8) | frame[i + 9]) >>> 0,
        };
        break;
    }
    i += len;
  }
  return seg;
}

function optionsLength(seg: TcpSegment): number {
  return (
    (seg.mss !== undefined ? 4 : 0) +
    (seg.windowScale !== undefined ? 4 : 0) +
    (seg.sackPermitted ? 4 : 0) +
    (seg.timestamp ? 12 : 0)
  );
}

function write32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/** A complete Ethernet+IPv4+TCP frame for `seg`, with both checksums. */
export function buildTcpFrame(dstMac: Mac, srcMac: Mac, src: Ip4, dst: Ip4, seg: TcpSegment): Uint8Array {
  const headerLength = TCP_HEADER_LENGTH + optionsLength(seg);
  const tcpLength = headerLength + seg.payload.length;
  const frame = new Uint8Array(ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH + tcpLength);
  writeEthernetHeader(frame, dstMac, srcMac, ETHERTYPE_IPV4);
  writeIpv4Header(frame, ETH_HEADER_LENGTH, src, dst, IPPROTO_TCP, tcpLength);
  const o = ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH;
  frame[o] = seg.srcPort >>> 8;
  frame[o + 1] = seg.srcPort & 0xff;
  frame[o + 2] = seg.dstPort >>> 8;
  frame[o + 3] = seg.dstPort & 0xff;
  write32(frame, o + 4, seg.seq);
  write32(frame, o + 8, seg.ack);
  frame[o + 12] = (headerLength / 4) << 4;
  frame[o + 13] = seg.flags & 0xff;
  frame[o + 14] = (seg.window >>> 8) & 0xff;
  frame[o + 15] = seg.window & 0xff;
  let i = o + TCP_HEADER_LENGTH;
  if (seg.mss !== undefined) {
    frame[i] = OPT_MSS;
    frame[i + 1] = 4;
    frame[i + 2] = seg.mss >>> 8;
    frame[i + 3] = seg.mss & 0xff;
    i += 4;
  }
  if (seg.windowScale !== undefined) {
    frame[i] = OPT_NOP;
    frame[i + 1] = OPT_WS;
    frame[i + 2] = 3;
    frame[i + 3] = seg.windowScale;
    i += 4;
  }
  if (seg.sackPermitted) {
    frame[i] = OPT_NOP;
    frame[i + 1] = OPT_NOP;
    frame[i + 2] = OPT_SACK_PERMITTED;
    frame[i + 3] = 2;
    i += 4;
  }
  if (seg.timestamp) {
    frame[i] = OPT_NOP;
    frame[i + 1] = OPT_NOP;
    frame[i + 2] = OPT_TIMESTAMP;
    frame[i + 3] = 10;
    write32(frame, i + 4, seg.timestamp.value);
    write32(frame, i + 8, seg.timestamp.echo);
  }
  frame.set(seg.payload, o + headerLength);
  const c = foldChecksum(sumBytes(frame, o, o + tcpLength, pseudoHeaderSum(src, dst, IPPROTO_TCP, tcpLength)));
  frame[o + 16] = c >>> 8;
  frame[o + 17] = c & 0xff;
  return frame;
}
