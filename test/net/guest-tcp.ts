/** The synthetic guest's TCP stack: TcpEndpoints on the guest side, framed by the packet builders. */
import { TcpEndpoint, isConnectionRequest } from '../../src/net/tcp/connection.js';
import { buildTcpFrame } from '../../src/net/packet/tcp.js';
import type { Ip4 } from '../../src/net/packet/ipv4.js';
import type { NetClock } from '../../src/net/host-io.js';
import type { TcpSegment } from '../../src/net/tcp/types.js';
import type { TestGuest } from './guest.js';

export class GuestTcp {
  private readonly conns = new Map<string, TcpEndpoint>();
  private readonly listeners = new Map<number, (ep: TcpEndpoint, remoteIp: Ip4) => void>();
  private nextPort = 33000;

  constructor(
    private readonly guest: TestGuest,
    private readonly clock: NetClock,
  ) {
    guest.onTcp = (src, _dst, seg) => this.route(src, seg);
  }

  private io(remoteIp: Ip4) {
    return {
      emit: (seg: TcpSegment) =>
        this.guest.send(buildTcpFrame(this.guest.gatewayMac, this.guest.mac, this.guest.ip, remoteIp, seg)),
      now: () => this.clock.now(),
      setTimer: (ms: number, fn: () => void) => this.clock.setTimer(ms, fn),
      clearTimer: (h: unknown) => this.clock.clearTimer(h),
    };
  }

  private route(src: Ip4, seg: TcpSegment): void {
    const key = `${src}:${seg.srcPort}:${seg.dstPort}`;
    const ep = this.conns.get(key);
    if (ep && ep.state !== 'CLOSED') {
      ep.handleSegment(seg);
      return;
    }
    const onAccept = this.listeners.get(seg.dstPort);
    if (!onAccept || !isConnectionRequest(seg)) return;
    const fresh = TcpEndpoint.fromSyn(seg, { localPort: seg.dstPort, remotePort: seg.srcPort }, this.io(src));
    this.conns.set(key, fresh);
    onAccept(fresh, src);
    fresh.accept();
  }

  connect(remoteIp: Ip4, remotePort: number): TcpEndpoint {
    const localPort = this.nextPort++;
    const ep = TcpEndpoint.connect({ localPort, remotePort }, this.io(remoteIp));
    this.conns.set(`${remoteIp}:${remotePort}:${localPort}`, ep);
    return ep;
  }

  listen(port: number, onAccept: (ep: TcpEndpoint, remoteIp: Ip4) => void): void {
    this.listeners.set(port, onAccept);
  }
}

/** Collects everything an endpoint delivers (consuming at once) until the peer's FIN. */
export function readAll(ep: TcpEndpoint): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    ep.onData = (d) => {
      chunks.push(Buffer.from(d));
      ep.consumed(d.length);
    };
    ep.onEnd = () => resolve(Buffer.concat(chunks));
    const prevClose = ep.onClose;
    ep.onClose = (reason) => {
      prevClose?.(reason);
      if (reason !== 'closed') reject(new Error(`connection closed: ${reason}`));
      else resolve(Buffer.concat(chunks));
    };
  });
}

/** Writes all of data with backpressure, then ends. */
export function writeAll(ep: TcpEndpoint, data: Uint8Array, chunk = 64 * 1024): Promise<void> {
  return new Promise((resolve) => {
    let off = 0;
    const pump = () => {
      while (off < data.length) {
        const piece = data.subarray(off, Math.min(off + chunk, data.length));
        off += piece.length;
        if (!ep.write(piece)) return;
      }
      ep.onDrain = undefined;
      ep.end();
      resolve();
    };
    ep.onDrain = pump;
    pump();
  });
}

export function whenConnected(ep: TcpEndpoint): Promise<void> {
  return new Promise((resolve, reject) => {
    ep.onConnect = () => resolve();
    ep.onClose = (reason) => reject(new Error(`connect failed: ${reason}`));
  });
}
