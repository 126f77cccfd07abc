/**
 * Token buckets for a NIC's bandwidth, per direction: one bucket for bytes and/or one for packets, each with a
 * rate and a burst (its capacity), in the manner of Firecracker's RateLimiter. Pure TypeScript with no Node
 * built-ins and no timers of its own: the caller passes the time (milliseconds, monotonic) to every call and
 * schedules its own retry from `msUntilAvailable`.
 *
 * Semantics:
 * - A bucket starts full and refills continuously at `rate` tokens per second up to its burst.
 * - `tryConsume` takes from every configured bucket or from none (never half a frame).
 * - Default burst (when a rate is given without one): a tenth of a second of the rate, and at least one
 *   maximum-size Ethernet frame (MAX_FRAME_BYTES = 1518 bytes) or one packet. So 2 MiB/s bursts 209,716 bytes.
 * - A burst smaller than one maximum frame (bytes) or one packet is refused by validation.
 * - A request larger than the whole burst passes when the bucket is full and leaves it in debt (a negative fill
 *   that refills at the normal rate), so a tiny burst never deadlocks and the average rate still holds.
 * - `reconfigure` keeps each bucket's current fill, clamped to the new burst; a newly added dimension starts full.
 *   A debt is kept, so changing limits cannot be used to skip paying for what already passed.
 */

/** The largest frame a NIC carries: MTU 1500 + 14-byte Ethernet header + a 4-byte VLAN tag. */
export const MAX_FRAME_BYTES = 1518;
/** Default burst = DEFAULT_BURST_SECONDS of the rate (and at least one maximum frame / one packet). */
export const DEFAULT_BURST_SECONDS = 0.1;

/** A limit for one direction. Each dimension is optional; a spec with no rate limits nothing. */
export interface RateLimitSpec {
  bytesPerSecond?: number;
  packetsPerSecond?: number;
  /** Bucket capacity in bytes (default: see DEFAULT_BURST_SECONDS). Needs bytesPerSecond. */
  burstBytes?: number;
  /** Bucket capacity in packets (default: see DEFAULT_BURST_SECONDS). Needs packetsPerSecond. */
  burstPackets?: number;
}

export type RateLimitErrorKind =
  | 'InvalidRate' // a rate that is not a finite number > 0
  | 'InvalidBurst' // a burst that is not a finite number > 0
  | 'BurstTooSmall' // a byte burst below one maximum frame, or a packet burst below one packet
  | 'BurstWithoutRate'; // a burst for a dimension that has no rate

export class RateLimitError extends Error {
  constructor(
    readonly kind: RateLimitErrorKind,
    message: string,
  ) {
    super(message);
    this.name = kind;
  }
}

const isPositiveFinite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;

/** Checks a spec (which may come from an API body); returns the first problem as a named error, or null. */
export function checkRateLimitSpec(spec: RateLimitSpec): RateLimitError | null {
  const dims: [string, unknown, string, unknown, number, string][] = [
    ['bytesPerSecond', spec.bytesPerSecond, 'burstBytes', spec.burstBytes, MAX_FRAME_BYTES, 'one maximum frame'],
    ['packetsPerSecond', spec.packetsPerSecond, 'burstPackets', spec.burstPackets, 1, 'one packet'],
  ];
  for (const [rateName, rate, burstName, burst, minBurst, minWhat] of dims) {
    if (rate !== undefined && !isPositiveFinite(rate))
      return new RateLimitError('InvalidRate', `${rateName} must be a finite number > 0 (got ${String(rate)})`);
    if (burst === undefined) continue;
    if (!isPositiveFinite(burst))
      return new RateLimitError('InvalidBurst', `${burstName} must be a finite number > 0 (got ${String(burst)})`);
    if (rate === undefined) return new RateLimitError('BurstWithoutRate', `${burstName} needs ${rateName}`);
    if (burst < minBurst)
      return new RateLimitError('BurstTooSmall', `${burstName} ${burst} is smaller than ${minWhat} (${minBurst})`);
  }
  return null;
}

/** Whether a (valid) spec limits anything at all. */
export function limitsAnything(spec: RateLimitSpec | null | undefined): boolean {
  return spec !== null && spec !== undefined && (spec.bytesPerSecond !== undefined || spec.packetsPerSecond !== undefined);
}

/** One token bucket. `tokens` may go negative (a debt, see the file comment). */
class TokenBucket {
  tokens: number;
  constructor(
    public rate: number, // tokens per second
    public capacity: number,
    private lastRefill: number,
  ) {
    this.tokens = capacity;
  }

