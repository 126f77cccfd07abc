import { foldChecksum, pseudoHeaderSum, sumBytes } from './checksum.js';
import { ETH_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernetHeader, type Mac } from './ethernet.js';
import type { PacketError } from './errors.js';
import { IPPROTO_UDP, IPV4_HEADER_LENGTH, writeIpv4Header, type Ip4, type Ipv4Header } from './ipv4.js';

export const UDP_HEADER_LENGTH = 8;

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  /** A view over the frame. */
  payload: Uint8Array;
}

/** Parses UDP (RFC 768). A zero checksum means the sender did not compute one, which IPv4 allows. */
export function parseUdp(frame: Uint8Array, ip: Ipv4Header): UdpDatagram | PacketError {
  const o = ip.payloadOffset;
  if (ip.payloadLength < UDP_HEADER_LENGTH) return 'BadUdpLength';
  const length = (frame[o + 4] << 8) | frame[o + 5];
  if (length < UDP_HEADER_LENGTH || length > ip.payloadLength) return 'BadUdpLength';
  const checksum = (frame[o + 6] << 8) | frame[o + 7];
  if (checksum !== 0) {
    const sum = sumBytes(frame, o, o + length, pseudoHeaderSum(ip.src, ip.dst, IPPROTO_UDP, length));
    if (foldChecksum(sum) !== 0) return 'BadUdpChecksum';
  }
  return {
    srcPort: (frame[o] << 8) | frame[o + 1],
    dstPort: (frame[o + 2] << 8) | frame[o + 3],
    payload: frame.subarray(o + UDP_HEADER_LENGTH, o + length),
  };
}

export function buildUdpFrame(
  dstMac: Mac,
  srcMac: Mac,
  src: Ip4,
  dst: Ip4,
  srcPort: number,
  dstPort: number,
  payload: Uint8Array,
): Uint8Array {
  const udpLength = UDP_HEADER_LENGTH + payload.length;
  const frame = new Uint8Array(ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH + udpLength);
  writeEthernetHeader(frame, dstMac, srcMac, ETHERTYPE_IPV4);
  writeIpv4Header(frame, ETH_HEADER_LENGTH, src, dst, IPPROTO_UDP, udpLength);
  const o = ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH;
  frame[o] = srcPort >>> 8;
  frame[o + 1] = srcPort & 0xff;
  frame[o + 2] = dstPort >>> 8;
  frame[o + 3] = dstPort & 0xff;
  frame[o + 4] = udpLength >>> 8;
  frame[o + 5] = udpLength & 0xff;
  frame.set(payload, o + UDP_HEADER_LENGTH);
  let c = foldChecksum(sumBytes(frame, o, o + udpLength, pseudoHeaderSum(src, dst, IPPROTO_UDP, udpLength)));
  // A computed zero is sent as all ones; zero on the wire means "no checksum".
  if (c === 0) c = 0xffff;
  frame[o + 6] = c >>> 8;
  frame[o + 7] = c & 0xff;
  return frame;
}

/** The largest UDP payload that fits one frame at our MTU. */
export const UDP_MAX_PAYLOAD = 1500 - IPV4_HEADER_LENGTH - UDP_HEADER_LENGTH;
