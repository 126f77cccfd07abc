/**
 * The gateway: a virtual host on the switch that owns the gateway and DNS addresses. It answers ARP and ping
 * for them, serves DHCP and DNS, and (nat mode) carries UDP and TCP out to host sockets. Every frame is parsed
 * into typed headers first; a parse failure is counted under its name and the frame dropped.
 */
import { BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, isMulticastMac, parseEthernet, type Mac } from './packet/ethernet.js';
import { ARP_REPLY, ARP_REQUEST, buildArpFrame, parseArp } from './packet/arp.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, parseIpv4, type Ip4, type Ipv4Header } from './packet/ipv4.js';
import { buildIcmpEchoFrame, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, parseIcmp } from './packet/icmp.js';
import { buildUdpFrame, parseUdp } from './packet/udp.js';
import { parseTcp } from './packet/tcp.js';
import { zeroPacketErrorCounts, type PacketError } from './packet/errors.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpServer, parseDhcp } from './dhcp.js';
import {
  buildDnsResponse,
  CLASS_IN,
  DNS_PORT,
  parseDnsQuery,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_SERVFAIL,
  TYPE_A,
  type DnsQuery,
  type DnsResolver,
} from './dns.js';
import type { GatewayContext } from './gateway-context.js';
import { UdpNat } from './nat-udp.js';
import { TcpNat } from './nat-tcp.js';
import { Forwards } from './forwards.js';
import { inSubnet, type SubnetPlan } from './subnet.js';

export const INTERNAL_ZONE = 'typevisor.internal';
export const HOST_ALIAS = `host.${INTERNAL_ZONE}`;

export interface GatewayCounters {
  rxFrames: number;
  /** Frames not for the gateway (other guests' unicast that flooded, foreign broadcasts): ignored. */
  notForUs: number;
  arpReplies: number;
  icmpEchoReplies: number;
  dnsQueries: number;
  dnsAnsweredLocal: number;
  dnsForwarded: number;
  dnsNxdomain: number;
  dnsErrors: number;
  /** Forwarded lookups refused because too many were in flight. */
  dnsBusy: number;
  /** Parse failures by name (frames, DHCP, DNS). */
  errors: Record<string, number>;
}

export interface GatewayOptions {
  mode: 'nat' | 'isolated';
  domain: string;
  /** Static DNS names (lower-case) → address. */
  dnsHosts: Map<string, Ip4>;
  leases: Iterable<[Mac, Ip4]>;
  onLease: (mac: Mac, ip: Ip4) => void;
  resolver: DnsResolver | undefined;
  /** VM hostname (lower-case) → MAC, maintained by the network as NICs attach. */
  hostnames: Map<string, Mac>;
  hostnameOf: (mac: Mac) => string | undefined;
  leaseSeconds: number;
  maxDnsInFlight: number;
  udp: { maxFlows: number; idleMs: number };
  tcp: { maxPerGuest: number; maxTotal: number; maxPending: number; idleMs: number; pendingTimeoutMs: number };
}

export class Gateway {
  readonly dhcp: DhcpServer;
  readonly udpNat: UdpNat | undefined;
  readonly tcpNat: TcpNat;
  readonly forwards: Forwards;
  private dnsInFlight = 0;
  private closed = false;
  readonly counters: GatewayCounters = {
    rxFrames: 0,
    notForUs: 0,
    arpReplies: 0,
    icmpEchoReplies: 0,
    dnsQueries: 0,
    dnsAnsweredLocal: 0,
    dnsForwarded: 0,
    dnsNxdomain: 0,
    dnsErrors: 0,
    dnsBusy: 0,
    errors: zeroPacketErrorCounts(),
  };

  constructor(
    private readonly ctx: GatewayContext,
    private readonly opts: GatewayOptions,
  ) {
    const { plan } = ctx;
    this.dhcp = new DhcpServer({
      plan,
      offerRouter: opts.mode === 'nat',
      domain: opts.domain,
      leaseSeconds: opts.leaseSeconds,
      leases: opts.leases,
      onLease: opts.onLease,
    });
    this.udpNat = opts.mode === 'nat' ? new UdpNat(ctx, opts.udp) : undefined;
    // Forwards need the TCP table in isolated mode too (host → guest needs no way out).
    this.tcpNat = new TcpNat(ctx, { ...opts.tcp, outbound: opts.mode === 'nat' });
    this.forwards = new Forwards(ctx, this.tcpNat, (mac) => this.dhcp.leaseOf(mac), opts.udp.idleMs);
  }

  private count(error: string): void {
    this.counters.errors[error] = (this.counters.errors[error] ?? 0) + 1;
  }

  private isOurs(ip: Ip4): boolean {
    return ip === this.ctx.plan.gateway || ip === this.ctx.plan.dns;
  }

  /** A source address a guest may use: a host address of the subnet that is not one of the gateway's. */
  private isGuestAddress(ip: Ip4): boolean {
    const { plan } = this.ctx;
    return inSubnet(plan, ip) && ip !== plan.network && ip !== plan.broadcast && !this.isOurs(ip);
  }

