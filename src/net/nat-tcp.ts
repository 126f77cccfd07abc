/**
 * TCP NAT: every guest connection out is terminated in the gateway by a TcpEndpoint and spliced to a host
 * socket, with backpressure both ways (the host socket pauses while the endpoint's send buffer is full; the
 * endpoint's receive window reopens only once the host socket has taken the bytes). Port forwards use the same
 * table in the other direction. Limits keep a hostile guest bounded: connections per guest address, connects
 * still pending on the host (a SYN flood gets RSTs beyond that), and idle connections are aborted.
 */
import { buildTcpFrame } from './packet/tcp.js';
import { formatIp, type Ip4 } from './packet/ipv4.js';
import type { Mac } from './packet/ethernet.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpEndpointIo, type TcpSegment } from './tcp/types.js';
import type { AcceptConnection, HostSocketError, HostTcpHandlers, HostTcpSocket } from './host-io.js';
import { hostAddressFor, natDestinationAllowed, type GatewayContext } from './gateway-context.js';
import type { TcpEndpointLike } from './tcp-endpoint.js';
import { isConnectionRequest } from './tcp/connection.js';

export interface TcpNatCounters {
  /** Guest SYNs that became connections to the host. */
  connectsStarted: number;
  connectsSucceeded: number;
  connectsFailed: number;
  /** SYNs answered with RST because a limit was reached: pending connects, or connections (per guest or all). */
  refusedPendingLimit: number;
  refusedGuestLimit: number;
  deniedDestination: number;
  /** Segments for no known connection, answered with RST. */
  strayResets: number;
  /** Connections opened toward guests by port forwards. */
  forwardsOpened: number;
  idleAborted: number;
  closed: number;
  toHostBytes: number;
  toGuestBytes: number;
}

export interface TcpNatOptions {
  /** nat mode: guests may open connections out. Isolated networks only carry forwarded connections in. */
  outbound: boolean;
  maxPerGuest: number;
  /** All connections of the network: each may hold its two buffers (256 KiB each by default). */
  maxTotal: number;
  maxPending: number;
  idleMs: number;
  pendingTimeoutMs: number;
}

interface TcpConn {
  ep: TcpEndpointLike;
  socket: HostTcpSocket | undefined;
  guestIp: Ip4;
  guestKey: number;
  peerKey: number;
  pending: boolean;
  closed: boolean;
  lastActive: number;
  pendingTimer: unknown;
}

const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST;

export class TcpNat {
  /** guest (ip, port) → peer (ip, port) → connection. */
  private readonly conns = new Map<number, Map<number, TcpConn>>();
  private readonly perGuest = new Map<Ip4, number>();
  private pendingCount = 0;
  /** Endpoints that took segments in the current batch of frames: flushed once at its end. */
  private readonly touched = new Set<TcpConn>();
  private total = 0;
  private nextEphemeral = EPHEMERAL_FIRST;
  readonly counters: TcpNatCounters = {
    connectsStarted: 0,
    connectsSucceeded: 0,
    connectsFailed: 0,
    refusedPendingLimit: 0,
    refusedGuestLimit: 0,
    deniedDestination: 0,
    strayResets: 0,
    forwardsOpened: 0,
    idleAborted: 0,
    closed: 0,
    toHostBytes: 0,
    toGuestBytes: 0,
  };

  constructor(
    private readonly ctx: GatewayContext,
    private readonly opts: TcpNatOptions,
  ) {}

  connectionCount(): number {
    return this.total;
  }

  pendingConnects(): number {
    return this.pendingCount;
  }

