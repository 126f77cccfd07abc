/** The retransmission timeout estimator of RFC 6298: SRTT/RTTVAR smoothing, a floor, a ceiling and backoff. */
export class RtoEstimator {
  private srttMs = 0;
  private rttvarMs = 0;
  private sampled = false;
  private current: number;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    initialMs: number,
  ) {
    this.current = this.clamp(initialMs);
  }

  get rto(): number {
    return this.current;
  }

  /** The smoothed round-trip time, or undefined before the first sample. */
  get srtt(): number | undefined {
    return this.sampled ? this.srttMs : undefined;
  }

  /** Feeds one round-trip measurement (never from a retransmitted segment: Karn's rule is the caller's). */
  sample(rttMs: number): void {
    const r = Math.max(0, rttMs);
    if (!this.sampled) {
      this.srttMs = r;
      this.rttvarMs = r / 2;
      this.sampled = true;
    } else {
      this.rttvarMs = 0.75 * this.rttvarMs + 0.25 * Math.abs(this.srttMs - r);
      this.srttMs = 0.875 * this.srttMs + 0.125 * r;
    }
    // G (clock granularity) is 1 ms: the fake and real clocks both count milliseconds.
    this.current = this.clamp(this.srttMs + Math.max(1, 4 * this.rttvarMs));
  }

  /** Doubles the timeout after an expiry (RFC 6298 §5.5). */
  backoff(): void {
    this.current = this.clamp(this.current * 2);
  }

  private clamp(ms: number): number {
    return Math.min(this.maxMs, Math.max(this.minMs, Math.round(ms)));
  }
}
