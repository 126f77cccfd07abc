/**
 * virtio-net (virtio 1.2 §5.1), device id 1: one receive/transmit queue pair carrying Ethernet frames, each behind
 * a 12-byte struct virtio_net_hdr_v1. The host side is a frame port: `receive(frame, offload?)` delivers a frame
 * to the guest, `onTransmit(frame, offload?)` gets each frame the guest sends. Offered: MAC, STATUS (link), MTU
 * (1500), MRG_RXBUF (a received frame may span several guest buffers, as Linux prefers) and, unless the NIC's
 * `offload` option is off, the checksum and TCPv4 segmentation offloads both ways (§5.1.6.2, §5.1.6.4): CSUM +
 * HOST_TSO4 (the guest may send 64 KiB TCP super-segments with the checksum left undone) and GUEST_CSUM +
 * GUEST_TSO4 (the host may deliver the same). The header's offload fields travel with the frame as a
 * FrameOffload (src/net/packet/offload.ts). A frame for the guest whose offloads the driver did not negotiate is
 * finished in software here (segmented, checksummed), so senders never need to know the receiver's features.
 *
 * Bandwidth per direction is a RateLimiter (src/net/rate-limiter.ts). A throttled transmit queue keeps the
 * guest's chains (owned, not completed) and resumes on a timer, so the guest's queue fills and its driver stops:
 * backpressure, never a drop. A throttled receive direction keeps frames in the bounded pending queue. A NIC with
 * no limits never calls a limiter. Timers and the clock are injectable, so tests run on fake time.
 *
 * Frames and headers come from the guest: each is parsed into a typed value with a named error, and a bad frame
 * is dropped and counted (txErrors) while the device keeps running. A bad *chain* is the transport's business
 * (DEVICE_NEEDS_RESET).
 */
import { MAX_FRAME_BYTES, RateLimiter, checkRateLimitSpec, limitsAnything, type RateLimitSpec } from '../../net/rate-limiter.js';
import type { DeviceState } from '../device.js';
import { VirtioMmioDevice, type VirtioContext, type VirtioDeviceState } from './mmio.js';
import { bit, hasFeature } from './regs.js';
import { VirtqueueError, type DescriptorChain } from './virtqueue.js';
import {
  checkOffload,
  MAX_GSO_FRAME_BYTES,
  OFFLOAD_F_NEEDS_CSUM,
  readOffload,
  softwareFrames,
  type FrameOffload,
  type OffloadError,
} from '../../net/packet/offload.js';

export const VIRTIO_ID_NET = 1;

// §5.1.3 feature bits (those we offer, and the offloads a later step may add).
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;

// §5.1.4 configuration: struct virtio_net_config (the fields up to mtu).
export const VIRTIO_NET_S_LINK_UP = 1;
const CFG_MAC = 0; // u8[6]
const CFG_STATUS = 6; // le16
const CFG_MAX_VIRTQUEUE_PAIRS = 8; // le16
const CFG_MTU = 10; // le16
const CONFIG_SIZE = 12;

// §5.1.6 struct virtio_net_hdr_v1.
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_F_RSC_INFO = 4;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
/** sizeof(struct virtio_net_hdr_v1): with VIRTIO_F_VERSION_1 (which the transport requires) it always has num_buffers. */
export const VIRTIO_NET_HDR_LEN = 12;

export const NET_MTU = 1500;
/** An Ethernet header: the shortest frame we accept. */
export const MIN_FRAME_BYTES = 14;
export { MAX_FRAME_BYTES };
export const NET_QUEUE_SIZE = 256;
/** Default bound of frames waiting for guest receive buffers (or receive tokens). */
export const DEFAULT_RX_PENDING_FRAMES = 256;
/**
 * Bytes held for the guest before new frames are dropped. With TSO a frame may be 64 KiB, so the frame bound alone
 * would let one NIC pin 16 MiB of host memory while its guest does not read; 1 MiB still holds ~700 full-size
 * Ethernet frames or 16 super-segments, more than a guest that reads at all ever leaves waiting.
 */
export const DEFAULT_RX_PENDING_BYTES = 1 << 20;
/** Largest chain accepted on either queue; bigger is a transport error. Frames are far smaller; this bounds work. */
const MAX_CHAIN_BYTES = 1024 * 1024;
/**
 * A throttled direction resumes once THROTTLE_BATCH_MS of its rate is in the bucket (or its next frame, if larger),
 * and then moves what the bucket allows: a wake-up and a guest interrupt per batch. Resuming for each frame as soon
 * as it could pass cost a guest sending at 2 MiB/s in 1.5 KiB frames ~1400 wake-ups and interrupts a second, a
 * fifth of a host core, which an unlimited neighbour felt on 2 cores.
 */