  /** A segment from a guest to `dst` (a remote host, or the gateway for forwarded connections). */
  fromGuest(guestMac: Mac, guestIp: Ip4, dst: Ip4, seg: TcpSegment): void {
    const guestKey = guestIp * 65536 + seg.srcPort;
    const peerKey = dst * 65536 + seg.dstPort;
    const conn = this.conns.get(guestKey)?.get(peerKey);
    if (conn) {
      conn.lastActive = this.ctx.clock.now();
      conn.ep.handleSegment(seg);
      this.touched.add(conn);
      // A SYN that ended TIME-WAIT closed the old endpoint: it opens a new connection on the same ports.
      if (!conn.closed || !isConnectionRequest(seg)) return;
    }
    if (!isConnectionRequest(seg)) {
      this.resetStray(guestMac, guestIp, dst, seg);
      return;
    }
    const factory = this.ctx.tcp;
    if (!factory || !this.opts.outbound || !natDestinationAllowed(this.ctx.plan, dst) || seg.dstPort === 0) {
      this.counters.deniedDestination++;
      this.reset(guestMac, guestIp, dst, seg);
      return;
    }
    if (this.pendingCount >= this.opts.maxPending) {
      this.counters.refusedPendingLimit++;
      this.reset(guestMac, guestIp, dst, seg);
      return;
    }
    if ((this.perGuest.get(guestIp) ?? 0) >= this.opts.maxPerGuest || this.total >= this.opts.maxTotal) {
      this.counters.refusedGuestLimit++;
      this.reset(guestMac, guestIp, dst, seg);
      return;
    }
    const ep = factory.fromSyn(seg, this.io(guestMac, guestIp, dst));
    const c = this.add(ep, guestIp, guestKey, peerKey, true);
    this.counters.connectsStarted++;
    c.pendingTimer = this.ctx.clock.setTimer(this.opts.pendingTimeoutMs, () => {
      c.pendingTimer = undefined;
      if (c.pending) this.failPending(c);
    });
    c.socket = this.ctx.sockets.tcpConnect(hostAddressFor(this.ctx.plan, dst, formatIp), seg.dstPort, this.hostHandlers(c));
  }

  /**
   * A port forward accepted a host connection: connect to guestIp:guestPort from the gateway, and splice.
   * Returns false if no local port was free or the guest is at its connection limit.
   */
  openToGuest(guestMac: Mac, guestIp: Ip4, guestPort: number, accept: AcceptConnection): boolean {
    const factory = this.ctx.tcp;
    const guestKey = guestIp * 65536 + guestPort;
    if (!factory || (this.perGuest.get(guestIp) ?? 0) >= this.opts.maxPerGuest || this.total >= this.opts.maxTotal) return false;
    const localPort = this.freeLocalPort(guestKey);
    if (localPort === undefined) return false;
    const ep = factory.connect(localPort, guestPort, this.io(guestMac, guestIp, this.ctx.plan.gateway));
    const c = this.add(ep, guestIp, guestKey, this.ctx.plan.gateway * 65536 + localPort, false);
    this.counters.forwardsOpened++;
    c.socket = accept(this.hostHandlers(c));
    // Nothing from the host until the guest accepted: the endpoint cannot take data before it is established.
    c.socket.pause();
    ep.onConnect = () => c.socket?.resume();
    return true;
  }

  /**
   * End of a batch of guest frames: endpoints send their pending ACKs and window updates now instead of on a
   * zero-delay timer (which Node rounds up to 1 ms per round trip).
   */
  flushTouched(): void {
    if (this.touched.size === 0) return;
    for (const c of this.touched) if (!c.closed) c.ep.flush();
    this.touched.clear();
  }

  private freeLocalPort(guestKey: number): number | undefined {
    const peers = this.conns.get(guestKey);
    for (let n = 0; n < EPHEMERAL_COUNT; n++) {
      const port = this.nextEphemeral;
      this.nextEphemeral = port === 65535 ? EPHEMERAL_FIRST : port + 1;
      if (!peers?.has(this.ctx.plan.gateway * 65536 + port)) return port;
    }
    return undefined;
  }

  private io(guestMac: Mac, guestIp: Ip4, from: Ip4): TcpEndpointIo {
    const { clock } = this.ctx;
    return {
      emit: (seg) => this.ctx.send(buildTcpFrame(guestMac, this.ctx.mac, from, guestIp, seg)),
      now: () => clock.now(),
      setTimer: (ms, fn) => clock.setTimer(ms, fn),
      clearTimer: (h) => clock.clearTimer(h),
    };
  }

