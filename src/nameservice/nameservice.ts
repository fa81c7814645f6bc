/**
 * The nameservice: a registry of live service instances (workers, dispatchers, monitoring) by
 * type and role, held as soft state under leases. Nothing is persisted: after a restart every
 * instance re-registers within a heartbeat (see Registration), and subscribers re-sync.
 *
 * - `register` grants a lease that lives as long as its heartbeats; re-registering an id
 *   replaces its entry and lease. A lapsed lease is removed by a sweep (not hidden), and
 *   subscribers are told.
 * - `deregister` of a lease this nameservice does not hold answers TG_ERR_UNKNOWN_LEASE, as a
 *   heartbeat does: the caller learns the truth, and a Registration treats it as done.
 * - `subscribe` is a lease too, keyed by the subscriber's address; each subscriber gets its
 *   `changes` one request at a time, in `seq` order, and is dropped when it stops answering.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BusyError, ConfigError, ErrorCode, TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Instance, ParsedRequest, ReplyBody, RequestKind, Role } from '../protocol/messages.ts';
import { systemClock, type Clock, type PeerAddress, type Transport } from '../transport/types.ts';
import { addressKey, checkAddress, codeOf, OneShot } from './common.ts';

/** Defaults of the nameservice's options, in one place. */
export const NAMESERVICE_DEFAULTS = {
  /** Heartbeat interval the nameservice asks registrants for. */
  heartbeatMs: 1_000,
  /** A registration lapses this long after its last register or heartbeat. */
  leaseTtlMs: 5_000,
  /** How often lapsed registrations and subscriptions are swept out. */
  sweepMs: 250,
  /** Subscription lease when the subscriber does not ask for one. */
  subscriptionTtlMs: 30_000,
  /** A subscriber that has not acknowledged a `changes` request within this is dropped. */
  changesTimeoutMs: 10_000,
  /** Most registered instances; beyond it `register` answers BUSY (bounded memory). */
  maxInstances: 10_000,
  /** Most subscribers; beyond it `subscribe` answers BUSY. */
  maxSubscribers: 1_000,
  /** Approximate JSON size at which pending changes are split over several `changes` requests. */
  maxChangesBytes: 256 * 1024,
} as const;

/** Settings of a {@link Nameservice}; every number has a default in {@link NAMESERVICE_DEFAULTS}. */
export interface NameserviceOptions {
  /** The transport to serve on; the nameservice installs its handlers and never closes it. */
  transport: Transport;
  logger?: Logger;
  clock?: Clock;
  /** Reported by `ping`; default: the version in TaskGrid's package.json, read once. */
  version?: string;
  heartbeatMs?: number;
  leaseTtlMs?: number;
  sweepMs?: number;
  subscriptionTtlMs?: number;
  changesTimeoutMs?: number;
  maxInstances?: number;
  maxSubscribers?: number;
  maxChangesBytes?: number;
}

/** Counters of a nameservice, for logs, monitoring and tests. */
export interface NameserviceStats {
  /** Live registrations and subscriptions right now. */
  instances: number;
  subscribers: number;
  /** Requests handled, by kind. */
  requests: Partial<Record<RequestKind, number>>;
  registered: number;
  /** Registrations that replaced a live entry with the same id. */
  replaced: number;
  deregistered: number;
  /** Registrations removed because their lease lapsed. */
  expired: number;
  changesSent: number;
  changesAcknowledged: number;
  /** Subscribers dropped because they did not acknowledge a `changes` request. */
  subscribersDropped: number;
  /** Subscriptions removed because they were not renewed. */
  subscriptionsExpired: number;
}

interface Entry {
  instance: Instance;
  leaseId: string;
  expiresAt: number;
}

interface Subscription {
  key: string;
  address: PeerAddress;
  expiresAt: number;
  /** The last seq assigned to this subscriber. */
  seq: number;
  /**
   * Changes not yet sent, merged per instance id: an id is in one of the two at most, with its
   * latest state. Replaying them after a snapshot is therefore harmless.
   */
  upserted: Map<string, Instance>;
  removed: Set<string>;
  sending: boolean;
}

