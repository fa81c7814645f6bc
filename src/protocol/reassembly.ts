/**
 * Reassembly of fragmented messages, bounded in count, bytes and age so that a flood of
 * partial messages cannot exhaust memory. Pure state: the caller passes the time.
 */
import { AckStatus } from './frame.ts';

export interface ReassemblyLimits {
  maxMessages: number;
  maxBytes: number;
  ttlMs: number;
  /** Largest total a message may declare. */
  maxMessageBytes: number;
  /**
   * When full, a partial message idle this long gives up its room to a new one (least recently
   * active first). Default: a quarter of the TTL, at most 1 s. A sender still sending re-sends
   * within its retransmission timeout, so its message stays active; a flood of fragments that
   * never complete (from anyone, or any number of source ports) then locks out other senders'
   * messages for this long after it stops, not for the whole TTL.
   */
  evictIdleMs?: number;
}

interface Partial {
  key: string;
  count: number;
  total: number;
  parts: (Buffer | undefined)[];
  received: number;
  bytes: number;
  /** Every index below this has arrived. */
  below: number;
  lastAt: number;
  sinceAck: number;
}

export type AddOutcome =
  | { kind: 'partial'; ackDue: boolean }
  | { kind: 'duplicate' }
  | { kind: 'complete'; message: Buffer }
  | { kind: 'already-complete' }
  | { kind: 'rejected'; reason: 'inconsistent' | 'too-large' | 'no-room' };

export interface AckState {
  status: AckStatus;
  count: number;
  below: number;
  bitmap: Buffer;
}

export class Reassembler {
  readonly #limits: ReassemblyLimits;
  readonly #partials = new Map<string, Partial>();
  /** Recently completed messages (key -> time), so late fragments and probes get COMPLETE. */
  readonly #completed = new Map<string, number>();
  #bytes = 0;

  constructor(limits: ReassemblyLimits) {
    this.#limits = limits;
  }

  get pendingMessages(): number {
    return this.#partials.size;
  }

  get pendingBytes(): number {
    return this.#bytes;
  }

  /**
   * Adds one fragment of message `key` (peer and message id). `ackEvery`: how many new
   * fragments make an acknowledgement due.
   */
  add(
    key: string,
    index: number,
    count: number,
    total: number,
    data: Buffer,
    now: number,
    ackEvery: number,
  ): AddOutcome {
    if (this.#completed.has(key)) return { kind: 'already-complete' };
    let p = this.#partials.get(key);
    if (!p) {
      if (total > this.#limits.maxMessageBytes) return { kind: 'rejected', reason: 'too-large' };
      this.expire(now);
      if (this.#partials.size >= this.#limits.maxMessages && !this.#evictIdle(now))
        return { kind: 'rejected', reason: 'no-room' };
      p = {
        key,
        count,
        total,
        parts: new Array<Buffer | undefined>(count),
        received: 0,
        bytes: 0,
        below: 0,
        lastAt: now,
        sinceAck: 0,
      };
      this.#partials.set(key, p);
    }
    if (p.count !== count || p.total !== total) return { kind: 'rejected', reason: 'inconsistent' };
    if (p.parts[index] !== undefined) {
      p.lastAt = now;
      return { kind: 'duplicate' };
    }
    if (p.bytes + data.length > p.total) {
      this.#drop(p);
      return { kind: 'rejected', reason: 'inconsistent' };
    }
    if (this.#bytes + data.length > this.#limits.maxBytes) {
      this.expire(now);
      while (this.#bytes + data.length > this.#limits.maxBytes) {
        if (!this.#evictIdle(now, p)) return { kind: 'rejected', reason: 'no-room' };
      }
    }
    // Copy: the datagram's buffer may be reused by the socket layer.
    p.parts[index] = Buffer.from(data);
    p.received++;
    p.bytes += data.length;
    this.#bytes += data.length;
    p.lastAt = now;
    p.sinceAck++;
    while (p.below < p.count && p.parts[p.below] !== undefined) p.below++;
    if (p.received === p.count) {
      this.#drop(p);
      if (p.bytes !== p.total) return { kind: 'rejected', reason: 'inconsistent' };
      this.#markComplete(key, now);
      return { kind: 'complete', message: Buffer.concat(p.parts as Buffer[], p.total) };
    }
    const ackDue = p.sinceAck >= ackEvery || index === p.count - 1;
    if (ackDue) p.sinceAck = 0;
    return { kind: 'partial', ackDue };
  }

  /** What to tell the sender about message `key`; the bitmap fits in `maxBitmapBytes`. */
  ackState(key: string, count: number, maxBitmapBytes: number): AckState {
    if (this.#completed.has(key)) return { status: AckStatus.COMPLETE, count, below: count, bitmap: Buffer.alloc(0) };
    const p = this.#partials.get(key);
    if (!p || p.count !== count) return { status: AckStatus.UNKNOWN, count, below: 0, bitmap: Buffer.alloc(0) };
    p.sinceAck = 0;
    const span = Math.min(p.count - p.below, maxBitmapBytes * 8);
    const bitmap = Buffer.alloc(Math.ceil(span / 8));
    for (let i = 0; i < span; i++) {
      if (p.parts[p.below + i] !== undefined) bitmap[i >> 3] = (bitmap[i >> 3] ?? 0) | (1 << (i & 7));
    }
    return { status: AckStatus.PARTIAL, count: p.count, below: p.below, bitmap };
  }

  /** Drops partial messages idle past the TTL and forgets old completions. */
  expire(now: number): void {
    const cutoff = now - this.#limits.ttlMs;
    for (const p of this.#partials.values()) if (p.lastAt < cutoff) this.#drop(p);
    for (const [key, at] of this.#completed) {
      if (at >= cutoff) break;
      this.#completed.delete(key);
    }
  }

  /** Drops the least recently active partial message (not `keep`) if it is idle enough; false if none is. */
  #evictIdle(now: number, keep?: Partial): boolean {
    const idleMs = this.#limits.evictIdleMs ?? Math.min(1_000, this.#limits.ttlMs / 4);
    let oldest: Partial | undefined;
    for (const p of this.#partials.values()) {
      if (p !== keep && (!oldest || p.lastAt < oldest.lastAt)) oldest = p;
    }
    if (!oldest || now - oldest.lastAt < idleMs) return false;
    this.#drop(oldest);
    return true;
  }

  #markComplete(key: string, now: number): void {
    this.#completed.set(key, now);
    // Bounded like the partials: a flood of tiny complete messages must not grow this.
    if (this.#completed.size > this.#limits.maxMessages * 16) {
      const oldest = this.#completed.keys().next();
      if (!oldest.done) this.#completed.delete(oldest.value);
    }
  }

  #drop(p: Partial): void {
    if (this.#partials.delete(p.key)) this.#bytes -= p.bytes;
  }
}
