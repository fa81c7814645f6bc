/**
 * The fan-out behind `GET /api/events`: each event is serialized once and queued for every open
 * stream. A stream whose client reads too slowly is ended rather than allowed to grow without
 * bound; browsers reconnect, and the `snapshot` that opens every stream resynchronizes them.
 */
import type { Clock } from '../transport/types.ts';
import type { EventData, EventKind } from './schemas.ts';

/** One event as it goes on the wire. */
export interface ServerEvent {
  /** Sequence number, increasing per hub. */
  readonly id: number;
  readonly event: EventKind;
  /** JSON text of the event's data. */
  readonly data: string;
}

/** What a wait for the next event ended with. */
export type NextEvent = ServerEvent | 'idle' | 'closed';

/** One open stream's queue. */
export class Subscription {
  readonly #queue: ServerEvent[] = [];
  readonly #maxQueued: number;
  readonly #onClose: (s: Subscription) => void;
  #waiter: ((next: NextEvent) => void) | undefined;
  #closed = false;

  /** @internal created by {@link EventHub.subscribe}. */
  constructor(maxQueued: number, onClose: (s: Subscription) => void) {
    this.#maxQueued = maxQueued;
    this.#onClose = onClose;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal */
  push(event: ServerEvent): void {
    if (this.#closed) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w(event);
      return;
    }
    if (this.#queue.length >= this.#maxQueued) {
      // The client cannot keep up; it will reconnect and get a fresh snapshot.
      this.close();
      return;
    }
    this.#queue.push(event);
  }

  /**
   * The next event; `idle` when none came within `idleMs` (time for a keep-alive), `closed`
   * once the subscription ended.
   */
  next(clock: Clock, idleMs: number): Promise<NextEvent> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#closed) return Promise.resolve('closed');
    return new Promise<NextEvent>((resolve) => {
      const timer = clock.setTimeout(() => {
        this.#waiter = undefined;
        resolve('idle');
      }, idleMs);
      this.#waiter = (next) => {
        clock.clearTimeout(timer);
        resolve(next);
      };
    });
  }

  /** Ends the subscription; a pending `next` resolves with `closed`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.('closed');
    this.#onClose(this);
  }
}

/** Options of an {@link EventHub}. */
export interface EventHubOptions {
  /** Most open subscriptions; `subscribe` returns undefined beyond. */
  maxClients: number;
  /** Events queued per subscription before it is ended. */
  maxQueued: number;
}

/** Publishes events to every open subscription. */
export class EventHub {
  readonly #subs = new Set<Subscription>();
  readonly #o: EventHubOptions;
  #seq = 0;

  constructor(options: EventHubOptions) {
    this.#o = options;
  }

  /** Open subscriptions. */
  get clients(): number {
    return this.#subs.size;
  }

  /** A new subscription, or undefined when `maxClients` are open. */
  subscribe(): Subscription | undefined {
    if (this.#subs.size >= this.#o.maxClients) return undefined;
    const sub = new Subscription(this.#o.maxQueued, (s) => this.#subs.delete(s));
    this.#subs.add(sub);
    return sub;
  }

  /** Builds an event without publishing it (the `snapshot` that opens one stream). */
  event<K extends EventKind>(kind: K, data: EventData<K>): ServerEvent {
    return { id: ++this.#seq, event: kind, data: JSON.stringify(data) };
  }

  /** Queues the event for every subscription. */
  publish<K extends EventKind>(kind: K, data: EventData<K>): void {
    if (this.#subs.size === 0) return;
    const ev = this.event(kind, data);
    for (const s of [...this.#subs]) s.push(ev);
  }

  /** Ends every subscription. */
  close(): void {
    for (const s of [...this.#subs]) s.close();
  }
}
