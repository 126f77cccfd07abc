/**
 * The contract between the user-mode network stack (src/net, which parses guest frames into typed values) and the
 * TCP endpoint (src/net/tcp/connection.ts), which terminates a guest's TCP connection inside the NAT gateway.
 * The endpoint never sees raw bytes of headers: it takes parsed segments and emits segments to be framed.
 * No Node built-ins here (design: the core runs in a browser too).
 */

/** TCP header flag bits (RFC 9293 §3.1), as they appear in the header's flags byte. */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

/** One TCP segment, without the IP layer (addresses are the caller's business). */
export interface TcpSegment {
  srcPort: number;
  dstPort: number;
  /** Sequence and acknowledgment numbers, unsigned 32-bit. */
  seq: number;
  ack: number;
  /** TCP_* bits. */
  flags: number;
  /** The raw 16-bit window field (unscaled). */
  window: number;
  /** Options, present only when the segment carried them. */
  mss?: number;
  windowScale?: number;
  sackPermitted?: boolean;
  timestamp?: { value: number; echo: number };
  payload: Uint8Array;
  /** Set by an endpoint on a segment longer than its MSS (superSegmentBytes): the size to cut it into. */
  gsoSize?: number;
}

/** What an endpoint needs from its surroundings; injected so tests drive time by hand. */
export interface TcpEndpointIo {
  /** Hands a segment to the stack, which frames it (IP, Ethernet) toward the guest. */
  emit(segment: TcpSegment): void;
  /** Milliseconds, monotonic. */
  now(): number;
  setTimer(ms: number, fn: () => void): unknown;
  clearTimer(handle: unknown): void;
}
