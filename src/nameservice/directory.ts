/**
 * Directory: the subscriber side of the nameservice. A dispatcher or monitoring service keeps a
 * live, merged view of every instance without asking per decision: it subscribes to every
 * nameservice, takes each subscription's snapshot as the truth for that nameservice, and then
 * applies the `changes` requests it is sent, in `seq` order.
 *
 * - An instance listed by any nameservice is live; it leaves the view when none lists it.
 * - Subscriptions are renewed every `renewMs`; every renewal returns a full snapshot, which is
 *   taken as that nameservice's truth. A new `epoch` in it means the nameservice restarted.
 * - A gap in `seq` (a change this side never saw) makes the Directory subscribe again at once.
 * - After a restart a nameservice knows nobody until instances re-register (within one
 *   heartbeat). Instances its predecessor listed stay for `restartGraceMs` unless it lists
 *   them again sooner, so that a restart does not look like every worker leaving at once.
 * - A nameservice that cannot be reached for longer than the subscription TTL no longer counts
 *   while another one is reachable. When none is, the last views are kept: a registry outage
 *   must not empty the dispatcher's view of workers that are very likely still there.
 * - The Directory owns the transport's `changes` handler. After close() it refuses `changes`
 *   (TG_ERR_NOT_FOUND), so that nameservices drop the subscription at once.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ConfigError, ErrorCode, TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Instance, ParsedRequest, ReplyBody, RequestBody, Role } from '../protocol/messages.ts';
import { systemClock, type Clock, type PeerAddress, type Transport } from '../transport/types.ts';
import { addressKey, backoffMs, checkAddress, codeOf, isRefusal, OneShot } from './common.ts';

/** Defaults of a Directory's options, in one place. */
export const DIRECTORY_DEFAULTS = {
  /** Subscription lease asked of each nameservice (the protocol accepts 1 s to 10 min). */
  ttlMs: 15_000,
  /** Deadline of one subscribe request. */
  requestTimeoutMs: 3_000,
  /** start() rejects (TG_ERR_UNREACHABLE) when no nameservice answered within this. */
  startTimeoutMs: 10_000,
  /** First delay before subscribing again after a failure; doubles up to `maxRetryMs`. */
  retryMs: 200,
  maxRetryMs: 5_000,
  /** Most `changes` requests held while a subscribe reply is awaited. */
  maxBufferedChanges: 1_000,
  /**
   * After a nameservice restart, instances it no longer lists stay this long, for them to
   * re-register (a Registration does so within one heartbeat): a restart is not a mass exit.
   * The nameservice's default lease TTL.
   */
  restartGraceMs: 5_000,
} as const;

/** Settings of a {@link Directory}; every number has a default in {@link DIRECTORY_DEFAULTS}. */
export interface DirectoryOptions {
  /** The transport to subscribe on; the Directory installs its `changes` handler. */
  transport: Transport;
  /** Every nameservice to subscribe to (at least one). */
  nameservers: readonly PeerAddress[];
  /** The address nameservices send `changes` to: this transport as they can reach it. */
  self: PeerAddress;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  ttlMs?: number;
  /** How often subscriptions are renewed; default a third of `ttlMs`. */
  renewMs?: number;
  requestTimeoutMs?: number;
  startTimeoutMs?: number;
  retryMs?: number;
  maxRetryMs?: number;
  maxBufferedChanges?: number;
  restartGraceMs?: number;
}

/** Which instances to return; both conditions must hold when both are given. */
export interface InstanceFilter {
  type?: string | undefined;
  role?: Role | undefined;
}

/** What changed in the merged view: instances that joined or changed state, and those that left. */
export interface DirectoryChange {
  upserted: Instance[];
  removed: Instance[];
}

