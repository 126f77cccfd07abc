/**
 * Port forwards (docker -p / QEMU hostfwd): a host listener whose connections (TCP) or datagrams (UDP) reach a
 * guest port at the guest's current DHCP address. Setup errors are named (ForwardError); a connection that
 * arrives before the guest has an address is refused at accept time and counted.
 */
import { formatMac, parseMac, type Mac } from './packet/ethernet.js';
import { buildUdpFrame, UDP_MAX_PAYLOAD } from './packet/udp.js';
import { parseIp, type Ip4 } from './packet/ipv4.js';
import { HostSocketError, type HostTcpListener, type HostUdpSocket } from './host-io.js';
import type { GatewayContext } from './gateway-context.js';
import type { TcpNat } from './nat-tcp.js';

export interface ForwardSpec {
  proto: 'tcp' | 'udp';
  /** Default 127.0.0.1. */
  hostIp?: string;
  /** 0 picks a free port (the chosen one is in the result). */
  hostPort: number;
  guestMac: string;
  guestPort: number;
}

export interface ForwardInfo {
  id: string;
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestMac: string;
  guestPort: number;
  /** Connections (TCP) or datagrams (UDP) passed to the guest. */
  forwarded: number;
  /** Refused because the guest had no address, or was at its connection limit. */
  refused: number;
}

export type ForwardErrorCode =
  'AddressInUse' | 'PermissionDenied' | 'BadAddress' | 'BadPort' | 'BadMac' | 'NoSuchForward' | 'NotNatNetwork' | 'HostError';

