/**
 * UDP NAT: each guest (ip, port) that sends out gets its own host datagram socket, so replies find their way
 * back by socket (as libslirp does). The flow table is bounded and idle flows are closed by the sweep.
 */
import { buildUdpFrame, UDP_MAX_PAYLOAD } from './packet/udp.js';
import { formatIp, type Ip4 } from './packet/ipv4.js';
import type { Mac } from './packet/ethernet.js';
import type { HostUdpSocket } from './host-io.js';
import { guestAddressFor, hostAddressFor, natDestinationAllowed, type GatewayContext } from './gateway-context.js';

export interface UdpNatCounters {
  flowsOpened: number;
  flowsClosed: number;
  /** Flows refused because the table was full. */
  flowsRefused: number;
  toHostDatagrams: number;
  toHostBytes: number;
  toGuestDatagrams: number;
  toGuestBytes: number;
  /** Datagrams to addresses the NAT does not reach (subnet, loopback, multicast). */
  deniedDestination: number;
  /** Host replies too large for one frame, or from a non-IPv4 source. */
  droppedReplies: number;
}

interface UdpFlow {
  socket: HostUdpSocket;
  guestMac: Mac;
  guestIp: Ip4;
  guestPort: number;
  lastActive: number;
}

export interface UdpNatOptions {
  maxFlows: number;
  idleMs: number;
}

export class UdpNat {
  private readonly flows = new Map<number, UdpFlow>();
  readonly counters: UdpNatCounters = {
    flowsOpened: 0,
    flowsClosed: 0,
    flowsRefused: 0,
    toHostDatagrams: 0,
    toHostBytes: 0,
    toGuestDatagrams: 0,
    toGuestBytes: 0,
    deniedDestination: 0,
    droppedReplies: 0,
  };

  constructor(
    private readonly ctx: GatewayContext,
    private readonly opts: UdpNatOptions,
  ) {}

  flowCount(): number {
    return this.flows.size;
  }

  fromGuest(guestMac: Mac, guestIp: Ip4, guestPort: number, dst: Ip4, dstPort: number, payload: Uint8Array): void {
    const { plan } = this.ctx;
    if (!natDestinationAllowed(plan, dst) || dstPort === 0) {
      this.counters.deniedDestination++;
      return;
    }
    const key = guestIp * 65536 + guestPort;
    let flow = this.flows.get(key);
    if (!flow) {
      if (this.flows.size >= this.opts.maxFlows) {
        this.counters.flowsRefused++;
        return;
      }
      const created: UdpFlow = { socket: undefined as unknown as HostUdpSocket, guestMac, guestIp, guestPort, lastActive: 0 };
      created.socket = this.ctx.sockets.udpOpen({
        onMessage: (data, address, port) => this.toGuest(created, data, address, port),
        onError: () => this.close(key),
      });
      this.flows.set(key, created);
      this.counters.flowsOpened++;
      flow = created;
    }
    flow.guestMac = guestMac;
    flow.lastActive = this.ctx.clock.now();
    this.counters.toHostDatagrams++;
    this.counters.toHostBytes += payload.length;
    // The payload is a view over the guest frame, which nothing reuses after delivery: no copy needed.
    flow.socket.send(payload, dstPort, hostAddressFor(plan, dst, formatIp));
  }

  private toGuest(flow: UdpFlow, data: Uint8Array, address: string, port: number): void {
    if (this.flows.get(flow.guestIp * 65536 + flow.guestPort) !== flow) return;
    const src = guestAddressFor(this.ctx.plan, address);
    if (src === undefined || data.length > UDP_MAX_PAYLOAD) {
      this.counters.droppedReplies++;
      return;
    }
    flow.lastActive = this.ctx.clock.now();
    this.counters.toGuestDatagrams++;
    this.counters.toGuestBytes += data.length;
    this.ctx.send(buildUdpFrame(flow.guestMac, this.ctx.mac, src, flow.guestIp, port, flow.guestPort, data));
  }

  private close(key: number): void {
    const flow = this.flows.get(key);
    if (!flow) return;
    this.flows.delete(key);
    this.counters.flowsClosed++;
    flow.socket.close();
  }

  sweep(): void {
    const cutoff = this.ctx.clock.now() - this.opts.idleMs;
    for (const [key, flow] of this.flows) if (flow.lastActive < cutoff) this.close(key);
  }

  closeAll(): void {
    for (const key of [...this.flows.keys()]) this.close(key);
  }
}
