import type { PacketError } from './errors.js';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

export const ETH_HEADER_LENGTH = 14;
/** MTU 1500 plus the Ethernet header; the virtio-net device offers no segmentation offloads. */
export const ETH_MAX_FRAME = 1514;
export const BROADCAST_MAC = 0xffffffffffff;

/**
 * A MAC address as a number: 48 bits fit exactly in a double, so MAC tables key on numbers and a frame's
 * addresses are read without allocating.
 */
export type Mac = number;

export function readMac(buf: Uint8Array, off: number): Mac {
  return (
    (buf[off] * 0x10000 + ((buf[off + 1] << 8) | buf[off + 2])) * 0x1000000 +
    ((buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5])
  );
}

export function writeMac(buf: Uint8Array, off: number, mac: Mac): void {
  const hi = Math.floor(mac / 0x1000000);
  const lo = mac % 0x1000000;
  buf[off] = (hi >>> 16) & 0xff;
  buf[off + 1] = (hi >>> 8) & 0xff;
  buf[off + 2] = hi & 0xff;
  buf[off + 3] = (lo >>> 16) & 0xff;
  buf[off + 4] = (lo >>> 8) & 0xff;
  buf[off + 5] = lo & 0xff;
}

/** Group bit: the least significant bit of the first octet (broadcast is a multicast). */
export function isMulticastMac(mac: Mac): boolean {
  return Math.floor(mac / 0x10000000000) % 2 === 1;
}

export class MacParseError extends Error {
  override readonly name = 'MacParseError';
}

/** '52:54:00:12:34:56' (or with '-') → Mac. Throws MacParseError: only for configuration, never for frames. */
export function parseMac(text: string): Mac {
  const m = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i.exec(text);
  if (!m) throw new MacParseError(`'${text}' is not a MAC address (expected six hex octets like 52:54:00:12:34:56)`);
  let mac = 0;
  for (let i = 1; i <= 6; i++) mac = mac * 256 + parseInt(m[i], 16);
  return mac;
}

export function formatMac(mac: Mac): string {
  const b = new Uint8Array(6);
  writeMac(b, 0, mac);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface EthernetHeader {
  dst: Mac;
  src: Mac;
  etherType: number;
  /** Offset of the payload in the frame (always 14: tagged frames are refused). */
  payloadOffset: number;
}

/**
 * Parses the Ethernet II header. 802.1Q-tagged frames are refused (VlanTagged): a virtual network is one
 * broadcast domain, and a guest that tags its frames is either misconfigured or probing for a trunk.
 * 802.3 length-field frames (ethertype < 0x600) are refused as UnknownEtherType.
 */
export function parseEthernet(frame: Uint8Array): EthernetHeader | PacketError {
  if (frame.length < ETH_HEADER_LENGTH) return 'FrameTooShort';
  if (frame.length > ETH_MAX_FRAME) return 'FrameTooLong';
  const etherType = (frame[12] << 8) | frame[13];
  if (etherType === ETHERTYPE_VLAN) return 'VlanTagged';
  if (etherType < 0x600) return 'UnknownEtherType';
  return { dst: readMac(frame, 0), src: readMac(frame, 6), etherType, payloadOffset: ETH_HEADER_LENGTH };
}

export function writeEthernetHeader(frame: Uint8Array, dst: Mac, src: Mac, etherType: number): void {
  writeMac(frame, 0, dst);
  writeMac(frame, 6, src);
  frame[12] = etherType >>> 8;
  frame[13] = etherType & 0xff;
}