const THROTTLE_BATCH_MS = 10;
/** Longest single timer wait; a longer refill (a very low rate) re-arms, and setTimeout's 2^31 ms limit is never hit. */
const MAX_TIMER_MS = 60_000;

export const RECEIVEQ = 0;
export const TRANSMITQ = 1;

/** struct virtio_net_hdr_v1, parsed. */
export interface VirtioNetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  numBuffers: number;
}

/** Why a transmitted frame was dropped. */
export type TxFrameErrorKind =
  | 'HeaderTooShort' // the chain's readable part is shorter than the 12-byte header
  | 'ChecksumNotNegotiated' // VIRTIO_NET_HDR_F_NEEDS_CSUM without VIRTIO_NET_F_CSUM
  | 'UnknownHeaderFlags' // flag bits a transmit header must not carry
  | 'GsoNotNegotiated' // a gso_type other than NONE without a negotiated GSO feature
  | 'UnsupportedGsoType' // a gso_type other than TCPV4 (UDP, TCPV6, ECN are not offered)
  | 'FrameTooShort' // fewer than 14 bytes after the header
  | 'FrameTooLong' // more than MTU 1500 + 14 + a 4-byte VLAN tag (64 KiB + 14 with GSO)
  | OffloadError; // offload fields that do not fit the frame (checkOffload)

/** The offloads the driver negotiated. */
export interface NetOffloads {
  /** VIRTIO_NET_F_CSUM: the guest may send NEEDS_CSUM frames. */
  txChecksum: boolean;
  /** VIRTIO_NET_F_HOST_TSO4: the guest may send TCPv4 GSO frames. */
  txGso: boolean;
  /** VIRTIO_NET_F_GUEST_CSUM: we may deliver NEEDS_CSUM / DATA_VALID frames. */
  rxChecksum: boolean;
  /** VIRTIO_NET_F_GUEST_TSO4: we may deliver TCPv4 GSO frames. */
  rxGso: boolean;
}

/** The offload features a NIC offers when its offloads are on. */
export const OFFLOAD_FEATURES =
  bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO4);

/** Parses a transmit header from `bytes` (12 bytes) into `into`; returns why it is unacceptable, or null. */
export function parseTxHeader(bytes: DataView, into: VirtioNetHeader, offloads: NetOffloads): TxFrameErrorKind | null {
  into.flags = bytes.getUint8(0);
  into.gsoType = bytes.getUint8(1);
  into.hdrLen = bytes.getUint16(2, true);
  into.gsoSize = bytes.getUint16(4, true);
  into.csumStart = bytes.getUint16(6, true);
  into.csumOffset = bytes.getUint16(8, true);
  into.numBuffers = bytes.getUint16(10, true); // §5.1.6.2: meaningless on transmit, ignored
  if (into.flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) return 'UnknownHeaderFlags';
  if (into.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM && !offloads.txChecksum) return 'ChecksumNotNegotiated';
  if (into.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
    if (!offloads.txGso) return 'GsoNotNegotiated';
    if (into.gsoType !== VIRTIO_NET_HDR_GSO_TCPV4) return 'UnsupportedGsoType';
  }
  return null;
}

/** The offload metadata a parsed transmit header carries, or undefined when it asks for none. */
export function txOffloadOf(h: VirtioNetHeader): FrameOffload | undefined {
  if (h.flags === 0 && h.gsoType === VIRTIO_NET_HDR_GSO_NONE) return undefined;
  return { flags: h.flags, gsoType: h.gsoType, gsoSize: h.gsoSize, csumStart: h.csumStart, csumOffset: h.csumOffset };
}

/** Fills a receive header: the frame's offload metadata (if any), `numBuffers` buffers for this frame. */
export function writeRxHeader(into: DataView, numBuffers: number, offload?: FrameOffload | null): void {
  for (let i = 0; i < 10; i++) into.setUint8(i, 0);
  if (offload) {
    into.setUint8(0, offload.flags);
    into.setUint8(1, offload.gsoType);
    into.setUint16(4, offload.gsoSize, true);
    into.setUint16(6, offload.csumStart, true);
    into.setUint16(8, offload.csumOffset, true);
  }
  into.setUint16(10, numBuffers, true);
}

export function checkFrameLength(length: number): TxFrameErrorKind | null {
  if (length < MIN_FRAME_BYTES) return 'FrameTooShort';
  if (length > MAX_FRAME_BYTES) return 'FrameTooLong';
  return null;
}

