/**
 * One virtual network: the L2 switch joining its NICs, plus the gateway (DHCP and DNS always; NAT and the way
 * out in nat mode). Free of Node built-ins: host sockets, the resolver and time are injected.
 */
import { formatMac, isMulticastMac, parseMac, type Mac } from './packet/ethernet.js';
import { formatIp, type Ip4 } from './packet/ipv4.js';
import { L2Switch, type PortCounters, type SwitchPort } from './switch.js';
import { parseCidr, parseHostAddress, SubnetError, type SubnetPlan } from './subnet.js';
import { Gateway, type GatewayCounters } from './gateway.js';
import type { HostSockets, NetClock } from './host-io.js';
import type { DnsResolver } from './dns.js';
import { tcpEndpointFactory, type TcpEndpointFactory } from './tcp-endpoint.js';
import type { DhcpCounters } from './dhcp.js';
import type { UdpNatCounters } from './nat-udp.js';
import type { TcpNatCounters } from './nat-tcp.js';
import type { ForwardInfo, ForwardSpec } from './forwards.js';

export type NetworkMode = 'nat' | 'isolated';

export interface VirtualNetworkConfig {
  name: string;
  /** e.g. '10.0.2.0/24': gateway .2, DNS .3, DHCP pool from .15. */
  subnet: string;
  mode: NetworkMode;
  /** DNS search domain handed out by DHCP; VM names resolve as `<name>` and `<name>.<domain>`. */
  domain?: string;
  /** Static DNS names → IPv4 address. */
  dnsHosts?: Record<string, string>;
  /** Known leases (MAC → IP), e.g. from VM records: each MAC keeps its address. */
  leases?: Record<string, string>;
  sockets: HostSockets;
  resolver?: DnsResolver;
  clock: NetClock;
  /** Default: TcpEndpoint with its default buffers. */
  tcp?: TcpEndpointFactory;
  /** A MAC got a new address; persist it so the VM keeps it across restarts. */
  onLease?: (mac: string, ip: string) => void;
  limits?: Partial<NetworkLimits>;
}

export interface NetworkLimits {
  macTableSize: number;
  macAgingMs: number;
  leaseSeconds: number;
  maxDnsInFlight: number;
  maxUdpFlows: number;
  udpIdleMs: number;
  maxTcpPerGuest: number;
  maxTcpTotal: number;
  maxTcpPending: number;
  tcpIdleMs: number;
  tcpConnectTimeoutMs: number;
  sweepIntervalMs: number;
  maxNics: number;
}

export const DEFAULT_LIMITS: NetworkLimits = {
  macTableSize: 1024,
  macAgingMs: 300_000,
  leaseSeconds: 86_400,
  maxDnsInFlight: 128,
  maxUdpFlows: 512,
  udpIdleMs: 60_000,
  maxTcpPerGuest: 1024,
  maxTcpTotal: 4096,
  maxTcpPending: 128,
  tcpIdleMs: 2 * 3600_000,
  tcpConnectTimeoutMs: 30_000,
  sweepIntervalMs: 10_000,
  maxNics: 256,
};

export type NetworkErrorCode = 'NicExists' | 'BadMac' | 'MacInUse' | 'BadHostname' | 'TooManyNics' | 'Closed' | 'BadConfig';

