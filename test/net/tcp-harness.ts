/**
 * Two TCP endpoints back to back through a fake link and a fake clock: time moves only when a test advances it,
 * and the link can drop, duplicate, delay or reorder any segment, so every run is deterministic.
 */
import { TcpEndpoint, isConnectionRequest, type TcpCloseReason, type TcpEndpointOptions } from '../../src/net/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpEndpointIo, type TcpSegment } from '../../src/net/tcp/types.js';

interface Timer {
  at: number;
  id: number;
  fn: () => void;
}

/** A clock whose timers fire only from advance()/runUntilIdle(), in (time, creation) order. */
export class FakeClock {
  now = 0;
  /** A binary min-heap on (at, id); cleared timers stay in it until they surface (lazy deletion). */
  private heap: Timer[] = [];
  private live = new Set<number>();
  private nextId = 1;

  setTimer(ms: number, fn: () => void): number {
    const id = this.nextId++;
    this.live.add(id);
    this.push({ at: this.now + Math.max(0, ms), id, fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.live.delete(handle as number);
  }

  get pending(): number {
    return this.live.size;
  }

  /** Runs every timer due within the next ms milliseconds (including ones those timers set), then sets now. */
  advance(ms: number): void {
    const end = this.now + ms;
    this.runWhile((at) => at <= end);
    this.now = end;
  }

  /** Runs timers until none is left or limitMs of simulated time passed; returns the time spent. */
  runUntilIdle(limitMs = 600_000): number {
    const start = this.now;
    this.runWhile((at) => at - start <= limitMs);
    return this.now - start;
  }

  private runWhile(due: (at: number) => boolean): void {
    for (;;) {
      const next = this.peekLive();
      if (next === undefined || !due(next.at)) return;
      this.pop();
      this.live.delete(next.id);
      this.now = next.at;
      next.fn();
    }
  }

  private peekLive(): Timer | undefined {
    while (this.heap.length > 0 && !this.live.has(this.heap[0]!.id)) this.pop();
    return this.heap[0];
  }

  private static before(x: Timer, y: Timer): boolean {
    return x.at < y.at || (x.at === y.at && x.id < y.id);
  }

  private push(t: Timer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!FakeClock.before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && FakeClock.before(h[l]!, h[m]!)) m = l;
      if (r < h.length && FakeClock.before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

export type Side = 'a' | 'b';
export interface LoggedSegment {
  from: Side;
  at: number;
  seg: TcpSegment;
}

/** What the link does with one segment: deliver it after delayMs (default latency), copies times (0 = drop). */
export interface LinkVerdict {
  copies?: number;
  delayMs?: number;
}

export class Link {
  readonly clock = new FakeClock();
  readonly log: LoggedSegment[] = [];
  latencyMs = 1;
  /** Decides the fate of each segment; default: deliver once after latencyMs. */
  fault: (from: Side, seg: TcpSegment, index: number) => LinkVerdict = () => ({});
  /** Passive opens: how side b answers a SYN for which it has no endpoint yet. */
  onSyn: (syn: TcpSegment) => TcpEndpoint | undefined = () => undefined;
  endpoints: Partial<Record<Side, TcpEndpoint>> = {};
  private sent = 0;

  io(from: Side): TcpEndpointIo {
    return {
      emit: (seg) => this.carry(from, seg),
      now: () => this.clock.now,
      setTimer: (ms, fn) => this.clock.setTimer(ms, fn),
      clearTimer: (h) => this.clock.clearTimer(h),
    };
  }

  private carry(from: Side, seg: TcpSegment): void {
    this.log.push({ from, at: this.clock.now, seg });
    const verdict = this.fault(from, seg, this.sent++);
    const copies = verdict.copies ?? 1;
    const delay = verdict.delayMs ?? this.latencyMs;
    const to: Side = from === 'a' ? 'b' : 'a';
    for (let i = 0; i < copies; i++) this.clock.setTimer(delay, () => this.deliver(to, seg));
  }

  private deliver(to: Side, seg: TcpSegment): void {
    const ep = this.endpoints[to];
    if (ep !== undefined && ep.state === 'CLOSED') this.refuseForClosed(to, seg);
    else if (ep !== undefined) ep.handleSegment(seg);
    else if (to === 'b' && isConnectionRequest(seg)) {
      const created = this.onSyn(seg);
      if (created) this.endpoints.b = created;
    }
  }

  /** What a stack does with a segment for a connection it no longer has (RFC 9293 §3.10.7.1). */
  private refuseForClosed(side: Side, seg: TcpSegment): void {
    if (seg.flags & TCP_RST) return;
    const len = seg.payload.length + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & TCP_FIN ? 1 : 0);
    const reply: TcpSegment =
      seg.flags & TCP_ACK
        ? {
            srcPort: seg.dstPort,
            dstPort: seg.srcPort,
            seq: seg.ack,
            ack: 0,
            flags: TCP_RST,
            window: 0,
            payload: new Uint8Array(0),
          }
        : {
            srcPort: seg.dstPort,
            dstPort: seg.srcPort,
            seq: 0,
            ack: (seg.seq + len) >>> 0,
            flags: TCP_RST | TCP_ACK,
            window: 0,
            payload: new Uint8Array(0),
          };
    this.carry(side, reply);
  }
}

/** What one endpoint saw through its callbacks. */
export class Recorder {
  chunks: Uint8Array[] = [];
  received = 0;
  connected = false;
  ended = false;
  drains = 0;
  closed: TcpCloseReason | undefined;
  /** When false, received bytes are never consumed (a stalled reader). */
  autoConsume = true;

  attach(ep: TcpEndpoint): void {
    ep.onConnect = () => (this.connected = true);
    ep.onData = (bytes) => {
      this.chunks.push(bytes.slice());
      this.received += bytes.length;
      if (this.autoConsume) ep.consumed(bytes.length);
    };
    ep.onEnd = () => (this.ended = true);
    ep.onDrain = () => this.drains++;
    ep.onClose = (reason) => (this.closed = reason);
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.received);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export const PORT_A = 40000;
export const PORT_B = 80;

/** A connection with a as the active opener and b created from a's SYN and accepted at once. */
export function connectedPair(
  optsA: Partial<TcpEndpointOptions> = {},
  optsB: Partial<TcpEndpointOptions> = {},
  link = new Link(),
): { link: Link; a: TcpEndpoint; b: TcpEndpoint; ra: Recorder; rb: Recorder } {
  const ra = new Recorder();
  const rb = new Recorder();
  let b: TcpEndpoint | undefined;
  link.onSyn = (syn) => {
    b = TcpEndpoint.fromSyn(syn, { localPort: PORT_B, remotePort: PORT_A, ...optsB }, link.io('b'));
    rb.attach(b);
    b.accept();
    return b;
  };
  const a = TcpEndpoint.connect({ localPort: PORT_A, remotePort: PORT_B, ...optsA }, link.io('a'));
  ra.attach(a);
  link.endpoints.a = a;
  // A lossy link may drop SYNs: wait for the retransmissions (up to a simulated minute).
  for (let waited = 0; waited < 60_000 && b === undefined; waited += 50) link.clock.advance(50);
  if (b === undefined) throw new Error('no passive endpoint was created');
  return { link, a, b, ra, rb };
}

/** Writes data into ep as fast as its send buffer allows, resuming on onDrain; calls end() after the last byte. */
export function pump(ep: TcpEndpoint, data: Uint8Array, chunk = 16 * 1024, thenEnd = true): { done: () => boolean } {
  let at = 0;
  const drainBefore = ep.onDrain;
  const go = (): void => {
    while (at < data.length) {
      const n = Math.min(chunk, data.length - at);
      const more = ep.write(data.subarray(at, at + n));
      at += n;
      if (!more) return;
    }
    if (thenEnd) ep.end();
  };
  ep.onDrain = () => {
    drainBefore?.();
    go();
  };
  go();
  return { done: () => at >= data.length };
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