type Options = Required<Omit<NameserviceOptions, 'transport' | 'logger' | 'clock' | 'version'>>;

/**
 * The registry. Install it on a transport; close() stops its timers.
 *
 * @example
 * const transport = await createUdpTransport({ host: '0.0.0.0', port: 5001 });
 * const ns = new Nameservice({ transport, logger });
 * // ... on shutdown:
 * ns.close();
 * await transport.close();
 */
export class Nameservice {
  /** This incarnation's id: subscribers tell a restarted nameservice from its predecessor by it. */
  readonly epoch: string = randomUUID();
  readonly #transport: Transport;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #o: Options;
  readonly #version: string;
  readonly #startedAt: number;
  readonly #byId = new Map<string, Entry>();
  readonly #byLease = new Map<string, Entry>();
  readonly #subs = new Map<string, Subscription>();
  readonly #sweepTimer: OneShot;
  /** Highest seq ever assigned, so that a new subscription never reuses a dropped one's numbers. */
  #seqHighWater = 0;
  #flushQueued = false;
  #closed = false;
  readonly #stats: Omit<NameserviceStats, 'instances' | 'subscribers' | 'requests'> = {
    registered: 0,
    replaced: 0,
    deregistered: 0,
    expired: 0,
    changesSent: 0,
    changesAcknowledged: 0,
    subscribersDropped: 0,
    subscriptionsExpired: 0,
  };
  readonly #requests: Partial<Record<RequestKind, number>> = {};

  constructor(options: NameserviceOptions) {
    this.#transport = options.transport;
    this.#log = options.logger ?? silentLogger();
    this.#clock = options.clock ?? systemClock;
    const d = NAMESERVICE_DEFAULTS;
    this.#o = {
      heartbeatMs: options.heartbeatMs ?? d.heartbeatMs,
      leaseTtlMs: options.leaseTtlMs ?? d.leaseTtlMs,
      sweepMs: options.sweepMs ?? d.sweepMs,
      subscriptionTtlMs: options.subscriptionTtlMs ?? d.subscriptionTtlMs,
      changesTimeoutMs: options.changesTimeoutMs ?? d.changesTimeoutMs,
      maxInstances: options.maxInstances ?? d.maxInstances,
      maxSubscribers: options.maxSubscribers ?? d.maxSubscribers,
      maxChangesBytes: options.maxChangesBytes ?? d.maxChangesBytes,
    };
    for (const [name, value] of Object.entries(this.#o)) {
      if (!Number.isInteger(value) || value < 1) {
        throw new ConfigError(`nameservice option ${name} must be a positive integer, got ${String(value)}`);
      }
    }
    if (this.#o.heartbeatMs >= this.#o.leaseTtlMs) {
      throw new ConfigError(
        `nameservice heartbeat interval (${this.#o.heartbeatMs} ms) must be shorter than the lease TTL (${this.#o.leaseTtlMs} ms)`,
      );
    }
    this.#version = options.version ?? packageVersion();
    this.#startedAt = this.#clock.now();
    this.#sweepTimer = new OneShot(this.#clock);
    this.#install();
    this.#armSweep();
    // Debug: the process announces `ready` itself (src/cli/components.ts), once.
    this.#log.debug(
      { epoch: this.epoch, address: this.#transport.address, leaseTtlMs: this.#o.leaseTtlMs },
      'nameservice started',
    );
  }

  /** A snapshot of the counters. */
  stats(): NameserviceStats {
    return {
      instances: this.#byId.size,
      subscribers: this.#subs.size,
      requests: { ...this.#requests },
      ...this.#stats,
    };
  }

  /**
   * Stops the sweep and refuses further requests with TG_ERR_CLOSED. The transport stays open:
   * its owner closes it.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sweepTimer.cancel();
    this.#subs.clear();
    this.#byId.clear();
    this.#byLease.clear();
    this.#log.info({ epoch: this.epoch }, 'nameservice closed');
  }

  // ---- in-process registrations (the TaskGrid+ adapter, src/legacy) -----------------------

  /**
   * Registers an instance as `register` does, but in-process and under a lease of `ttlMs`
   * that only {@link renewLocal} renews (TaskGrid+ workers have no lease ids). Returns its id.
   */
  registerLocal(body: ParsedRequest<'register'>, ttlMs: number): string {
    this.#open();
    return this.#register(body, this.#transport.address, ttlMs).id;
  }

  /** Renews an instance's lease for `ttlMs`; false when it is not registered (lapsed or removed). */
  renewLocal(id: string, ttlMs: number): boolean {
    this.#open();
    const now = this.#clock.now();
    if ((this.#byId.get(id)?.expiresAt ?? Infinity) <= now) this.#sweep();
    const entry = this.#byId.get(id);
    if (!entry) return false;
    entry.expiresAt = now + ttlMs;
    entry.instance.lastSeen = now;
    return true;
  }

  /** Removes an instance, telling subscribers; false when it was not registered. */
  deregisterLocal(id: string): boolean {
    this.#open();
    const entry = this.#byId.get(id);
    if (!entry) return false;
    this.#drop(entry);
    return true;
  }

  /** Live instances (copies), as `lookup` answers them. */
  instances(filter: { type?: string; role?: Role } = {}): Instance[] {
    return this.#closed ? [] : this.#lookup(filter).instances;
  }

  #open(): void {
    if (this.#closed) throw new TaskGridError(ErrorCode.CLOSED, 'the nameservice is shutting down');
  }

  // ---- handlers --------------------------------------------------------------------------

  #install(): void {
    const t = this.#transport;
    t.handle('register', (body, ctx) => this.#guard('register', () => this.#register(body, ctx.peer)));
    t.handle('heartbeat', (body) => this.#guard('heartbeat', () => this.#heartbeat(body)));
    t.handle('deregister', (body) => this.#guard('deregister', () => this.#deregister(body)));
    t.handle('lookup', (body) => this.#guard('lookup', () => this.#lookup(body)));
    t.handle('list', () => this.#guard('list', () => ({ instances: this.#lookup({}).instances })));
    t.handle('subscribe', (body) => this.#guard('subscribe', () => this.#subscribe(body)));
    t.handle('ping', () =>
      this.#guard('ping', () => ({
        component: 'nameservice',
        version: this.#version,
        uptimeMs: Math.max(0, this.#clock.now() - this.#startedAt),
        pid: process.pid,
        id: this.epoch,
      })),
    );
  }

  #guard<T>(kind: RequestKind, fn: () => T): T {
    if (this.#closed) throw new TaskGridError(ErrorCode.CLOSED, 'the nameservice is shutting down');
    this.#requests[kind] = (this.#requests[kind] ?? 0) + 1;
    return fn();
  }

  #register(body: ParsedRequest<'register'>, peer: PeerAddress, ttlMs = this.#o.leaseTtlMs): ReplyBody<'register'> {
    checkAddress(body.address, 'instance address');
    const types = [...new Set(body.types)];
    if (body.role === 'worker' && types.length === 0) {
      throw new TaskGridError(ErrorCode.BAD_REQUEST, 'a worker must serve at least one task type');
    }
    const now = this.#clock.now();
    const id = body.id ?? `${body.role}-${randomUUID()}`;
    // A lapsed entry is removed (and announced as such) before its id registers anew.
    if ((this.#byId.get(id)?.expiresAt ?? Infinity) <= now) this.#sweep();
    const old = this.#byId.get(id);
    if (!old && this.#byId.size >= this.#o.maxInstances) {
      throw new BusyError(
        `the nameservice holds its maximum of ${this.#o.maxInstances} instances`,
        this.#o.leaseTtlMs,
      );
    }
    if (old) {
      this.#byLease.delete(old.leaseId);
      this.#stats.replaced++;
      if (addressKey(old.instance.address) !== addressKey(body.address)) {
        // Legitimate after a restart on a new port; two live instances sharing an id would
        // instead flap between addresses, and this line is how an operator finds out.
        this.#log.warn(
          {
            id,
            from: addressKey(old.instance.address),
            to: addressKey(body.address),
            peer: addressKey(peer),
          },
          'instance id re-registered at another address',
        );
      }
    }
    const entry: Entry = {
      instance: {
        id,
        role: body.role,
        types,
        address: { host: body.address.host, port: body.address.port },
        capacity: body.capacity,
        meta: { ...body.meta },
        registeredAt: now,
        lastSeen: now,
      },
      leaseId: randomUUID(),
      expiresAt: now + ttlMs,
    };
    this.#byId.set(id, entry);
    this.#byLease.set(entry.leaseId, entry);
    this.#stats.registered++;
    this.#log.info(
      { id, role: body.role, types, address: addressKey(body.address), replaced: old !== undefined },
      'instance registered',
    );
    this.#announce([copyOf(entry.instance)], []);
    return { leaseId: entry.leaseId, id, ttlMs, heartbeatMs: this.#o.heartbeatMs };
  }

  #heartbeat(body: ParsedRequest<'heartbeat'>): ReplyBody<'heartbeat'> {
    const entry = this.#liveLease(body.leaseId);
    const now = this.#clock.now();
    entry.expiresAt = now + this.#o.leaseTtlMs;
    entry.instance.lastSeen = now;
    // Load is read by lookups but not pushed: it changes with every task, membership does not.
    if (body.inFlight !== undefined) entry.instance.inFlight = body.inFlight;
    return { ttlMs: this.#o.leaseTtlMs };
  }

  #deregister(body: ParsedRequest<'deregister'>): ReplyBody<'deregister'> {
    this.#drop(this.#liveLease(body.leaseId));
    return {};
  }

  #drop(entry: Entry): void {
    this.#remove(entry);
    this.#stats.deregistered++;
    this.#log.info({ id: entry.instance.id }, 'instance deregistered');
    this.#announce([], [entry.instance.id]);
  }

  /** The entry of a lease that has not lapsed; a lapsed one is swept now, so that it is gone. */
  #liveLease(leaseId: string): Entry {
    const entry = this.#byLease.get(leaseId);
    if (entry && entry.expiresAt <= this.#clock.now()) this.#sweep();
    if (!entry || !this.#byLease.has(leaseId)) {
      throw new TaskGridError(
        ErrorCode.UNKNOWN_LEASE,
        `lease ${leaseId.slice(0, 64)} is not held here; register again`,
      );
    }
    return entry;
  }

  #lookup(filter: { type?: string | undefined; role?: Role | undefined }): ReplyBody<'lookup'> {
    this.#sweep();
    const instances: Instance[] = [];
    for (const { instance } of this.#byId.values()) {
      if (filter.role !== undefined && instance.role !== filter.role) continue;
      if (filter.type !== undefined && !instance.types.includes(filter.type)) continue;
      instances.push(copyOf(instance));
    }
    return { instances };
  }

  #subscribe(body: ParsedRequest<'subscribe'>): ReplyBody<'subscribe'> {
    checkAddress(body.address, 'subscriber address');
    this.#sweep();
    const key = addressKey(body.address);
    const ttlMs = body.ttlMs ?? this.#o.subscriptionTtlMs;
    let sub = this.#subs.get(key);
    if (!sub) {
      if (this.#subs.size >= this.#o.maxSubscribers) {
        throw new BusyError(
          `the nameservice holds its maximum of ${this.#o.maxSubscribers} subscribers`,
          ttlMs,
        );
      }
      sub = {
        key,
        address: { host: body.address.host, port: body.address.port },
        expiresAt: 0,
        seq: this.#seqHighWater,
        upserted: new Map(),
        removed: new Set(),
        sending: false,
      };
      this.#subs.set(key, sub);
      this.#log.info({ subscriber: key }, 'subscriber added');
    }
    sub.expiresAt = this.#clock.now() + ttlMs;
    // Pending changes stay queued: they hold each instance's latest state, so re-applying them
    // after this snapshot changes nothing, and they cover a snapshot whose reply is lost.
    return { instances: this.#lookup({}).instances, ttlMs, epoch: this.epoch, seq: sub.seq };
  }

  // ---- leases ----------------------------------------------------------------------------

  #remove(entry: Entry): void {
    this.#byId.delete(entry.instance.id);
    this.#byLease.delete(entry.leaseId);
  }

  #armSweep(): void {
    this.#sweepTimer.arm(this.#o.sweepMs, () => {
      if (this.#closed) return;
      this.#sweep();
      this.#armSweep();
    });
  }

  #sweep(): void {
    const now = this.#clock.now();
    const removed: string[] = [];
    for (const entry of this.#byId.values()) {
      if (entry.expiresAt > now) continue;
      this.#remove(entry);
      removed.push(entry.instance.id);
      this.#stats.expired++;
      this.#log.info({ id: entry.instance.id, lastSeen: entry.instance.lastSeen }, 'registration lapsed');
    }
    if (removed.length > 0) this.#announce([], removed);
    for (const sub of this.#subs.values()) {
      if (sub.expiresAt > now) continue;
      this.#subs.delete(sub.key);
      this.#stats.subscriptionsExpired++;
      this.#log.info({ subscriber: sub.key }, 'subscription lapsed');
    }
  }

  // ---- change notification ---------------------------------------------------------------

  #announce(upserted: Instance[], removed: string[]): void {
    if (this.#subs.size === 0) return;
    for (const sub of this.#subs.values()) {
      for (const instance of upserted) {
        sub.removed.delete(instance.id);
        sub.upserted.set(instance.id, instance);
      }
      for (const id of removed) {
        sub.upserted.delete(id);
        sub.removed.add(id);
      }
    }
    // Changes made in the same turn (a sweep, a datagram of several registers) share a request.
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      for (const sub of this.#subs.values()) this.#send(sub);
    });
  }

  #send(sub: Subscription): void {
    if (this.#closed || sub.sending || this.#subs.get(sub.key) !== sub) return;
    if (sub.upserted.size === 0 && sub.removed.size === 0) return;
    const budget = this.#o.maxChangesBytes;
    let bytes = 0;
    const upserted: Instance[] = [];
    for (const [id, instance] of sub.upserted) {
      const size = JSON.stringify(instance).length + 1;
      if (upserted.length > 0 && bytes + size > budget) break;
      upserted.push(instance);
      bytes += size;
      sub.upserted.delete(id);
    }
    const removed: string[] = [];
    for (const id of sub.removed) {
      const size = id.length + 3;
      if (upserted.length + removed.length > 0 && bytes + size > budget) break;
      removed.push(id);
      bytes += size;
      sub.removed.delete(id);
    }
    const seq = ++sub.seq;
    this.#seqHighWater = Math.max(this.#seqHighWater, seq);
    sub.sending = true;
    this.#stats.changesSent++;
    this.#transport
      .request(
        sub.address,
        'changes',
        { epoch: this.epoch, seq, upserted, removed },
        {
          timeoutMs: this.#o.changesTimeoutMs,
        },
      )
      .then(
        () => {
          sub.sending = false;
          this.#stats.changesAcknowledged++;
          this.#send(sub);
        },
        (err: unknown) => {
          sub.sending = false;
          if (this.#closed || codeOf(err) === ErrorCode.CLOSED || this.#subs.get(sub.key) !== sub) return;
          // Silence and refusals alike: keeping a subscriber that does not take its changes
          // would stall its queue forever. It re-syncs with a full snapshot when it renews.
          this.#subs.delete(sub.key);
          this.#stats.subscribersDropped++;
          this.#log.warn(
            {
              subscriber: sub.key,
              seq,
              code: codeOf(err),
              err: err instanceof Error ? err.message : String(err),
            },
            'subscriber dropped: changes not acknowledged',
          );
        },
      );
  }
}

function copyOf(i: Instance): Instance {
  const copy: Instance = {
    id: i.id,
    role: i.role,
    types: [...i.types],
    address: { host: i.address.host, port: i.address.port },
    capacity: i.capacity,
    meta: { ...i.meta },
    registeredAt: i.registeredAt,
    lastSeen: i.lastSeen,
  };
  if (i.inFlight !== undefined) copy.inFlight = i.inFlight;
  return copy;
}

/** TaskGrid's version from the nearest package.json named "taskgrid" above this module. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === 'taskgrid' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // no package.json here, or not readable: keep looking above
    }
    const parent = dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}