export class NetworkError extends Error {
  override readonly name = 'NetworkError';
  constructor(
    readonly code: NetworkErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface NicAttachment {
  /** A frame from the guest. Never throws on content. */
  receive(frame: Uint8Array): void;
  /** Frames from the guest that arrived together: like receive() on each, then the TCP endpoints flush once. */
  receiveBatch(frames: readonly Uint8Array[]): void;
  detach(): void;
}

export interface NicInfo {
  mac: string;
  hostname?: string;
}

export interface LeaseInfo {
  mac: string;
  ip: string;
  bound: boolean;
  hostname?: string;
  nicId?: string;
}

export interface PortStats extends PortCounters {
  id: string;
  mac?: string;
}

export interface NetworkStats {
  name: string;
  mode: NetworkMode;
  ports: PortStats[];
  macTable: { size: number; learnRefused: number };
  gateway: GatewayCounters;
  dhcp: DhcpCounters;
  udpNat?: UdpNatCounters & { flows: number };
  tcpNat: TcpNatCounters & { connections: number; pending: number };
  forwards: ForwardInfo[];
}

const HOSTNAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** QEMU slirp's gateway MAC layout: 52:55 followed by the gateway's IPv4 address. */
function gatewayMac(gateway: Ip4): Mac {
  return 0x5255 * 0x100000000 + gateway;
}

interface Nic {
  id: string;
  mac: Mac;
  hostname: string | undefined;
  port: SwitchPort;
}

export class VirtualNetwork {
  readonly name: string;
  readonly mode: NetworkMode;
  readonly plan: SubnetPlan;
  readonly gatewayMac: Mac;
  private readonly switch: L2Switch;
  private readonly gateway: Gateway;
  private readonly gatewayPort: SwitchPort;
  private readonly nics = new Map<string, Nic>();
  private readonly hostnames = new Map<string, Mac>();
  private readonly limits: NetworkLimits;
  private sweepTimer: unknown;
  private closed = false;

  constructor(private readonly config: VirtualNetworkConfig) {
    this.name = config.name;
    this.mode = config.mode;
    if (config.mode !== 'nat' && config.mode !== 'isolated')
      throw new NetworkError('BadConfig', `unknown network mode '${String(config.mode)}'`);
    this.plan = parseCidr(config.subnet);
    this.limits = { ...DEFAULT_LIMITS, ...config.limits };
    const domain = (config.domain ?? 'typevisor.internal').toLowerCase();
    const dnsHosts = new Map<string, Ip4>();
    for (const [name, ip] of Object.entries(config.dnsHosts ?? {})) {
      const addr = parseHostAddressAnywhere(ip);
      dnsHosts.set(name.toLowerCase().replace(/\.$/, ''), addr);
    }
    const leases: [Mac, Ip4][] = [];
    const seen = new Set<Ip4>();
    for (const [macText, ipText] of Object.entries(config.leases ?? {})) {
      const ip = parseHostAddress(this.plan, ipText);
      if (seen.has(ip)) throw new SubnetError('BadAddress', `${ipText} is leased to two MACs`);
      seen.add(ip);
      leases.push([parseMacOrThrow(macText), ip]);
    }
    const clock = config.clock;
    this.switch = new L2Switch({
      macTableSize: this.limits.macTableSize,
      agingMs: this.limits.macAgingMs,
      now: () => clock.now(),
    });
    this.gatewayMac = gatewayMac(this.plan.gateway);
    const gatewayRef: { port?: SwitchPort } = {};
    this.gateway = new Gateway(
      {
        plan: this.plan,
        mac: this.gatewayMac,
        clock,
        sockets: config.sockets,
        tcp: config.tcp ?? tcpEndpointFactory(),
        send: (frame) => {
          if (gatewayRef.port) this.switch.receive(gatewayRef.port, frame);
        },
      },
      {
        mode: config.mode,
        domain,
        dnsHosts,
        leases,
        onLease: (mac, ip) => config.onLease?.(formatMac(mac), formatIp(ip)),
        resolver: config.resolver,
        hostnames: this.hostnames,
        hostnameOf: (mac) => this.nicByMac(mac)?.hostname,
        leaseSeconds: this.limits.leaseSeconds,
        maxDnsInFlight: this.limits.maxDnsInFlight,
        udp: { maxFlows: this.limits.maxUdpFlows, idleMs: this.limits.udpIdleMs },
        tcp: {
          maxPerGuest: this.limits.maxTcpPerGuest,
          maxTotal: this.limits.maxTcpTotal,
          maxPending: this.limits.maxTcpPending,
          idleMs: this.limits.tcpIdleMs,
          pendingTimeoutMs: this.limits.tcpConnectTimeoutMs,
        },
      },
    );
    this.gatewayPort = this.switch.attach('gateway', (frame) => this.gateway.receive(frame), { fixedMac: this.gatewayMac });
    gatewayRef.port = this.gatewayPort;
    this.scheduleSweep();
  }

  private scheduleSweep(): void {
    this.sweepTimer = this.config.clock.setTimer(this.limits.sweepIntervalMs, () => {
      if (this.closed) return;
      this.switch.sweep();
      this.gateway.sweep();
      this.scheduleSweep();
    });
  }

  private nicByMac(mac: Mac): Nic | undefined {
    for (const nic of this.nics.values()) if (nic.mac === mac) return nic;
    return undefined;
  }

  /**
   * Plugs a NIC into the switch. `deliver` receives frames for the guest (the same Uint8Array may go to
   * several ports when flooded; `exclusive` says this port is its only recipient, so it may be transferred).
   */
  attach(nicId: string, info: NicInfo, deliver: (frame: Uint8Array, exclusive: boolean) => void): NicAttachment {
    if (this.closed) throw new NetworkError('Closed', `network '${this.name}' is closed`);
    if (this.nics.has(nicId)) throw new NetworkError('NicExists', `NIC '${nicId}' is already attached to '${this.name}'`);
    if (this.nics.size >= this.limits.maxNics)
      throw new NetworkError('TooManyNics', `network '${this.name}' has ${this.nics.size} NICs already`);
    let mac: Mac;
    try {
      mac = parseMac(info.mac);
    } catch (e) {
      throw new NetworkError('BadMac', (e as Error).message);
    }
    if (isMulticastMac(mac) || mac === 0) throw new NetworkError('BadMac', `${info.mac} is a multicast or zero address`);
    if (mac === this.gatewayMac || this.nicByMac(mac))
      throw new NetworkError('MacInUse', `${info.mac} is already on network '${this.name}'`);
    const hostname = info.hostname?.toLowerCase();
    if (hostname !== undefined && !HOSTNAME_RE.test(hostname))
      throw new NetworkError('BadHostname', `'${info.hostname}' is not a valid hostname`);
    const port = this.switch.attach(nicId, deliver, { fixedMac: mac });
    const nic: Nic = { id: nicId, mac, hostname, port };
    this.nics.set(nicId, nic);
    if (hostname !== undefined && !this.hostnames.has(hostname)) this.hostnames.set(hostname, mac);
    return {
      receive: (frame) => this.switch.receive(port, frame),
      receiveBatch: (frames) => {
        for (const frame of frames) this.switch.receive(port, frame);
        this.gateway.tcpNat.flushTouched();
      },
      detach: () => this.detachNic(nic),
    };
  }

  private detachNic(nic: Nic): void {
    if (this.nics.get(nic.id) !== nic) return;
    this.nics.delete(nic.id);
    this.switch.detach(nic.port);
    if (nic.hostname !== undefined && this.hostnames.get(nic.hostname) === nic.mac) {
      this.hostnames.delete(nic.hostname);
      // Another NIC with the same hostname takes the name over.
      for (const other of this.nics.values()) {
        if (other.hostname === nic.hostname) {
          this.hostnames.set(other.hostname, other.mac);
          break;
        }
      }
    }
  }

  addForward(spec: ForwardSpec): Promise<ForwardInfo> {
    if (this.closed) return Promise.reject(new NetworkError('Closed', `network '${this.name}' is closed`));
    return this.gateway.forwards.add(spec);
  }

  removeForward(id: string): void {
    this.gateway.forwards.remove(id);
  }

  forwards(): ForwardInfo[] {
    return this.gateway.forwards.list();
  }

  leases(): LeaseInfo[] {
    return this.gateway.dhcp.leases().map(({ mac, ip, bound }) => {
      const nic = this.nicByMac(mac);
      return { mac: formatMac(mac), ip: formatIp(ip), bound, hostname: nic?.hostname, nicId: nic?.id };
    });
  }

  /** Frees a MAC's address (its VM was deleted). */
  forgetLease(mac: string): void {
    this.gateway.dhcp.forget(parseMacOrThrow(mac));
  }

  stats(): NetworkStats {
    const ports: PortStats[] = this.switch.portList().map((p) => ({
      id: p.id,
      mac: p.fixedMac !== undefined ? formatMac(p.fixedMac) : undefined,
      ...p.counters,
    }));
    const g = this.gateway;
    return {
      name: this.name,
      mode: this.mode,
      ports,
      macTable: { size: this.switch.macTableSize(), learnRefused: this.switch.learnRefused },
      gateway: { ...g.counters, errors: { ...g.counters.errors } },
      dhcp: { ...g.dhcp.counters },
      udpNat: g.udpNat ? { ...g.udpNat.counters, flows: g.udpNat.flowCount() } : undefined,
      tcpNat: { ...g.tcpNat.counters, connections: g.tcpNat.connectionCount(), pending: g.tcpNat.pendingConnects() },
      forwards: g.forwards.list(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.config.clock.clearTimer(this.sweepTimer);
    this.gateway.close();
    for (const nic of [...this.nics.values()]) this.detachNic(nic);
  }
}

function parseMacOrThrow(text: string): Mac {
  try {
    return parseMac(text);
  } catch (e) {
    throw new NetworkError('BadMac', (e as Error).message);
  }
}

function parseHostAddressAnywhere(text: string): Ip4 {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new SubnetError('BadAddress', `'${text}' is not an IPv4 address`);
  return m.slice(1).reduce((a, o) => a * 256 + Number(o), 0);
}
