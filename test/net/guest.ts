/**
 * A synthetic guest for network tests: it owns a NIC on a VirtualNetwork and speaks ARP, DHCP, ICMP, UDP and
 * DNS with the packet builders, so every test drives the network exactly as a real guest's frames would.
 */
import {
  parseEthernet,
  parseMac,
  BROADCAST_MAC,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  type Mac,
} from '../../src/net/packet/ethernet.js';
import { parseIpv4, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_TCP, type Ip4 } from '../../src/net/packet/ipv4.js';
import { parseArp, buildArpFrame, ARP_REQUEST, ARP_REPLY } from '../../src/net/packet/arp.js';
import { parseUdp, buildUdpFrame } from '../../src/net/packet/udp.js';
import { parseIcmp, buildIcmpEchoFrame, ICMP_ECHO_REQUEST } from '../../src/net/packet/icmp.js';
import { parseTcp } from '../../src/net/packet/tcp.js';
import {
  buildDhcpRequest,
  parseDhcpReply,
  DHCPDISCOVER,
  DHCPREQUEST,
  DHCPOFFER,
  DHCPACK,
  DHCP_OPTION,
  type DhcpReplyView,
} from '../../src/net/dhcp.js';
import { buildDnsQuery, parseDnsResponse, type DnsResponseView } from '../../src/net/dns.js';
import type { NetClock } from '../../src/net/host-io.js';
import type { NicAttachment, VirtualNetwork } from '../../src/net/network.js';
import type { TcpSegment } from '../../src/net/tcp/types.js';

export interface Received {
  frame: Uint8Array;
  udp?: { src: Ip4; dst: Ip4; srcPort: number; dstPort: number; payload: Uint8Array };
  arp?: { op: number; senderMac: Mac; senderIp: Ip4 };
  icmp?: { type: number; id: number; seq: number; data: Uint8Array; src: Ip4 };
  tcp?: { src: Ip4; dst: Ip4; seg: TcpSegment };
}

type Waiter = { match: (r: Received) => boolean; resolve: (r: Received) => void };

export class TestGuest {
  readonly mac: Mac;
  ip: Ip4 = 0;
  gatewayMac: Mac = BROADCAST_MAC;
  readonly nic: NicAttachment;
  readonly inbox: Received[] = [];
  private waiters: Waiter[] = [];
  private xid: number;
  onTcp: ((src: Ip4, dst: Ip4, seg: TcpSegment) => void) | undefined;

  constructor(
    readonly net: VirtualNetwork,
    readonly id: string,
    macText: string,
    readonly hostname?: string,
  ) {
    this.mac = parseMac(macText);
    // Distinct transaction ids per guest: broadcast replies reach every guest on the network.
    this.xid = (this.mac % 0x10000) * 0x1000;
    this.nic = net.attach(id, { mac: macText, hostname }, (frame) => this.deliver(frame.slice()));
  }

  send(frame: Uint8Array): void {
    this.nic.receive(frame);
  }