  /** A frame the switch delivered to the gateway's port. */
  receive(frame: Uint8Array): void {
    if (this.closed) return;
    this.counters.rxFrames++;
    const eth = parseEthernet(frame);
    if (typeof eth === 'string') return this.count(eth);
    if (eth.dst !== this.ctx.mac && !isMulticastMac(eth.dst)) {
      this.counters.notForUs++;
      return;
    }
    if (eth.etherType === ETHERTYPE_ARP) return this.onArp(frame, eth.src);
    if (eth.etherType !== ETHERTYPE_IPV4) {
      // IPv6 and others: the gateway speaks IPv4 only (guests' own IPv6 link-local traffic still switches).
      this.counters.notForUs++;
      return;
    }
    const ip = parseIpv4(frame, eth.payloadOffset);
    if (typeof ip === 'string') return this.count(ip);
    switch (ip.protocol) {
      case IPPROTO_UDP:
        return this.onUdp(frame, eth.src, eth.dst, ip);
      case IPPROTO_TCP:
        return this.onTcp(frame, eth.src, eth.dst, ip);
      case IPPROTO_ICMP:
        return this.onIcmp(frame, eth.src, eth.dst, ip);
      default:
        this.count('UnknownIpProtocol' satisfies PacketError);
    }
  }

  private onArp(frame: Uint8Array, srcMac: Mac): void {
    const arp = parseArp(frame, 14);
    if (typeof arp === 'string') return this.count(arp);
    if (arp.op !== ARP_REQUEST || !this.isOurs(arp.targetIp)) {
      this.counters.notForUs++;
      return;
    }
    this.counters.arpReplies++;
    this.ctx.send(buildArpFrame(ARP_REPLY, this.ctx.mac, arp.targetIp, arp.senderMac, arp.senderIp, srcMac));
  }

  private onIcmp(frame: Uint8Array, srcMac: Mac, dstMac: Mac, ip: Ipv4Header): void {
    if (!this.isOurs(ip.dst) || dstMac !== this.ctx.mac) {
      this.counters.notForUs++;
      return;
    }
    const icmp = parseIcmp(frame, ip);
    if (typeof icmp === 'string') return this.count(icmp);
    if (icmp.type !== ICMP_ECHO_REQUEST || icmp.code !== 0) {
      this.counters.notForUs++;
      return;
    }
    this.counters.icmpEchoReplies++;
    this.ctx.send(buildIcmpEchoFrame(srcMac, this.ctx.mac, ip.dst, ip.src, ICMP_ECHO_REPLY, icmp.id, icmp.seq, icmp.data));
  }

  private onUdp(frame: Uint8Array, srcMac: Mac, dstMac: Mac, ip: Ipv4Header): void {
    const udp = parseUdp(frame, ip);
    if (typeof udp === 'string') return this.count(udp);
    const { plan } = this.ctx;
    if (
      udp.dstPort === DHCP_SERVER_PORT &&
      udp.srcPort === DHCP_CLIENT_PORT &&
      (ip.dst === 0xffffffff || ip.dst === plan.gateway)
    ) {
      return this.onDhcp(srcMac, udp.payload);
    }
    if (dstMac !== this.ctx.mac) {
      this.counters.notForUs++;
      return;
    }
    if (ip.dst === plan.dns) {
      if (udp.dstPort === DNS_PORT) this.onDns(srcMac, ip.src, udp.srcPort, udp.payload);
      else this.counters.notForUs++;
      return;
    }
    if (ip.dst === plan.gateway && this.forwards.udpFromGuest(srcMac, udp.srcPort, udp.dstPort, udp.payload)) return;
    if (!this.udpNat || !this.isGuestAddress(ip.src)) {
      this.counters.notForUs++;
      return;
    }
    this.udpNat.fromGuest(srcMac, ip.src, udp.srcPort, ip.dst, udp.dstPort, udp.payload);
  }

  private onTcp(frame: Uint8Array, srcMac: Mac, dstMac: Mac, ip: Ipv4Header): void {
    if (dstMac !== this.ctx.mac || !this.isGuestAddress(ip.src)) {
      this.counters.notForUs++;
      return;
    }
    const seg = parseTcp(frame, ip);
    if (typeof seg === 'string') return this.count(seg);
    // Isolated networks have no way out: only forwarded connections (to the gateway's ports) exist.
    if (this.opts.mode === 'isolated' && ip.dst !== this.ctx.plan.gateway) {
      this.counters.notForUs++;
      return;
    }
    this.tcpNat.fromGuest(srcMac, ip.src, ip.dst, seg);
  }

  private onDhcp(srcMac: Mac, payload: Uint8Array): void {
    const msg = parseDhcp(payload);
    if (typeof msg === 'string') {
      this.dhcp.counters.malformed++;
      return this.count(msg);
    }
    const answer = this.dhcp.handle(msg, srcMac, this.opts.hostnameOf(srcMac));
    if (!answer) return;
    const { plan } = this.ctx;
    const dstIp = answer.unicastIp ?? 0xffffffff;
    const dstMac = answer.unicastIp !== undefined ? srcMac : BROADCAST_MAC;
    this.ctx.send(buildUdpFrame(dstMac, this.ctx.mac, plan.gateway, dstIp, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, answer.payload));
  }

