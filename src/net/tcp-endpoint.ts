/**
 * How the NAT makes TCP endpoints (src/net/tcp/connection.ts): a factory, so a network can be given other
 * buffer sizes or timings (tests shrink them) without the NAT knowing the endpoint's options.
 */
import { TcpEndpoint, type TcpEndpointOptions } from './tcp/connection.js';
import type { TcpEndpointIo, TcpSegment } from './tcp/types.js';

export type TcpEndpointLike = TcpEndpoint;

export interface TcpEndpointFactory {
  /** A passive open from the guest's SYN; pending until accept() or refuse(). */
  fromSyn(syn: TcpSegment, io: TcpEndpointIo): TcpEndpoint;
  /** An active open toward the guest: the endpoint sends the SYN from localPort to remotePort. */
  connect(localPort: number, remotePort: number, io: TcpEndpointIo): TcpEndpoint;
}

export type TcpTuning = Omit<TcpEndpointOptions, 'localPort' | 'remotePort' | 'initialSeq'>;

export function tcpEndpointFactory(tuning: TcpTuning = {}): TcpEndpointFactory {
  return {
    fromSyn: (syn, io) => TcpEndpoint.fromSyn(syn, { ...tuning, localPort: syn.dstPort, remotePort: syn.srcPort }, io),
    connect: (localPort, remotePort, io) => TcpEndpoint.connect({ ...tuning, localPort, remotePort }, io),
  };
}