  private deliver(frame: Uint8Array): void {
    const r: Received = { frame };
    const eth = parseEthernet(frame);
    if (typeof eth !== 'string') {
      if (eth.etherType === ETHERTYPE_ARP) {
        const a = parseArp(frame, 14);
        if (typeof a !== 'string') {
          r.arp = a;
          if (a.op === ARP_REQUEST && this.ip !== 0 && a.targetIp === this.ip) {
            this.send(buildArpFrame(ARP_REPLY, this.mac, this.ip, a.senderMac, a.senderIp, a.senderMac));
            return;
          }
        }
      } else if (eth.etherType === ETHERTYPE_IPV4) {
        const ip = parseIpv4(frame, 14);
        if (typeof ip !== 'string') {
          if (ip.protocol === IPPROTO_UDP) {
            const u = parseUdp(frame, ip);
            if (typeof u !== 'string') r.udp = { src: ip.src, dst: ip.dst, ...u };
          } else if (ip.protocol === IPPROTO_ICMP) {
            const m = parseIcmp(frame, ip);
            if (typeof m !== 'string') r.icmp = { ...m, src: ip.src };
          } else if (ip.protocol === IPPROTO_TCP) {
            const s = parseTcp(frame, ip);
            if (typeof s !== 'string') {
              r.tcp = { src: ip.src, dst: ip.dst, seg: s };
              if (this.onTcp && ip.dst === this.ip) {
                // Asynchronously, as a real NIC would: an endpoint must not be re-entered from its own emit.
                const onTcp = this.onTcp;
                queueMicrotask(() => onTcp(ip.src, ip.dst, s));
                return;
              }
            }
          }
        }
      }
    }
    const i = this.waiters.findIndex((w) => w.match(r));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w.resolve(r);
      return;
    }
    this.inbox.push(r);
  }

  /** The first received (or next arriving) frame that matches; fails after timeoutMs. */
  next(match: (r: Received) => boolean, timeoutMs = 5000): Promise<Received> {
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.id}: no matching frame within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Synchronous: takes a matching frame already received (the network answers synchronously). */
  take(match: (r: Received) => boolean): Received | undefined {
    const i = this.inbox.findIndex(match);
    return i >= 0 ? this.inbox.splice(i, 1)[0] : undefined;
  }

  sendUdp(dst: Ip4, srcPort: number, dstPort: number, payload: Uint8Array, dstMac = this.gatewayMac, src = this.ip): void {
    this.send(buildUdpFrame(dstMac, this.mac, src, dst, srcPort, dstPort, payload));
  }

  dhcpSend(type: number, extra: { requestedIp?: Ip4; serverId?: Ip4; ciaddr?: Ip4; xid?: number } = {}): number {
    const xid = extra.xid ?? this.xid++;
    const payload = buildDhcpRequest({ messageType: type, xid, chaddr: this.mac, flags: 0x8000, ...extra });
    this.send(buildUdpFrame(BROADCAST_MAC, this.mac, extra.ciaddr ?? 0, 0xffffffff, 68, 67, payload));
    return xid;
  }

  dhcpReply(xid: number): DhcpReplyView | undefined {
    const r = this.take((r) => r.udp?.dstPort === 68 && parseDhcpReply(r.udp.payload)?.xid === xid);
    return r ? parseDhcpReply(r.udp!.payload) : undefined;
  }

  /** Full DORA; sets this.ip. */
  dhcp(): DhcpReplyView {
    const x1 = this.dhcpSend(DHCPDISCOVER);
    const offer = this.dhcpReply(x1);
    if (!offer || offer.messageType !== DHCPOFFER) throw new Error(`${this.id}: no DHCPOFFER`);
    const serverId = offer.options.get(DHCP_OPTION.serverId)!;
    const sid = ((serverId[0] << 24) | (serverId[1] << 16) | (serverId[2] << 8) | serverId[3]) >>> 0;
    const x2 = this.dhcpSend(DHCPREQUEST, { requestedIp: offer.yiaddr, serverId: sid });
    const ack = this.dhcpReply(x2);
    if (!ack || ack.messageType !== DHCPACK) throw new Error(`${this.id}: no DHCPACK`);
    this.ip = ack.yiaddr;
    return ack;
  }

  arp(target: Ip4): Mac | undefined {
    this.send(buildArpFrame(ARP_REQUEST, this.mac, this.ip, 0, target, BROADCAST_MAC));
    const r = this.take((r) => r.arp?.op === ARP_REPLY && r.arp.senderIp === target);
    return r?.arp?.senderMac;
  }

  ping(dst: Ip4, seq: number, data = Uint8Array.from([1, 2, 3, 4])): Received | undefined {
    this.send(buildIcmpEchoFrame(this.gatewayMac, this.mac, this.ip, dst, ICMP_ECHO_REQUEST, 0x77, seq, data));
    return this.take((r) => r.icmp?.seq === seq && r.icmp.type === 0);
  }

  dnsQuery(dnsIp: Ip4, name: string, type = 1, id = 0x1234): void {
    this.sendUdp(dnsIp, 5353, 53, buildDnsQuery(id, name, type));
  }

  async dns(dnsIp: Ip4, name: string, type = 1, id = 0x1234): Promise<DnsResponseView> {
    this.dnsQuery(dnsIp, name, type, id);
    const r = await this.next(
      (r) => r.udp?.srcPort === 53 && r.udp.dstPort === 5353 && ((r.udp.payload[0] << 8) | r.udp.payload[1]) === id,
    );
    return parseDnsResponse(r.udp!.payload)!;
  }
}

/** A clock tests advance by hand; timers fire in order when their time comes. */
export class ManualClock implements NetClock {
  private t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimer(ms: number, fn: () => void): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    while (true) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}
