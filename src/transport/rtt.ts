/**
 * Retransmission timeout from measured round trips, after RFC 6298 (SRTT, RTTVAR, Karn's rule
 * applied by the caller: only first transmissions are sampled), with a floor suited to a LAN.
 */
export interface RtoBounds {
  initialMs: number;
  minMs: number;
  maxMs: number;
}

export class RttEstimator {
  #srtt = 0;
  #rttvar = 0;
  #rto: number;
  #samples = 0;
  #lastBackoffAt = -Infinity;
  readonly #b: RtoBounds;

  constructor(bounds: RtoBounds) {
    this.#b = bounds;
    this.#rto = bounds.initialMs;
  }

  get rtoMs(): number {
    return this.#rto;
  }

  get srttMs(): number {
    return this.#srtt;
  }

  get samples(): number {
    return this.#samples;
  }

  /**
   * A retransmission timer expired: keep the backed-off timeout for new requests until a fresh
   * sample arrives (RFC 6298 5.5). Without this, Karn's rule starves the estimator exactly
   * when load raises the round trip, and every request is re-sent in a spiral. Many timers
   * expiring together count once per timeout period.
   */
  backoff(nowMs: number): void {
    if (nowMs - this.#lastBackoffAt < this.#rto) return;
    this.#lastBackoffAt = nowMs;
    this.#rto = Math.min(this.#b.maxMs, this.#rto * 2);
  }

  sample(rttMs: number): void {
    const r = Math.max(0, rttMs);
    if (this.#samples === 0) {
      this.#srtt = r;
      this.#rttvar = r / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
    this.#samples++;
    // Clock granularity G = 1 ms.
    const rto = this.#srtt + Math.max(1, 4 * this.#rttvar);
    this.#rto = Math.min(this.#b.maxMs, Math.max(this.#b.minMs, rto));
  }
}
