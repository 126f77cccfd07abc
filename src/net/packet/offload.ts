/**
 * Checksum and segmentation offload metadata that travels with a frame (virtio 1.2 §5.1.6.2, §5.1.6.4): the
 * fields of struct virtio_net_hdr that mean something off the NIC. A frame with no offload has no metadata at
 * all (undefined), so the plain path costs nothing.
 *
 * - NEEDS_CSUM: the sender left the L4 checksum unfinished. The field at csumStart + csumOffset holds the
 *   pseudo-header sum; whoever needs the real checksum sums from csumStart to the end and stores the complement.
 * - GSO TCPV4: the frame is one IPv4/TCP "super-segment" of up to 64 KiB, to be cut into gsoSize-byte payloads.
 *   Such a frame always carries NEEDS_CSUM (as Linux and the spec's device requirements have it).
 *
 * Metadata comes from a guest (through virtio-net) or across a worker boundary: `checkOffload` validates it
 * against its frame, one named error per failure, and never throws. `segmentTcp4` and `completeChecksum` are the
 * software fallback for a receiver that did not negotiate the offload; they only run on validated frames.
 */
import { foldChecksum, pseudoHeaderSum, sumBytes } from './checksum.js';
import { ETH_HEADER_LENGTH, ETHERTYPE_IPV4 } from './ethernet.js';
import { IPPROTO_TCP, IPV4_HEADER_LENGTH, readIp } from './ipv4.js';

export const OFFLOAD_F_NEEDS_CSUM = 1;
export const OFFLOAD_F_DATA_VALID = 2;
export const OFFLOAD_GSO_NONE = 0;
export const OFFLOAD_GSO_TCPV4 = 1;
/** The largest frame with GSO metadata: an Ethernet header and a 65535-byte IPv4 packet. */
export const MAX_GSO_FRAME_BYTES = ETH_HEADER_LENGTH + 0xffff;
/** Without GSO a frame stays within MTU 1500 (+ Ethernet header and a VLAN tag). */
const MAX_PLAIN_FRAME_BYTES = 1518;
/** Smallest gso_size we accept: a hostile 1 would make a 64 KiB frame into 64 Ki segments. */
export const MIN_GSO_SIZE = 64;

