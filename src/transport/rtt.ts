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
