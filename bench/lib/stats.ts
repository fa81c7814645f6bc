/**
 * Summaries shared by the benchmarks: percentiles of sorted samples, median with min and max
 * over rounds, and the number format of their tables. Pure.
 */

/** The value at fraction `p` (0..1) of `sorted` (ascending); NaN when empty. */
export function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
}

/** Median (of an even count: the mean of the middle two), min and max of `values` (NaN when empty). */
export function summary(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : s.length > 0 ? (s[mid - 1]! + s[mid]!) / 2 : NaN;
  return { median, min: s[0] ?? NaN, max: s.at(-1) ?? NaN };
}

/** A table figure: whole numbers with thousands separators from 100 up, else two decimals. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2);
}

/** Microseconds since `t0` (from process.hrtime.bigint()). */
export function usSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1000;
}