  /** The address a local name stands for, or undefined when the name is not ours. */
  private localName(name: string): Ip4 | 'nodata' | undefined {
    const { plan } = this.ctx;
    if (name === HOST_ALIAS) return plan.gateway;
    const fixed = this.opts.dnsHosts.get(name);
    if (fixed !== undefined) return fixed;
    const suffix = `.${this.opts.domain}`;
    const bare = name.endsWith(suffix) ? name.slice(0, -suffix.length) : name;
    const mac = this.opts.hostnames.get(bare);
    if (mac === undefined) return undefined;
    // A VM on this network without an address yet: the name exists, it has no A record.
    return this.dhcp.leaseOf(mac) ?? 'nodata';
  }

  /** Names in our own zones are answered here or not at all: never leaked to the host's resolvers. */
  private isInternalName(name: string): boolean {
    const { domain } = this.opts;
    return name === domain || name.endsWith(`.${domain}`) || name === INTERNAL_ZONE || name.endsWith(`.${INTERNAL_ZONE}`);
  }

  private onDns(srcMac: Mac, guestIp: Ip4, guestPort: number, payload: Uint8Array): void {
    this.counters.dnsQueries++;
    const q = parseDnsQuery(payload);
    if ('error' in q) {
      this.count(q.error);
      this.counters.dnsErrors++;
      if (q.id !== undefined) {
        const rcode = q.error === 'DnsBadOpcode' ? RCODE_NOTIMP : RCODE_FORMERR;
        this.replyDns(srcMac, guestIp, guestPort, buildDnsResponse(q.id, false, rcode, undefined, [], false));
      }
      return;
    }
    const local = q.qclass === CLASS_IN ? this.localName(q.name) : undefined;
    if (local !== undefined) {
      this.counters.dnsAnsweredLocal++;
      const answers = local !== 'nodata' && q.type === TYPE_A ? [local] : [];
      this.replyDns(
        srcMac,
        guestIp,
        guestPort,
        buildDnsResponse(q.id, q.recursionDesired, RCODE_NOERROR, q.question, answers, true),
      );
      return;
    }
    const resolver = this.opts.resolver;
    if (this.opts.mode === 'isolated' || !resolver || q.qclass !== CLASS_IN || q.name === '' || this.isInternalName(q.name)) {
      this.counters.dnsNxdomain++;
      this.replyDns(srcMac, guestIp, guestPort, buildDnsResponse(q.id, q.recursionDesired, RCODE_NXDOMAIN, q.question, [], true));
      return;
    }
    if (q.type !== TYPE_A) {
      this.replyDns(srcMac, guestIp, guestPort, buildDnsResponse(q.id, q.recursionDesired, RCODE_NOERROR, q.question, [], false));
      return;
    }
    this.forwardDns(srcMac, guestIp, guestPort, q, resolver);
  }

  private forwardDns(srcMac: Mac, guestIp: Ip4, guestPort: number, q: DnsQuery, resolver: DnsResolver): void {
    if (this.dnsInFlight >= this.opts.maxDnsInFlight) {
      this.counters.dnsBusy++;
      this.replyDns(
        srcMac,
        guestIp,
        guestPort,
        buildDnsResponse(q.id, q.recursionDesired, RCODE_SERVFAIL, q.question, [], false),
      );
      return;
    }
    this.dnsInFlight++;
    this.counters.dnsForwarded++;
    // The question is a view over the guest frame, which may be reused once we return.
    const question = q.question.slice();
    const reply = (rcode: number, answers: number[]) => {
      this.dnsInFlight--;
      if (this.closed) return;
      if (rcode === RCODE_NXDOMAIN) this.counters.dnsNxdomain++;
      this.replyDns(
        srcMac,
        guestIp,
        guestPort,
        buildDnsResponse(q.id, q.recursionDesired, rcode, question, answers.slice(0, 16), false),
      );
    };
    resolver.lookupA(q.name).then(
      (r) => {
        if (r === 'NXDOMAIN') reply(RCODE_NXDOMAIN, []);
        else if (r === 'SERVFAIL') reply(RCODE_SERVFAIL, []);
        else reply(RCODE_NOERROR, r.addresses);
      },
      () => reply(RCODE_SERVFAIL, []),
    );
  }

  private replyDns(dstMac: Mac, guestIp: Ip4, guestPort: number, payload: Uint8Array): void {
    this.ctx.send(buildUdpFrame(dstMac, this.ctx.mac, this.ctx.plan.dns, guestIp, DNS_PORT, guestPort, payload));
  }

  sweep(): void {
    this.udpNat?.sweep();
    this.tcpNat.sweep();
    this.forwards.sweep();
  }

  close(): void {
    this.closed = true;
    this.forwards.closeAll();
    this.udpNat?.closeAll();
    this.tcpNat.closeAll();
  }

  get plan(): SubnetPlan {
    return this.ctx.plan;
  }
}
