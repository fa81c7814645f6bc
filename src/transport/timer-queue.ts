/**
 * One timer for many deadlines: a binary min-heap of due times with lazy cancellation, armed
 * on a single clock timer for the earliest entry. Thousands of requests in flight cost one
 * Node timer, not thousands.
 */
import type { Clock } from './types.ts';

export interface TimerEntry {
  at: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * The clock timer is held only while live entries exist, so an idle endpoint does not keep a
 * process alive, and a pending request does.
 */

export class TimerQueue {
  readonly #clock: Clock;
  readonly #heap: TimerEntry[] = [];
  #armedAt = Infinity;
  #handle: unknown = undefined;
  #closed = false;
  #live = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Entries scheduled and neither fired nor cancelled. */
  get size(): number {
    return this.#live;
  }

  /** Runs `fn` after `delayMs` unless cancelled first. */
  schedule(delayMs: number, fn: () => void): TimerEntry {
    const entry: TimerEntry = { at: this.#clock.now() + Math.max(0, delayMs), fn, cancelled: false };
    if (this.#closed) {
      entry.cancelled = true;
      return entry;
    }
    this.#live++;
    this.#push(entry);
    if (entry.at < this.#armedAt) this.#arm();
    return entry;
  }

  cancel(entry: TimerEntry | undefined): void {
    if (!entry || entry.cancelled) return;
    entry.cancelled = true;
    if (--this.#live === 0) {
      // Nothing live: drop the cancelled entries and release the clock timer.
      this.#heap.length = 0;
      this.#arm();
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#heap.length = 0;
  }

  #arm(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.cancelled) this.#pop();
    const first = this.#heap[0];
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#armedAt = Infinity;
    if (!first || this.#closed) return;
    this.#armedAt = first.at;
    this.#handle = this.#clock.setTimeout(() => this.#fire(), Math.max(0, first.at - this.#clock.now()));
  }

  #fire(): void {
    this.#handle = undefined;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    // Bounded per firing so a storm of due entries cannot starve I/O.
    let budget = 10_000;
    while (this.#heap.length > 0 && budget-- > 0) {
      const top = this.#heap[0]!;
      if (top.cancelled) {
        this.#pop();
        continue;
      }
      if (top.at > now) break;
      this.#pop();
      top.cancelled = true;
      this.#live--;
      top.fn();
      if (this.#closed) return;
    }
    this.#arm();
  }

  #push(e: TimerEntry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= e.at) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]!.at < h[l]!.at ? r : l;
      if (h[c]!.at >= last.at) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
}