  private add(ep: TcpEndpointLike, guestIp: Ip4, guestKey: number, peerKey: number, pending: boolean): TcpConn {
    const c: TcpConn = {
      ep,
      socket: undefined,
      guestIp,
      guestKey,
      peerKey,
      pending,
      closed: false,
      lastActive: this.ctx.clock.now(),
      pendingTimer: undefined,
    };
    let peers = this.conns.get(guestKey);
    if (!peers) this.conns.set(guestKey, (peers = new Map()));
    peers.set(peerKey, c);
    this.perGuest.set(guestIp, (this.perGuest.get(guestIp) ?? 0) + 1);
    this.total++;
    if (pending) this.pendingCount++;
    ep.onData = (data) => {
      c.lastActive = this.ctx.clock.now();
      this.counters.toHostBytes += data.length;
      const socket = c.socket;
      if (!socket) return;
      socket.write(data, () => {
        if (!c.closed) c.ep.consumed(data.length);
      });
    };
    ep.onEnd = () => c.socket?.end();
    ep.onDrain = () => c.socket?.resume();
    ep.onClose = () => this.remove(c);
    return c;
  }

  private hostHandlers(c: TcpConn): HostTcpHandlers {
    return {
      onConnect: () => {
        if (c.closed || !c.pending) return;
        this.settle(c);
        this.counters.connectsSucceeded++;
        c.ep.accept();
      },
      onData: (data) => {
        if (c.closed) return;
        c.lastActive = this.ctx.clock.now();
        this.counters.toGuestBytes += data.length;
        if (!c.ep.write(data)) c.socket?.pause();
      },
      onEnd: () => {
        if (!c.closed) c.ep.end();
      },
      onClose: (error?: HostSocketError) => {
        c.socket = undefined;
        if (c.closed) return;
        if (c.pending) this.failPending(c);
        else if (error) c.ep.abort();
        else c.ep.end();
      },
    };
  }

  private settle(c: TcpConn): void {
    if (!c.pending) return;
    c.pending = false;
    this.pendingCount--;
    if (c.pendingTimer !== undefined) this.ctx.clock.clearTimer(c.pendingTimer);
    c.pendingTimer = undefined;
  }

  private failPending(c: TcpConn): void {
    this.settle(c);
    this.counters.connectsFailed++;
    c.ep.refuse();
    this.remove(c);
  }

  private remove(c: TcpConn): void {
    if (c.closed) return;
    this.touched.delete(c);
    this.settle(c);
    c.closed = true;
    const peers = this.conns.get(c.guestKey);
    if (peers?.get(c.peerKey) === c) {
      peers.delete(c.peerKey);
      if (peers.size === 0) this.conns.delete(c.guestKey);
    }
    const n = (this.perGuest.get(c.guestIp) ?? 1) - 1;
    if (n <= 0) this.perGuest.delete(c.guestIp);
    else this.perGuest.set(c.guestIp, n);
    this.total--;
    this.counters.closed++;
    const socket = c.socket;
    c.socket = undefined;
    socket?.destroy();
  }

  private resetStray(guestMac: Mac, guestIp: Ip4, dst: Ip4, seg: TcpSegment): void {
    if (seg.flags & TCP_RST) return;
    this.counters.strayResets++;
    this.reset(guestMac, guestIp, dst, seg);
  }

  /** RFC 9293 §3.10.7.1: the reset for a segment that belongs to no connection. */
  private reset(guestMac: Mac, guestIp: Ip4, dst: Ip4, seg: TcpSegment): void {
    const len = seg.payload.length + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & TCP_FIN ? 1 : 0);
    const rst: TcpSegment =
      seg.flags & TCP_ACK
        ? { srcPort: seg.dstPort, dstPort: seg.srcPort, seq: seg.ack, ack: 0, flags: TCP_RST, window: 0, payload: EMPTY }
        : {
            srcPort: seg.dstPort,
            dstPort: seg.srcPort,
            seq: 0,
            ack: (seg.seq + len) >>> 0,
            flags: TCP_RST | TCP_ACK,
            window: 0,
            payload: EMPTY,
          };
    this.ctx.send(buildTcpFrame(guestMac, this.ctx.mac, dst, guestIp, rst));
  }

  sweep(): void {
    const cutoff = this.ctx.clock.now() - this.opts.idleMs;
    const idle: TcpConn[] = [];
    for (const peers of this.conns.values())
      for (const c of peers.values()) if (!c.pending && c.lastActive < cutoff) idle.push(c);
    for (const c of idle) {
      this.counters.idleAborted++;
      c.ep.abort();
      this.remove(c);
    }
  }

  closeAll(): void {
    const all: TcpConn[] = [];
    for (const peers of this.conns.values()) for (const c of peers.values()) all.push(c);
    for (const c of all) {
      c.ep.abort();
      this.remove(c);
    }
  }
}

const EMPTY = new Uint8Array(0);