/** "52:54:00:12:34:56" → 6 bytes; null unless it is six hex pairs naming a unicast address. */
export function parseMac(text: string): Uint8Array | null {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(text);
  if (!m) return null;
  const mac = Uint8Array.from(m.slice(1, 7), (h) => parseInt(h, 16));
  return mac[0]! & 1 ? null : mac; // the I/G bit: a group address cannot be a NIC's own
}

export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A random address under QEMU's locally administered 52:54:00 prefix. */
export function randomMac(): string {
  const tail = new Uint8Array(3);
  globalThis.crypto.getRandomValues(tail);
  return formatMac(Uint8Array.of(0x52, 0x54, 0x00, ...tail));
}

export interface NetRateLimits {
  /** Host → guest. null removes the limit; absent leaves it unchanged. */
  rx?: RateLimitSpec | null;
  /** Guest → host. */
  tx?: RateLimitSpec | null;
}

export interface VirtioNetOptions {
  /** "xx:xx:xx:xx:xx:xx", unicast; default a random 52:54:00:xx:xx:xx. */
  mac?: string;
  /** Each frame the guest sends: a fresh copy the receiver may keep or transfer, with its offload metadata. */
  onTransmit?: (frame: Uint8Array, offload?: FrameOffload) => void;
  /** Offer the checksum and TCPv4 segmentation offloads (default true); off is for debugging. */
  offload?: boolean;
  /** After the frames of one queue notification (or one throttle resume) were handed to onTransmit. */
  onTransmitBatchEnd?: () => void;
  /** Link state at start (default up). */
  linkUp?: boolean;
  /** Frames held for the guest before new ones are dropped (default 256). */
  rxPendingFrames?: number;
  /** Bytes held for the guest before new frames are dropped (default 1 MiB); one frame is always accepted. */
  rxPendingBytes?: number;
  rateLimits?: NetRateLimits;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Default globalThis.setTimeout / clearTimeout. */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export interface VirtioNetStateData {
  mac: string;
  linkUp: boolean;
  /** Frames received from the host and not yet delivered to the guest. */
  pendingRx: Uint8Array[];
  /** Their offload metadata (null for none), when any has some. */
  pendingRxOffload?: (FrameOffload | null)[];
}

/** What metrics() adds to the transport's counters. */
export interface VirtioNetCounters {
  rxBytes: number;
  rxPackets: number;
  /** Host frames dropped: the pending queue was full, the link was down, or the device was reset. */
  rxDropped: number;
  /** Host frames that could not be delivered: bad length, or (without MRG_RXBUF) larger than the guest's buffer. */
  rxErrors: number;
  txBytes: number;
  txPackets: number;
  /** Guest frames dropped: the link was down or the backend threw. */
  txDropped: number;
  /** Guest frames refused as malformed (bad header or length; see lastTxError). */
  txErrors: number;
  /** Times a direction became throttled, and milliseconds spent throttled. */
  rxThrottled: number;
  txThrottled: number;
  rxThrottledMs: number;
  txThrottledMs: number;
}

type Direction = 'rx' | 'tx';

export class VirtioNet extends VirtioMmioDevice<VirtioNetStateData> {
  private macText: string;
  private link: boolean;
  private onTransmit: (frame: Uint8Array, offload?: FrameOffload) => void;
  private onTransmitBatchEnd: (() => void) | undefined;
  private readonly rxPendingLimit: number;
  private readonly rxPendingByteLimit: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;

  private mergeable = false;
  private readonly offloads: NetOffloads = { txChecksum: false, txGso: false, rxChecksum: false, rxGso: false };
  private readonly offerOffloads: boolean;
  /** Guest receive buffers, in the order the driver made them available. */
  private rxBuffers: DescriptorChain[] = [];
  /** Host frames waiting for receive buffers or receive tokens, oldest first. */
  private rxPending: Uint8Array[] = [];
  /** Sum of rxPending's frame lengths. */
  private rxPendingByteCount = 0;
  /** rxPending's offload metadata, index for index; null while no pending frame has any (the plain path). */
  private rxPendingOffload: (FrameOffload | null)[] | null = null;
  /** Transmit chains taken from the ring while throttled: owned by the device, not yet completed. */
  private txBacklog: DescriptorChain[] = [];
  private txInBatch = false;
  private closed = false;

  private rxLimiter: RateLimiter | null = null;
  private txLimiter: RateLimiter | null = null;
  private rxTimer: unknown = null;
  private txTimer: unknown = null;
  private readonly throttledSince = { rx: -1, tx: -1 };

