/**
 * The DHCP server of a virtual network (RFC 2131, options from RFC 2132). Addresses are stable: each MAC keeps
 * the address it was first given for the life of the network (and across daemon restarts, through the leases
 * the host persisted and passes back in), so a VM's address never changes under it. A client may only ask for
 * its own MAC (chaddr must equal the frame's source MAC, which the switch already pinned to the NIC), so one
 * guest cannot drain the pool by inventing hardware addresses.
 */
import { readMac, writeMac, type Mac } from './packet/ethernet.js';
import { readIp, writeIp, type Ip4 } from './packet/ipv4.js';
import type { SubnetPlan } from './subnet.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

const OPT_PAD = 0;
const OPT_SUBNET_MASK = 1;
const OPT_ROUTER = 3;
const OPT_DNS = 6;
const OPT_HOSTNAME = 12;
const OPT_DOMAIN = 15;
const OPT_BROADCAST = 28;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE_TIME = 51;
const OPT_MESSAGE_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_MESSAGE = 56;
const OPT_RENEWAL_TIME = 58;
const OPT_REBINDING_TIME = 59;
const OPT_END = 255;

const MAGIC_COOKIE = 0x63825363;
const FIXED_LENGTH = 236;
const BROADCAST_FLAG = 0x8000;

export type DhcpParseError =
  | 'DhcpTooShort'
  | 'DhcpNotRequest'
  | 'DhcpBadHardware'
  | 'DhcpBadMagic'
  | 'DhcpBadOption'
  | 'DhcpNoMessageType'
  | 'DhcpBadMessageType';

export interface DhcpMessage {
  op: number;
  xid: number;
  flags: number;
  ciaddr: Ip4;
  chaddr: Mac;
  messageType: number;
  requestedIp?: Ip4;
  serverId?: Ip4;
  hostname?: string;
}

/** Parses a BOOTREQUEST from a UDP payload. */
export function parseDhcp(p: Uint8Array): DhcpMessage | DhcpParseError {
  if (p.length < FIXED_LENGTH + 4) return 'DhcpTooShort';
  if (p[0] !== 1) return 'DhcpNotRequest';
  if (p[1] !== 1 || p[2] !== 6) return 'DhcpBadHardware';
  if (readIp(p, FIXED_LENGTH) !== MAGIC_COOKIE) return 'DhcpBadMagic';
  const msg: DhcpMessage = {
    op: p[0],
    xid: readIp(p, 4),
    flags: (p[10] << 8) | p[11],
    ciaddr: readIp(p, 12),
    chaddr: readMac(p, 28),
    messageType: 0,
  };
  let i = FIXED_LENGTH + 4;
  while (i < p.length) {
    const code = p[i];
    if (code === OPT_END) break;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (i + 1 >= p.length) return 'DhcpBadOption';
    const len = p[i + 1];
    const v = i + 2;
    if (v + len > p.length) return 'DhcpBadOption';
    switch (code) {
      case OPT_MESSAGE_TYPE:
        if (len !== 1) return 'DhcpBadOption';
        msg.messageType = p[v];
        break;
      case OPT_REQUESTED_IP:
        if (len !== 4) return 'DhcpBadOption';
        msg.requestedIp = readIp(p, v);
        break;
      case OPT_SERVER_ID:
        if (len !== 4) return 'DhcpBadOption';
        msg.serverId = readIp(p, v);
        break;
      case OPT_HOSTNAME:
        if (len < 1) return 'DhcpBadOption';
        msg.hostname = String.fromCharCode(...p.subarray(v, v + len));
        break;
    }
    i = v + len;
  }
  if (msg.messageType === 0) return 'DhcpNoMessageType';
  if (msg.messageType < DHCPDISCOVER || msg.messageType > DHCPINFORM) return 'DhcpBadMessageType';
  return msg;
}

export interface DhcpReplyOptions {
  messageType: number;
  xid: number;
  flags: number;
  ciaddr: Ip4;
  yiaddr: Ip4;
  serverIp: Ip4;
  chaddr: Mac;
  mask?: Ip4;
  router?: Ip4;
  dns?: Ip4;
  broadcast?: Ip4;
  domain?: string;
  hostname?: string;
  leaseSeconds?: number;
  message?: string;
}

function asciiBytes(text: string, max: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length && out.length < max; i++) out.push(text.charCodeAt(i) & 0x7f);
  return out;
}