/** The offload fields of a virtio_net_hdr (without hdr_len, which is a hint, and num_buffers). */
export interface FrameOffload {
  flags: number;
  gsoType: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export type OffloadError =
  | 'OffloadBadFlags' // flags other than NEEDS_CSUM / DATA_VALID, or both
  | 'OffloadBadGsoType' // a gso_type other than NONE or TCPV4 (ECN, UDP, TCPV6 are not offered)
  | 'OffloadBadGsoSize' // gso_size below MIN_GSO_SIZE or above 65535
  | 'OffloadGsoWithoutChecksum' // GSO without NEEDS_CSUM
  | 'OffloadChecksumOutsideFrame' // csum_start + csum_offset + 2 past the frame end, or csum_start inside the Ethernet header
  | 'OffloadFrameTooLong' // longer than MAX_GSO_FRAME_BYTES (with GSO) or 1518 (without)
  | 'OffloadGsoNotTcp4' // a GSO frame that is not one unfragmented IPv4/TCP packet filling the frame
  | 'OffloadGsoChecksumMismatch'; // a GSO frame whose csum_start/offset is not the TCP checksum field

export const OFFLOAD_ERRORS: readonly OffloadError[] = [
  'OffloadBadFlags',
  'OffloadBadGsoType',
  'OffloadBadGsoSize',
  'OffloadGsoWithoutChecksum',
  'OffloadChecksumOutsideFrame',
  'OffloadFrameTooLong',
  'OffloadGsoNotTcp4',
  'OffloadGsoChecksumMismatch',
];

const TCP_CHECKSUM_OFFSET = 16;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/** Where a GSO TCPv4 frame's headers end, after checkOffload accepted it. */
interface Tcp4Layout {
  ipHeaderLength: number;
  tcpOffset: number;
  headersEnd: number;
  payloadLength: number;
}

function tcp4Layout(frame: Uint8Array): Tcp4Layout | OffloadError {
  if (frame.length < ETH_HEADER_LENGTH + IPV4_HEADER_LENGTH + 20) return 'OffloadGsoNotTcp4';
  if (((frame[12]! << 8) | frame[13]!) !== ETHERTYPE_IPV4) return 'OffloadGsoNotTcp4';
  const ip = ETH_HEADER_LENGTH;
  const vihl = frame[ip]!;
  const ipHeaderLength = (vihl & 0xf) * 4;
  if (vihl >>> 4 !== 4 || ipHeaderLength < IPV4_HEADER_LENGTH) return 'OffloadGsoNotTcp4';
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  if (total !== frame.length - ip || frame[ip + 9] !== IPPROTO_TCP) return 'OffloadGsoNotTcp4';
  if (((frame[ip + 6]! << 8) | frame[ip + 7]!) & 0x3fff) return 'OffloadGsoNotTcp4'; // a fragment
  const tcpOffset = ip + ipHeaderLength;
  if (tcpOffset + 20 > frame.length) return 'OffloadGsoNotTcp4';
  const headersEnd = tcpOffset + (frame[tcpOffset + 12]! >>> 4) * 4;
  if (headersEnd < tcpOffset + 20 || headersEnd > frame.length) return 'OffloadGsoNotTcp4';
  return { ipHeaderLength, tcpOffset, headersEnd, payloadLength: frame.length - headersEnd };
}

/** Whether `o` may travel with `frame`; null when it may. Never throws. */
export function checkOffload(frame: Uint8Array, o: FrameOffload): OffloadError | null {
  const f = o.flags;
  if (f & ~(OFFLOAD_F_NEEDS_CSUM | OFFLOAD_F_DATA_VALID) || f === (OFFLOAD_F_NEEDS_CSUM | OFFLOAD_F_DATA_VALID))
    return 'OffloadBadFlags';
  if (frame.length > (o.gsoType === OFFLOAD_GSO_NONE ? MAX_PLAIN_FRAME_BYTES : MAX_GSO_FRAME_BYTES)) return 'OffloadFrameTooLong';
  if (f & OFFLOAD_F_NEEDS_CSUM) {
    if (o.csumStart < ETH_HEADER_LENGTH || o.csumStart + o.csumOffset + 2 > frame.length) return 'OffloadChecksumOutsideFrame';
  }
  if (o.gsoType === OFFLOAD_GSO_NONE) return null;
  if (o.gsoType !== OFFLOAD_GSO_TCPV4) return 'OffloadBadGsoType';
  if (o.gsoSize < MIN_GSO_SIZE || o.gsoSize > 0xffff) return 'OffloadBadGsoSize';
  if (!(f & OFFLOAD_F_NEEDS_CSUM)) return 'OffloadGsoWithoutChecksum';
  const layout = tcp4Layout(frame);
  if (typeof layout === 'string') return layout;
  if (o.csumStart !== layout.tcpOffset || o.csumOffset !== TCP_CHECKSUM_OFFSET) return 'OffloadGsoChecksumMismatch';
  return null;
}

/** Reads offload metadata that crossed a worker boundary; null unless every field is an in-range integer. */
export function readOffload(v: unknown): FrameOffload | null {
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  const flags = r['flags'];
  const gsoType = r['gsoType'];
  const gsoSize = r['gsoSize'];
  const csumStart = r['csumStart'];
  const csumOffset = r['csumOffset'];
  if (!isU16(flags) || !isU16(gsoType) || !isU16(gsoSize) || !isU16(csumStart) || !isU16(csumOffset)) return null;
  return { flags, gsoType, gsoSize, csumStart, csumOffset };
}

function isU16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** Finishes a NEEDS_CSUM checksum in place (the field holds the pseudo-header sum). */
export function completeChecksum(frame: Uint8Array, csumStart: number, csumOffset: number): void {
  const at = csumStart + csumOffset;
  let c = foldChecksum(sumBytes(frame, csumStart, frame.length));
  if (c === 0) c = 0xffff; // UDP's "no checksum" is 0; ones' complement -0 means the same to TCP
  frame[at] = c >>> 8;
  frame[at + 1] = c & 0xff;
}

/**
 * The frames a receiver without offloads gets for a validated offloaded frame: GSO cut into gsoSize-byte
 * segments (IP id counting up, seq advancing, FIN/PSH on the last only, CWR on the first only), each with both
 * checksums complete; a NEEDS_CSUM frame completed (a copy: the original may be shared by several ports).
 */
export function softwareFrames(frame: Uint8Array, o: FrameOffload, emit: (frame: Uint8Array) => void): void {
  if (o.gsoType === OFFLOAD_GSO_NONE) {
    if (!(o.flags & OFFLOAD_F_NEEDS_CSUM)) {
      emit(frame);
      return;
    }
    const copy = frame.slice();
    completeChecksum(copy, o.csumStart, o.csumOffset);
    emit(copy);
    return;
  }
  segmentTcp4(frame, o.gsoSize, emit);
}

/** Cuts a GSO TCPv4 frame (checked by checkOffload) into segments of at most `mss` payload bytes. */
export function segmentTcp4(frame: Uint8Array, mss: number, emit: (frame: Uint8Array) => void): void {
  const layout = tcp4Layout(frame);
  if (typeof layout === 'string') return;
  const { ipHeaderLength, tcpOffset, headersEnd, payloadLength } = layout;
  const ip = ETH_HEADER_LENGTH;
  const src = readIp(frame, ip + 12);
  const dst = readIp(frame, ip + 16);
  const id0 = (frame[ip + 4]! << 8) | frame[ip + 5]!;
  const seq0 =
    ((frame[tcpOffset + 4]! << 24) | (frame[tcpOffset + 5]! << 16) | (frame[tcpOffset + 6]! << 8) | frame[tcpOffset + 7]!) >>> 0;
  const flags0 = frame[tcpOffset + 13]!;
  const tcpHeaderLength = headersEnd - tcpOffset;
  const count = Math.max(1, Math.ceil(payloadLength / mss));
  for (let i = 0; i < count; i++) {
    const start = headersEnd + i * mss;
    const n = Math.min(mss, payloadLength - i * mss);
    const seg = new Uint8Array(headersEnd + n);
    seg.set(frame.subarray(0, headersEnd));
    seg.set(frame.subarray(start, start + n), headersEnd);
    const total = ipHeaderLength + tcpHeaderLength + n;
    seg[ip + 2] = total >>> 8;
    seg[ip + 3] = total & 0xff;
    const id = (id0 + i) & 0xffff;
    seg[ip + 4] = id >>> 8;
    seg[ip + 5] = id & 0xff;
    seg[ip + 10] = 0;
    seg[ip + 11] = 0;
    const ipSum = foldChecksum(sumBytes(seg, ip, ip + ipHeaderLength));
    seg[ip + 10] = ipSum >>> 8;
    seg[ip + 11] = ipSum & 0xff;
    const seq = (seq0 + i * mss) >>> 0;
    seg[tcpOffset + 4] = seq >>> 24;
    seg[tcpOffset + 5] = (seq >>> 16) & 0xff;
    seg[tcpOffset + 6] = (seq >>> 8) & 0xff;
    seg[tcpOffset + 7] = seq & 0xff;
    let flags = flags0;
    if (i < count - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) flags &= ~TCP_CWR;
    seg[tcpOffset + 13] = flags;
    seg[tcpOffset + 16] = 0;
    seg[tcpOffset + 17] = 0;
    const tcpLength = tcpHeaderLength + n;
    const c = foldChecksum(sumBytes(seg, tcpOffset, seg.length, pseudoHeaderSum(src, dst, IPPROTO_TCP, tcpLength)));
    seg[tcpOffset + 16] = c >>> 8;
    seg[tcpOffset + 17] = c & 0xff;
    emit(seg);
  }
}