  private readonly hdrBytes = new Uint8Array(VIRTIO_NET_HDR_LEN);
  private readonly hdrView = new DataView(this.hdrBytes.buffer);
  private readonly txHeader: VirtioNetHeader = {
    flags: 0,
    gsoType: 0,
    hdrLen: 0,
    gsoSize: 0,
    csumStart: 0,
    csumOffset: 0,
    numBuffers: 0,
  };
  private lastTxErrorKind: TxFrameErrorKind | null = null;
  private readonly stats: VirtioNetCounters & { backendErrors: number } = {
    rxBytes: 0,
    rxPackets: 0,
    rxDropped: 0,
    rxErrors: 0,
    txBytes: 0,
    txPackets: 0,
    txDropped: 0,
    txErrors: 0,
    rxThrottled: 0,
    txThrottled: 0,
    rxThrottledMs: 0,
    txThrottledMs: 0,
    backendErrors: 0,
  };

  /** Throws an Error for a bad MAC or pending bound, a RateLimitError for bad limits. */
  constructor(ctx: VirtioContext, options: VirtioNetOptions = {}) {
    const queue = { maxSize: NET_QUEUE_SIZE, limits: { maxChainBytes: MAX_CHAIN_BYTES } };
    super(
      ctx,
      VIRTIO_ID_NET,
      bit(VIRTIO_NET_F_MAC) |
        bit(VIRTIO_NET_F_STATUS) |
        bit(VIRTIO_NET_F_MRG_RXBUF) |
        bit(VIRTIO_NET_F_MTU) |
        (options.offload === false ? 0n : OFFLOAD_FEATURES),
      [queue, queue],
      CONFIG_SIZE,
      'virtio-net',
      1,
    );
    this.offerOffloads = options.offload !== false;
    this.macText = options.mac ?? randomMac();
    this.link = options.linkUp ?? true;
    this.onTransmit = options.onTransmit ?? (() => {});
    this.onTransmitBatchEnd = options.onTransmitBatchEnd;
    this.rxPendingLimit = options.rxPendingFrames ?? DEFAULT_RX_PENDING_FRAMES;
    if (!Number.isInteger(this.rxPendingLimit) || this.rxPendingLimit < 0)
      throw new Error(`virtio-net: rxPendingFrames must be an integer >= 0 (got ${this.rxPendingLimit})`);
    this.rxPendingByteLimit = options.rxPendingBytes ?? DEFAULT_RX_PENDING_BYTES;
    if (!Number.isInteger(this.rxPendingByteLimit) || this.rxPendingByteLimit < 0)
      throw new Error(`virtio-net: rxPendingBytes must be an integer >= 0 (got ${this.rxPendingByteLimit})`);
    this.now = options.now ?? (() => globalThis.performance.now());
    this.setTimer = options.setTimer ?? defaultSetTimer;
    this.clearTimer = options.clearTimer ?? ((h) => globalThis.clearTimeout(h as Parameters<typeof clearTimeout>[0]));
    this.writeMac(this.macText);
    this.configView.setUint16(CFG_MAX_VIRTQUEUE_PAIRS, 1, true);
    this.configView.setUint16(CFG_MTU, NET_MTU, true);
    this.writeStatusField();
    if (options.rateLimits) this.setRateLimits(options.rateLimits);
  }

  // ---- host side ----

  get mac(): string {
    return this.macText;
  }
  get linkUp(): boolean {
    return this.link;
  }
  /** Whether the NIC offers offloads (its `offload` option). */
  get offloadsOffered(): boolean {
    return this.offerOffloads;
  }
  /** The offloads the driver negotiated (all false before FEATURES_OK). */
  get negotiatedOffloads(): Readonly<NetOffloads> {
    return this.offloads;
  }
  /** Whether the driver negotiated VIRTIO_NET_F_MRG_RXBUF. */
  get mergeableRxBuffers(): boolean {
    return this.mergeable;
  }
  /** The features in effect (0 before the driver's FEATURES_OK). */
  get negotiatedFeatures(): bigint {
    return this.negotiated;
  }
  /** Why the last malformed transmit frame was dropped. */
  get lastTxError(): TxFrameErrorKind | null {
    return this.lastTxErrorKind;
  }
  get rateLimits(): { rx: Readonly<RateLimitSpec> | null; tx: Readonly<RateLimitSpec> | null } {
    return { rx: this.rxLimiter?.spec ?? null, tx: this.txLimiter?.spec ?? null };
  }

  /** Replaces the transmit handlers (e.g. when the NIC is plugged into a switch after construction). */
  setTransmitHandler(onTransmit: (frame: Uint8Array, offload?: FrameOffload) => void, onTransmitBatchEnd?: () => void): void {
    this.onTransmit = onTransmit;
    this.onTransmitBatchEnd = onTransmitBatchEnd;
  }