/** A BOOTREPLY payload; used by the server and by test guests (with op patched) alike. */
export function buildDhcpReply(o: DhcpReplyOptions): Uint8Array {
  const opts: number[] = [OPT_MESSAGE_TYPE, 1, o.messageType, OPT_SERVER_ID, 4, ...ipBytes(o.serverIp)];
  if (o.leaseSeconds !== undefined) {
    opts.push(OPT_LEASE_TIME, 4, ...ipBytes(o.leaseSeconds));
    opts.push(OPT_RENEWAL_TIME, 4, ...ipBytes(Math.floor(o.leaseSeconds / 2)));
    opts.push(OPT_REBINDING_TIME, 4, ...ipBytes(Math.floor((o.leaseSeconds * 7) / 8)));
  }
  if (o.mask !== undefined) opts.push(OPT_SUBNET_MASK, 4, ...ipBytes(o.mask));
  if (o.router !== undefined) opts.push(OPT_ROUTER, 4, ...ipBytes(o.router));
  if (o.dns !== undefined) opts.push(OPT_DNS, 4, ...ipBytes(o.dns));
  if (o.broadcast !== undefined) opts.push(OPT_BROADCAST, 4, ...ipBytes(o.broadcast));
  for (const [code, text] of [
    [OPT_DOMAIN, o.domain],
    [OPT_HOSTNAME, o.hostname],
    [OPT_MESSAGE, o.message],
  ] as const) {
    if (!text) continue;
    const bytes = asciiBytes(text, 255);
    opts.push(code, bytes.length, ...bytes);
  }
  opts.push(OPT_END);
  // BOOTP relays and old clients expect at least 300 bytes.
  const p = new Uint8Array(Math.max(300, FIXED_LENGTH + 4 + opts.length));
  p[0] = 2;
  p[1] = 1;
  p[2] = 6;
  writeIp(p, 4, o.xid);
  p[10] = o.flags >>> 8;
  p[11] = o.flags & 0xff;
  writeIp(p, 12, o.ciaddr);
  writeIp(p, 16, o.yiaddr);
  writeIp(p, 20, o.serverIp);
  writeMac(p, 28, o.chaddr);
  writeIp(p, FIXED_LENGTH, MAGIC_COOKIE);
  p.set(opts, FIXED_LENGTH + 4);
  return p;
}