/** The subscription to one nameservice. */
export interface DirectorySourceStatus {
  nameserver: PeerAddress;
  /** The nameservice incarnation last synced with, if any. */
  epoch: string | undefined;
  /** True while the subscription is believed live (renewed within its TTL). */
  synced: boolean;
  /** Instances this nameservice lists, as last heard. */
  instances: number;
  lastOkAt: number | undefined;
  lastError: string | undefined;
}

interface Held {
  instance: Instance;
  /** The instance's state without timestamps: what makes a change worth telling. */
  state: string;
  /** Arrival order, so that the merged view shows the freshest copy. */
  stamp: number;
  /** Kept from before a nameservice restart until then, unless re-registered sooner. */
  carriedUntil?: number;
}

interface Source {
  address: PeerAddress;
  key: string;
  epoch: string | undefined;
  /** Last seq applied (or covered by the snapshot). */
  seq: number;
  view: Map<string, Held>;
  subscribing: boolean;
  timer: OneShot;
  /** Ends the restart grace of carried entries. */
  graceTimer: OneShot;
  failures: number;
  lastOkAt: number | undefined;
  lastError: string | undefined;
}

type ChangesBody = ParsedRequest<'changes'>;

type Timing = Required<
  Pick<
    DirectoryOptions,
    | 'ttlMs'
    | 'renewMs'
    | 'requestTimeoutMs'
    | 'startTimeoutMs'
    | 'retryMs'
    | 'maxRetryMs'
    | 'maxBufferedChanges'
    | 'restartGraceMs'
  >
>;

/**
 * A live, merged view of the registered instances, pushed by the nameservices.
 *
 * @example
 * const dir = new Directory({ transport, nameservers, self: { host: '10.0.0.2', port: 4000 } });
 * dir.onChange(({ upserted, removed }) => log.info({ upserted: upserted.length, removed: removed.length }, 'workers changed'));
 * await dir.start();
 * const workers = dir.instances({ type: 'reverse', role: 'worker' }); // no network
 */
export class Directory {
  readonly #transport: Transport;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #self: PeerAddress;
  readonly #o: Timing;
  readonly #sources: Source[] = [];
  /** The merged view, and the same instances indexed by type. */
  readonly #merged = new Map<string, Held>();
  readonly #byType = new Map<string, Map<string, Instance>>();
  readonly #listeners = new Set<(change: DirectoryChange) => void>();
  /** `changes` that arrived while a subscribe reply was awaited, by epoch. */
  readonly #buffered = new Map<string, ChangesBody[]>();
  #bufferedCount = 0;
  #stamp = 0;
  #started = false;
  #closed = false;
  #startWaiter: { resolve: () => void; reject: (err: unknown) => void; timer: OneShot } | undefined;

