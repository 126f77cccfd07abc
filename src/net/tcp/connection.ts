/**
 * One TCP endpoint of the user-mode NAT: the gateway's side of a guest's TCP connection (RFC 9293), with RFC 6298
 * retransmission timing, RFC 7323 window scaling (no timestamps), RFC 5961 defences against blind in-window attacks,
 * and NewReno-style fast retransmit (RFC 5681/6582, without SACK). The peer is the guest and every segment from it
 * is hostile: nothing it sends can make this throw or hold more memory than the configured buffers.
 *
 * Timers come from io.setTimer, so tests drive time by hand. No Node built-ins (the core also runs in a browser).
 */
import { ByteRing } from './byte-ring.js';
import { Reassembly } from './reassembly.js';
import { RtoEstimator } from './rto.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax } from './seq.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpEndpointIo, type TcpSegment } from './types.js';

export interface TcpEndpointOptions {
  localPort: number;
  remotePort: number;
  /** Our MSS toward the guest (what we announce and the most we send); default 1460 (MTU 1500). */
  mss?: number;
  /** Our receive capacity and advertised window; default 256 KiB (scaled when the peer offers window scaling). */
  receiveBufferBytes?: number;
  /** Bytes write() queues before it returns false; default 256 KiB. */
  sendBufferBytes?: number;
  /** Our initial sequence number, for tests; default random. */
  initialSeq?: number;
  /** How long TIME-WAIT lasts; default 2000 ms (a virtual link holds no old duplicates for 2 MSL). */
  timeWaitMs?: number;
  /** Retransmission timeout floor, ceiling and starting value (RFC 6298); defaults 200 ms, 30 s, 1 s. */
  minRtoMs?: number;
  maxRtoMs?: number;
  initialRtoMs?: number;
  /** Expiries of the retransmission timer in a row before giving up: data (default 10), SYN or SYN-ACK (default 5). */
  maxRetransmits?: number;
  maxSynRetransmits?: number;
  /** Out-of-order pieces held for reassembly; default 64 (their bytes are bounded by the window anyway). */
  maxReassemblyPieces?: number;
}

export type TcpCloseReason = 'closed' | 'reset' | 'refused' | 'timeout' | 'aborted';

/** RFC 9293 state names. A passive endpoint waiting for accept() is 'SYN-RECEIVED' with acceptPending set. */
export type TcpState =
  | 'CLOSED'
  | 'SYN-SENT'
  | 'SYN-RECEIVED'
  | 'ESTABLISHED'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'CLOSE-WAIT'
  | 'CLOSING'
  | 'LAST-ACK'
  | 'TIME-WAIT';

export interface TcpEndpointStats {
  segmentsIn: number;
  segmentsOut: number;
  /** Payload bytes delivered through onData. */
  bytesIn: number;
  /** Payload bytes sent for the first time (retransmissions not counted). */
  bytesOut: number;
  /** Segments sent again: timeouts, fast retransmits, SYN/SYN-ACK repeats. */
  retransmits: number;
  fastRetransmits: number;
  /** Expiries of the retransmission timer. */
  timeouts: number;
  dupAcksIn: number;
  /** ACKs sent in answer to a segment that was dropped (out of window, bad ACK, RST/SYN in window: RFC 5961). */
  challengeAcks: number;
  /** Such ACKs suppressed by the rate limit. */
  challengeAcksSuppressed: number;
  outOfOrderSegments: number;
  /** Segments (or parts) dropped: outside the window, after FIN, no room to reassemble. */
  droppedSegments: number;
  windowProbes: number;
  windowUpdates: number;
  /** Current values, for monitoring. */
  srttMs: number | undefined;
  rtoMs: number;
  cwnd: number;
  sendWindow: number;
  receiveWindow: number;
  sendBuffered: number;
  reassemblyBytes: number;
  unconsumed: number;
}

/** Thrown by TcpEndpoint.fromSyn when handed a segment that is not a connection request. */
export class TcpNotASynError extends Error {
  constructor() {
    super('TCP endpoint: fromSyn needs a segment with SYN set and ACK and RST clear');
    this.name = 'TcpNotASynError';
  }
}

