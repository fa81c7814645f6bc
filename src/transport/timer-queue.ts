/**
 * One timer for many deadlines: a binary min-heap of due times, armed on a single clock timer
 * for the earliest entry. Thousands of requests in flight cost one Node timer, not thousands.
 *
 * Entries know their place in the heap, so cancelling removes them at once (a lazily
 * cancelled heap keeps every finished request's entries until they reach the top: with a
 * 10 s deadline, hundreds of thousands of dead entries under load) and an entry can be moved
 * to a new time without allocating. An owner may embed the entry in its own object (a pending
 * request is its own timer entry) with one shared callback that receives the entry.
 */
import type { Clock } from './types.ts';

export interface TimerEntry {
  /** Due time, in clock milliseconds. */
  at: number;
  /** Position in the heap; -1 while not scheduled. */
  index: number;
  /** Called with the entry when it is due (it is no longer scheduled by then). */
  fn: (entry: TimerEntry) => void;
}

/** A clock handle that can stop holding the process alive without being cleared (Node's Timeout). */
interface Refable {
  ref(): unknown;
  unref(): unknown;
}

function isRefable(h: unknown): h is Refable {
  return typeof h === 'object' && h !== null && typeof (h as Partial<Refable>).unref === 'function';
}

/**
 * The clock timer holds the process only while entries are scheduled, so an idle endpoint does
 * not keep a process alive, and a pending request does. When the last entry goes, a Node timer
 * is unref'd rather than cleared, and re-used by the next entry that is due no earlier: one
 * request at a time then costs no timer system call per request.
 */
export class TimerQueue {
  readonly #clock: Clock;
  readonly #heap: TimerEntry[] = [];
  #armedAt = Infinity;
  #handle: unknown = undefined;
  #refed = false;
  #closed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Entries scheduled and neither fired nor cancelled. */
  get size(): number {
    return this.#heap.length;
  }

  /** Runs `fn` after `delayMs` unless cancelled first. */
  schedule(delayMs: number, fn: (entry: TimerEntry) => void): TimerEntry {
    const entry: TimerEntry = { at: 0, index: -1, fn };
    this.scheduleAt(entry, this.#clock.now() + Math.max(0, delayMs));
    return entry;
  }

  /** Schedules `entry` at clock time `at`, or moves it there when it is already scheduled. */
  scheduleAt(entry: TimerEntry, at: number): void {
    if (this.#closed) return;
    if (entry.index < 0) {
      entry.at = at;
      entry.index = this.#heap.length;
      this.#heap.push(entry);
      this.#up(entry.index);
    } else {
      const earlier = at < entry.at;
      entry.at = at;
      if (earlier) this.#up(entry.index);
      else this.#down(entry.index);
    }
    if (this.#heap[0] === entry) this.#arm();
  }

  cancel(entry: TimerEntry | undefined): void {
    if (!entry || entry.index < 0) return;
    this.#remove(entry.index);
    if (this.#heap.length === 0) this.#arm();
  }

  close(): void {
    this.#closed = true;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    for (const e of this.#heap) e.index = -1;
    this.#heap.length = 0;
  }

  #arm(): void {
    const first = this.#heap[0];
    if (!first || this.#closed) {
      if (this.#handle === undefined) return;
      if (isRefable(this.#handle)) {
        if (this.#refed) this.#handle.unref();
        this.#refed = false;
      } else {
        this.#clock.clearTimeout(this.#handle);
        this.#handle = undefined;
        this.#armedAt = Infinity;
      }
      return;
    }
    if (this.#handle !== undefined && this.#armedAt <= first.at) {
      // The armed timer fires in time (early at worst: it then re-arms).
      if (!this.#refed && isRefable(this.#handle)) this.#handle.ref();
      this.#refed = true;
      return;
    }
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#armedAt = first.at;
    this.#handle = this.#clock.setTimeout(() => this.#fire(), Math.max(0, first.at - this.#clock.now()));
    this.#refed = true;
  }

  #fire(): void {
    this.#handle = undefined;
    this.#armedAt = Infinity;
    this.#refed = false;
    const now = this.#clock.now();
    // Bounded per firing so a storm of due entries cannot starve I/O.
    let budget = 10_000;
    while (this.#heap.length > 0 && budget-- > 0) {
      const top = this.#heap[0]!;
      if (top.at > now) break;
      this.#remove(0);
      top.fn(top);
      if (this.#closed) return;
    }
    this.#arm();
  }

  #remove(i: number): void {
    const h = this.#heap;
    const gone = h[i]!;
    gone.index = -1;
    const last = h.pop()!;
    if (i === h.length) return;
    h[i] = last;
    last.index = i;
    if (i > 0 && h[(i - 1) >> 1]!.at > last.at) this.#up(i);
    else this.#down(i);
  }

  #up(i: number): void {
    const h = this.#heap;
    const e = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (parent.at <= e.at) break;
      h[i] = parent;
      parent.index = i;
      i = p;
    }
    h[i] = e;
    e.index = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const n = h.length;
    const e = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]!.at < h[l]!.at ? r : l;
      const child = h[c]!;
      if (child.at >= e.at) break;
      h[i] = child;
      child.index = i;
      i = c;
    }
    h[i] = e;
    e.index = i;
  }
}