  constructor(options: DirectoryOptions) {
    if (options.nameservers.length === 0) throw new ConfigError('a directory needs at least one nameservice');
    checkAddress(options.self, 'directory address');
    this.#transport = options.transport;
    this.#log = options.logger ?? silentLogger();
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#self = { host: options.self.host, port: options.self.port };
    const d = DIRECTORY_DEFAULTS;
    const ttlMs = options.ttlMs ?? d.ttlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < 1_000 || ttlMs > 600_000) {
      throw new ConfigError(`directory ttlMs must be an integer from 1000 to 600000, got ${ttlMs}`);
    }
    this.#o = {
      ttlMs,
      renewMs: options.renewMs ?? Math.floor(ttlMs / 3),
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
      startTimeoutMs: options.startTimeoutMs ?? d.startTimeoutMs,
      retryMs: options.retryMs ?? d.retryMs,
      maxRetryMs: options.maxRetryMs ?? d.maxRetryMs,
      maxBufferedChanges: options.maxBufferedChanges ?? d.maxBufferedChanges,
      restartGraceMs: options.restartGraceMs ?? d.restartGraceMs,
    };
    if (this.#o.renewMs >= ttlMs) {
      throw new ConfigError(`directory renewMs (${this.#o.renewMs}) must be shorter than ttlMs (${ttlMs})`);
    }
    const seen = new Set<string>();
    for (const address of options.nameservers) {
      const key = addressKey(address);
      if (seen.has(key)) continue;
      seen.add(key);
      this.#sources.push({
        address: { host: address.host, port: address.port },
        key,
        epoch: undefined,
        seq: 0,
        view: new Map(),
        subscribing: false,
        timer: new OneShot(this.#clock),
        graceTimer: new OneShot(this.#clock),
        failures: 0,
        lastOkAt: undefined,
        lastError: undefined,
      });
    }
  }

  /**
   * Installs the `changes` handler and subscribes to every nameservice. Resolves once one
   * snapshot arrived; rejects with TG_ERR_UNREACHABLE when none did within `startTimeoutMs`.
   * Either way the Directory keeps subscribing in the background until close().
   */
  start(): Promise<void> {
    if (this.#started || this.#closed) {
      return Promise.reject(new TaskGridError(ErrorCode.BAD_REQUEST, 'directory already started or closed'));
    }
    this.#started = true;
    this.#transport.handle('changes', (body) => this.#onChanges(body));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = new OneShot(this.#clock);
      this.#startWaiter = { resolve, reject, timer };
      timer.arm(this.#o.startTimeoutMs, () => {
        this.#startWaiter = undefined;
        const detail = this.#sources.map((s) => `${s.key}: ${s.lastError ?? 'no answer'}`).join(', ');
        reject(
          new TaskGridError(
            ErrorCode.UNREACHABLE,
            `no nameservice answered a subscription within ${this.#o.startTimeoutMs} ms (${detail}); still trying`,
          ),
        );
      });
    });
    for (const s of this.#sources) this.#subscribe(s);
    return ready;
  }

  /** Live instances from the cache, no network: filter by type and/or role. */
  instances(filter: InstanceFilter = {}): Instance[] {
    const pool =
      filter.type !== undefined
        ? (this.#byType.get(filter.type)?.values() ?? [].values())
        : [...this.#merged.values()].map((h) => h.instance).values();
    const out: Instance[] = [];
    for (const instance of pool) {
      if (filter.role === undefined || instance.role === filter.role) out.push(instance);
    }
    return out;
  }

  /** The instance with this id, if live. */
  get(id: string): Instance | undefined {
    return this.#merged.get(id)?.instance;
  }

  /**
   * Calls `listener` after each change of the merged view (never for heartbeats). Returns a
   * function that removes it. Instances passed are frozen: do not mutate them.
   */
  onChange(listener: (change: DirectoryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The subscription to each nameservice, for health checks. */
  status(): DirectorySourceStatus[] {
    return this.#sources.map((s) => ({
      nameserver: { ...s.address },
      epoch: s.epoch,
      synced: this.#isSynced(s),
      instances: s.view.size,
      lastOkAt: s.lastOkAt,
      lastError: s.lastError,
    }));
  }

  /** Stops renewing; subscriptions lapse at the nameservices (or end at their next `changes`). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sources) {
      s.timer.cancel();
      s.graceTimer.cancel();
    }
    if (this.#startWaiter) {
      this.#startWaiter.timer.cancel();
      this.#startWaiter.reject(new TaskGridError(ErrorCode.CLOSED, 'directory closed'));
      this.#startWaiter = undefined;
    }
    this.#listeners.clear();
    this.#buffered.clear();
  }

  // ---- subscriptions ---------------------------------------------------------------------

  #subscribe(s: Source): void {
    if (this.#closed || s.subscribing) return;
    s.timer.cancel();
    s.subscribing = true;
    const body: RequestBody<'subscribe'> = { address: { ...this.#self }, ttlMs: this.#o.ttlMs };
    this.#transport.request(s.address, 'subscribe', body, { timeoutMs: this.#o.requestTimeoutMs }).then(
      (reply) => {
        s.subscribing = false;
        if (this.#closed) return;
        s.failures = 0;
        s.lastOkAt = this.#clock.now();
        s.lastError = undefined;
        const resync = this.#takeSnapshot(s, reply);
        this.#afterSubscribe();
        if (this.#startWaiter) {
          this.#startWaiter.timer.cancel();
          this.#startWaiter.resolve();
          this.#startWaiter = undefined;
        }
        if (resync) this.#subscribe(s);
        else s.timer.arm(this.#o.renewMs, () => this.#subscribe(s));
      },
      (err: unknown) => {
        s.subscribing = false;
        if (this.#closed) return;
        s.lastError = codeOf(err) ?? ErrorCode.INTERNAL;
        if (isRefusal(err)) {
          this.#log.error({ nameserver: s.key, err: (err as Error).message }, 'subscription refused');
        } else {
          this.#log.debug({ nameserver: s.key, code: s.lastError }, 'subscribe failed; will retry');
        }
        this.#afterSubscribe();
        // Retry sooner than the renewal interval, but no sooner than the backoff says.
        const delay = Math.min(
          this.#o.renewMs,
          backoffMs(s.failures++, this.#o.retryMs, this.#o.maxRetryMs, this.#random),
        );
        s.timer.arm(isRefusal(err) ? this.#o.maxRetryMs : delay, () => this.#subscribe(s));
      },
    );
  }

  #afterSubscribe(): void {
    if (!this.#sources.some((s) => s.subscribing)) {
      // Nothing awaited: whatever is buffered is covered by the snapshots already taken.
      this.#buffered.clear();
      this.#bufferedCount = 0;
    }
    this.#dropLapsed();
  }

  #isSynced(s: Source): boolean {
    return (
      s.epoch !== undefined && s.lastOkAt !== undefined && this.#clock.now() - s.lastOkAt <= this.#o.ttlMs
    );
  }

  /** Forgets the views of lapsed subscriptions, but only while another nameservice is synced. */
  #dropLapsed(): void {
    if (!this.#sources.some((s) => this.#isSynced(s))) return;
    for (const s of this.#sources) {
      if (this.#isSynced(s) || (s.epoch === undefined && s.view.size === 0)) continue;
      this.#log.warn(
        { nameserver: s.key, instances: s.view.size },
        'nameservice unreachable; its view no longer counts',
      );
      const ids = [...s.view.keys()];
      s.view.clear();
      s.epoch = undefined;
      this.#publish(ids);
    }
  }

  /** Returns true when the buffered changes show a gap, so that a fresh snapshot is needed. */
  #takeSnapshot(s: Source, reply: ReplyBody<'subscribe'>): boolean {
    const now = this.#clock.now();
    const restarted = s.epoch !== undefined && s.epoch !== reply.epoch;
    if (restarted) {
      this.#log.info(
        { nameserver: s.key, epoch: reply.epoch },
        'nameservice restarted; re-synced from its snapshot',
      );
    }
    s.epoch = reply.epoch;
    s.seq = reply.seq;
    const touched = new Set<string>(s.view.keys());
    const next = new Map<string, Held>();
    for (const instance of reply.instances) {
      next.set(instance.id, this.#hold(instance, s.view.get(instance.id)));
      touched.add(instance.id);
    }
    let carried = false;
    for (const [id, held] of s.view) {
      if (next.has(id)) continue;
      const until = restarted ? now + this.#o.restartGraceMs : held.carriedUntil;
      if (until === undefined || until <= now) continue;
      next.set(id, { ...held, carriedUntil: until });
      carried = true;
    }
    s.view = next;
    if (carried) this.#armGrace(s);
    let gap = false;
    const pending = this.#buffered.get(reply.epoch);
    if (pending) {
      this.#buffered.delete(reply.epoch);
      this.#bufferedCount -= pending.length;
      pending.sort((a, b) => a.seq - b.seq);
      for (const c of pending) {
        if (c.seq <= s.seq) continue;
        if (c.seq !== s.seq + 1) {
          gap = true;
          break;
        }
        for (const id of this.#apply(s, c)) touched.add(id);
      }
    }
    this.#publish(touched);
    return gap;
  }

  #armGrace(s: Source): void {
    let first = Infinity;
    for (const held of s.view.values()) {
      if (held.carriedUntil !== undefined) first = Math.min(first, held.carriedUntil);
    }
    if (first === Infinity) {
      s.graceTimer.cancel();
      return;
    }
    s.graceTimer.arm(first - this.#clock.now(), () => {
      const now = this.#clock.now();
      const expired: string[] = [];
      for (const [id, held] of s.view) {
        if (held.carriedUntil !== undefined && held.carriedUntil <= now) {
          s.view.delete(id);
          expired.push(id);
        }
      }
      this.#publish(expired);
      this.#armGrace(s);
    });
  }

  // ---- changes ---------------------------------------------------------------------------

  #onChanges(body: ChangesBody): ReplyBody<'changes'> {
    if (this.#closed) throw new TaskGridError(ErrorCode.NOT_FOUND, 'this directory is closed');
    const s = this.#sources.find((src) => src.epoch === body.epoch);
    if (!s || s.subscribing) {
      // Possibly sent right after a snapshot whose reply is still on its way: hold it.
      if (this.#sources.some((src) => src.subscribing)) {
        this.#buffer(body);
        return {};
      }
      throw new TaskGridError(
        ErrorCode.NOT_FOUND,
        `no subscription with nameservice incarnation ${body.epoch}`,
      );
    }
    if (body.seq <= s.seq) return {};
    if (body.seq !== s.seq + 1) {
      this.#log.warn(
        { nameserver: s.key, expected: s.seq + 1, got: body.seq },
        'gap in changes; re-subscribing',
      );
      this.#subscribe(s);
      return {};
    }
    this.#publish(this.#apply(s, body));
    return {};
  }

  #buffer(body: ChangesBody): void {
    if (this.#bufferedCount >= this.#o.maxBufferedChanges) return; // a gap later forces a re-sync
    let list = this.#buffered.get(body.epoch);
    if (!list) {
      list = [];
      this.#buffered.set(body.epoch, list);
    }
    if (list.some((c) => c.seq === body.seq)) return;
    list.push(body);
    this.#bufferedCount++;
  }

  /** Applies one `changes` request to a source's view; returns the ids it touched. */
  #apply(s: Source, c: ChangesBody): string[] {
    s.seq = c.seq;
    const touched: string[] = [];
    for (const id of c.removed) {
      if (s.view.delete(id)) touched.push(id);
    }
    for (const instance of c.upserted) {
      s.view.set(instance.id, this.#hold(instance, s.view.get(instance.id)));
      touched.push(instance.id);
    }
    return touched;
  }

  #hold(instance: Instance, previous: Held | undefined): Held {
    const state = stateOf(instance);
    const frozen = freeze(instance);
    // Same state again (a renewal's snapshot, a second nameservice): keep its place in line.
    if (previous && previous.state === state) return { instance: frozen, state, stamp: previous.stamp };
    return { instance: frozen, state, stamp: ++this.#stamp };
  }

  // ---- the merged view -------------------------------------------------------------------

  /** Recomputes the merged entries of `ids` and tells listeners what changed. */
  #publish(ids: Iterable<string>): void {
    const upserted: Instance[] = [];
    const removed: Instance[] = [];
    for (const id of new Set(ids)) {
      const before = this.#merged.get(id);
      let after: Held | undefined;
      for (const s of this.#sources) {
        const h = s.view.get(id);
        if (h && (!after || h.stamp > after.stamp)) after = h;
      }
      if (after === before) continue;
      if (before) this.#unindex(before.instance);
      if (after) {
        this.#merged.set(id, after);
        this.#index(after.instance);
        if (!before || before.state !== after.state) upserted.push(after.instance);
      } else {
        this.#merged.delete(id);
        if (before) removed.push(before.instance);
      }
    }
    if (upserted.length === 0 && removed.length === 0) return;
    for (const listener of this.#listeners) {
      try {
        listener({ upserted, removed });
      } catch (err) {
        this.#log.error(
          { err: err instanceof Error ? err.message : String(err) },
          'directory listener threw',
        );
      }
    }
  }

  #index(i: Instance): void {
    for (const type of i.types) {
      let m = this.#byType.get(type);
      if (!m) {
        m = new Map();
        this.#byType.set(type, m);
      }
      m.set(i.id, i);
    }
  }

  #unindex(i: Instance): void {
    for (const type of i.types) {
      const m = this.#byType.get(type);
      if (!m) continue;
      m.delete(i.id);
      if (m.size === 0) this.#byType.delete(type);
    }
  }
}