  /**
   * A frame for the guest, with offload metadata if any. The device keeps `frame` (no copy) until it is
   * delivered: the caller must not change it afterwards. Offloads the driver did not negotiate are done here in
   * software first. Returns false when it was dropped (bad length or offload metadata, link down, queue full).
   */
  receive(frame: Uint8Array, offload?: FrameOffload | null): boolean {
    if (offload) return this.receiveOffloaded(frame, offload);
    if (frame.length < MIN_FRAME_BYTES || frame.length > MAX_FRAME_BYTES) {
      this.stats.rxErrors++;
      return false;
    }
    return this.enqueueRx(frame, null);
  }

  private receiveOffloaded(frame: Uint8Array, offload: FrameOffload): boolean {
    if (frame.length < MIN_FRAME_BYTES || checkOffload(frame, offload) !== null) {
      this.stats.rxErrors++;
      return false;
    }
    const o = this.offloads;
    const gso = offload.gsoType !== VIRTIO_NET_HDR_GSO_NONE;
    if (o.rxChecksum && (!gso || o.rxGso)) return this.enqueueRx(frame, offload);
    if (!gso && !(offload.flags & OFFLOAD_F_NEEDS_CSUM)) return this.enqueueRx(frame, null); // DATA_VALID: a hint only
    let all = true;
    softwareFrames(frame, offload, (f) => {
      if (!this.enqueueRx(f, null)) all = false;
    });
    return all;
  }

  private enqueueRx(frame: Uint8Array, offload: FrameOffload | null): boolean {
    if (
      !this.link ||
      this.closed ||
      this.rxPending.length >= this.rxPendingLimit ||
      (this.rxPending.length > 0 && this.rxPendingByteCount + frame.length > this.rxPendingByteLimit)
    ) {
      this.stats.rxDropped++;
      return false;
    }
    if (offload !== null && this.rxPendingOffload === null) this.rxPendingOffload = this.rxPending.map(() => null);
    this.rxPendingOffload?.push(offload);
    this.rxPending.push(frame);
    this.rxPendingByteCount += frame.length;
    try {
      this.deliver();
    } catch (e) {
      this.fail(e); // (guard() without a closure per frame)
    }
    return true;
  }

  /** Frames waiting for the guest. */
  get pendingRxFrames(): number {
    return this.rxPending.length;
  }

  /** Sets the link state and tells the driver (configuration interrupt). Frames waiting for the guest are dropped on link down. */
  setLinkUp(up: boolean): void {
    if (up === this.link) return;
    this.link = up;
    this.writeStatusField();
    if (!up) this.dropPendingRx();
    this.configChanged();
  }

  /**
   * Changes the bandwidth limits live; a spec that limits nothing (or null) removes the limiter. Both specs are
   * checked before either applies: throws the RateLimitError of the first bad one. Buckets keep their fill.
   */
  setRateLimits(limits: NetRateLimits): void {
    for (const spec of [limits.rx, limits.tx]) {
      const error = spec ? checkRateLimitSpec(spec) : null;
      if (error) throw error;
    }
    const now = this.now();
    if (limits.rx !== undefined) {
      this.rxLimiter = this.nextLimiter(this.rxLimiter, limits.rx, now);
      this.cancelTimer('rx');
      if (this.rxLimiter === null) this.unthrottled('rx', now);
      this.guard(() => this.deliver());
    }
    if (limits.tx !== undefined) {
      this.txLimiter = this.nextLimiter(this.txLimiter, limits.tx, now);
      this.cancelTimer('tx');
      if (this.txLimiter === null) this.unthrottled('tx', now);
      this.guard(() => this.drainTx());
    }
  }

  /** Stops timers and drops waiting frames (the VM is gone); later host frames are dropped. Idempotent. */
  close(): void {
    this.closed = true;
    this.cancelTimer('rx');
    this.cancelTimer('tx');
    this.dropPendingRx();
    this.unthrottled('tx');
    this.rxBuffers = [];
    this.txBacklog = [];
    this.onTransmit = () => {};
    this.onTransmitBatchEnd = undefined;
  }

  // ---- transport hooks ----

  protected handleChain(queue: number, chain: DescriptorChain): void {
    if (queue === TRANSMITQ) {
      if (this.txBacklog.length > 0 || !this.admitTx(chain)) {
        this.txBacklog.push(chain);
        this.scheduleTx();
        return;
      }
      this.transmit(chain);
      return;
    }
    if (queue === RECEIVEQ) {
      // §5.1.6.3.1: every receive buffer holds at least the header.
      if (chain.writableBytes < VIRTIO_NET_HDR_LEN)
        throw new VirtqueueError('MalformedRequest', `virtio-net receive buffer of ${chain.writableBytes} bytes`);
      this.rxBuffers.push(chain);
      if (this.rxPending.length > 0) this.deliver();
    }
  }

