/**
 * Registration: keeps one service instance registered with every configured nameservice, as
 * soft state (no consensus: each nameservice is told independently). Workers, dispatchers and
 * monitoring each hold one.
 *
 * Per nameservice it runs one loop with at most one request outstanding: register until
 * accepted, then heartbeat at the interval that nameservice asked for. A heartbeat answered
 * TG_ERR_UNKNOWN_LEASE means the nameservice restarted (or let the lease lapse): the loop
 * re-registers at once with the same instance id, so the instance is back within one
 * heartbeat interval. A change of capacity or types re-registers too (subscribers hear of it);
 * a change of `inFlight` rides on the next heartbeat.
 */
import { randomUUID } from 'node:crypto';
import { BusyError, ConfigError, ErrorCode, TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { requests, type RequestBody, type Role } from '../protocol/messages.ts';
import { systemClock, type Clock, type PeerAddress, type Transport } from '../transport/types.ts';
import { addressKey, backoffMs, checkAddress, codeOf, isRefusal, OneShot, within } from './common.ts';

/** Defaults of a Registration's options, in one place. */
export const REGISTRATION_DEFAULTS = {
  /** Deadline of one register request. */
  requestTimeoutMs: 3_000,
  /** start() gives up (TG_ERR_UNREACHABLE) when no nameservice accepted within this. */
  startTimeoutMs: 10_000,
  /** First delay before registering again after a failure; doubles up to `maxRetryMs`. */
  retryMs: 200,
  maxRetryMs: 5_000,
  /** stop() waits at most this long for its deregister requests. */
  stopTimeoutMs: 2_000,
  /** Heartbeats come early by up to this fraction of the interval, so that instances spread out. */
  jitter: 0.1,
} as const;

/** The instance a Registration keeps registered. */
export interface InstanceSpec {
  /** Stable instance id, the same at every nameservice; generated once when absent. */
  id?: string;
  role: Role;
  types: readonly string[];
  /** Where other components reach this instance (not a wildcard bind address). */
  address: PeerAddress;
  capacity: number;
  meta?: Readonly<Record<string, string>>;
}

/** Settings of a {@link Registration}; every number has a default in {@link REGISTRATION_DEFAULTS}. */
export interface RegistrationOptions {
  transport: Transport;
  /** Every nameservice to register with (at least one). */
  nameservers: readonly PeerAddress[];
  instance: InstanceSpec;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  /**
   * Heartbeat interval; default: the interval each nameservice asks for. Either way it is kept
   * below half of that nameservice's lease TTL.
   */
  heartbeatMs?: number;
  /**
   * Tasks running now, read at every heartbeat (a worker's count); what `update({ inFlight })`
   * sets is sent when this is absent.
   */
  inFlight?: () => number;
  /** When start() gives up, keep registering in the background instead of stopping. Default false. */
  keepTrying?: boolean;
  requestTimeoutMs?: number;
  startTimeoutMs?: number;
  retryMs?: number;
  maxRetryMs?: number;
  stopTimeoutMs?: number;
}

/** The state of the registration at one nameservice. */
export interface RegistrationStatus {
  nameserver: PeerAddress;
  /** True while this nameservice holds a lease for the instance (as last heard). */
  registered: boolean;
  /** When it last accepted a register or heartbeat (clock ms), if ever. */
  lastOkAt: number | undefined;
  /** The code of the last failure, if the last request failed. */
  lastError: string | undefined;
}

/** What may change about a registered instance. */
export interface RegistrationUpdate {
  capacity?: number;
  /** Tasks running now: sent with the next heartbeat, not pushed to subscribers. */
  inFlight?: number;
  types?: readonly string[];
}

interface Server {
  address: PeerAddress;
  key: string;
  leaseId: string | undefined;
  /** The instance version this nameservice holds. */
  version: number;
  intervalMs: number;
  busy: boolean;
  /** The request outstanding, so that stop() can wait for it. */
  inflight: Promise<void> | undefined;
  timer: OneShot;
  failures: number;
  lastOkAt: number | undefined;
  lastError: string | undefined;
  /** When the latest heartbeat went out; the next one is due an interval later. */
  beatAt: number;
}

interface Waiter {
  version: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: OneShot;
}

type Timing = Required<
  Pick<
    RegistrationOptions,
    'requestTimeoutMs' | 'startTimeoutMs' | 'retryMs' | 'maxRetryMs' | 'stopTimeoutMs'
  >
>;

/**
 * Keeps an instance registered with every nameservice until stop().
 *
 * @example
 * const reg = new Registration({
 *   transport, nameservers: config.nameservices,
 *   instance: { role: 'worker', types: ['reverse'], address: { host: '10.0.0.7', port: transport.address.port }, capacity: 4 },
 * });
 * await reg.start(); // at least one nameservice accepted
 * reg.update({ inFlight: 3 });
 * await reg.stop();  // deregistered (best effort)
 */
export class Registration {
  /** The instance id, the same at every nameservice. */
  readonly id: string;
  readonly #transport: Transport;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #servers: Server[];
  readonly #o: Timing;
  readonly #heartbeatMs: number | undefined;
  readonly #keepTrying: boolean;
  #role: Role;
  #types: string[];
  readonly #address: PeerAddress;
  #capacity: number;
  readonly #meta: Record<string, string>;
  #inFlight: number | undefined;
  readonly #readInFlight: (() => number) | undefined;
  /** Bumped by every change that must be registered anew. */
  #version = 1;
  #waiters: Waiter[] = [];
  #state: 'new' | 'running' | 'stopped' = 'new';

  constructor(options: RegistrationOptions) {
    if (options.nameservers.length === 0) {
      throw new ConfigError('a registration needs at least one nameservice');
    }
    const spec = options.instance;
    // Problems the nameservice would refuse are reported here, before any request goes out.
    checkAddress(spec.address, 'instance address');
    this.#transport = options.transport;
    this.#log = options.logger ?? silentLogger();
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#heartbeatMs = options.heartbeatMs;
    this.#keepTrying = options.keepTrying ?? false;
    this.#readInFlight = options.inFlight;
    const d = REGISTRATION_DEFAULTS;
    this.#o = {
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
      startTimeoutMs: options.startTimeoutMs ?? d.startTimeoutMs,
      retryMs: options.retryMs ?? d.retryMs,
      maxRetryMs: options.maxRetryMs ?? d.maxRetryMs,
      stopTimeoutMs: options.stopTimeoutMs ?? d.stopTimeoutMs,
    };
    this.id = spec.id ?? `${spec.role}-${randomUUID()}`;
    this.#role = spec.role;
    this.#types = [...new Set(spec.types)];
    this.#address = { host: spec.address.host, port: spec.address.port };
    this.#capacity = spec.capacity;
    this.#meta = { ...spec.meta };
    const problem = this.#problem();
    if (problem) throw problem;
    const seen = new Set<string>();
    this.#servers = [];
    for (const address of options.nameservers) {
      const key = addressKey(address);
      if (seen.has(key)) continue;
      seen.add(key);
      this.#servers.push({
        address: { host: address.host, port: address.port },
        key,
        leaseId: undefined,
        version: 0,
        intervalMs: 1_000,
        busy: false,
        inflight: undefined,
        timer: new OneShot(this.#clock),
        failures: 0,
        lastOkAt: undefined,
        lastError: undefined,
        beatAt: 0,
      });
    }
  }

  /**
   * Registers with every nameservice; resolves once one accepted, and keeps trying the others
   * in the background. Rejects with TG_ERR_UNREACHABLE when none accepted within
   * `startTimeoutMs` (and then stops, unless `keepTrying`), or at once with the nameservice's
   * refusal (TG_ERR_BAD_REQUEST) when the instance itself is not acceptable.
   */
  start(): Promise<void> {
    if (this.#state !== 'new') {
      return Promise.reject(new TaskGridError(ErrorCode.BAD_REQUEST, 'registration already started'));
    }
    this.#state = 'running';
    const accepted = this.#waitFor(this.#version, this.#o.startTimeoutMs);
    for (const s of this.#servers) this.#step(s);
    return accepted.catch((err: unknown) => {
      if (!this.#keepTrying || isRefusal(err)) this.#halt();
      throw err;
    });
  }

  /**
   * Changes what the nameservices know about the instance. `inFlight` alone rides on the next
   * heartbeat and resolves at once; capacity or types re-register everywhere (so subscribers
   * hear of it), and the promise resolves once one nameservice accepted the new state.
   *
   * Rejects with TG_ERR_BAD_REQUEST (invalid values, nothing changed), TG_ERR_UNREACHABLE (no
   * nameservice accepted within `startTimeoutMs`; retries go on) or TG_ERR_CLOSED (stopped).
   * Callers that do not wait may ignore the promise: its rejection is never unhandled.
   */
  update(patch: RegistrationUpdate): Promise<void> {
    const result = this.#update(patch);
    result.catch((err: unknown) => this.#log.debug({ code: codeOf(err) }, 'update not confirmed'));
    return result;
  }

  #update(patch: RegistrationUpdate): Promise<void> {
    if (this.#state === 'stopped') {
      return Promise.reject(new TaskGridError(ErrorCode.CLOSED, 'registration stopped'));
    }
    if (patch.inFlight !== undefined) {
      if (!Number.isInteger(patch.inFlight) || patch.inFlight < 0) {
        return Promise.reject(
          new TaskGridError(ErrorCode.BAD_REQUEST, 'inFlight must be a non-negative integer'),
        );
      }
      this.#inFlight = patch.inFlight;
    }
    const types = patch.types ? [...new Set(patch.types)] : this.#types;
    const capacity = patch.capacity ?? this.#capacity;
    const changed = capacity !== this.#capacity || types.join('\n') !== this.#types.join('\n');
    if (!changed) return Promise.resolve();
    const before = { types: this.#types, capacity: this.#capacity };
    this.#types = types;
    this.#capacity = capacity;
    const problem = this.#problem();
    if (problem) {
      this.#types = before.types;
      this.#capacity = before.capacity;
      return Promise.reject(problem);
    }
    this.#version++;
    if (this.#state === 'new') return Promise.resolve();
    const done = this.#waitFor(this.#version, this.#o.startTimeoutMs);
    for (const s of this.#servers) this.#step(s);
    return done;
  }

  /** Where the instance is registered, per nameservice. */
  status(): RegistrationStatus[] {
    return this.#servers.map((s) => ({
      nameserver: { ...s.address },
      registered: s.leaseId !== undefined,
      lastOkAt: s.lastOkAt,
      lastError: s.lastError,
    }));
  }

  /**
   * Deregisters everywhere (best effort, at most `stopTimeoutMs`) and stops the timers. The
   * transport stays open: its owner closes it afterwards.
   */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    const wasRunning = this.#state === 'running';
    this.#halt();
    if (!wasRunning) return;
    const deregisterAll = Promise.all(
      this.#servers.map(async (s) => {
        // A register still in flight may yet grant a lease; wait for it so that it ends too.
        if (s.inflight) await s.inflight.catch(() => {});
        const leaseId = s.leaseId;
        s.leaseId = undefined;
        if (!leaseId) return;
        try {
          await this.#transport.request(
            s.address,
            'deregister',
            { leaseId },
            { timeoutMs: this.#o.stopTimeoutMs },
          );
        } catch (err) {
          if (codeOf(err) !== ErrorCode.UNKNOWN_LEASE) {
            this.#log.warn(
              { nameserver: s.key, code: codeOf(err) },
              'deregister failed; the lease will lapse',
            );
          }
        }
      }),
    ).then(() => true);
    const done = await within(this.#clock, this.#o.stopTimeoutMs, deregisterAll, false);
    if (!done) this.#log.warn({ id: this.id }, 'deregister did not finish in time; leases will lapse');
  }

  // ---- the loop per nameservice ----------------------------------------------------------

  #step(s: Server): void {
    if (this.#state !== 'running' || s.busy) return;
    s.timer.cancel();
    if (s.leaseId === undefined || s.version !== this.#version) this.#register(s);
    else this.#beat(s);
  }

  #run(s: Server, work: () => Promise<void>): void {
    s.busy = true;
    s.inflight = work().finally(() => {
      s.busy = false;
      s.inflight = undefined;
      // Something may have changed while the request was out: a lost lease (nothing armed),
      // or an update() that the just-answered request did not carry yet.
      const stale = s.leaseId !== undefined && s.version !== this.#version && s.lastError === undefined;
      if (!s.timer.armed || stale) this.#step(s);
    });
  }

  #register(s: Server): void {
    const version = this.#version;
    const body: RequestBody<'register'> = {
      id: this.id,
      role: this.#role,
      types: [...this.#types],
      address: { ...this.#address },
      capacity: this.#capacity,
      meta: { ...this.#meta },
    };
    this.#run(s, async () => {
      try {
        const reply = await this.#transport.request(s.address, 'register', body, {
          timeoutMs: this.#o.requestTimeoutMs,
        });
        if (this.#state !== 'running') {
          // stop() came while this was out: it deregisters whatever lease is left here.
          s.leaseId = reply.leaseId;
          return;
        }
        const fresh = s.lastOkAt === undefined || s.leaseId === undefined;
        s.leaseId = reply.leaseId;
        s.version = version;
        s.intervalMs = Math.max(
          1,
          Math.min(this.#heartbeatMs ?? reply.heartbeatMs, Math.floor(reply.ttlMs / 2)),
        );
        s.failures = 0;
        s.lastOkAt = this.#clock.now();
        s.lastError = undefined;
        s.beatAt = this.#clock.now();
        if (fresh) this.#log.info({ nameserver: s.key, id: this.id }, 'registered');
        else this.#log.debug({ nameserver: s.key, id: this.id }, 're-registered with new state');
        this.#settleWaiters(version);
        if (version === this.#version) s.timer.arm(this.#nextBeatDelay(s), () => this.#step(s));
      } catch (err) {
        s.lastError = codeOf(err) ?? ErrorCode.INTERNAL;
        if (this.#state !== 'running') return;
        if (isRefusal(err)) {
          // The instance itself is unacceptable: every nameservice would say the same.
          this.#log.error({ nameserver: s.key, err: (err as Error).message }, 'registration refused');
          this.#failWaiters(err);
        } else {
          this.#log.debug({ nameserver: s.key, code: s.lastError }, 'register failed; will retry');
        }
        const delay =
          err instanceof BusyError
            ? err.retryAfterMs
            : backoffMs(s.failures, this.#o.retryMs, this.#o.maxRetryMs, this.#random);
        s.failures++;
        s.timer.arm(isRefusal(err) ? this.#o.maxRetryMs : delay, () => this.#step(s));
      }
    });
  }

  #beat(s: Server): void {
    const leaseId = s.leaseId!;
    const body: RequestBody<'heartbeat'> = { leaseId };
    const inFlight = this.#readInFlight ? this.#readInFlight() : this.#inFlight;
    if (inFlight !== undefined) body.inFlight = inFlight;
    s.beatAt = this.#clock.now();
    this.#run(s, async () => {
      try {
        await this.#transport.request(s.address, 'heartbeat', body, {
          timeoutMs: Math.max(s.intervalMs, 50),
        });
        s.lastOkAt = this.#clock.now();
        s.lastError = undefined;
        if (this.#state === 'running') s.timer.arm(this.#nextBeatDelay(s), () => this.#step(s));
      } catch (err) {
        s.lastError = codeOf(err) ?? ErrorCode.INTERNAL;
        if (this.#state !== 'running') return;
        if (codeOf(err) === ErrorCode.UNKNOWN_LEASE && s.leaseId === leaseId) {
          // The nameservice restarted or let the lease lapse: register again right away.
          this.#log.info(
            { nameserver: s.key, id: this.id },
            'lease unknown to the nameservice; registering again',
          );
          s.leaseId = undefined;
          return; // #run's finally steps straight into a register
        }
        // Unanswered: keep the lease and the rhythm. If it lapsed meanwhile, the next answer says so.
        s.timer.arm(this.#nextBeatDelay(s), () => this.#step(s));
      }
    });
  }

  #nextBeatDelay(s: Server): number {
    const interval = s.intervalMs * (1 - REGISTRATION_DEFAULTS.jitter * this.#random());
    return Math.max(0, s.beatAt + interval - this.#clock.now());
  }

  // ---- waiting for acceptance ------------------------------------------------------------

  #waitFor(version: number, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = new OneShot(this.#clock);
      const waiter: Waiter = { version, resolve, reject, timer };
      this.#waiters.push(waiter);
      timer.arm(timeoutMs, () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        const detail = this.#servers.map((s) => `${s.key}: ${s.lastError ?? 'no answer'}`).join(', ');
        reject(
          new TaskGridError(
            ErrorCode.UNREACHABLE,
            `no nameservice accepted the registration of ${this.id} within ${timeoutMs} ms (${detail})`,
          ),
        );
      });
    });
  }

  #settleWaiters(version: number): void {
    const keep: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.version <= version) {
        w.timer.cancel();
        w.resolve();
      } else keep.push(w);
    }
    this.#waiters = keep;
  }

  #failWaiters(err: unknown): void {
    for (const w of this.#waiters) {
      w.timer.cancel();
      w.reject(err);
    }
    this.#waiters = [];
  }

  /** Ends every loop and pending start()/update() (leases are left to stop()). */
  #halt(): void {
    this.#state = 'stopped';
    for (const s of this.#servers) s.timer.cancel();
    this.#failWaiters(new TaskGridError(ErrorCode.CLOSED, 'registration stopped'));
  }

  /** What the nameservice would refuse, with the same code, so that it is refused here first. */
  #problem(): TaskGridError | undefined {
    const parsed = requests.register.req.safeParse({
      id: this.id,
      role: this.#role,
      types: this.#types,
      address: this.#address,
      capacity: this.#capacity,
      meta: this.#meta,
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return new TaskGridError(
        ErrorCode.BAD_REQUEST,
        `invalid instance: ${issue ? `${issue.path.join('.') || '(instance)'}: ${issue.message}` : 'rejected'}`,
      );
    }
    if (this.#role === 'worker' && this.#types.length === 0) {
      return new TaskGridError(ErrorCode.BAD_REQUEST, 'a worker must serve at least one task type');
    }
    return undefined;
  }
}
