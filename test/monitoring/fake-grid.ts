/**
 * An in-memory grid for the monitoring tests: a {@link GridSource} whose dispatcher, nameservice
 * and workers are plain data that a test moves by hand (submit, run, finish, fail, add and remove
 * workers, make the dispatcher unreachable), and a clock whose timers only fire when told.
 */
import type { PingReply, StatsReply, TasksPage, TasksQuery } from '../../src/client/index.ts';
import { ErrorCode, TaskGridError, TooLargeError } from '../../src/errors.ts';
import type { DirectoryChange } from '../../src/nameservice/directory.ts';
import type { Instance, TaskSpec, TaskView, TypeStats, WireError } from '../../src/protocol/messages.ts';
import type { Clock, PeerAddress } from '../../src/transport/types.ts';
import { newCounters } from '../../src/transport/types.ts';
import type { GridSource } from '../../src/monitoring/grid.ts';

/** A clock whose time and timers move only when the test says so. */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Moves time forward, firing the timers that come due. */
  advance(ms: number): void {
    this.#now += ms;
    for (const [id, t] of [...this.#timers].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= this.#now && this.#timers.delete(id)) t.fn();
    }
  }
}

const unreachable = (what: string) =>
  new TaskGridError(ErrorCode.UNREACHABLE, `${what} did not answer (fake)`);

/** A fake grid; see the module comment. */
export class FakeGrid implements GridSource {
  readonly tasksById = new Map<number, TaskView>();
  readonly knownTypes = new Set<string>(['reverse', 'sum', 'hash', 'upper', 'wait']);
  workers: Instance[] = [];
  dispatcherDown = false;
  /** Tasks pruned per type and final status, as the dispatcher's stats report them. */
  readonly pruned = new Map<string, { succeeded: number; failed: number; cancelled: number }>();
  nameserviceDown = false;
  /** Ports whose ping fails. */
  readonly deadPorts = new Set<number>();
  readonly nameserverAddress: PeerAddress = { host: '127.0.0.1', port: 5001 };
  readonly dispatcherAddr: PeerAddress = { host: '127.0.0.1', port: 4000 };
  /** `task` lookups made, for tests of the poller. */
  lookups = 0;
  /** Largest reply, as the grid's maximum message size bounds it; larger ones are TG_ERR_TOO_LARGE. */
  maxReplyBytes = Infinity;
  #nextId = 1;
  readonly #listeners = new Set<(change: DirectoryChange) => void>();
  readonly #clock: Clock;

  /** When the fake dispatcher's and nameservice's processes started (their ping's uptime). */
  readonly startedAt: { dispatcher: number; nameservice: number };

  constructor(clock: Clock) {
    this.#clock = clock;
    const started = clock.now() - 1234;
    this.startedAt = { dispatcher: started, nameservice: started };
  }

  // ---- test controls ----

