import { foldChecksum, internetChecksum, sumBytes } from './checksum.js';
import type { PacketError } from './errors.js';

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPV4_HEADER_LENGTH = 20;

/** An IPv4 address as an unsigned 32-bit number. */
export type Ip4 = number;

export function readIp(buf: Uint8Array, off: number): Ip4 {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

export function writeIp(buf: Uint8Array, off: number, ip: Ip4): void {
  buf[off] = ip >>> 24;
  buf[off + 1] = (ip >>> 16) & 0xff;
  buf[off + 2] = (ip >>> 8) & 0xff;
  buf[off + 3] = ip & 0xff;
}

export function formatIp(ip: Ip4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** Dotted quad → Ip4, or undefined if the text is not exactly four decimal octets. */
export function parseIp(text: string): Ip4 | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let ip = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    ip = ip * 256 + octet;
  }
  return ip;
}

export interface Ipv4Header {
  src: Ip4;
  dst: Ip4;
  protocol: number;
  ttl: number;
  /** Offset of the IP header in the frame. */
  offset: number;
  headerLength: number;
  totalLength: number;
  /** Payload bounds in the frame; bytes past totalLength (Ethernet padding) are ignored. */
  payloadOffset: number;
  payloadLength: number;
}

/**
 * Parses an IPv4 header at `offset`. Options are skipped (their bytes are covered by the checksum but not
 * interpreted). Fragments are refused: the gateway does not reassemble, so a fragment can never be answered.
 */
export function parseIpv4(frame: Uint8Array, offset: number): Ipv4Header | PacketError {
  const available = frame.length - offset;
  if (available < IPV4_HEADER_LENGTH) return 'FrameTooShort';
  const vihl = frame[offset];
  if (vihl >>> 4 !== 4) return 'BadIpVersion';
  const headerLength = (vihl & 0xf) * 4;
  if (headerLength < IPV4_HEADER_LENGTH || headerLength > available) return 'BadIpHeaderLength';
  const totalLength = (frame[offset + 2] << 8) | frame[offset + 3];
  if (totalLength < headerLength || totalLength > available) return 'BadIpTotalLength';
  if (internetChecksum(frame, offset, offset + headerLength) !== 0) return 'BadIpChecksum';
  const flagsFrag = (frame[offset + 6] << 8) | frame[offset + 7];
  // More-fragments set, or a non-zero fragment offset: part of a larger datagram.
  if ((flagsFrag & 0x3fff) !== 0) return 'IpFragment';
  return {
    src: readIp(frame, offset + 12),
    dst: readIp(frame, offset + 16),
    protocol: frame[offset + 9],
    ttl: frame[offset + 8],
    offset,
    headerLength,
    totalLength,
    payloadOffset: offset + headerLength,
    payloadLength: totalLength - headerLength,
  };
}

/** Writes a 20-byte IPv4 header (DF set, no options) with its checksum at `offset`. */
export function writeIpv4Header(
  buf: Uint8Array,
  offset: number,
  src: Ip4,
  dst: Ip4,
  protocol: number,
  payloadLength: number,
  id = 0,
  ttl = 64,
): void {
  const total = IPV4_HEADER_LENGTH + payloadLength;
  buf[offset] = 0x45;
  buf[offset + 1] = 0;
  buf[offset + 2] = total >>> 8;
  buf[offset + 3] = total & 0xff;
  buf[offset + 4] = (id >>> 8) & 0xff;
  buf[offset + 5] = id & 0xff;
  buf[offset + 6] = 0x40;
  buf[offset + 7] = 0;
  buf[offset + 8] = ttl;
  buf[offset + 9] = protocol;
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
  writeIp(buf, offset + 12, src);
  writeIp(buf, offset + 16, dst);
  const c = foldChecksum(sumBytes(buf, offset, offset + IPV4_HEADER_LENGTH));
  buf[offset + 10] = c >>> 8;
  buf[offset + 11] = c & 0xff;
}