  /** The transport's queue walk, plus one batch-end call per transmit notification. */
  protected override processQueue(queue: number): void {
    super.processQueue(queue);
    if (queue === TRANSMITQ) this.endTxBatch();
  }

  /** The transport's restore re-submits held transmit chains; those that go out at once end a batch too. */
  override loadState(state: DeviceState<VirtioDeviceState<VirtioNetStateData>>): void {
    super.loadState(state);
    this.endTxBatch();
  }

  protected override onFeaturesNegotiated(features: bigint): void {
    this.mergeable = hasFeature(features, VIRTIO_NET_F_MRG_RXBUF);
    const o = this.offloads;
    o.txChecksum = hasFeature(features, VIRTIO_NET_F_CSUM);
    o.txGso = o.txChecksum && hasFeature(features, VIRTIO_NET_F_HOST_TSO4);
    o.rxChecksum = hasFeature(features, VIRTIO_NET_F_GUEST_CSUM);
    o.rxGso = o.rxChecksum && hasFeature(features, VIRTIO_NET_F_GUEST_TSO4);
  }

  protected override onReset(): void {
    this.mergeable = false;
    const o = this.offloads;
    o.txChecksum = o.txGso = o.rxChecksum = o.rxGso = false;
    this.rxBuffers = [];
    this.txBacklog = [];
    this.cancelTimer('rx');
    this.cancelTimer('tx');
    this.unthrottled('tx');
    this.dropPendingRx();
  }

  protected saveDevice(): VirtioNetStateData {
    const state: VirtioNetStateData = { mac: this.macText, linkUp: this.link, pendingRx: this.rxPending.map((f) => f.slice()) };
    if (this.rxPendingOffload) state.pendingRxOffload = this.rxPendingOffload.map((o) => (o ? { ...o } : null));
    return state;
  }

  protected loadDevice(data: VirtioNetStateData): void {
    if (typeof data.mac !== 'string' || !parseMac(data.mac)) throw new Error(`virtio-net: bad MAC in state: ${String(data.mac)}`);
    if (!Array.isArray(data.pendingRx) || data.pendingRx.length > this.rxPendingLimit)
      throw new Error('virtio-net: pending frames in state exceed the bound');
    const meta = data.pendingRxOffload;
    if (meta !== undefined && (!Array.isArray(meta) || meta.length !== data.pendingRx.length))
      throw new Error('virtio-net: pending offload metadata in state does not match the frames');
    const offloads = meta?.map((m) => (m === null ? null : readOffload(m)));
    data.pendingRx.forEach((f, i) => {
      const o = offloads?.[i];
      if (o === undefined && meta?.[i] !== undefined) throw new Error('virtio-net: bad pending offload in state');
      const bad =
        !(f instanceof Uint8Array) ||
        (o ? f.length < MIN_FRAME_BYTES || checkOffload(f, o) !== null : checkFrameLength(f.length) !== null);
      if (bad) throw new Error('virtio-net: bad pending frame in state');
    });
    this.cancelTimer('rx');
    this.cancelTimer('tx');
    this.macText = data.mac;
    this.writeMac(data.mac);
    this.link = data.linkUp === true;
    this.writeStatusField();
    this.rxBuffers = [];
    this.txBacklog = [];
    this.rxPending = data.pendingRx.map((f) => f.slice());
    this.rxPendingByteCount = this.rxPending.reduce((sum, f) => sum + f.length, 0);
    this.rxPendingOffload = offloads ?? null;
    // The transport re-submits the chains the device owned (receive buffers, throttled transmits) after this.
  }

  protected override deviceMetrics(): Record<string, number> {
    const now = this.now();
    const s = this.stats;
    return {
      ...s,
      rxThrottledMs: s.rxThrottledMs + (this.throttledSince.rx >= 0 ? now - this.throttledSince.rx : 0),
      txThrottledMs: s.txThrottledMs + (this.throttledSince.tx >= 0 ? now - this.throttledSince.tx : 0),
      pendingRxFrames: this.rxPending.length,
      pendingRxBytes: this.rxPendingByteCount,
      rxBuffers: this.rxBuffers.length,
      txBacklog: this.txBacklog.length,
      linkUp: this.link ? 1 : 0,
    };
  }

  // ---- transmit ----

  /** Frame bytes a transmit chain claims (what it costs against the limiter, valid or not). */
  private static txCost(chain: DescriptorChain): number {
    return Math.max(0, chain.readableBytes - VIRTIO_NET_HDR_LEN);
  }

