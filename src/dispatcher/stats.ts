/**
 * In-memory timing statistics of the dispatcher: throughput over the last minute and run and
 * queue-wait percentiles over a window of recent tasks, per type. Bounded: fixed-size rings.
 */

const RING = 1024;
const BUCKETS = 60;

class Ring {
  readonly #values = new Float64Array(RING);
  #n = 0;
  add(v: number): void {
    this.#values[this.#n % RING] = v;
    this.#n++;
  }
  percentiles(): { p50: number; p95: number } {
    const n = Math.min(this.#n, RING);
    if (n === 0) return { p50: 0, p95: 0 };
    const sorted = Array.from(this.#values.subarray(0, n)).sort((a, b) => a - b);
    const at = (p: number) => sorted[Math.min(n - 1, Math.floor(p * n))]!;
    return { p50: at(0.5), p95: at(0.95) };
  }
}

/** Tasks finished per second, over the last 60 one-second buckets. */
class Rate {
  readonly #counts = new Float64Array(BUCKETS);
  readonly #seconds = new Float64Array(BUCKETS);
  add(nowMs: number, n = 1): void {
    const s = Math.floor(nowMs / 1000);
    const i = s % BUCKETS;
    if (this.#seconds[i] !== s) {
      this.#seconds[i] = s;
      this.#counts[i] = 0;
    }
    this.#counts[i]! += n;
  }
  perSecond(nowMs: number): number {
    const s = Math.floor(nowMs / 1000);
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) if (s - this.#seconds[i]! < BUCKETS) total += this.#counts[i]!;
    return total / BUCKETS;
  }
}

export interface TypeTiming {
  throughput: number;
  runMs: { p50: number; p95: number };
  waitMs: { p50: number; p95: number };
}

export class TimingStats {
  readonly #types = new Map<string, { run: Ring; wait: Ring; rate: Rate }>();

  #for(type: string) {
    let t = this.#types.get(type);
    if (!t) {
      t = { run: new Ring(), wait: new Ring(), rate: new Rate() };
      this.#types.set(type, t);
    }
    return t;
  }

  /** A task of `type` ended; run and wait are known when it ran. */
  finished(type: string, nowMs: number, runMs: number | undefined, waitMs: number | undefined): void {
    const t = this.#for(type);
    t.rate.add(nowMs);
    if (runMs !== undefined && runMs >= 0) t.run.add(runMs);
    if (waitMs !== undefined && waitMs >= 0) t.wait.add(waitMs);
  }

  timing(type: string, nowMs: number): TypeTiming {
    const t = this.#for(type);
    return { throughput: t.rate.perSecond(nowMs), runMs: t.run.percentiles(), waitMs: t.wait.percentiles() };
  }
}
