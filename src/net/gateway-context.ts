/** What the gateway's services (NAT, forwards) share: the network plan, the gateway's identity, the way out. */
import type { Mac } from './packet/ethernet.js';
import { parseIp, type Ip4 } from './packet/ipv4.js';
import type { HostSockets, NetClock } from './host-io.js';
import type { SubnetPlan } from './subnet.js';
import type { TcpEndpointFactory } from './tcp-endpoint.js';

export interface GatewayContext {
  plan: SubnetPlan;
  mac: Mac;
  clock: NetClock;
  sockets: HostSockets;
  tcp: TcpEndpointFactory | undefined;
  /** Puts a frame the gateway built onto the switch. */
  send(frame: Uint8Array): void;
}

export const HOST_LOOPBACK = '127.0.0.1';

/** The host address a guest destination means: the gateway IP is the host's loopback (as QEMU's 10.0.2.2). */
export function hostAddressFor(plan: SubnetPlan, dst: Ip4, text: (ip: Ip4) => string): string {
  return dst === plan.gateway ? HOST_LOOPBACK : text(dst);
}

/** The guest-visible source of a host reply: loopback comes back as the gateway IP; non-IPv4 is undefined. */
export function guestAddressFor(plan: SubnetPlan, address: string): Ip4 | undefined {
  const ip = parseIp(address.startsWith('::ffff:') ? address.slice(7) : address);
  if (ip === undefined) return undefined;
  if (ip >>> 24 === 127) return plan.gateway;
  return ip;
}

/**
 * Whether a guest may reach `dst` through the NAT: not the subnet (guests talk to each other through the
 * switch), not loopback (the gateway IP stands for it), not multicast/broadcast/unspecified.
 */
export function natDestinationAllowed(plan: SubnetPlan, dst: Ip4): boolean {
  if (dst === plan.gateway) return true;
  if ((dst & plan.mask) >>> 0 === plan.network) return false;
  const first = dst >>> 24;
  return first !== 0 && first !== 127 && first < 224;
}