  private admitTx(chain: DescriptorChain): boolean {
    const limiter = this.txLimiter;
    if (limiter === null) return true;
    const now = this.now();
    if (limiter.tryConsume(now, VirtioNet.txCost(chain))) {
      this.unthrottled('tx', now);
      return true;
    }
    this.throttled('tx', now);
    return false;
  }

  /** Parses, copies out and hands over one transmit chain, then returns it to the guest. */
  private transmit(chain: DescriptorChain): void {
    let error: TxFrameErrorKind | null;
    const frameLength = chain.readableBytes - VIRTIO_NET_HDR_LEN;
    if (frameLength < 0) error = 'HeaderTooShort';
    else {
      this.copyOut(chain, this.hdrBytes);
      error = parseTxHeader(this.hdrView, this.txHeader, this.offloads);
      if (error === null) {
        const gso = this.txHeader.gsoType !== VIRTIO_NET_HDR_GSO_NONE;
        error = gso ? (frameLength > MAX_GSO_FRAME_BYTES ? 'FrameTooLong' : null) : checkFrameLength(frameLength);
        if (frameLength < MIN_FRAME_BYTES) error = 'FrameTooShort';
      }
    }
    if (error !== null) {
      this.refuseTx(chain, error);
      return;
    }
    const frame = this.readChain(chain, VIRTIO_NET_HDR_LEN, frameLength);
    const offload = txOffloadOf(this.txHeader);
    if (offload !== undefined) {
      const bad = checkOffload(frame, offload);
      if (bad !== null) {
        this.refuseTx(chain, bad);
        return;
      }
    }
    this.complete(chain, 0);
    if (!this.link) {
      this.stats.txDropped++;
      return;
    }
    this.txInBatch = true;
    try {
      if (offload === undefined) this.onTransmit(frame);
      else this.onTransmit(frame, offload);
    } catch {
      this.stats.txDropped++; // a backend bug must not break the device
      this.stats.backendErrors++;
      return;
    }
    this.stats.txPackets++;
    this.stats.txBytes += frameLength;
  }

  private refuseTx(chain: DescriptorChain, error: TxFrameErrorKind): void {
    this.stats.txErrors++;
    this.lastTxErrorKind = error;
    this.complete(chain, 0);
  }

  /** Sends backlogged chains while the limiter allows; re-arms the timer for the rest. */
  private drainTx(): void {
    while (this.txBacklog.length > 0) {
      const chain = this.txBacklog[0]!;
      if (!this.isCurrent(chain)) {
        this.txBacklog.shift();
        continue;
      }
      if (!this.admitTx(chain)) {
        this.scheduleTx();
        break;
      }
      this.txBacklog.shift();
      this.transmit(chain);
    }
    this.endTxBatch();
  }

  private endTxBatch(): void {
    if (!this.txInBatch) return;
    this.txInBatch = false;
    try {
      this.onTransmitBatchEnd?.();
    } catch {
      this.stats.backendErrors++;
    }
  }

  private scheduleTx(): void {
    if (this.txTimer !== null || this.txLimiter === null || this.txBacklog.length === 0) return;
    const wait = this.txLimiter.msUntilAvailable(this.now(), VirtioNet.txCost(this.txBacklog[0]!), 1, THROTTLE_BATCH_MS);
    this.txTimer = this.setTimer(() => {
      this.txTimer = null;
      this.guard(() => this.drainTx());
    }, timerDelay(wait));
  }

  // ---- receive ----

  /** Moves pending host frames into guest receive buffers while there are buffers and tokens. */
  private deliver(): void {
    while (this.rxPending.length > 0 && this.driverOk) {
      const frame = this.rxPending[0]!;
      const needed = VIRTIO_NET_HDR_LEN + frame.length;
      const count = this.buffersFor(needed);
      if (count === 0) return; // wait for the guest's next receive buffers
      if (count < 0) {
        // Without MRG_RXBUF the frame must fit one buffer; this one never will.
        this.shiftPendingRx();
        this.stats.rxErrors++;
        continue;
      }
      if (this.rxLimiter !== null && !this.admitRx(frame.length)) return;
      const offload = this.shiftPendingRx();
      this.writeFrame(frame, count, offload);
      this.stats.rxPackets++;
      this.stats.rxBytes += frame.length;
    }
  }

  /**
   * How many receive buffers a frame of `needed` bytes (with header) takes: 0 when the guest has not yet posted
   * enough, -1 when (without MRG_RXBUF) the next buffer is too small for it. Drops stale buffers on the way.
   */
  private buffersFor(needed: number): number {
    let room = 0;
    for (let i = 0; i < this.rxBuffers.length; i++) {
      const b = this.rxBuffers[i]!;
      if (!this.isCurrent(b)) {
        this.rxBuffers.splice(i--, 1);
        continue;
      }
      room += b.writableBytes;
      if (!this.mergeable) return room >= needed ? 1 : -1;
      if (room >= needed) return i + 1;
    }
    return 0;
  }