function ipBytes(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

export interface DhcpRequestOptions {
  messageType: number;
  xid: number;
  chaddr: Mac;
  flags?: number;
  ciaddr?: Ip4;
  requestedIp?: Ip4;
  serverId?: Ip4;
  hostname?: string;
}

/** A BOOTREQUEST payload (for test guests). */
export function buildDhcpRequest(o: DhcpRequestOptions): Uint8Array {
  const opts: number[] = [OPT_MESSAGE_TYPE, 1, o.messageType];
  if (o.requestedIp !== undefined) opts.push(OPT_REQUESTED_IP, 4, ...ipBytes(o.requestedIp));
  if (o.serverId !== undefined) opts.push(OPT_SERVER_ID, 4, ...ipBytes(o.serverId));
  if (o.hostname) {
    const b = asciiBytes(o.hostname, 255);
    opts.push(OPT_HOSTNAME, b.length, ...b);
  }
  opts.push(OPT_END);
  const p = new Uint8Array(Math.max(300, FIXED_LENGTH + 4 + opts.length));
  p[0] = 1;
  p[1] = 1;
  p[2] = 6;
  writeIp(p, 4, o.xid);
  const flags = o.flags ?? 0;
  p[10] = flags >>> 8;
  p[11] = flags & 0xff;
  writeIp(p, 12, o.ciaddr ?? 0);
  writeMac(p, 28, o.chaddr);
  writeIp(p, FIXED_LENGTH, MAGIC_COOKIE);
  p.set(opts, FIXED_LENGTH + 4);
  return p;
}

/** What the server read from a BOOTREPLY (test guests use it). */
export interface DhcpReplyView {
  messageType: number;
  xid: number;
  yiaddr: Ip4;
  options: Map<number, Uint8Array>;
}

export function parseDhcpReply(p: Uint8Array): DhcpReplyView | undefined {
  if (p.length < FIXED_LENGTH + 4 || p[0] !== 2 || readIp(p, FIXED_LENGTH) !== MAGIC_COOKIE) return undefined;
  const options = new Map<number, Uint8Array>();
  let i = FIXED_LENGTH + 4;
  while (i < p.length && p[i] !== OPT_END) {
    if (p[i] === OPT_PAD) {
      i++;
      continue;
    }
    if (i + 1 >= p.length || i + 2 + p[i + 1] > p.length) return undefined;
    options.set(p[i], p.subarray(i + 2, i + 2 + p[i + 1]));
    i += 2 + p[i + 1];
  }
  const type = options.get(OPT_MESSAGE_TYPE);
  if (!type) return undefined;
  return { messageType: type[0], xid: readIp(p, 4), yiaddr: readIp(p, 16), options };
}

export const DHCP_OPTION = {
  subnetMask: OPT_SUBNET_MASK,
  router: OPT_ROUTER,
  dns: OPT_DNS,
  hostname: OPT_HOSTNAME,
  domain: OPT_DOMAIN,
  leaseTime: OPT_LEASE_TIME,
  serverId: OPT_SERVER_ID,
} as const;

export interface DhcpLease {
  mac: Mac;
  ip: Ip4;
  /** A client holds the address now (ACKed and not released). */
  bound: boolean;
}

export interface DhcpCounters {
  discover: number;
  offer: number;
  request: number;
  ack: number;
  nak: number;
  release: number;
  inform: number;
  decline: number;
  /** Requests ignored: chaddr differs from the frame's source MAC, or addressed to another server. */
  ignored: number;
  poolExhausted: number;
  malformed: number;
}

export interface DhcpServerOptions {
  plan: SubnetPlan;
  /** Router option only in nat mode: an isolated network has no way out. */
  offerRouter: boolean;
  domain: string;
  leaseSeconds: number;
  /** Known leases (mac → ip), e.g. persisted in VM records; each stays reserved for its MAC. */
  leases: Iterable<[Mac, Ip4]>;
  /** A MAC got an address it did not have before. */
  onLease: (mac: Mac, ip: Ip4) => void;
}

/** What to send back, and how: the gateway frames it. */
export interface DhcpAnswer {
  payload: Uint8Array;
  /** Unicast to this IP and the client MAC, or broadcast when undefined. */
  unicastIp?: Ip4;
}

export class DhcpServer {
  private readonly byMac = new Map<Mac, Ip4>();
  private readonly byIp = new Map<Ip4, Mac>();
  private readonly bound = new Set<Mac>();
  private nextCandidate: Ip4;
  readonly counters: DhcpCounters = {
    discover: 0,
    offer: 0,
    request: 0,
    ack: 0,
    nak: 0,
    release: 0,
    inform: 0,
    decline: 0,
    ignored: 0,
    poolExhausted: 0,
    malformed: 0,
  };

  constructor(private readonly opts: DhcpServerOptions) {
    for (const [mac, ip] of opts.leases) this.reserve(mac, ip);
    this.nextCandidate = opts.plan.poolStart;
  }

  private reserve(mac: Mac, ip: Ip4): void {
    this.byMac.set(mac, ip);
    this.byIp.set(ip, mac);
  }

  leaseOf(mac: Mac): Ip4 | undefined {
    return this.byMac.get(mac);
  }

  isBound(mac: Mac): boolean {
    return this.bound.has(mac);
  }

  leases(): DhcpLease[] {
    return [...this.byMac].map(([mac, ip]) => ({ mac, ip, bound: this.bound.has(mac) }));
  }

  /** Gives a MAC's address back to the pool (its VM was deleted). */
  forget(mac: Mac): void {
    const ip = this.byMac.get(mac);
    if (ip === undefined) return;
    this.byMac.delete(mac);
    this.byIp.delete(ip);
    this.bound.delete(mac);
  }

  /** The MAC's address, allocating the next free pool address if it has none. */
  private addressFor(mac: Mac): Ip4 | undefined {
    const have = this.byMac.get(mac);
    if (have !== undefined) return have;
    const { poolStart, poolEnd } = this.opts.plan;
    const size = poolEnd - poolStart + 1;
    for (let n = 0; n < size; n++) {
      const ip = this.nextCandidate;
      this.nextCandidate = ip >= poolEnd ? poolStart : ip + 1;
      if (!this.byIp.has(ip)) {
        this.reserve(mac, ip);
        this.opts.onLease(mac, ip);
        return ip;
      }
    }
    return undefined;
  }

  private reply(msg: DhcpMessage, type: number, yiaddr: Ip4, hostname: string | undefined): Uint8Array {
    const { plan } = this.opts;
    if (type === DHCPNAK) {
      return buildDhcpReply({
        messageType: DHCPNAK,
        xid: msg.xid,
        flags: msg.flags,
        ciaddr: 0,
        yiaddr: 0,
        serverIp: plan.gateway,
        chaddr: msg.chaddr,
      });
    }
    return buildDhcpReply({
      messageType: type,
      xid: msg.xid,
      flags: msg.flags,
      ciaddr: msg.ciaddr,
      yiaddr,
      serverIp: plan.gateway,
      chaddr: msg.chaddr,
      mask: plan.mask,
      router: this.opts.offerRouter ? plan.gateway : undefined,
      dns: plan.dns,
      broadcast: plan.broadcast,
      domain: this.opts.domain,
      hostname,
      leaseSeconds: yiaddr === 0 ? undefined : this.opts.leaseSeconds,
    });
  }

  private answer(msg: DhcpMessage, type: number, yiaddr: Ip4, hostname: string | undefined): DhcpAnswer {
    const payload = this.reply(msg, type, yiaddr, hostname);
    // RFC 2131 §4.1: NAKs broadcast; a client that asked for broadcast, or has no address yet, gets broadcast
    // (our unicast would need the client to accept frames for an address it has not configured).
    if (type === DHCPNAK || (msg.flags & BROADCAST_FLAG) !== 0) return { payload };
    if (msg.ciaddr !== 0) return { payload, unicastIp: msg.ciaddr };
    return { payload, unicastIp: yiaddr };
  }

  /** Handles one parsed message from `srcMac`; returns the reply to send, if any. */
  handle(msg: DhcpMessage, srcMac: Mac, hostname: string | undefined): DhcpAnswer | undefined {
    const { plan } = this.opts;
    if (msg.chaddr !== srcMac) {
      this.counters.ignored++;
      return undefined;
    }
    switch (msg.messageType) {
      case DHCPDISCOVER: {
        this.counters.discover++;
        const ip = this.addressFor(msg.chaddr);
        if (ip === undefined) {
          this.counters.poolExhausted++;
          return undefined;
        }
        this.counters.offer++;
        return this.answer(msg, DHCPOFFER, ip, hostname);
      }
      case DHCPREQUEST: {
        this.counters.request++;
        if (msg.serverId !== undefined && msg.serverId !== plan.gateway) {
          // SELECTING another server's offer (there is none on our network, but be correct).
          this.counters.ignored++;
          return undefined;
        }
        const wanted = msg.requestedIp ?? msg.ciaddr;
        let ip = this.byMac.get(msg.chaddr);
        if (ip === undefined && wanted !== 0 && inPool(plan, wanted) && !this.byIp.has(wanted)) {
          // INIT-REBOOT with an address we have no record of (e.g. the network was recreated): grant it if free.
          this.reserve(msg.chaddr, wanted);
          this.opts.onLease(msg.chaddr, wanted);
          ip = wanted;
        }
        if (ip === undefined || wanted !== ip) {
          this.counters.nak++;
          return this.answer(msg, DHCPNAK, 0, undefined);
        }
        this.bound.add(msg.chaddr);
        this.counters.ack++;
        return this.answer(msg, DHCPACK, ip, hostname);
      }
      case DHCPRELEASE:
        this.counters.release++;
        if (this.byMac.get(msg.chaddr) === msg.ciaddr) this.bound.delete(msg.chaddr);
        return undefined;
      case DHCPDECLINE: {
        // RFC 2131 §4.3.3: the client found the address in use (a guest with a static address took it). Keep it
        // out of the pool, unowned, and let the client's next DISCOVER get another one.
        this.counters.decline++;
        const ip = this.byMac.get(msg.chaddr);
        if (ip !== undefined && msg.requestedIp === ip) {
          this.byMac.delete(msg.chaddr);
          this.bound.delete(msg.chaddr);
          this.byIp.set(ip, DECLINED);
        }
        return undefined;
      }
      case DHCPINFORM: {
        this.counters.inform++;
        if (msg.ciaddr === 0) return undefined;
        this.counters.ack++;
        return { payload: this.reply(msg, DHCPACK, 0, hostname), unicastIp: msg.ciaddr };
      }
      default:
        this.counters.ignored++;
        return undefined;
    }
  }
}

/** byIp owner of an address a client declined: no MAC has it, nobody is offered it. */
const DECLINED: Mac = 0;

function inPool(plan: SubnetPlan, ip: Ip4): boolean {
  return ip >= plan.poolStart && ip <= plan.poolEnd;
}
