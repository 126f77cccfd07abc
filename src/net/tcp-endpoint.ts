/**
 * The shape of the TCP endpoint the NAT drives (src/net/tcp/connection.ts implements it), and the factory that
 * makes them, injected so the gateway compiles and runs against the contract alone.
 */
import type { TcpEndpointIo, TcpSegment } from './tcp/types.js';

export interface TcpEndpointLike {
  handleSegment(seg: TcpSegment): void;
  /** Passive open: complete the handshake (the host connection is up) or reset it (it failed). */
  accept(): void;
  refuse(): void;
  /** false: stop feeding until onDrain. */
  write(data: Uint8Array): boolean;
  end(): void;
  abort(): void;
  /** The host side took `bytes` of delivered data: reopen the receive window by that much. */
  consumed(bytes: number): void;
  onConnect: (() => void) | undefined;
  onData: ((data: Uint8Array) => void) | undefined;
  onEnd: (() => void) | undefined;
  onDrain: (() => void) | undefined;
  onClose: ((reason: string) => void) | undefined;
}

export interface TcpEndpointFactory {
  /** A passive open from the guest's SYN; pending until accept() or refuse(). */
  fromSyn(syn: TcpSegment, io: TcpEndpointIo): TcpEndpointLike;
  /** An active open toward the guest: the endpoint sends the SYN from localPort to remotePort. */
  connect(localPort: number, remotePort: number, io: TcpEndpointIo): TcpEndpointLike;
}