  private admitRx(bytes: number): boolean {
    const now = this.now();
    if (this.rxLimiter!.tryConsume(now, bytes)) {
      this.unthrottled('rx', now);
      return true;
    }
    this.throttled('rx', now);
    if (this.rxTimer === null) {
      const wait = this.rxLimiter!.msUntilAvailable(now, bytes, 1, THROTTLE_BATCH_MS);
      this.rxTimer = this.setTimer(() => {
        this.rxTimer = null;
        this.guard(() => this.deliver());
      }, timerDelay(wait));
    }
    return false;
  }

  /** Takes the oldest pending frame off the queue; returns its offload metadata. */
  private shiftPendingRx(): FrameOffload | null {
    this.rxPendingByteCount -= this.rxPending.shift()?.length ?? 0;
    const meta = this.rxPendingOffload;
    if (meta === null) return null;
    const offload = meta.shift() ?? null;
    if (this.rxPending.length === 0) this.rxPendingOffload = null;
    return offload;
  }

  /** Writes header + frame across the first `count` receive buffers, one used entry per buffer (§5.1.6.4). */
  private writeFrame(frame: Uint8Array, count: number, offload: FrameOffload | null): void {
    writeRxHeader(this.hdrView, count, offload);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const chain = this.rxBuffers.shift()!;
      let offset = 0;
      if (i === 0) offset = this.writeChain(chain, 0, this.hdrBytes);
      const n = Math.min(chain.writableBytes - offset, frame.length - at);
      const written = this.writeChain(chain, offset, at === 0 && n === frame.length ? frame : frame.subarray(at, at + n));
      at += written;
      this.complete(chain, offset + written);
    }
  }

  // ---- helpers ----

  /** Copies the first `into.length` readable bytes of a chain into a reused buffer (no allocation). */
  private copyOut(chain: DescriptorChain, into: Uint8Array): void {
    let done = 0;
    for (const s of chain.readable) {
      if (done >= into.length) return;
      const n = Math.min(s.len, into.length - done);
      this.ram.read(s.addr, into.subarray(done, done + n));
      done += n;
    }
  }

  private throttled(dir: Direction, now: number): void {
    if (this.throttledSince[dir] >= 0) return;
    this.throttledSince[dir] = now;
    if (dir === 'rx') this.stats.rxThrottled++;
    else this.stats.txThrottled++;
  }

  /** Ends a throttled period; reads the clock only when one is running (an unlimited NIC never does). */
  private unthrottled(dir: Direction, now?: number): void {
    const since = this.throttledSince[dir];
    if (since < 0) return;
    now ??= this.now();
    this.throttledSince[dir] = -1;
    if (dir === 'rx') this.stats.rxThrottledMs += now - since;
    else this.stats.txThrottledMs += now - since;
  }

  private cancelTimer(dir: Direction): void {
    const handle = dir === 'rx' ? this.rxTimer : this.txTimer;
    if (handle !== null) this.clearTimer(handle);
    if (dir === 'rx') this.rxTimer = null;
    else this.txTimer = null;
  }

  private nextLimiter(current: RateLimiter | null, spec: RateLimitSpec | null, now: number): RateLimiter | null {
    if (!limitsAnything(spec)) return null;
    if (current) {
      current.reconfigure(spec!, now);
      return current;
    }
    return new RateLimiter(spec!, now);
  }

  private dropPendingRx(): void {
    this.stats.rxDropped += this.rxPending.length;
    this.rxPending = [];
    this.rxPendingByteCount = 0;
    this.rxPendingOffload = null;
    this.unthrottled('rx');
  }

  private writeMac(text: string): void {
    const mac = parseMac(text);
    if (!mac) throw new Error(`virtio-net: '${text}' is not a unicast MAC address (xx:xx:xx:xx:xx:xx)`);
    this.config.set(mac, CFG_MAC);
  }

  private writeStatusField(): void {
    this.configView.setUint16(CFG_STATUS, this.link ? VIRTIO_NET_S_LINK_UP : 0, true);
  }
}

function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms)));
}

/** globalThis.setTimeout, unref'd where the host has that (Node), so a throttled NIC never keeps a process alive. */
function defaultSetTimer(fn: () => void, ms: number): unknown {
  const handle: unknown = globalThis.setTimeout(fn, ms);
  (handle as { unref?: () => void }).unref?.();
  return handle;
}