export class ForwardError extends Error {
  override readonly name = 'ForwardError';
  constructor(
    readonly code: ForwardErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface UdpPeer {
  address: string;
  port: number;
  lastActive: number;
}

interface Forward {
  info: ForwardInfo;
  mac: Mac;
  close(): void;
  /** UDP: gateway-side local port → the host peer it stands for. */
  udpPeers?: Map<number, UdpPeer>;
  udpSocket?: HostUdpSocket;
}

const MAX_UDP_PEERS = 256;
const UDP_PEER_BASE = 40000;

function validPort(p: number, allowZero: boolean): boolean {
  return Number.isInteger(p) && p >= (allowZero ? 0 : 1) && p <= 65535;
}

export class Forwards {
  private readonly forwards = new Map<string, Forward>();
  /** UDP datagrams from the guest to gateway:port go to the forward owning that port. */
  private readonly udpByLocalPort = new Map<number, Forward>();
  private nextUdpLocal = UDP_PEER_BASE;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly tcp: TcpNat,
    private readonly leaseOf: (mac: Mac) => Ip4 | undefined,
    private readonly udpIdleMs: number,
  ) {}

  list(): ForwardInfo[] {
    return [...this.forwards.values()].map((f) => ({ ...f.info }));
  }

  async add(spec: ForwardSpec): Promise<ForwardInfo> {
    const hostIp = spec.hostIp ?? '127.0.0.1';
    if (spec.proto !== 'tcp' && spec.proto !== 'udp')
      throw new ForwardError('BadAddress', `unknown protocol '${String(spec.proto)}'`);
    if (parseIp(hostIp) === undefined) throw new ForwardError('BadAddress', `'${hostIp}' is not an IPv4 address`);
    if (!validPort(spec.hostPort, true) || !validPort(spec.guestPort, false))
      throw new ForwardError('BadPort', 'ports must be integers in 1..65535 (host port 0 picks one)');
    let mac: Mac;
    try {
      mac = parseMac(spec.guestMac);
    } catch (e) {
      throw new ForwardError('BadMac', (e as Error).message);
    }
    const info: ForwardInfo = {
      id: '',
      proto: spec.proto,
      hostIp,
      hostPort: spec.hostPort,
      guestMac: formatMac(mac),
      guestPort: spec.guestPort,
      forwarded: 0,
      refused: 0,
    };
    try {
      const f = spec.proto === 'tcp' ? await this.listenTcp(info, mac) : await this.listenUdp(info, mac);
      info.id = `${info.proto}:${info.hostIp}:${info.hostPort}`;
      this.forwards.set(info.id, f);
      return { ...info };
    } catch (e) {
      if (e instanceof HostSocketError) {
        const code: ForwardErrorCode =
          e.code === 'AddressInUse' || e.code === 'PermissionDenied' || e.code === 'BadAddress' ? e.code : 'HostError';
        throw new ForwardError(code, `cannot listen on ${hostIp}:${spec.hostPort}/${spec.proto}: ${e.message}`);
      }
      throw e;
    }
  }

  remove(id: string): void {
    const f = this.forwards.get(id);
    if (!f) throw new ForwardError('NoSuchForward', `no forward '${id}'`);
    this.forwards.delete(id);
    f.close();
  }

  closeAll(): void {
    for (const id of [...this.forwards.keys()]) this.remove(id);
  }

  private async listenTcp(info: ForwardInfo, mac: Mac): Promise<Forward> {
    const f: Forward = { info, mac, close: () => {} };
    const listener: HostTcpListener = await this.ctx.sockets.tcpListen(info.hostIp, info.hostPort, (accept) => {
      const ip = this.leaseOf(mac);
      if (ip === undefined || !this.tcp.openToGuest(mac, ip, info.guestPort, accept)) {
        info.refused++;
        accept({ onData() {}, onEnd() {}, onClose() {} }).destroy();
        return;
      }
      info.forwarded++;
    });
    info.hostPort = listener.port;
    f.close = () => listener.close();
    return f;
  }

  private async listenUdp(info: ForwardInfo, mac: Mac): Promise<Forward> {
    const peers = new Map<number, UdpPeer>();
    const f: Forward = { info, mac, udpPeers: peers, close: () => {} };
    const socket = await this.ctx.sockets.udpListen(info.hostIp, info.hostPort, {
      onMessage: (data, address, port) => this.udpFromHost(f, data, address, port),
    });
    f.udpSocket = socket;
    info.hostPort = socket.port;
    f.close = () => {
      socket.close();
      for (const local of peers.keys()) this.udpByLocalPort.delete(local);
      peers.clear();
    };
    return f;
  }

  private udpFromHost(f: Forward, data: Uint8Array, address: string, port: number): void {
    const ip = this.leaseOf(f.mac);
    if (ip === undefined || data.length > UDP_MAX_PAYLOAD) {
      f.info.refused++;
      return;
    }
    const peers = f.udpPeers!;
    let local: number | undefined;
    for (const [p, peer] of peers) {
      if (peer.port === port && peer.address === address) {
        local = p;
        break;
      }
    }
    if (local === undefined) {
      if (peers.size >= MAX_UDP_PEERS) {
        f.info.refused++;
        return;
      }
      local = this.allocUdpLocal();
      if (local === undefined) {
        f.info.refused++;
        return;
      }
      peers.set(local, { address, port, lastActive: 0 });
      this.udpByLocalPort.set(local, f);
    }
    peers.get(local)!.lastActive = this.ctx.clock.now();
    f.info.forwarded++;
    this.ctx.send(buildUdpFrame(f.mac, this.ctx.mac, this.ctx.plan.gateway, ip, local, f.info.guestPort, data));
  }

  private allocUdpLocal(): number | undefined {
    for (let n = 0; n < 9000; n++) {
      const p = this.nextUdpLocal;
      this.nextUdpLocal = p >= UDP_PEER_BASE + 8999 ? UDP_PEER_BASE : p + 1;
      if (!this.udpByLocalPort.has(p)) return p;
    }
    return undefined;
  }

  /** A guest datagram to gateway:dstPort: true if a UDP forward owned it. */
  udpFromGuest(srcMac: Mac, srcPort: number, dstPort: number, payload: Uint8Array): boolean {
    const f = this.udpByLocalPort.get(dstPort);
    if (!f) return false;
    const peer = f.udpPeers!.get(dstPort);
    // Only the forward's own guest, from the forwarded port, answers its host peers.
    if (!peer || srcMac !== f.mac || srcPort !== f.info.guestPort) return true;
    peer.lastActive = this.ctx.clock.now();
    f.udpSocket?.send(payload, peer.port, peer.address);
    return true;
  }

  sweep(): void {
    const cutoff = this.ctx.clock.now() - this.udpIdleMs;
    for (const f of this.forwards.values()) {
      if (!f.udpPeers) continue;
      for (const [local, peer] of f.udpPeers) {
        if (peer.lastActive < cutoff) {
          f.udpPeers.delete(local);
          this.udpByLocalPort.delete(local);
        }
      }
    }
  }
}