  addWorker(id: string, types: string[], port: number, capacity = 4): Instance {
    const now = this.#clock.now();
    const instance: Instance = {
      id,
      role: 'worker',
      types,
      address: { host: '127.0.0.1', port },
      capacity,
      meta: { pid: '1' },
      registeredAt: now,
      lastSeen: now,
      inFlight: 0,
    };
    this.workers.push(instance);
    for (const l of this.#listeners) l({ upserted: [instance], removed: [] });
    return instance;
  }

  /** Removes an ended task as the dispatcher's retention does, counting it as pruned. */
  prune(id: number): void {
    const t = this.tasksById.get(id);
    if (!t || (t.status !== 'succeeded' && t.status !== 'failed' && t.status !== 'cancelled')) return;
    this.tasksById.delete(id);
    const c = this.pruned.get(t.type) ?? { succeeded: 0, failed: 0, cancelled: 0 };
    c[t.status]++;
    this.pruned.set(t.type, c);
  }

  /** The dispatcher restarted: its pruned counters start again from 0. */
  restartDispatcher(): void {
    this.pruned.clear();
  }

  removeWorker(id: string): void {
    const gone = this.workers.filter((w) => w.id === id);
    this.workers = this.workers.filter((w) => w.id !== id);
    for (const l of this.#listeners) l({ upserted: [], removed: gone });
  }

  put(view: Partial<TaskView> & Pick<TaskView, 'type'>): TaskView {
    const id = view.id ?? this.#nextId++;
    this.#nextId = Math.max(this.#nextId, id + 1);
    const task: TaskView = {
      id,
      status: 'queued',
      priority: 0,
      attempts: 0,
      maxAttempts: 3,
      timeoutMs: 30_000,
      createdAt: this.#clock.now(),
      payload: '',
      ...view,
    };
    this.tasksById.set(id, task);
    return task;
  }

  start(id: number, worker: string): TaskView {
    return this.#update(id, (t) => ({
      ...t,
      status: 'running',
      attempts: t.attempts + 1,
      worker,
      startedAt: this.#clock.now(),
    }));
  }

  finish(id: number, result: string): TaskView {
    return this.#update(id, (t) => ({ ...t, status: 'succeeded', result, finishedAt: this.#clock.now() }));
  }

  fail(id: number, error: WireError, requeue: boolean): TaskView {
    return this.#update(id, (t) =>
      requeue
        ? { ...t, status: 'queued', error }
        : { ...t, status: 'failed', error, finishedAt: this.#clock.now() },
    );
  }

  #update(id: number, f: (t: TaskView) => TaskView): TaskView {
    const t = this.tasksById.get(id);
    if (!t) throw new Error(`no task ${id}`);
    const next = f(t);
    this.tasksById.set(id, next);
    return next;
  }

  // ---- GridSource ----

  stats(): Promise<StatsReply> {
    if (this.dispatcherDown) return Promise.reject(unreachable('the dispatcher'));
    const types: Record<string, TypeStats> = {};
    const totals = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, throughput: 0 };
    for (const name of this.knownTypes) {
      types[name] = {
        queued: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
        throughput: 0,
        runMs: { p50: 0, p95: 0 },
        waitMs: { p50: 0, p95: 0 },
      };
    }
    for (const t of this.tasksById.values()) {
      const s = types[t.type];
      if (!s) continue;
      s[t.status]++;
      totals[t.status]++;
      if (t.status === 'queued') {
        const age = Math.max(0, this.#clock.now() - t.createdAt);
        s.oldestQueuedMs = Math.max(s.oldestQueuedMs ?? 0, age);
      }
      if (t.status === 'succeeded') {
        s.throughput = 0.5;
        s.runMs = { p50: 12, p95: 40 };
        s.waitMs = { p50: 3, p95: 9 };
      }
    }
    for (const [type, c] of this.pruned) if (types[type]) types[type].pruned = { ...c };
    totals.throughput = Object.values(types).reduce((n, s) => n + s.throughput, 0);
    const workers = this.workers.map((w) => ({
      id: w.id,
      address: w.address,
      types: w.types,
      capacity: w.capacity,
      inFlight: [...this.tasksById.values()].filter((t) => t.status === 'running' && t.worker === w.id)
        .length,
      completed: [...this.tasksById.values()].filter((t) => t.status === 'succeeded' && t.worker === w.id)
        .length,
      failed: 0,
    }));
    const transport = { ...newCounters(), datagramsIn: 42, bytesIn: 4200 };
    return Promise.resolve({ types, workers, totals, transport: { ...transport } });
  }

  tasks(query: TasksQuery): Promise<TasksPage> {
    if (this.dispatcherDown) return Promise.reject(unreachable('the dispatcher'));
    if (query.cursor !== undefined && !/^\d+$/.test(query.cursor)) {
      return Promise.reject(new TaskGridError(ErrorCode.BAD_REQUEST, `invalid cursor "${query.cursor}"`));
    }
    const below = query.cursor !== undefined ? Number(query.cursor) : Infinity;
    const matching = [...this.tasksById.values()]
      .filter((t) => t.id < below)
      .filter((t) => query.status === undefined || t.status === query.status)
      .filter((t) => query.type === undefined || t.type === query.type)
      .sort((a, b) => b.id - a.id);
    const limit = query.limit ?? 50;
    const page = matching.slice(0, limit);
    const last = page.at(-1);
    return this.#reply({
      tasks: page.map((t) => {
        if (query.payload !== false) return { ...t };
        const { payload: _payload, ...rest } = t;
        return rest;
      }),
      ...(matching.length > limit && last ? { nextCursor: String(last.id) } : {}),
    });
  }

  task(id: number, options: { payload?: boolean } = {}): Promise<TaskView> {
    this.lookups++;
    if (this.dispatcherDown) return Promise.reject(unreachable('the dispatcher'));
    const t = this.tasksById.get(id);
    if (!t) return Promise.reject(new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} not found`));
    if (options.payload === false) {
      const { payload: _payload, ...rest } = t;
      return this.#reply(rest);
    }
    return this.#reply({ ...t });
  }

  #reply<T>(body: T): Promise<T> {
    const size = JSON.stringify(body).length;
    if (size > this.maxReplyBytes)
      return Promise.reject(new TooLargeError(size, this.maxReplyBytes, 'reply'));
    return Promise.resolve(body);
  }

  submit(spec: TaskSpec): Promise<{ id: number; duplicate: boolean }> {
    if (this.dispatcherDown) return Promise.reject(unreachable('the dispatcher'));
    if (!this.knownTypes.has(spec.type)) {
      return Promise.reject(new TaskGridError(ErrorCode.UNKNOWN_TYPE, `unknown task type "${spec.type}"`));
    }
    if (spec.key !== undefined) {
      const same = [...this.tasksById.values()].find((t) => t.key === spec.key);
      if (same) return Promise.resolve({ id: same.id, duplicate: true });
    }
    const t = this.put({
      type: spec.type,
      payload: spec.payload,
      ...(spec.key !== undefined && { key: spec.key }),
      priority: spec.priority ?? 0,
      maxAttempts: spec.maxAttempts ?? 3,
      timeoutMs: spec.timeoutMs ?? 30_000,
    });
    return Promise.resolve({ id: t.id, duplicate: false });
  }

  cancel(id: number): Promise<TaskView> {
    return this.task(id).then((t) => {
      if (t.status === 'queued' || t.status === 'running') {
        return this.#update(id, (x) => ({
          ...x,
          status: 'cancelled',
          finishedAt: this.#clock.now(),
          error: { code: ErrorCode.CANCELLED, message: 'cancelled' },
        }));
      }
      // As TaskGridClient.cancel: idempotent for a cancelled task, refused for one ended otherwise.
      if (t.status !== 'cancelled') {
        throw new TaskGridError(
          ErrorCode.CONFLICT,
          `task ${id} cannot be cancelled: it had already ended (${t.status})`,
        );
      }
      return t;
    });
  }

  retry(id: number): Promise<TaskView> {
    return this.task(id).then((t) => {
      if (t.status === 'failed' || t.status === 'cancelled') {
        return this.#update(id, (x) => {
          const { finishedAt: _f, error: _e, ...rest } = x;
          return { ...rest, status: 'queued', attempts: 0 };
        });
      }
      // As TaskGridClient.retry: a status that does not allow it is refused.
      throw new TaskGridError(ErrorCode.CONFLICT, `task ${id} cannot be retried: it is ${t.status}`);
    });
  }

  listInstances(): Promise<Instance[]> {
    if (this.nameserviceDown) return Promise.reject(unreachable('no nameservice'));
    return Promise.resolve(this.workers.map((w) => ({ ...w })));
  }

  instances(): Instance[] {
    return [...this.workers];
  }

  synced(): boolean {
    return !this.nameserviceDown;
  }

  onInstancesChange(listener: (change: DirectoryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  nameservers(): readonly PeerAddress[] {
    return [this.nameserverAddress];
  }

  dispatcherAddress(): Promise<PeerAddress> {
    return Promise.resolve(this.dispatcherAddr);
  }

  ping(address: PeerAddress): Promise<PingReply> {
    const isDispatcher = address.port === this.dispatcherAddr.port;
    const isNameservice = address.port === this.nameserverAddress.port;
    if (
      this.deadPorts.has(address.port) ||
      (isDispatcher && this.dispatcherDown) ||
      (isNameservice && this.nameserviceDown)
    ) {
      return Promise.reject(new TaskGridError(ErrorCode.UNREACHABLE, 'no answer to ping (fake)'));
    }
    const worker = this.workers.find((w) => w.address.port === address.port);
    return Promise.resolve({
      component: isDispatcher ? 'dispatcher' : isNameservice ? 'nameservice' : 'worker',
      version: '0.1.0',
      uptimeMs: Math.max(
        0,
        this.#clock.now() -
          (isDispatcher ? this.startedAt.dispatcher : isNameservice ? this.startedAt.nameservice : 0),
      ),
      pid: 99,
      ...(worker ? { id: worker.id } : isDispatcher ? { id: 'dispatcher-1' } : {}),
    });
  }

  transportCounters(): Readonly<Record<string, number>> {
    return { ...newCounters(), requestsSent: 7 };
  }
}