  refill(now: number): void {
    const elapsed = now - this.lastRefill;
    // A clock that steps back (or a repeated `now`) adds nothing; time is only ever spent once.
    if (elapsed <= 0) return;
    this.lastRefill = now;
    this.tokens = Math.min(this.capacity, this.tokens + (elapsed * this.rate) / 1000);
  }

  /** What must be in the bucket for `n` to pass: `n`, or a full bucket for a request larger than the burst. */
  private needed(n: number): number {
    return Math.min(n, this.capacity);
  }

  /** Tokens `ms` of refill brings. */
  perMs(ms: number): number {
    return (this.rate * ms) / 1000;
  }

  canTake(n: number): boolean {
    return this.tokens >= this.needed(n);
  }

  take(n: number): void {
    this.tokens -= n;
  }

  msUntil(n: number, batchMs = 0): number {
    const deficit = this.needed(Math.max(n, this.perMs(batchMs))) - this.tokens;
    return deficit <= 0 ? 0 : (deficit * 1000) / this.rate;
  }
}

function defaultBurst(rate: number, min: number): number {
  return Math.max(min, Math.ceil(rate * DEFAULT_BURST_SECONDS));
}

/** The bytes and packets buckets of one NIC direction. */
export class RateLimiter {
  private bytes: TokenBucket | null = null;
  private packets: TokenBucket | null = null;
  private current: RateLimitSpec = {};

  /** Throws RateLimitError for an invalid spec (see checkRateLimitSpec). `now` is in milliseconds. */
  constructor(spec: RateLimitSpec, now: number) {
    this.reconfigure(spec, now);
  }

  /** The effective spec, with default bursts filled in. */
  get spec(): Readonly<RateLimitSpec> {
    return this.current;
  }

  /** True when no dimension is limited (every request passes). */
  get unlimited(): boolean {
    return this.bytes === null && this.packets === null;
  }

  /** Takes `bytes` and `packets` tokens from every configured bucket if all have enough; otherwise takes none. */
  tryConsume(now: number, bytes: number, packets = 1): boolean {
    const b = this.bytes;
    const p = this.packets;
    if (b) b.refill(now);
    if (p) p.refill(now);
    if ((b && !b.canTake(bytes)) || (p && !p.canTake(packets))) return false;
    if (b) b.take(bytes);
    if (p) p.take(packets);
    return true;
  }

  /**
   * Milliseconds (possibly fractional) until `tryConsume(bytes, packets)` would succeed; 0 if it would now. With
   * `batchMs`, until each bucket also holds `batchMs` of its rate (at most its burst): a throttled queue that resumes
   * then sends a batch per wake-up, not a frame.
   */
  msUntilAvailable(now: number, bytes: number, packets = 1, batchMs = 0): number {
    if (this.bytes) this.bytes.refill(now);
    if (this.packets) this.packets.refill(now);
    return Math.max(this.bytes?.msUntil(bytes, batchMs) ?? 0, this.packets?.msUntil(packets, batchMs) ?? 0);
  }

  /** Current fill of each bucket (null for an unlimited dimension), after refilling to `now`. */
  available(now: number): { bytes: number | null; packets: number | null } {
    this.bytes?.refill(now);
    this.packets?.refill(now);
    return { bytes: this.bytes?.tokens ?? null, packets: this.packets?.tokens ?? null };
  }

  /** Changes the limits live; keeps each bucket's fill (clamped to the new burst). Throws RateLimitError. */
  reconfigure(spec: RateLimitSpec, now: number): void {
    const error = checkRateLimitSpec(spec);
    if (error) throw error;
    const effective: RateLimitSpec = {};
    if (spec.bytesPerSecond !== undefined) {
      effective.bytesPerSecond = spec.bytesPerSecond;
      effective.burstBytes = spec.burstBytes ?? defaultBurst(spec.bytesPerSecond, MAX_FRAME_BYTES);
    }
    if (spec.packetsPerSecond !== undefined) {
      effective.packetsPerSecond = spec.packetsPerSecond;
      effective.burstPackets = spec.burstPackets ?? defaultBurst(spec.packetsPerSecond, 1);
    }
    this.bytes = rebuild(this.bytes, effective.bytesPerSecond, effective.burstBytes, now);
    this.packets = rebuild(this.packets, effective.packetsPerSecond, effective.burstPackets, now);
    this.current = effective;
  }
}

function rebuild(
  bucket: TokenBucket | null,
  rate: number | undefined,
  capacity: number | undefined,
  now: number,
): TokenBucket | null {
  if (rate === undefined || capacity === undefined) return null;
  if (!bucket) return new TokenBucket(rate, capacity, now);
  bucket.refill(now); // tokens earned so far were earned at the old rate
  bucket.rate = rate;
  bucket.capacity = capacity;
  bucket.tokens = Math.min(bucket.tokens, capacity);
  return bucket;
}