function stateOf(i: Instance): string {
  const meta = Object.entries(i.meta).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([i.role, i.types, i.address.host, i.address.port, i.capacity, meta]);
}

function freeze(i: Instance): Instance {
  Object.freeze(i.address);
  Object.freeze(i.types);
  Object.freeze(i.meta);
  return Object.freeze(i);
}

/**
 * Why a host name cannot be reached at all (it does not resolve), or undefined (an IP address,
 * or a name that resolves). Asked only after a lookup got no answer: datagrams to a name that
 * does not resolve are dropped without a word, and the caller only sees a timeout.
 */
async function unresolvable(host: string): Promise<string | undefined> {
  if (isIP(host) !== 0) return undefined;
  // A resolver that does not answer soon adds nothing worth waiting for: no hint then.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), UNRESOLVABLE_CHECK_MS);
  });
  try {
    return await Promise.race([
      dnsLookup(host).then(
        () => undefined,
        (err: unknown) =>
          `the host name "${host}" does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Longest wait for the resolver when a lookup got no answer (see {@link unresolvable}). */
const UNRESOLVABLE_CHECK_MS = 500;

/**
 * Asks the nameservices in turn for live instances, and returns the first non-empty answer (an
 * empty one only when every nameservice that answered had none: a freshly restarted
 * nameservice may not know everyone yet). `timeoutMs` bounds the whole call; it is shared out
 * among the nameservices still to ask. Rejects with TG_ERR_UNREACHABLE when none answered, or
 * with a nameservice's refusal (TG_ERR_BAD_MESSAGE) of a malformed filter.
 *
 * @example
 * const [dispatcher] = await lookupOnce(transport, config.nameservices, { role: 'dispatcher' }, 3_000);
 */
export async function lookupOnce(
  transport: Transport,
  nameservers: readonly PeerAddress[],
  filter: InstanceFilter = {},
  timeoutMs = 3_000,
): Promise<Instance[]> {
  const body: RequestBody<'lookup'> = {};
  if (filter.type !== undefined) body.type = filter.type;
  if (filter.role !== undefined) body.role = filter.role;
  const deadline = Date.now() + timeoutMs;
  let answered = false;
  const failures: string[] = [];
  let lastError: unknown;
  for (let i = 0; i < nameservers.length; i++) {
    const ns = nameservers[i]!;
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const share = Math.max(1, Math.floor(remaining / (nameservers.length - i)));
    try {
      const { instances } = await transport.request(ns, 'lookup', body, { timeoutMs: share });
      answered = true;
      if (instances.length > 0) return instances;
    } catch (err) {
      if (isRefusal(err)) throw err;
      lastError = err;
      failures.push(`${addressKey(ns)}: ${(await unresolvable(ns.host)) ?? codeOf(err) ?? 'error'}`);
    }
  }
  if (answered) return [];
  throw new TaskGridError(
    ErrorCode.UNREACHABLE,
    `no nameservice answered a lookup within ${timeoutMs} ms (${failures.join(', ') || 'none asked'}); ` +
      'is one running there, with the same TASKGRID_SECRET as here (a datagram signed otherwise is dropped unanswered)?',
    { cause: lastError },
  );
}
