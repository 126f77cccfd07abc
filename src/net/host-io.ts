/**
 * What a virtual network needs from the host, injected so the network logic has no Node built-ins (it runs
 * in a worker here, and could run in a browser) and tests can drive time and sockets by hand. The Node
 * implementations are node-sockets.ts and node-resolver.ts.
 */

/** Milliseconds, monotonic; timers as in TcpEndpointIo. */
export interface NetClock {
  now(): number;
  setTimer(ms: number, fn: () => void): unknown;
  clearTimer(handle: unknown): void;
}

export type HostSocketErrorCode =
  'AddressInUse' | 'PermissionDenied' | 'BadAddress' | 'ConnectionRefused' | 'Unreachable' | 'Other';

export class HostSocketError extends Error {
  override readonly name = 'HostSocketError';
  constructor(
    readonly code: HostSocketErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface HostUdpHandlers {
  onMessage(data: Uint8Array, address: string, port: number): void;
  onError?(error: HostSocketError): void;
}

export interface HostUdpSocket {
  send(data: Uint8Array, port: number, address: string): void;
  close(): void;
}

export interface HostTcpHandlers {
  onConnect?(): void;
  onData(data: Uint8Array): void;
  /** The peer finished sending (half-close). */
  onEnd(): void;
  /** The socket is gone; `error` when it failed (refused, reset, ...). */
  onClose(error?: HostSocketError): void;
}

export interface HostTcpSocket {
  /** Writes; `done` runs once the bytes left our process (the endpoint's window reopens then). */
  write(data: Uint8Array, done: () => void): void;
  end(): void;
  destroy(): void;
  pause(): void;
  resume(): void;
}

export interface HostTcpListener {
  readonly port: number;
  close(): void;
}

/** An accepted host connection: attach handlers to receive its data. */
export type AcceptConnection = (handlers: HostTcpHandlers) => HostTcpSocket;

export interface HostSockets {
  /** An unbound (ephemeral) UDP socket for a NAT flow. */
  udpOpen(handlers: HostUdpHandlers): HostUdpSocket;
  /** A UDP socket bound to address:port (port forwards). Rejects with HostSocketError. */
  udpListen(address: string, port: number, handlers: HostUdpHandlers): Promise<HostUdpSocket & { readonly port: number }>;
  tcpConnect(address: string, port: number, handlers: HostTcpHandlers): HostTcpSocket;
  /** Rejects with HostSocketError (AddressInUse, PermissionDenied, BadAddress). */
  tcpListen(
    address: string,
    port: number,
    onConnection: (accept: AcceptConnection, remoteAddress: string, remotePort: number) => void,
  ): Promise<HostTcpListener>;
}