/** True when seg opens a connection (SYN without ACK or RST): what TcpEndpoint.fromSyn accepts. */
export function isConnectionRequest(seg: TcpSegment): boolean {
  return (seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;
}

const DEFAULT_MSS = 1460;
/** The MSS a peer gets when its SYN carries no MSS option (RFC 9293 §3.7.1). */
const DEFAULT_PEER_MSS = 536;
/** A hostile MSS option of 1 would turn every write into one-byte segments. */
const MIN_MSS = 64;
const DEFAULT_BUFFER = 256 * 1024;
const MAX_BUFFER = 1 << 30;
const MAX_WINDOW_SCALE = 14;
/** Persist (zero-window probe) interval ceiling: a lost window update costs at most this much. */
const MAX_PERSIST_MS = 10_000;
/** RFC 5961 §7: challenge ACKs (and ACKs to other dropped segments) per second, at most. */
const CHALLENGE_ACKS_PER_SECOND = 100;
/** RFC 6928's initial congestion window, in segments. */
const INITIAL_CWND_SEGMENTS = 10;
const EMPTY = new Uint8Array(0);

export class TcpEndpoint {
  onConnect?: () => void;
  /**
   * In-order bytes from the guest. The array is a view of the guest segment's payload (or a reassembly copy); the
   * endpoint keeps no reference to it. The bytes count against our window until consumed() gives them back.
   */
  onData?: (bytes: Uint8Array) => void;
  /** The guest sent FIN: no more data comes. */
  onEnd?: () => void;
  /** The send buffer fell below half of sendBufferBytes after write() returned false. */
  onDrain?: () => void;
  /** Called once, when the endpoint reaches CLOSED. */
  onClose?: (reason: TcpCloseReason) => void;

  readonly localPort: number;
  readonly remotePort: number;

  private st: TcpState = 'CLOSED';
  private pendingAccept = false;
  private readonly io: TcpEndpointIo;
  private readonly ourMss: number;
  private readonly rcvBuf: number;
  private readonly sndBufLimit: number;
  private readonly timeWaitMs: number;
  private readonly maxRetransmits: number;
  private readonly maxSynRetransmits: number;

  // Send side. The send buffer's byte 0 has sequence number sndDataBase; a queued FIN follows its last byte.
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  /** The highest sequence number sent so far (sndNxt goes back to sndUna on a timeout: go-back-N). */
  private sndMax: number;
  /** The end of the last zero-window probe: the guest may ACK up to here, but a probe is not data in flight. */
  private sndProbeEnd: number;
  private sndDataBase: number;
  private sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private maxSndWnd = 0;
  private sndWscale = 0;
  private sndMss = DEFAULT_PEER_MSS;
  private cwnd = 0;
  private ssthresh = MAX_BUFFER;
  private dupAcks = 0;
  private inRecovery = false;
  private recover = 0;
  private finQueued = false;
  private finAcked = false;
  private readonly sendBuf = new ByteRing();
  private writeBlocked = false;
  private drainDue = false;

  // Receive side.
  private irs = 0;
  private rcvNxt = 0;
  /** The right edge of the window we have advertised (we accept data up to here; it never moves left). */
  private rcvAccept = 0;
  private rcvWscale = 0;
  private wscaleOk = false;
  private unconsumed = 0;
  private finReceived = false;
  private oooFinSeq: number | undefined;
  private readonly reassembly: Reassembly;
  private ackPending = false;
  private bytesSinceAck = 0;

  // Timers and timing.
  private readonly rto: RtoEstimator;
  private rtoTimer: unknown;
  private persistTimer: unknown;
  private flushTimer: unknown;
  private timeWaitTimer: unknown;
  private retries = 0;
  private persistBackoff = 0;
  private rttTiming = false;
  private rttSeq = 0;
  private rttStart = 0;
  private challengeWindowStart = -Infinity;
  private challengeCount = 0;

  private readonly counters = {
    segmentsIn: 0,
    segmentsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    retransmits: 0,
    fastRetransmits: 0,
    timeouts: 0,
    dupAcksIn: 0,
    challengeAcks: 0,
    challengeAcksSuppressed: 0,
    outOfOrderSegments: 0,
    droppedSegments: 0,
    windowProbes: 0,
    windowUpdates: 0,
  };

  private constructor(opts: TcpEndpointOptions, io: TcpEndpointIo) {
    this.io = io;
    this.localPort = opts.localPort & 0xffff;
    this.remotePort = opts.remotePort & 0xffff;
    this.ourMss = clampInt(opts.mss ?? DEFAULT_MSS, MIN_MSS, 0xffff);
    this.rcvBuf = clampInt(opts.receiveBufferBytes ?? DEFAULT_BUFFER, 2 * this.ourMss, MAX_BUFFER);
    this.sndBufLimit = clampInt(opts.sendBufferBytes ?? DEFAULT_BUFFER, 1, MAX_BUFFER);
    this.timeWaitMs = Math.max(0, opts.timeWaitMs ?? 2000);
    this.maxRetransmits = clampInt(opts.maxRetransmits ?? 10, 1, 100);
    this.maxSynRetransmits = clampInt(opts.maxSynRetransmits ?? 5, 1, 100);
    this.reassembly = new Reassembly(clampInt(opts.maxReassemblyPieces ?? 64, 0, 4096));
    const minRto = clampInt(opts.minRtoMs ?? 200, 1, 60_000);
    const maxRto = clampInt(opts.maxRtoMs ?? 30_000, minRto, 600_000);
    this.rto = new RtoEstimator(minRto, maxRto, clampInt(opts.initialRtoMs ?? 1000, minRto, maxRto));
    this.iss = opts.initialSeq !== undefined ? opts.initialSeq >>> 0 : randomSeq();
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.sndProbeEnd = this.iss;
    this.sndDataBase = seqAdd(this.iss, 1);
    let scale = 0;
    while (scale < MAX_WINDOW_SCALE && this.rcvBuf >> scale > 0xffff) scale++;
    this.rcvWscale = scale;
  }

  /**
   * Passive open: the guest's SYN reached the gateway. The endpoint waits in SYN-RECEIVED, sending nothing, until the
   * NAT calls accept() (the host socket connected) or refuse(). Throws TcpNotASynError for anything but a SYN.
   */
  static fromSyn(syn: TcpSegment, opts: TcpEndpointOptions, io: TcpEndpointIo): TcpEndpoint {
    if (!isConnectionRequest(syn)) throw new TcpNotASynError();
    const ep = new TcpEndpoint(opts, io);
    ep.st = 'SYN-RECEIVED';
    ep.pendingAccept = true;
    ep.takePeerSyn(sanitize(syn));
    // SYN-RECEIVED answers with our options only when the guest offered window scaling.
    if (!ep.wscaleOk) ep.rcvWscale = 0;
    return ep;
  }

  /** Active open toward the guest (port forwards): sends SYN at once. */
  static connect(opts: TcpEndpointOptions, io: TcpEndpointIo): TcpEndpoint {
    const ep = new TcpEndpoint(opts, io);
    ep.st = 'SYN-SENT';
    ep.sndNxt = seqAdd(ep.iss, 1);
    ep.sndMax = ep.sndNxt;
    ep.sendSyn(false);
    ep.startRtoTimer();
    return ep;
  }

  /** A method, not a comparison, because callbacks (onData, onConnect...) may close the endpoint mid-way. */
  private isClosed(): boolean {
    return this.st === 'CLOSED';
  }

  get state(): TcpState {
    return this.st;
  }

  /** True while a passive endpoint waits for accept() or refuse(). */
  get acceptPending(): boolean {
    return this.pendingAccept;
  }

  /** Answers the guest's SYN with SYN-ACK. */
  accept(): void {
    if (!this.pendingAccept || this.st !== 'SYN-RECEIVED') return;
    this.pendingAccept = false;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.sendSyn(true);
    this.startRtoTimer();
  }

  /** Rejects the guest's SYN with RST|ACK and closes with 'refused'. Elsewhere it is abort() with that reason. */
  refuse(): void {
    if (this.isClosed()) return;
    if (this.pendingAccept) {
      this.emit(TCP_RST | TCP_ACK, 0, EMPTY);
      this.closeWith('refused');
      return;
    }
    this.abortWith('refused');
  }

  /**
   * Queues a copy of data for the guest (the caller may reuse its buffer). Everything passed is queued; the result
   * is false once the queue holds sendBufferBytes or more: stop writing until onDrain. After end() or close, data
   * is discarded and the result is false.
   */
  write(data: Uint8Array): boolean {
    if (this.isClosed() || this.finQueued) return false;
    if (data.length > 0) {
      this.sendBuf.push(data);
      this.output();
    }
    const ok = this.sendBuf.length < this.sndBufLimit;
    if (!ok) this.writeBlocked = true;
    return ok;
  }

  /** Sends FIN after all queued data (half-close: we still receive). */
  end(): void {
    if (this.isClosed() || this.finQueued) return;
    this.finQueued = true;
    if (this.st === 'ESTABLISHED') this.st = 'FIN-WAIT-1';
    else if (this.st === 'CLOSE-WAIT') this.st = 'LAST-ACK';
    // In SYN-SENT/SYN-RECEIVED the FIN waits for the handshake (see establish()).
    this.output();
  }

  /** Resets the connection now and closes with 'aborted'. */
  abort(): void {
    this.abortWith('aborted');
  }

  /** The app disposed of `bytes` delivered bytes: they stop counting against our receive window. */
  consumed(bytes: number): void {
    if (this.isClosed() || !(bytes > 0)) return;
    const before = this.unconsumed;
    this.unconsumed = Math.max(0, before - Math.floor(bytes));
    if (this.finReceived || this.pendingAccept || this.st === 'SYN-SENT') return;
    // A window update is worth a segment only when the window we last showed was small and it grows by a useful
    // amount (receiver-side silly window syndrome avoidance, RFC 9293 §3.8.6.2.2).
    const cap = this.capacity();
    const shown = seqDiff(this.rcvAccept, this.rcvNxt);
    const growth = seqDiff(this.capacityEdge(), this.rcvAccept);
    if (shown < cap >> 1 && growth >= this.swsThreshold()) {
      if (!this.ackPending) this.counters.windowUpdates++;
      this.ackPending = true;
      this.scheduleFlush();
    }
  }

  /** Sends whatever is due now (data, then a pending ACK): the stack may call it at the end of a batch of frames. */
  flush(): void {
    if (this.flushTimer !== undefined) {
      this.io.clearTimer(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.isClosed()) return;
    this.output();
    if (this.ackPending) this.sendAck();
  }

  stats(): TcpEndpointStats {
    return {
      ...this.counters,
      srttMs: this.rto.srtt,
      rtoMs: this.rto.rto,
      cwnd: this.cwnd,
      sendWindow: this.sndWnd,
      receiveWindow: Math.max(0, seqDiff(this.rcvAccept, this.rcvNxt)),
      sendBuffered: this.sendBuf.length,
      reassemblyBytes: this.reassembly.bytes,
      unconsumed: this.unconsumed,
    };
  }

  /**
   * A segment from the guest for this connection. Never throws on any segment. When a SYN ends TIME-WAIT (the guest
   * reuses the port pair), the endpoint closes and the NAT should treat that SYN as a new connection request.
   */
  handleSegment(raw: TcpSegment): void {
    if (this.isClosed()) return;
    this.counters.segmentsIn++;
    const seg = sanitize(raw);
    if (this.pendingAccept) this.onPendingSegment(seg);
    else if (this.st === 'SYN-SENT') this.onSynSentSegment(seg);
    else this.onSynchronizedSegment(seg);
    if (this.drainDue && !this.isClosed()) {
      this.drainDue = false;
      this.onDrain?.();
    }
  }

  // ---- segment arrival ----

  private onPendingSegment(seg: TcpSegment): void {
    // Before accept() only an exact RST matters (the guest gave up); a repeated SYN is already being answered.
    if (seg.flags & TCP_RST && seg.seq === this.rcvNxt) this.closeWith('reset');
  }

  /** RFC 9293 §3.10.7.3. */
  private onSynSentSegment(seg: TcpSegment): void {
    const hasAck = (seg.flags & TCP_ACK) !== 0;
    if (hasAck && !(seqGt(seg.ack, this.iss) && seqLe(seg.ack, this.sndMax))) {
      if (!(seg.flags & TCP_RST) && this.allowChallenge()) this.emitRst(seg.ack);
      return;
    }
    if (seg.flags & TCP_RST) {
      if (hasAck) this.closeWith('refused');
      return;
    }
    if (!(seg.flags & TCP_SYN)) return;
    this.takePeerSyn(seg);
    if (!this.wscaleOk) this.rcvWscale = 0;
    // Our SYN's window was unscaled; that is what the guest may fill until our first ACK says more.
    this.rcvAccept = seqAdd(this.rcvNxt, Math.min(this.capacity(), 0xffff));
    if (hasAck) {
      this.sndUna = seg.ack;
      this.sampleRtt(seg.ack);
      this.takeSendWindow(seg.window, seg.seq, seg.ack, false);
      this.establish();
      if (this.isClosed()) return;
      this.ackPending = true;
      this.output();
      if (this.ackPending) this.sendAck();
    } else {
      // Simultaneous open: both sides sent SYN.
      this.st = 'SYN-RECEIVED';
      this.sendSyn(true);
      this.restartRtoTimer();
    }
  }

  /** RFC 9293 §3.10.7.4, with RFC 5961's checks, for SYN-RECEIVED (accepted) and every later state. */
  private onSynchronizedSegment(seg: TcpSegment): void {
    let flags = seg.flags;
    let seq = seg.seq;
    let payload = seg.payload;
    const segLen = payload.length + (flags & TCP_SYN ? 1 : 0) + (flags & TCP_FIN ? 1 : 0);

    // A new connection request on the same port pair ends TIME-WAIT (RFC 9293 §3.10.7.4 allows reopening when the
    // SYN's sequence number is beyond what the old connection used); the NAT then starts a new endpoint.
    if (this.st === 'TIME-WAIT' && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && seqGt(seq, this.rcvNxt)) {
      this.closeWith('closed');
      return;
    }

    // 1. Sequence number check.
    if (!this.acceptable(seq, segLen)) {
      if (flags & TCP_RST) return;
      if (this.st === 'SYN-RECEIVED' && flags & TCP_SYN && seq === this.irs) {
        if (flags & TCP_ACK && seg.ack === seqAdd(this.iss, 1)) {
          // Simultaneous open: the guest's SYN-ACK completes ours.
          this.takeSendWindow(seg.window, seq, seg.ack, false);
          this.sndUna = seg.ack;
          this.establish();
          if (!this.isClosed()) this.sendAck();
        } else if (this.allowChallenge()) {
          // The guest repeated its SYN: our SYN-ACK was lost.
          this.counters.retransmits++;
          this.sendSyn(true);
        }
        return;
      }
      if (this.st === 'TIME-WAIT') {
        // The guest is still retransmitting (our last ACK was lost): stay around to answer it.
        this.startTimeWait();
      }
      this.counters.droppedSegments++;
      this.challengeAck();
      return;
    }

    // Trim the segment to the window: drop what precedes RCV.NXT (a SYN there is old) and what lies past our edge.
    if (seqLt(seq, this.rcvNxt)) {
      if (flags & TCP_SYN) {
        flags &= ~TCP_SYN;
        seq = seqAdd(seq, 1);
      }
      const skip = Math.min(payload.length, seqDiff(this.rcvNxt, seq));
      if (skip > 0) {
        payload = payload.subarray(skip);
        seq = seqAdd(seq, skip);
      }
    }
    let trimmedRight = false;
    const room = seqDiff(this.rcvAccept, seq);
    if (payload.length > Math.max(0, room)) {
      payload = payload.subarray(0, Math.max(0, room));
      flags &= ~TCP_FIN;
      trimmedRight = true;
      this.counters.droppedSegments++;
    }

    // 2. RST: only an exact hit resets (RFC 5961 §3); anywhere else in the window earns a challenge ACK.
    if (flags & TCP_RST) {
      // In TIME-WAIT the connection already ended well; the RST only cuts the wait short.
      if (seg.seq === this.rcvNxt) this.closeWith(this.st === 'TIME-WAIT' ? 'closed' : 'reset');
      else this.challengeAck();
      return;
    }

    // 4. SYN in a synchronized state: challenge ACK (RFC 5961 §4).
    if (flags & TCP_SYN) {
      this.challengeAck();
      return;
    }

    // 5. ACK.
    if (!(flags & TCP_ACK)) return;
    if (this.st === 'SYN-RECEIVED') {
      if (!(seqGt(seg.ack, this.sndUna) && seqLe(seg.ack, this.sndMax))) {
        if (this.allowChallenge()) this.emitRst(seg.ack);
        return;
      }
      this.setSendWindow(seg.window, seq, seg.ack, true);
      this.establish();
      if (this.isClosed()) return;
    }
    if (seqGt(seg.ack, seqMax(this.sndMax, this.sndProbeEnd))) {
      // ACK of data never sent.
      this.counters.droppedSegments++;
      this.challengeAck();
      return;
    }
    if (seqLt(seg.ack, seqAdd(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      // Far too old to be a real ACK (RFC 5961 §5).
      this.counters.droppedSegments++;
      this.challengeAck();
      return;
    }
    this.onAck(seg, payload.length, flags);
    if (this.isClosed()) return;
    if (this.finAcked) {
      if (this.st === 'FIN-WAIT-1') this.st = 'FIN-WAIT-2';
      else if (this.st === 'CLOSING') this.startTimeWait();
      else if (this.st === 'LAST-ACK') {
        this.closeWith('closed');
        return;
      }
    }

    // 7. Data.
    const receiving = this.st === 'ESTABLISHED' || this.st === 'FIN-WAIT-1' || this.st === 'FIN-WAIT-2';
    let fin = (flags & TCP_FIN) !== 0;
    if (!receiving || this.finReceived) {
      if (payload.length > 0) this.counters.droppedSegments++;
      payload = EMPTY;
      // A FIN repeated after ours was taken: ACK it again (TIME-WAIT restarts its wait).
      if (fin && this.finReceived) {
        if (this.st === 'TIME-WAIT') this.startTimeWait();
        this.sendAck();
      }
      fin = false;
    }
    if (payload.length > 0 || fin) {
      if (seq !== this.rcvNxt) {
        this.counters.outOfOrderSegments++;
        if (!this.reassembly.insert(seq, payload, this.rcvNxt)) this.counters.droppedSegments++;
        if (fin) this.oooFinSeq = seqAdd(seq, payload.length);
        this.sendAck(); // the duplicate ACK that drives the guest's fast retransmit
      } else {
        const filledGap = this.reassembly.count > 0;
        this.deliver(payload);
        if (this.isClosed()) return;
        if (!fin) {
          this.drainReassembly();
          if (this.isClosed()) return;
          fin = this.oooFinSeq === this.rcvNxt;
        }
        if (fin) {
          this.takeFin();
          if (this.isClosed()) return;
        } else if (filledGap) {
          this.sendAck(); // RFC 5681 §4.2: ACK at once when a segment fills a gap
        }
      }
    } else if (trimmedRight) {
      // A zero-window probe (or data past our edge): answer with the current window.
      this.sendAck();
    }

    this.output();
    if (this.ackPending) {
      if (this.bytesSinceAck >= 2 * this.ourMss) this.sendAck();
      else this.scheduleFlush();
    }
  }

  /** An acceptable ACK (RFC 9293 §3.10.7.4 fifth step), within [SND.UNA - MAX.SND.WND, SND.MAX]. */
  private onAck(seg: TcpSegment, payloadLength: number, flags: number): void {
    const ack = seg.ack;
    const scaledWindow = seg.window * (1 << this.sndWscale);
    if (seqGt(ack, this.sndUna)) {
      const acked = seqDiff(ack, this.sndUna);
      this.sndUna = ack;
      if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
      if (seqLt(this.sndMax, ack)) this.sndMax = ack; // the guest took a zero-window probe
      const dataEnd = seqAdd(this.sndDataBase, this.sendBuf.length);
      const dataAcked = seqDiff(seqLe(ack, dataEnd) ? ack : dataEnd, this.sndDataBase);
      if (dataAcked > 0) {
        this.sendBuf.discard(dataAcked);
        this.sndDataBase = seqAdd(this.sndDataBase, dataAcked);
      }
      if (this.finQueued && seqGt(ack, dataEnd)) this.finAcked = true;
      this.sampleRtt(ack);
      this.retries = 0;
      this.dupAcks = 0;
      this.growCwnd(acked);
      if (this.inRecovery) {
        if (seqGe(ack, this.recover)) {
          this.inRecovery = false;
          this.cwnd = Math.max(this.ssthresh, this.sndMss);
        } else {
          // A partial ACK: the next hole is lost too (NewReno).
          this.retransmitFirst();
        }
      }
      if (this.sndUna === this.sndMax) this.stopRtoTimer();
      else this.restartRtoTimer();
      if (this.writeBlocked && this.sendBuf.length <= this.sndBufLimit >> 1) {
        this.writeBlocked = false;
        this.drainDue = true;
      }
    } else if (
      ack === this.sndUna &&
      payloadLength === 0 &&
      !(flags & (TCP_SYN | TCP_FIN)) &&
      scaledWindow === this.sndWnd &&
      this.sndMax !== this.sndUna
    ) {
      this.counters.dupAcksIn++;
      this.dupAcks++;
      if (this.dupAcks === 3 && !this.inRecovery) {
        const flight = seqDiff(this.sndMax, this.sndUna);
        this.ssthresh = Math.max(flight >> 1, 2 * this.sndMss);
        this.cwnd = this.ssthresh + 3 * this.sndMss;
        this.recover = this.sndMax;
        this.inRecovery = true;
        this.counters.fastRetransmits++;
        this.retransmitFirst();
        this.restartRtoTimer();
      } else if (this.dupAcks > 3 && this.inRecovery) {
        this.cwnd = Math.min(this.cwnd + this.sndMss, MAX_BUFFER);
      }
    }
    // SND.WL1 compares the segment's own sequence number, before any trimming.
    this.setSendWindow(seg.window, seg.seq, ack, true);
  }

  /** Accepts a window advertisement unless an older segment carries it (SND.WL1/WL2, RFC 9293 §3.10.7.4). */
  private setSendWindow(window: number, seq: number, ack: number, scaled: boolean): void {
    if (seqLt(this.sndWl1, seq) || (this.sndWl1 === seq && seqLe(this.sndWl2, ack))) {
      this.takeSendWindow(window, seq, ack, scaled);
    }
  }

  private takeSendWindow(window: number, seq: number, ack: number, scaled: boolean): void {
    this.sndWnd = scaled ? window * (1 << this.sndWscale) : window;
    this.sndWl1 = seq;
    this.sndWl2 = ack;
    if (this.sndWnd > this.maxSndWnd) this.maxSndWnd = this.sndWnd;
  }

  private deliver(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.rcvNxt = seqAdd(this.rcvNxt, bytes.length);
    this.unconsumed += bytes.length;
    this.bytesSinceAck += bytes.length;
    this.ackPending = true;
    this.counters.bytesIn += bytes.length;
    this.onData?.(bytes);
  }

  /** Delivers held bytes that now follow RCV.NXT, never past a FIN already seen out of order. */
  private drainReassembly(): void {
    if (this.oooFinSeq !== undefined && seqLt(this.oooFinSeq, this.rcvNxt)) this.oooFinSeq = undefined;
    for (;;) {
      let next = this.reassembly.takeNext(this.rcvNxt);
      if (next === undefined || this.isClosed()) return;
      if (this.oooFinSeq !== undefined) {
        const beforeFin = seqDiff(this.oooFinSeq, this.rcvNxt);
        if (beforeFin <= 0) return;
        if (next.length > beforeFin) next = next.subarray(0, beforeFin);
      }
      this.deliver(next);
    }
  }

  /** The guest's FIN, in order (RFC 9293 §3.10.7.4 eighth step). */
  private takeFin(): void {
    this.finReceived = true;
    this.oooFinSeq = undefined;
    this.reassembly.clear();
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    switch (this.st) {
      case 'ESTABLISHED':
        this.st = 'CLOSE-WAIT';
        break;
      case 'FIN-WAIT-1':
        this.st = this.finAcked ? 'TIME-WAIT' : 'CLOSING';
        break;
      case 'FIN-WAIT-2':
        this.st = 'TIME-WAIT';
        break;
      default:
        break;
    }
    if (this.st === 'TIME-WAIT') this.startTimeWait();
    // onEnd first: an app that answers with end() gets its FIN onto the ACK of the guest's.
    this.ackPending = true;
    this.onEnd?.();
    if (this.isClosed()) return;
    this.output();
    if (this.ackPending) this.sendAck();
  }

  // ---- sending ----

  /** Sends as much queued data (and the FIN) as the peer's window and the congestion window allow. */
  private output(force = false): void {
    if (!this.canSendData()) return;
    for (;;) {
      const nextOffset = seqDiff(this.sndNxt, this.sndDataBase);
      const unsent = this.sendBuf.length - nextOffset;
      if (unsent < 0 || this.finAcked) break; // all data and the FIN are out
      const inFlight = seqDiff(this.sndNxt, this.sndUna);
      const usable = Math.min(this.sndWnd, this.cwnd) - inFlight;
      const len = Math.max(0, Math.min(this.sndMss, unsent, usable));
      const fin = this.finQueued && len === unsent;
      if (len === 0 && !fin) break;
      // Sender-side silly window avoidance: a short segment goes out only if it ends the queue or the window is half
      // the largest the guest ever offered (or the persist timer forces it).
      if (len < this.sndMss && len < unsent && !force && usable < this.maxSndWnd >> 1) break;
      force = false;
      const retransmission = seqLt(this.sndNxt, this.sndMax);
      const payload = len > 0 ? this.sendBuf.copy(nextOffset, len) : EMPTY;
      let flags = TCP_ACK;
      if (len > 0 && len === unsent) flags |= TCP_PSH;
      if (fin) flags |= TCP_FIN;
      if (!retransmission && !this.rttTiming) {
        this.rttTiming = true;
        this.rttSeq = seqAdd(this.sndNxt, len + (fin ? 1 : 0));
        this.rttStart = this.io.now();
      }
      this.emit(flags, this.sndNxt, payload);
      if (retransmission) this.counters.retransmits++;
      else this.counters.bytesOut += len;
      this.sndNxt = seqAdd(this.sndNxt, len + (fin ? 1 : 0));
      this.sndMax = seqMax(this.sndMax, this.sndNxt);
      if (this.rtoTimer === undefined) this.startRtoTimer();
    }
    this.updatePersist();
  }

  private canSendData(): boolean {
    switch (this.st) {
      case 'ESTABLISHED':
      case 'CLOSE-WAIT':
      case 'FIN-WAIT-1':
      case 'CLOSING':
      case 'LAST-ACK':
        return true;
      default:
        return false;
    }
  }

  /** Arms the persist timer when data waits for a window and nothing is in flight to bring an ACK back. */
  private updatePersist(): void {
    const waiting = this.sendBuf.length - seqDiff(this.sndNxt, this.sndDataBase) > 0;
    const blocked = waiting && this.sndNxt === this.sndUna && this.canSendData();
    if (!blocked) {
      if (this.persistTimer !== undefined) {
        this.io.clearTimer(this.persistTimer);
        this.persistTimer = undefined;
      }
      this.persistBackoff = 0;
      return;
    }
    if (this.persistTimer !== undefined) return;
    const delay = Math.min(MAX_PERSIST_MS, this.rto.rto * 2 ** Math.min(this.persistBackoff, 16));
    this.persistTimer = this.io.setTimer(delay, () => this.onPersistTimer());
  }

  private onPersistTimer(): void {
    this.persistTimer = undefined;
    if (this.isClosed() || !this.canSendData()) return;
    this.persistBackoff++;
    const inFlight = seqDiff(this.sndNxt, this.sndUna);
    const usable = Math.min(this.sndWnd, this.cwnd) - inFlight;
    if (usable > 0) {
      this.output(true);
      return;
    }
    // Zero window: probe with the next byte, which stays unsent as far as SND.NXT and SND.MAX go (an ACK may still
    // cover it), so unanswered probes never count as retransmission timeouts: a zero window may last forever.
    const offset = seqDiff(this.sndNxt, this.sndDataBase);
    if (this.sendBuf.length - offset > 0) {
      this.counters.windowProbes++;
      this.emit(TCP_ACK, this.sndNxt, this.sendBuf.copy(offset, 1));
      this.sndProbeEnd = seqAdd(this.sndNxt, 1);
    }
    this.updatePersist();
  }

  /** Sends the first unacknowledged segment again (fast retransmit, NewReno partial ACK). */
  private retransmitFirst(): void {
    const offset = seqDiff(this.sndUna, this.sndDataBase);
    const outstanding = seqDiff(this.sndMax, this.sndUna);
    if (outstanding <= 0 || offset < 0) return;
    const dataLeft = Math.max(0, this.sendBuf.length - offset);
    const len = Math.min(this.sndMss, dataLeft, outstanding);
    const fin = this.finQueued && len === dataLeft && seqGt(this.sndMax, seqAdd(this.sndDataBase, this.sendBuf.length));
    if (len === 0 && !fin) return;
    let flags = TCP_ACK;
    if (fin) flags |= TCP_FIN;
    if (len > 0 && len === dataLeft) flags |= TCP_PSH;
    this.rttTiming = false;
    this.counters.retransmits++;
    this.emit(flags, this.sndUna, len > 0 ? this.sendBuf.copy(offset, len) : EMPTY);
  }

  private sendSyn(withAck: boolean): void {
    const flags = TCP_SYN | (withAck ? TCP_ACK : 0);
    const seg = this.segment(flags, this.iss, EMPTY);
    seg.window = Math.min(this.capacity(), 0xffff); // never scaled in a SYN (RFC 7323 §2.2)
    seg.mss = this.ourMss;
    // Offer scaling in our SYN; in a SYN-ACK only answer an offer.
    if (!withAck || this.wscaleOk) seg.windowScale = this.rcvWscale;
    this.send(seg);
    // The handshake gives the first RTT sample (RFC 6298 §2), unless this SYN is a repeat (Karn).
    this.rttTiming = this.counters.retransmits === 0;
    this.rttSeq = seqAdd(this.iss, 1);
    this.rttStart = this.io.now();
    if (withAck) {
      this.clearAckPending();
      this.rcvAccept = seqMax(this.rcvAccept, seqAdd(this.rcvNxt, seg.window));
    }
  }

  /**
   * A pure ACK carries SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT (go-back-N) the guest may already hold
   * more than we are resending, and a pure ACK numbered below its RCV.NXT would be unacceptable to it; it would answer
   * with an ACK of its own, and two such ends ping-pong ACKs.
   */
  private sendAck(): void {
    this.emit(TCP_ACK, this.sndMax, EMPTY);
  }

  /**
   * An ACK for a dropped segment, rate-limited so a flood of junk cannot make us flood back (RFC 5961 §7). Linux's
   * zero-window probes and keepalives (one old byte's sequence number, no data) are answered here too.
   */
  private challengeAck(): void {
    if (this.allowChallenge()) {
      this.counters.challengeAcks++;
      this.sendAck();
    }
  }

  private allowChallenge(): boolean {
    const now = this.io.now();
    if (now - this.challengeWindowStart >= 1000) {
      this.challengeWindowStart = now;
      this.challengeCount = 0;
    }
    if (this.challengeCount >= CHALLENGE_ACKS_PER_SECOND) {
      this.counters.challengeAcksSuppressed++;
      return false;
    }
    this.challengeCount++;
    return true;
  }

  private emitRst(seq: number): void {
    const seg = this.segment(TCP_RST, seq, EMPTY);
    seg.ack = 0;
    seg.window = 0;
    this.send(seg);
  }

  /** Emits a segment that carries our current ACK and window. */
  private emit(flags: number, seq: number, payload: Uint8Array): void {
    const seg = this.segment(flags, seq, payload);
    if (flags & TCP_RST) seg.window = 0;
    this.send(seg);
    if (flags & TCP_ACK) this.clearAckPending();
  }

  private segment(flags: number, seq: number, payload: Uint8Array): TcpSegment {
    return {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq,
      ack: flags & TCP_ACK ? this.rcvNxt : 0,
      flags,
      window: flags & TCP_SYN ? 0 : this.advertiseWindow(),
      payload,
    };
  }

  private send(seg: TcpSegment): void {
    this.counters.segmentsOut++;
    this.io.emit(seg);
  }

  private clearAckPending(): void {
    this.ackPending = false;
    this.bytesSinceAck = 0;
  }

  /**
   * The window field for an outgoing segment. The right edge moves right only by a worthwhile amount (receiver SWS
   * avoidance) and never past the capacity edge (RCV.NXT + free buffer), so held bytes never exceed the buffer.
   */
  private advertiseWindow(): number {
    const unit = 1 << this.rcvWscale;
    const capEdge = this.capacityEdge();
    const free = Math.max(0, seqDiff(capEdge, this.rcvNxt));
    const edge = seqDiff(capEdge, this.rcvAccept) >= this.swsThreshold() ? capEdge : this.rcvAccept;
    const wanted = Math.max(0, seqDiff(edge, this.rcvNxt));
    let field = Math.ceil(wanted / unit);
    if (field * unit > free) field = Math.floor(free / unit);
    field = Math.min(field, 0xffff);
    const advertised = seqAdd(this.rcvNxt, field * unit);
    if (seqGt(advertised, this.rcvAccept)) this.rcvAccept = advertised;
    return field;
  }

  /** The largest window we can offer: the receive buffer, or 64 KiB - 1 without window scaling. */
  private capacity(): number {
    return this.wscaleOk ? this.rcvBuf : Math.min(this.rcvBuf, 0xffff);
  }

  private capacityEdge(): number {
    return seqAdd(this.rcvNxt, Math.max(0, this.capacity() - this.unconsumed));
  }

  private swsThreshold(): number {
    return Math.min(this.capacity() >> 1, this.ourMss);
  }

  /** RFC 9293 §3.10.7.4's acceptability test against the window we advertised. */
  private acceptable(seq: number, len: number): boolean {
    const wnd = Math.max(0, seqDiff(this.rcvAccept, this.rcvNxt));
    const inWindow = (s: number): boolean => seqGe(s, this.rcvNxt) && seqLt(s, seqAdd(this.rcvNxt, wnd));
    if (len === 0) return wnd === 0 ? seq === this.rcvNxt : inWindow(seq);
    // With a zero window a segment at RCV.NXT still counts: its ACK, RST or FIN is processed and its data dropped.
    if (wnd === 0) return seq === this.rcvNxt;
    return inWindow(seq) || inWindow(seqAdd(seq, len - 1));
  }

  // ---- connection life ----

  private takePeerSyn(syn: TcpSegment): void {
    this.irs = syn.seq;
    this.rcvNxt = seqAdd(syn.seq, 1);
    this.rcvAccept = this.rcvNxt;
    const peerMss = syn.mss !== undefined && syn.mss > 0 ? syn.mss : DEFAULT_PEER_MSS;
    this.sndMss = Math.max(MIN_MSS, Math.min(this.ourMss, peerMss));
    this.wscaleOk = syn.windowScale !== undefined;
    this.sndWscale = this.wscaleOk ? Math.min(syn.windowScale!, MAX_WINDOW_SCALE) : 0;
    this.sndWnd = syn.window;
    this.maxSndWnd = syn.window;
    this.sndWl1 = syn.seq;
    this.cwnd = INITIAL_CWND_SEGMENTS * this.sndMss;
  }

  private establish(): void {
    this.st = this.finQueued ? 'FIN-WAIT-1' : 'ESTABLISHED';
    this.retries = 0;
    this.stopRtoTimer();
    this.onConnect?.();
  }

  private growCwnd(acked: number): void {
    if (this.inRecovery) return;
    // Slow start counts bytes acknowledged, up to two segments per ACK (RFC 3465, L = 2: we are ACKed every other).
    const grow =
      this.cwnd < this.ssthresh
        ? Math.min(acked, 2 * this.sndMss)
        : Math.max(1, Math.floor((this.sndMss * this.sndMss) / this.cwnd));
    this.cwnd = Math.min(this.cwnd + grow, MAX_BUFFER);
  }

  private sampleRtt(ack: number): void {
    if (this.rttTiming && seqGe(ack, this.rttSeq)) {
      this.rttTiming = false;
      this.rto.sample(this.io.now() - this.rttStart);
    }
  }

  private startRtoTimer(): void {
    if (this.rtoTimer !== undefined) return;
    this.rtoTimer = this.io.setTimer(this.rto.rto, () => this.onRtoTimer());
  }

  private restartRtoTimer(): void {
    this.stopRtoTimer();
    this.startRtoTimer();
  }

  private stopRtoTimer(): void {
    if (this.rtoTimer !== undefined) {
      this.io.clearTimer(this.rtoTimer);
      this.rtoTimer = undefined;
    }
  }

  private onRtoTimer(): void {
    this.rtoTimer = undefined;
    if (this.isClosed()) return;
    const handshaking = this.st === 'SYN-SENT' || this.st === 'SYN-RECEIVED';
    if (!handshaking && this.sndUna === this.sndMax) return;
    this.counters.timeouts++;
    this.retries++;
    if (this.retries > (handshaking ? this.maxSynRetransmits : this.maxRetransmits)) {
      if (this.st === 'SYN-SENT') this.closeWith('timeout');
      else this.abortWith('timeout');
      return;
    }
    this.rto.backoff();
    this.rttTiming = false;
    if (handshaking) {
      this.counters.retransmits++;
      this.sendSyn(this.st === 'SYN-RECEIVED');
    } else {
      // Go-back-N from SND.UNA with a one-segment congestion window (RFC 5681 §3.1).
      const flight = seqDiff(this.sndMax, this.sndUna);
      this.ssthresh = Math.max(flight >> 1, 2 * this.sndMss);
      this.cwnd = this.sndMss;
      this.inRecovery = false;
      this.dupAcks = 0;
      this.sndNxt = this.sndUna;
      this.output(true); // counts what it resends
    }
    this.startRtoTimer();
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.isClosed()) return;
    this.flushTimer = this.io.setTimer(0, () => {
      this.flushTimer = undefined;
      this.flush();
    });
  }

  private startTimeWait(): void {
    this.st = 'TIME-WAIT';
    this.stopRtoTimer();
    if (this.timeWaitTimer !== undefined) this.io.clearTimer(this.timeWaitTimer);
    this.timeWaitTimer = this.io.setTimer(this.timeWaitMs, () => {
      this.timeWaitTimer = undefined;
      this.closeWith('closed');
    });
  }

  private abortWith(reason: TcpCloseReason): void {
    if (this.isClosed()) return;
    // No RST in SYN-SENT: the guest has no connection to reset (RFC 9293 §3.10.5).
    if (this.st !== 'SYN-SENT' && this.st !== 'TIME-WAIT') this.emit(TCP_RST | TCP_ACK, this.sndMax, EMPTY);
    this.closeWith(reason);
  }

  private closeWith(reason: TcpCloseReason): void {
    if (this.st === 'CLOSED') return;
    this.st = 'CLOSED';
    this.pendingAccept = false;
    for (const timer of [this.rtoTimer, this.persistTimer, this.flushTimer, this.timeWaitTimer]) {
      if (timer !== undefined) this.io.clearTimer(timer);
    }
    this.rtoTimer = this.persistTimer = this.flushTimer = this.timeWaitTimer = undefined;
    this.sendBuf.clear();
    this.reassembly.clear();
    this.onClose?.(reason);
  }
}

function clampInt(value: number, min: number, max: number): number {
  if (!Number.isFinite(value)) return min;
  return Math.min(max, Math.max(min, Math.floor(value)));
}

function randomSeq(): number {
  const word = new Uint32Array(1);
  crypto.getRandomValues(word);
  return word[0]!;
}

/**
 * Normalizes the numeric fields, so a malformed segment from a buggy caller is treated like a hostile one. A segment
 * from the parser is already clean and passes through without a copy (no allocation per segment).
 */
function sanitize(seg: TcpSegment): TcpSegment {
  if (
    seg.seq >>> 0 === seg.seq &&
    seg.ack >>> 0 === seg.ack &&
    (seg.flags & 0xff) === seg.flags &&
    (seg.window & 0xffff) === seg.window &&
    (seg.srcPort & 0xffff) === seg.srcPort &&
    (seg.dstPort & 0xffff) === seg.dstPort &&
    (seg.mss === undefined || (seg.mss & 0xffff) === seg.mss) &&
    (seg.windowScale === undefined || (seg.windowScale & 0xff) === seg.windowScale) &&
    seg.payload instanceof Uint8Array
  ) {
    return seg;
  }
  const out: TcpSegment = {
    srcPort: seg.srcPort & 0xffff,
    dstPort: seg.dstPort & 0xffff,
    seq: seg.seq >>> 0,
    ack: seg.ack >>> 0,
    flags: seg.flags & 0xff,
    window: seg.window & 0xffff,
    payload: seg.payload instanceof Uint8Array ? seg.payload : EMPTY,
  };
  if (seg.mss !== undefined) out.mss = seg.mss & 0xffff;
  if (seg.windowScale !== undefined) out.windowScale = seg.windowScale & 0xff;
  return out;
}
