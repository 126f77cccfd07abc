/**
 * A network's IPv4 plan from its CIDR: the QEMU slirp layout (gateway .2, DNS .3, DHCP from .15) placed in
 * any /8–/29 subnet. Configuration comes from the API, so every failure is a named error.
 */
import { formatIp, parseIp, type Ip4 } from './packet/ipv4.js';

export type SubnetErrorCode = 'BadCidrSyntax' | 'BadPrefixLength' | 'NotNetworkAddress' | 'BadAddress' | 'AddressOutsideSubnet';

export class SubnetError extends Error {
  override readonly name = 'SubnetError';
  constructor(
    readonly code: SubnetErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface SubnetPlan {
  network: Ip4;
  prefix: number;
  mask: Ip4;
  broadcast: Ip4;
  gateway: Ip4;
  dns: Ip4;
  /** The DHCP pool, inclusive. */
  poolStart: Ip4;
  poolEnd: Ip4;
}

export function parseCidr(text: string): SubnetPlan {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new SubnetError('BadCidrSyntax', `'${text}' is not a CIDR like 10.0.2.0/24`);
  const network = parseIp(m[1]);
  if (network === undefined) throw new SubnetError('BadCidrSyntax', `'${m[1]}' is not an IPv4 address`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 29) throw new SubnetError('BadPrefixLength', `prefix /${prefix} is outside /8–/29`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((network & ~mask) >>> 0 !== 0) {
    throw new SubnetError(
      'NotNetworkAddress',
      `${m[1]} is not the network address of /${prefix} (that is ${formatIp((network & mask) >>> 0)})`,
    );
  }
  const broadcast = (network | ~mask) >>> 0;
  const size = broadcast - network + 1;
  const gateway = network + 2;
  const dns = network + 3;
  // Small subnets start the pool right after the DNS address; /24 and larger keep QEMU's .15.
  const poolStart = size >= 32 ? network + 15 : network + 4;
  const poolEnd = broadcast - 1;
  return { network, prefix, mask, broadcast, gateway, dns, poolStart, poolEnd };
}

export function inSubnet(plan: SubnetPlan, ip: Ip4): boolean {
  return (ip & plan.mask) >>> 0 === plan.network;
}

/** Parses an address that must be a usable host address of the subnet (static leases, reservations). */
export function parseHostAddress(plan: SubnetPlan, text: string): Ip4 {
  const ip = parseIp(text);
  if (ip === undefined) throw new SubnetError('BadAddress', `'${text}' is not an IPv4 address`);
  if (!inSubnet(plan, ip)) throw new SubnetError('AddressOutsideSubnet', `${text} is outside the network`);
  if (ip === plan.network || ip === plan.broadcast || ip === plan.gateway || ip === plan.dns || ip === plan.network + 1) {
    throw new SubnetError('BadAddress', `${text} is reserved (network, broadcast, gateway or DNS address)`);
  }
  return ip;
}
