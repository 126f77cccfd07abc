import {
  ETH_HEADER_LENGTH,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  readMac,
  writeEthernetHeader,
  writeMac,
  type Mac,
} from './ethernet.js';
import type { PacketError } from './errors.js';
import { readIp, writeIp, type Ip4 } from './ipv4.js';

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const ARP_LENGTH = 28;

export interface ArpPacket {
  op: number;
  senderMac: Mac;
  senderIp: Ip4;
  targetMac: Mac;
  targetIp: Ip4;
}

/** Parses an Ethernet/IPv4 ARP packet (RFC 826); any other hardware or protocol type is BadArpHeader. */
export function parseArp(frame: Uint8Array, offset: number): ArpPacket | PacketError {
  if (frame.length - offset < ARP_LENGTH) return 'FrameTooShort';
  const htype = (frame[offset] << 8) | frame[offset + 1];
  const ptype = (frame[offset + 2] << 8) | frame[offset + 3];
  if (htype !== 1 || ptype !== ETHERTYPE_IPV4 || frame[offset + 4] !== 6 || frame[offset + 5] !== 4) return 'BadArpHeader';
  const op = (frame[offset + 6] << 8) | frame[offset + 7];
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return 'BadArpHeader';
  return {
    op,
    senderMac: readMac(frame, offset + 8),
    senderIp: readIp(frame, offset + 14),
    targetMac: readMac(frame, offset + 18),
    targetIp: readIp(frame, offset + 24),
  };
}

/** A complete ARP frame; the Ethernet destination is the target MAC, or broadcast for a request. */
export function buildArpFrame(op: number, senderMac: Mac, senderIp: Ip4, targetMac: Mac, targetIp: Ip4, ethDst: Mac): Uint8Array {
  const frame = new Uint8Array(ETH_HEADER_LENGTH + ARP_LENGTH);
  writeEthernetHeader(frame, ethDst, senderMac, ETHERTYPE_ARP);
  const o = ETH_HEADER_LENGTH;
  frame[o + 1] = 1;
  frame[o + 2] = ETHERTYPE_IPV4 >>> 8;
  frame[o + 3] = ETHERTYPE_IPV4 & 0xff;
  frame[o + 4] = 6;
  frame[o + 5] = 4;
  frame[o + 7] = op;
  writeMac(frame, o + 8, senderMac);
  writeIp(frame, o + 14, senderIp);
  writeMac(frame, o + 18, targetMac);
  writeIp(frame, o + 24, targetIp);
  return frame;
}
