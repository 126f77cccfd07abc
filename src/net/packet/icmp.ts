import { foldChecksum, internetChecksum, sumBytes } from './checksum.js';
import { ETH_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernetHeader, type Mac } from './ethernet.js';
import type { PacketError } from './errors.js';
import { IPPROTO_ICMP, IPV4_HEADER_LENGTH, writeIpv4Header, type Ip4, type Ipv4Header } from './ipv4.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;

export interface IcmpMessage {
  type: number;
  code: number;
  /** Identifier and sequence number (meaningful for echo). */
  id: number;
  seq: number;
  /** A view over the frame: the echo data. */
  data: Uint8Array;
}

export function parseIcmp(frame: Uint8Array, ip: Ipv4Header): IcmpMessage | PacketError {
  const o = ip.payloadOffset;
  const end = o + ip.payloadLength;
  if (ip.payloadLength < 8) return 'BadIcmpLength';
  if (internetChecksum(frame, o, end) !== 0) return 'BadIcmpChecksum';
  return {
    type: frame[o],
    code: frame[o + 1],
    id: (frame[o + 4] << 8) | frame[o + 5],
    seq: (frame[o + 6] << 8) | frame[o + 7],
    data: frame.subarray(o + 8, end),
  };
}

export function buildIcmpEchoFrame(
  dstMac: Mac,
  srcMac: Mac,
  src: Ip4,
  dst: Ip4,
  type: number,
  id: number,
  seq: number,
  data: Uint8Array,
): Uint8Array {
  const icmpLength = 8 + data.length;
  const frame = new Uint8Array(ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH + icmpLength);
  writeEthernetHeader(frame, dstMac, srcMac, ETHERTYPE_IPV4);
  writeIpv4Header(frame, ETH_HEADER_LENGTH, src, dst, IPPROTO_ICMP, icmpLength);
  const o = ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH;
  frame[o] = type;
  frame[o + 4] = id >>> 8;
  frame[o + 5] = id & 0xff;
  frame[o + 6] = seq >>> 8;
  frame[o + 7] = seq & 0xff;
  frame.set(data, o + 8);
  const c = foldChecksum(sumBytes(frame, o, o + icmpLength));
  frame[o + 2] = c >>> 8;
  frame[o + 3] = c & 0xff;
  return frame;
}
