/**
 * The dispatcher: accepts tasks, commits them to its store before acknowledging, queues them
 * per type (in the store, not the heap), hands them to workers with free capacity under a
 * lease, records each result once, and tells waiting clients.
 *
 * It knows workers only from its cached view of the nameservice (no lookup per task). Leases
 * and the nameservice's view cover lost workers: a lapsed task lease or a vanished worker puts
 * the task back in its queue with backoff; out of attempts, it is `failed`.
 */
import { BusyError, ErrorCode, TaskGridError, TimeoutError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import type {
  Instance,
  ParsedRequest,
  ReplyBody,
  TaskOutcome,
  TaskSpec,
  TaskView,
  TypeStats,
  WireError,
  WorkerStats,
} from '../protocol/messages.ts';
import type { PeerAddress, RequestContext, Transport } from '../transport/types.ts';
import type { LegacyTaskSender } from '../legacy/dispatcher-adapter.ts';
import { isLegacyInstance } from '../legacy/wire.ts';
import { TimingStats } from './stats.ts';
import { Watchers } from './watchers.ts';
import type {
  BatchResult,
  CompleteResult,
  MultiClaim,
  SubmitOptions,
  SubmitResult,
  TaskStore,
  TransitionResult,
} from './store/store.ts';

/** What the dispatcher needs of the nameservice view (src/nameservice/directory.ts). */
export interface WorkerDirectory {
  instances(filter?: { type?: string; role?: Instance['role'] }): Instance[];
  onChange(cb: (ev: { upserted: Instance[]; removed: Instance[] }) => void): void;
}

/** Per-type settings from workers.json. */
export interface TypeSettings {
  timeoutMs?: number | undefined;
  maxAttempts?: number | undefined;
}

/** One warning a minute per worker whose TASK batches time out or are refused. */
const UNTAKEN_WARN_MS = 60_000;

export const DISPATCHER_DEFAULTS = {
  /** Per-attempt timeout of a task whose submitter and type say nothing. */
  taskTimeoutMs: 30_000,
  /** Attempts of a task whose submitter and type say nothing. */
  maxAttempts: 3,
  /** A task's lease is its timeout plus this, for the result to travel back. */
  leaseGraceMs: 5_000,
  /**
   * After a restart, running tasks of a worker the nameservices have not listed for this long
   * (twice their 5 s lease) go back to their queues: that worker died while the dispatcher was
   * down, so no `removed` will ever come for it, and its tasks would otherwise wait out their
   * whole lease (a `wait` task's is 10 minutes).
   */
  orphanGraceMs: 10_000,
  /** Queued tasks per type before submits get TG_ERR_BUSY. */
  maxQueuedPerType: 2_000_000,
  /** Retry-after of a busy reply. */
  busyRetryAfterMs: 1_000,
  /** Finished tasks are kept this long... */
  keepFinishedMs: 7 * 24 * 3600_000,
  /** ...and at most this many. */
  keepFinishedMax: 1_000_000,
  pruneEveryMs: 60_000,
  /** Most tasks one store transaction prunes; a round repeats batches until it is done. */
  pruneBatch: 10_000,
  /** Most tasks in one TASK request to a worker. */
  dispatchBatch: 512,
  /** Most tasks in one DONE request to a client. */
  notifyBatch: 1_000,
  /**
   * Most bytes of task views in one DONE request, WATCH or GET-RESULT reply, estimated from above (every
   * character of a result or error counted as a 6-byte JSON escape), so that neither exceeds
   * even the smallest maximum message size a component accepts (64 KiB).
   */
  notifyBytes: 60 * 1024,
  /** Deadline of TASK, ABORT and DONE requests. */
  requestTimeoutMs: 10_000,
  /** Most tasks watched (notify/watch) at once; beyond it, clients must poll. */
  maxWatched: 1_000_000,
  version: '0.1.0',
} as const;

export interface DispatcherOptions {
  transport: Transport;
  store: TaskStore;
  directory: WorkerDirectory;
  /** Types that active workers.json entries name, with their settings. */
  types?: ReadonlyMap<string, TypeSettings>;
  logger?: Logger;
  now?: () => number;
  id?: string;
  taskTimeoutMs?: number;
  maxAttempts?: number;
  leaseGraceMs?: number;
  maxQueuedPerType?: number;
  busyRetryAfterMs?: number;
  keepFinishedMs?: number;
  keepFinishedMax?: number;
  pruneEveryMs?: number;
  pruneBatch?: number;
  dispatchBatch?: number;
  notifyBatch?: number;
  notifyBytes?: number;
  requestTimeoutMs?: number;
  maxWatched?: number;
  version?: string;
  /**
   * Sends tasks to TaskGrid+ workers (src/legacy), which do not read v1 `task` requests.
   * Without it, TaskGrid+ workers in the directory are not used.
   */
  legacy?: LegacyTaskSender;
}

interface WorkerState {
  instance: Instance;
  inFlight: number;
  completed: number;
  failed: number;
}

interface Waiter {
  remaining: Set<number>;
  done: () => void;
}

type Settings = Required<
  Omit<DispatcherOptions, 'transport' | 'store' | 'directory' | 'types' | 'logger' | 'now' | 'id' | 'legacy'>
>;

const NO_WORKERS: readonly WorkerState[] = [];
const NO_PLAN: ClaimPlan = { workers: NO_WORKERS, claims: [] };

/** The claims of a turn, and the worker of each. */
interface ClaimPlan {
  readonly workers: readonly WorkerState[];
  readonly claims: readonly MultiClaim[];
}

export class Dispatcher {
  readonly #t: Transport;
  readonly #store: TaskStore;
  readonly #dir: WorkerDirectory;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #o: Settings;
  readonly #typeSettings: ReadonlyMap<string, TypeSettings>;
  readonly #id: string;
  readonly #legacy: LegacyTaskSender | undefined;
  readonly #started = Date.now();
  /** Types stats report: workers.json, ever registered, ever stored. */
  readonly #knownTypes = new Set<string>();
  /**
   * Types submit accepts: active workers.json entries and types a worker registered since this
   * dispatcher started. A type only left in the store (removed from workers.json, no worker) is
   * refused: its tasks would wait for ever.
   */
  readonly #acceptedTypes = new Set<string>();
  readonly #workers = new Map<string, WorkerState>();
  /** When each worker's untaken TASK batches were last logged, and how many since. */
  readonly #untakenWarned = new Map<string, { at: number; since: number }>();
  /** Task id -> worker instance id, for running tasks this dispatcher accounts to a worker. */
  readonly #assigned = new Map<number, string>();
  /** Types whose queue may hold claimable tasks. */
  readonly #maybeQueued = new Set<string>();
  /** The last progress reported for each running task: its fraction and its message. */
  readonly #progress = new Map<number, { fraction?: number; message?: string }>();
  readonly #watchers = new Watchers();
  /** After a restart, the attempts the store records as running, by worker, until confirmed. */
  readonly #recovered = new Map<string, { id: number; attempt: number }[]>();
  readonly #peers = new Map<string, PeerAddress>();
  readonly #outgoingDone = new Map<string, TaskView[]>();
  readonly #waiters = new Map<number, Set<Waiter>>();
  readonly #timing = new TimingStats();
  #pendingSubmits: {
    specs: TaskSpec[];
    resolve: (r: SubmitResult[]) => void;
    reject: (e: unknown) => void;
  }[] = [];
  #pendingResults: {
    outcomes: TaskOutcome[];
    resolve: (r: { recorded: number }) => void;
    reject: (e: unknown) => void;
  }[] = [];
  #doneScheduled = false;
  /** A turn (one store batch: results, submits, hand-outs) is scheduled / running / wanted again. */
  #turnScheduled = false;
  #turnRunning = false;
  #turnAgain = false;
  readonly #submitOptions: SubmitOptions;
  readonly #leaseMs: (timeoutMs: number) => number;
  #leaseTimer: NodeJS.Timeout | undefined;
  #leaseTimerAt = Infinity;
  #backoffTimer: NodeJS.Timeout | undefined;
  #backoffTimerAt = Infinity;
  #pruneTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #pruning = false;
  /** Tasks pruned since start, per type and final status (reported by `stats`). */
  readonly #prunedTotals = new Map<string, { succeeded: number; failed: number; cancelled: number }>();
  #roundRobin = 0;
  /** The worker of each claim of the turn being committed (set by #claims). */
  #planned: readonly WorkerState[] = NO_WORKERS;
  /** Options of TASK and DONE requests (read, never kept, by the transport). */
  readonly #requestOptions: { readonly timeoutMs: number };

  constructor(options: DispatcherOptions) {
    this.#t = options.transport;
    this.#store = options.store;
    this.#dir = options.directory;
    this.#log = options.logger ?? silentLogger();
    this.#now = options.now ?? Date.now;
    this.#id = options.id ?? `dispatcher-${process.pid}`;
    this.#typeSettings = options.types ?? new Map();
    this.#legacy = options.legacy;
    const d = DISPATCHER_DEFAULTS;
    this.#o = {
      taskTimeoutMs: options.taskTimeoutMs ?? d.taskTimeoutMs,
      maxAttempts: options.maxAttempts ?? d.maxAttempts,
      leaseGraceMs: options.leaseGraceMs ?? d.leaseGraceMs,
      maxQueuedPerType: options.maxQueuedPerType ?? d.maxQueuedPerType,
      busyRetryAfterMs: options.busyRetryAfterMs ?? d.busyRetryAfterMs,
      keepFinishedMs: options.keepFinishedMs ?? d.keepFinishedMs,
      keepFinishedMax: options.keepFinishedMax ?? d.keepFinishedMax,
      pruneEveryMs: options.pruneEveryMs ?? d.pruneEveryMs,
      pruneBatch: options.pruneBatch ?? d.pruneBatch,
      dispatchBatch: options.dispatchBatch ?? d.dispatchBatch,
      notifyBatch: options.notifyBatch ?? d.notifyBatch,
      notifyBytes: options.notifyBytes ?? d.notifyBytes,
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
      maxWatched: options.maxWatched ?? d.maxWatched,
      version: options.version ?? d.version,
    };
    for (const name of this.#typeSettings.keys()) {
      this.#knownTypes.add(name);
      this.#acceptedTypes.add(name);
    }
    this.#submitOptions = {
      timeoutMs: this.#o.taskTimeoutMs,
      maxAttempts: this.#o.maxAttempts,
      maxQueued: this.#o.maxQueuedPerType,
    };
    const grace = this.#o.leaseGraceMs;
    this.#leaseMs = (timeoutMs) => timeoutMs + grace;
    this.#requestOptions = { timeoutMs: this.#o.requestTimeoutMs };
  }

  /** Recovers state from the store, installs the handlers and starts dispatching. */
  async start(): Promise<void> {
    const stored = await this.#store.counts();
    for (const type of stored.keys()) {
      this.#knownTypes.add(type);
      this.#maybeQueued.add(type);
    }
    for (const inst of this.#dir.instances({ role: 'worker' })) this.#upsertWorker(inst);
    for (const [type, c] of stored) {
      if (this.#acceptedTypes.has(type) || c.queued + c.running === 0) continue;
      this.#log.warn(
        { type, queued: c.queued, running: c.running },
        'tasks of a type no active workers.json entry names and no worker serves: they wait until a worker of it registers, and new ones are refused (TG_ERR_UNKNOWN_TYPE)',
      );
    }
    // Running tasks survive a restart with their leases: account them to their workers, and
    // ask each worker, once it is listed, which of them it holds (#confirmHeld).
    const unlisted = new Set<string>();
    for (const r of await this.#store.listRunning()) {
      this.#assigned.set(r.id, r.worker);
      let recovered = this.#recovered.get(r.worker);
      if (!recovered) this.#recovered.set(r.worker, (recovered = []));
      recovered.push({ id: r.id, attempt: r.attempt });
      const w = this.#workers.get(r.worker);
      if (w) w.inFlight++;
      else unlisted.add(r.worker);
    }
    if (unlisted.size > 0) {
      const orphans = setTimeout(() => {
        for (const id of unlisted) {
          if (this.#closed || this.#workers.has(id)) continue;
          this.#recovered.delete(id);
          this.#log.info(
            { worker: id },
            'worker not listed since the restart; its running tasks go back to their queues',
          );
          this.#store.releaseWorker(id, this.#now()).then(
            (res) => this.#afterTransition(res),
            (err: unknown) => this.#log.error({ err }, 'could not release a lost worker’s tasks'),
          );
        }
      }, DISPATCHER_DEFAULTS.orphanGraceMs);
      orphans.unref();
    }
    this.#dir.onChange((ev) => this.#onDirectoryChange(ev));
    this.#install();
    for (const w of this.#workers.values()) this.#confirmHeld(w);
    await this.#expireLeases();
    await this.#armBackoffTimer();
    this.#pruneTimer = setInterval(() => void this.#prune(), this.#o.pruneEveryMs);
    this.#pruneTimer.unref();
    this.#kick();
    this.#log.info({ knownTypes: [...this.#knownTypes] }, 'dispatcher started');
  }

  /** Submits tasks as a `submit` request does, for in-process adapters (src/legacy), which validated them. */
  async submitTasks(tasks: TaskSpec[]): Promise<ReplyBody<'submit'>['results']> {
    return (await this.#onSubmit({ tasks }, undefined)).results;
  }

  /** Records attempt outcomes as a `result` request does, for in-process adapters (src/legacy). */
  recordOutcomes(outcomes: TaskOutcome[]): Promise<{ recorded: number }> {
    return this.#onResult(outcomes);
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#leaseTimer);
    clearTimeout(this.#backoffTimer);
    clearInterval(this.#pruneTimer);
    for (const set of this.#waiters.values()) for (const w of set) w.done();
    this.#waiters.clear();
    return Promise.resolve();
  }

  #install(): void {
    const t = this.#t;
    t.handle('ping', () => ({
      component: 'dispatcher',
      version: this.#o.version,
      uptimeMs: Date.now() - this.#started,
      pid: process.pid,
      id: this.#id,
    }));
    t.handle('submit', (body, ctx) => this.#onSubmit(body, ctx));
    t.handle('result', (body) => this.#onResult(body.results));
    t.handle('get-result', (body) => this.#onGetResult(body));
    t.handle('watch', (body, ctx) => this.#onWatch(body.ids, ctx.peer));
    t.handle('cancel', (body) => this.#onCancel(body.id));
    t.handle('retry', (body) => this.#onRetry(body.id));
    t.handle('tasks', async (body) => {
      const page = await this.#store.list({
        limit: body.limit ?? 50,
        payload: body.payload ?? true,
        ...(body.status ? { status: body.status } : {}),
        ...(body.type ? { type: body.type } : {}),
        ...(body.cursor ? { cursor: body.cursor } : {}),
      });
      return {
        tasks: page.tasks.map((v) => this.#withProgress(v)),
        ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
      };
    });
    t.handle('stats', () => this.#stats());
    t.onNotification('progress', (b) => {
      if (!this.#assigned.has(b.id) || (b.progress === undefined && b.message === undefined)) return;
      const p = this.#progress.get(b.id) ?? {};
      if (b.progress !== undefined) p.fraction = b.progress;
      if (b.message !== undefined) p.message = b.message;
      this.#progress.set(b.id, p);
    });
  }

  // ---- submit -------------------------------------------------------------------------

  async #onSubmit(
    body: ParsedRequest<'submit'>,
    ctx: RequestContext | undefined,
  ): Promise<ReplyBody<'submit'>> {
    const results = new Array<ReplyBody<'submit'>['results'][number]>(body.tasks.length);
    const accepted: TaskSpec[] = [];
    const where: number[] = [];
    // Plain loops, no callbacks: this runs once per submit, often with one task.
    for (let i = 0; i < body.tasks.length; i++) {
      const spec = body.tasks[i]!;
      if (!this.#acceptedTypes.has(spec.type)) {
        results[i] = {
          error: {
            code: ErrorCode.UNKNOWN_TYPE,
            message: `unknown task type "${spec.type}": no active workers.json entry names it and no worker serves it`,
          },
        };
        continue;
      }
      const s = this.#typeSettings.get(spec.type);
      const timeoutMs = spec.timeoutMs ?? s?.timeoutMs ?? this.#o.taskTimeoutMs;
      const maxAttempts = spec.maxAttempts ?? s?.maxAttempts ?? this.#o.maxAttempts;
      // The store fills in the dispatcher's defaults itself: copy a spec only to give it its
      // type's own (workers.json), which is rare enough to matter at 50,000 submits a second.
      accepted.push(
        (spec.timeoutMs ?? this.#o.taskTimeoutMs) === timeoutMs &&
          (spec.maxAttempts ?? this.#o.maxAttempts) === maxAttempts
          ? spec
          : { ...spec, timeoutMs, maxAttempts },
      );
      where.push(i);
    }
    if (accepted.length > 0) {
      const stored = await this.#commitSubmits(accepted);
      let busy = 0;
      for (let k = 0; k < stored.length; k++) {
        const r = stored[k]!;
        results[where[k]!] = 'id' in r ? (r.duplicate ? { id: r.id, duplicate: true } : { id: r.id }) : r;
        if ('error' in r && r.error.code === ErrorCode.BUSY) busy++;
      }
      if (busy === body.tasks.length) {
        // Nothing was taken: refuse the whole request so that the client backs off and resends.
        const first = stored.find((r): r is { error: { code: ErrorCode; message: string } } => 'error' in r);
        throw new BusyError(first?.error.message ?? 'queue full', this.#o.busyRetryAfterMs);
      }
      if (body.notify && ctx) {
        const ids: number[] = [];
        for (let i = 0; i < results.length; i++) {
          const r = results[i];
          if (r !== undefined && 'id' in r) ids.push(r.id);
        }
        this.#watch(ids, ctx.peer);
      }
    }
    return { results };
  }

  /** Group commit: submits arriving in one turn of the event loop share one transaction (a turn). */
  #commitSubmits(specs: TaskSpec[]): Promise<SubmitResult[]> {
    return new Promise((resolve, reject) => {
      this.#pendingSubmits.push({ specs, resolve, reject });
      this.#kick();
    });
  }

  // ---- dispatch -----------------------------------------------------------------------

  /**
   * Schedules a turn: one store batch (one commit) of the results and submits that arrived
   * since the last one, together with the claims of tasks for every worker with free capacity,
   * then the replies, the TASK requests and the `done` pushes, all in the same turn of the
   * event loop. An idle system runs it at once (setImmediate: right after the I/O that
   * brought the request), so a lone task waits for no batch to fill.
   */
  #kick(): void {
    if (this.#closed) return;
    if (this.#turnRunning) {
      this.#turnAgain = true;
      return;
    }
    if (this.#turnScheduled) return;
    this.#turnScheduled = true;
    setImmediate(this.#runTurn);
  }

  /** The scheduled turn: one function for the dispatcher's life, not a closure per kick. */
  readonly #runTurn = (): void => {
    this.#turnScheduled = false;
    void this.#turn();
  };

  async #turn(): Promise<void> {
    if (this.#turnRunning) {
      this.#turnAgain = true;
      return;
    }
    this.#turnRunning = true;
    try {
      do {
        this.#turnAgain = false;
        await this.#turnOnce();
      } while (this.#turnAgain && !this.#closed);
    } catch (err) {
      this.#log.error({ err }, 'dispatch turn failed');
      // A turn sends its `done` pushes at its end; one that failed before leaves them to this.
      this.#scheduleDone();
    } finally {
      this.#turnRunning = false;
    }
  }

  /** True when some worker has free capacity for a type that may have claimable tasks. */
  #canClaim(): boolean {
    if (this.#maybeQueued.size === 0) return false;
    for (const w of this.#workers.values()) {
      if (w.inFlight >= w.instance.capacity) continue;
      for (const t of w.instance.types) if (this.#maybeQueued.has(t)) return true;
    }
    return false;
  }

  async #turnOnce(): Promise<void> {
    const submits = this.#pendingSubmits;
    const results = this.#pendingResults;
    this.#pendingSubmits = [];
    this.#pendingResults = [];
    const specs = submits.length === 1 ? submits[0]!.specs : submits.flatMap((b) => b.specs);
    const outcomes = results.length === 1 ? results[0]!.outcomes : results.flatMap((b) => b.outcomes);
    for (const spec of specs) this.#maybeQueued.add(spec.type);
    if (specs.length === 0 && outcomes.length === 0 && !this.#canClaim()) return;
    let res: BatchResult;
    this.#planned = NO_WORKERS;
    try {
      // Always the same shape (empty lists rather than absent keys), and the same claims callback.
      res = await this.#store.batch(
        { complete: outcomes, submit: { specs, options: this.#submitOptions }, claims: this.#claims },
        this.#now(),
      );
    } catch (err) {
      const e =
        err instanceof TaskGridError ? err : new TaskGridError(ErrorCode.STORE, 'the task store failed');
      if (specs.length > 0) this.#log.error({ err }, 'store refused a submit; nothing acknowledged');
      if (outcomes.length > 0) this.#log.error({ err }, 'store refused results; workers will re-send them');
      for (const b of submits) b.reject(e);
      for (const b of results) b.reject(e);
      return;
    }
    const plan = this.#planned;
    this.#planned = NO_WORKERS;
    let off = 0;
    for (const b of submits) {
      b.resolve(submits.length === 1 ? res.submitted : res.submitted.slice(off, off + b.specs.length));
      off += b.specs.length;
    }
    if (outcomes.length > 0) {
      this.#afterTransition(res.completed, true);
      if (results.length === 1) {
        results[0]!.resolve({ recorded: res.completed.recorded });
      } else {
        // Each request learns how many of its outcomes counted, in order of arrival.
        const moved = new Set<number>();
        for (const v of res.completed.finished) moved.add(v.id);
        for (const r of res.completed.requeued) moved.add(r.id);
        for (const b of results) {
          let recorded = 0;
          for (const o of b.outcomes) if (moved.has(o.id)) recorded++;
          b.resolve({ recorded });
        }
      }
    }
    for (const type of res.exhausted) this.#maybeQueued.delete(type);
    const now = this.#now();
    const grace = this.#o.leaseGraceMs;
    const batch = this.#o.dispatchBatch;
    for (let i = 0; i < res.claimed.length; i++) {
      const tasks = res.claimed[i]!;
      const w = plan[i];
      if (tasks.length === 0 || !w) continue;
      let shortest = Infinity;
      for (const task of tasks) {
        this.#assigned.set(task.id, w.instance.id);
        if (task.timeoutMs < shortest) shortest = task.timeoutMs;
      }
      w.inFlight += tasks.length;
      this.#armLeaseTimer(now + shortest + grace);
      if (tasks.length <= batch) this.#sendTasks(w, tasks);
      else for (let k = 0; k < tasks.length; k += batch) this.#sendTasks(w, tasks.slice(k, k + batch));
    }
    if (this.#outgoingDone.size > 0) this.#flushDone();
  }

  /**
   * The claims callback of every turn's batch (one function, not a closure per turn): plans
   * the claims and keeps, in #planned, the worker of each for the turn to send its tasks to.
   */
  readonly #claims = (done: { readonly completed: CompleteResult }): readonly MultiClaim[] => {
    const plan = this.#planClaims(done.completed);
    this.#planned = plan.workers;
    return plan.claims;
  };

  /**
   * Claims for the turn being committed: every worker with free capacity (counting what the
   * turn's results release), least loaded first, over the types it serves that may have
   * claimable tasks, starting from a rotating type so that one busy type does not starve the
   * others.
   */
  #planClaims(completed: CompleteResult): ClaimPlan {
    if (this.#maybeQueued.size === 0 || this.#workers.size === 0) return NO_PLAN;
    let released: Map<string, number> | undefined;
    for (let k = 0; k < 2; k++) {
      const ended = k === 0 ? completed.finished : completed.requeued;
      for (let i = 0; i < ended.length; i++) {
        const worker = this.#assigned.get(ended[i]!.id);
        if (worker === undefined) continue;
        released ??= new Map();
        released.set(worker, (released.get(worker) ?? 0) + 1);
      }
    }
    const free: { w: WorkerState; n: number; load: number }[] = [];
    for (const w of this.#workers.values()) {
      const busy = Math.max(0, w.inFlight - (released?.get(w.instance.id) ?? 0));
      const n = w.instance.capacity - busy;
      if (n > 0) free.push({ w, n, load: busy / w.instance.capacity });
    }
    if (free.length > 1) free.sort((a, b) => a.load - b.load);
    const workers: WorkerState[] = [];
    const claims: MultiClaim[] = [];
    for (const { w, n } of free) {
      const types: string[] = [];
      for (const t of w.instance.types) if (this.#maybeQueued.has(t)) types.push(t);
      if (types.length === 0) continue;
      const start = this.#roundRobin++ % types.length;
      const ordered = start === 0 ? types : [...types.slice(start), ...types.slice(0, start)];
      workers.push(w);
      claims.push({ types: ordered, limit: n, worker: w.instance.id, leaseMs: this.#leaseMs });
    }
    return { workers, claims };
  }

  #sendTasks(w: WorkerState, tasks: ParsedRequest<'task'>['tasks']): void {
    if (isLegacyInstance(w.instance)) {
      this.#legacy?.send(w.instance, tasks);
      return;
    }
    this.#t.request(w.instance.address, 'task', { tasks }, this.#requestOptions).then(
      (reply) => {
        if (reply.rejected.length === 0) return;
        // A refusal is a failed attempt, retried with backoff like any other.
        const byId = new Map(tasks.map((x) => [x.id, x]));
        const outcomes: TaskOutcome[] = reply.rejected.flatMap((r) => {
          const task = byId.get(r.id);
          return task ? [failedAttempt(r.id, task.attempt, r.error)] : [];
        });
        void this.#onResult(outcomes).catch(() => {});
      },
      (err: unknown) => {
        if (this.#closed || (err instanceof TaskGridError && err.code === ErrorCode.CLOSED)) return;
        // A worker that died has every batch sent to it time out: one line per worker a
        // minute, with the code rather than a stack (a stack only for what is not ours).
        const id = w.instance.id;
        const now = Date.now();
        const last = this.#untakenWarned.get(id);
        if (last === undefined || now - last.at >= UNTAKEN_WARN_MS) {
          // Workers come and go with new ids: forget those quiet for a window.
          for (const [other, e] of this.#untakenWarned)
            if (now - e.at >= UNTAKEN_WARN_MS) this.#untakenWarned.delete(other);
          this.#untakenWarned.set(id, { at: now, since: 0 });
          this.#log.warn(
            {
              ...(err instanceof TaskGridError ? { code: err.code, error: err.message } : { err }),
              worker: id,
              tasks: tasks.length,
              ...(last && last.since > 0 && { batchesSinceLastWarning: last.since }),
            },
            'a worker did not take tasks; they go back to their queues',
          );
        } else last.since++;
        // Unacknowledged to the request's deadline (or refused with an error reply): a failed
        // attempt now rather than at the lease's end. Should the worker have them after all, the
        // attempt fence refuses its results for them, and the attempts running elsewhere record theirs.
        const why =
          err instanceof TimeoutError
            ? `did not acknowledge the task within ${this.#o.requestTimeoutMs} ms`
            : `refused the task request (${err instanceof TaskGridError ? `${err.code}: ${err.message}` : String(err)})`;
        const error: WireError = { code: ErrorCode.WORKER_LOST, message: `worker ${w.instance.id} ${why}` };
        void this.#onResult(tasks.map((t) => failedAttempt(t.id, t.attempt, error))).catch(() => {});
      },
    );
  }

  // ---- results ------------------------------------------------------------------------

  #onResult(outcomes: TaskOutcome[]): Promise<{ recorded: number }> {
    return new Promise((resolve, reject) => {
      this.#pendingResults.push({ outcomes, resolve, reject });
      this.#kick();
    });
  }

  /**
   * Bookkeeping after tasks left the running state: capacity, stats, clients, queues. A turn
   * (`inTurn`) sends the `done` pushes itself at its end, and claims in its own batch.
   */
  #afterTransition(res: TransitionResult, inTurn = false): void {
    for (const v of res.finished) this.#release(v.id, v.status !== 'succeeded');
    for (const r of res.requeued) {
      this.#release(r.id, true);
      this.#maybeQueued.add(r.type);
    }
    if (res.requeued.length > 0) void this.#armBackoffTimer();
    this.#onFinished(res.finished, !inTurn);
    if (!inTurn && (res.finished.length > 0 || res.requeued.length > 0)) this.#kick();
  }

  /** A running task ended: its worker's slot is free again. */
  #release(id: number, failed: boolean): void {
    const worker = this.#assigned.get(id);
    if (worker === undefined) return;
    this.#assigned.delete(id);
    this.#progress.delete(id);
    const w = this.#workers.get(worker);
    if (!w) return;
    w.inFlight = Math.max(0, w.inFlight - 1);
    if (failed) w.failed++;
    else w.completed++;
  }

  /** `flushSoon`: schedule the `done` pushes (a turn flushes them itself). */
  #onFinished(views: TaskView[], flushSoon = true): void {
    if (views.length === 0) return;
    const now = this.#now();
    for (const v of views) {
      const run =
        v.startedAt !== undefined && v.finishedAt !== undefined ? v.finishedAt - v.startedAt : undefined;
      const wait = v.startedAt !== undefined ? v.startedAt - v.createdAt : undefined;
      this.#timing.finished(v.type, now, run, wait);
      const waiters = this.#waiters.get(v.id);
      if (waiters) {
        this.#waiters.delete(v.id);
        for (const w of waiters) {
          w.remaining.delete(v.id);
          if (w.remaining.size === 0) w.done();
        }
      }
      const watchers = this.#watchers.take(v.id);
      if (typeof watchers === 'string') this.#queueDone(watchers, v);
      else if (watchers) for (const peer of watchers) this.#queueDone(peer, v);
    }
    if (flushSoon) this.#scheduleDone();
  }

  #queueDone(peer: string, view: TaskView): void {
    const q = this.#outgoingDone.get(peer);
    if (q) q.push(view);
    else this.#outgoingDone.set(peer, [view]);
  }

  #scheduleDone(): void {
    if (this.#outgoingDone.size > 0 && !this.#doneScheduled) {
      this.#doneScheduled = true;
      setImmediate(() => this.#flushDone());
    }
  }

  #flushDone(): void {
    this.#doneScheduled = false;
    for (const [key, views] of this.#outgoingDone) {
      const peer = this.#peers.get(key);
      if (!peer) continue;
      for (let i = 0; i < views.length;) {
        const end = this.#fitting(views, i);
        const tasks = i === 0 && end === views.length ? views : views.slice(i, end);
        i = end;
        this.#t.request(peer, 'done', { tasks }, this.#requestOptions).catch((err: unknown) => {
          // The client went away; it can still read the results with get-result.
          this.#log.debug({ err, peer: key }, 'a client did not take its done notifications');
        });
      }
    }
    this.#outgoingDone.clear();
  }

  /** The end of the run of views from `start` that fits one DONE request (at least one view). */
  #fitting(views: readonly TaskView[], start: number): number {
    const most = Math.min(views.length, start + this.#o.notifyBatch);
    let bytes = 0;
    let i = start;
    for (; i < most; i++) {
      bytes += viewBytes(views[i]!);
      if (bytes > this.#o.notifyBytes && i > start) break;
    }
    return i;
  }

  #watch(ids: number[], peer: PeerAddress): void {
    const key = `${peer.host}:${peer.port}`;
    this.#peers.set(key, peer);
    for (const id of ids) {
      if (this.#watchers.size >= this.#o.maxWatched && !this.#watchers.has(id)) break;
      this.#watchers.add(id, key);
    }
  }

  async #onWatch(ids: number[], peer: PeerAddress): Promise<ReplyBody<'watch'>> {
    this.#watch(ids, peer);
    const { tasks: finished, missing } = await this.#store.ended(ids);
    const key = `${peer.host}:${peer.port}`;
    for (const v of finished) this.#watchers.remove(v.id, key);
    for (const id of missing) this.#watchers.delete(id);
    // What does not fit the reply is pushed with `done` at once, as the protocol allows for
    // any watched task that has ended.
    const fit = this.#fitting(finished, 0);
    if (fit < finished.length) {
      for (let i = fit; i < finished.length; i++) this.#queueDone(key, finished[i]!);
      this.#scheduleDone();
    }
    return { finished: fit < finished.length ? finished.slice(0, fit) : finished, missing };
  }

  async #onGetResult(body: ParsedRequest<'get-result'>): Promise<ReplyBody<'get-result'>> {
    const opts = { payload: body.payload ?? false };
    let res = await this.#store.get(body.ids, opts);
    const open = res.tasks.filter((v) => v.status === 'queued' || v.status === 'running');
    if (body.waitMs && body.waitMs > 0 && open.length > 0 && !this.#closed) {
      await new Promise<void>((resolve) => {
        const w: Waiter = { remaining: new Set(open.map((v) => v.id)), done: () => {} };
        const timer = setTimeout(() => w.done(), body.waitMs);
        w.done = () => {
          clearTimeout(timer);
          for (const id of w.remaining) this.#waiters.get(id)?.delete(w);
          resolve();
        };
        for (const id of w.remaining) {
          let set = this.#waiters.get(id);
          if (!set) this.#waiters.set(id, (set = new Set()));
          set.add(w);
        }
      });
      res = await this.#store.get(body.ids, opts);
    }
    // As many views as fit a DONE request's size; the rest are named, for the caller to ask again.
    const end = this.#fitting(res.tasks, 0);
    const tasks = res.tasks.slice(0, end).map((v) => this.#withProgress(v));
    if (end === res.tasks.length) return { tasks, missing: res.missing };
    return { tasks, missing: res.missing, more: res.tasks.slice(end).map((v) => v.id) };
  }

  #withProgress(v: TaskView): TaskView {
    const p = v.status === 'running' ? this.#progress.get(v.id) : undefined;
    if (p === undefined) return v;
    const view = { ...v };
    if (p.fraction !== undefined) view.progress = p.fraction;
    if (p.message !== undefined) view.progressMessage = p.message;
    return view;
  }

  async #onCancel(id: number): Promise<ReplyBody<'cancel'>> {
    const res = await this.#store.cancel(id, this.#now());
    if (!res) throw new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} not found`);
    if (res.changed) {
      if (res.previous === 'running') {
        const workerId = this.#assigned.get(id);
        const w = workerId !== undefined ? this.#workers.get(workerId) : undefined;
        this.#assigned.delete(id);
        if (w) {
          w.inFlight = Math.max(0, w.inFlight - 1);
          this.#t.request(w.instance.address, 'abort', { ids: [id] }).catch((err: unknown) => {
            this.#log.warn({ err, task: id }, 'could not tell the worker to abort a cancelled task');
          });
        }
        this.#kick();
      }
      this.#onFinished([res.task]);
    }
    return { task: res.task, changed: res.changed };
  }

  async #onRetry(id: number): Promise<ReplyBody<'retry'>> {
    const res = await this.#store.retry(id, this.#now());
    if (!res) throw new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} not found`);
    if (res.changed) {
      this.#maybeQueued.add(res.task.type);
      this.#kick();
    }
    return { task: res.task, changed: res.changed };
  }

  // ---- workers, leases and backoff ----------------------------------------------------

  #upsertWorker(inst: Instance): void {
    if (inst.role !== 'worker') return;
    // A TaskGrid+ worker reads TASK messages only: without a legacy sender it cannot be used.
    if (isLegacyInstance(inst) && !this.#legacy) return;
    for (const t of inst.types) {
      this.#knownTypes.add(t);
      this.#acceptedTypes.add(t);
    }
    const w = this.#workers.get(inst.id);
    if (w) w.instance = inst;
    else {
      const added: WorkerState = { instance: inst, inFlight: 0, completed: 0, failed: 0 };
      this.#workers.set(inst.id, added);
      // Listed only after a restart: its recovered attempts count again, then get confirmed.
      const recovered = this.#recovered.get(inst.id);
      if (recovered) {
        added.inFlight += recovered.length;
        this.#confirmHeld(added);
      }
    }
    for (const t of inst.types) this.#maybeQueued.add(t);
  }

  /**
   * After a restart, asks a worker which of the attempts the store records as running on it it
   * still holds. One it does not hold was claimed and committed, but its TASK never left before
   * the dispatcher stopped: a failed attempt (TG_ERR_WORKER_LOST) now, not at its lease's end
   * (the lease is the timeout plus grace: ten minutes for `wait`). A worker that cannot answer
   * (one of an older version, or gone) leaves them to their leases, as before.
   */
  #confirmHeld(w: WorkerState): void {
    const recovered = this.#recovered.get(w.instance.id);
    if (!recovered || isLegacyInstance(w.instance)) return;
    this.#recovered.delete(w.instance.id);
    const batch = this.#o.dispatchBatch;
    for (let i = 0; i < recovered.length; i += batch) {
      const tasks = recovered.slice(i, i + batch);
      this.#t.request(w.instance.address, 'holding', { tasks }, this.#requestOptions).then(
        (reply) => {
          const held = new Set(reply.held);
          const lost = tasks.filter((t) => !held.has(t.id));
          if (lost.length === 0 || this.#closed) return;
          this.#log.info(
            { worker: w.instance.id, tasks: lost.length },
            'tasks claimed before the restart never reached their worker; they go back to their queues',
          );
          const error: WireError = {
            code: ErrorCode.WORKER_LOST,
            message: `worker ${w.instance.id} never received the task: the dispatcher stopped after claiming it`,
          };
          void this.#onResult(lost.map((t) => failedAttempt(t.id, t.attempt, error))).catch(() => {});
        },
        (err: unknown) => {
          this.#log.debug({ err, worker: w.instance.id }, 'a worker did not say which tasks it holds');
        },
      );
    }
  }

  #onDirectoryChange(ev: { upserted: Instance[]; removed: Instance[] }): void {
    for (const inst of ev.upserted) this.#upsertWorker(inst);
    for (const inst of ev.removed) {
      this.#recovered.delete(inst.id);
      if (!this.#workers.delete(inst.id)) continue;
      this.#log.info({ worker: inst.id }, 'worker gone; its running tasks go back to their queues');
      this.#store.releaseWorker(inst.id, this.#now()).then(
        (res) => this.#afterTransition(res),
        (err: unknown) => this.#log.error({ err }, 'could not release a lost worker’s tasks'),
      );
    }
    this.#kick();
  }

  #armLeaseTimer(at: number): void {
    if (at >= this.#leaseTimerAt || this.#closed) return;
    clearTimeout(this.#leaseTimer);
    this.#leaseTimerAt = at;
    this.#leaseTimer = setTimeout(
      () => {
        this.#leaseTimerAt = Infinity;
        void this.#expireLeases();
      },
      Math.max(0, at - this.#now()) + 5,
    );
    this.#leaseTimer.unref();
  }

  async #expireLeases(): Promise<void> {
    if (this.#closed) return;
    try {
      const res = await this.#store.expireLeases(this.#now());
      if (res.requeued.length + res.finished.length > 0) {
        this.#log.warn({ requeued: res.requeued.length, failed: res.finished.length }, 'task leases lapsed');
      }
      this.#afterTransition(res);
      const next = await this.#store.nextLeaseExpiry();
      if (next !== undefined) this.#armLeaseTimer(next);
    } catch (err) {
      this.#log.error({ err }, 'lease expiry failed');
      this.#armLeaseTimer(this.#now() + 1_000);
    }
  }

  async #armBackoffTimer(): Promise<void> {
    const at = await this.#store.nextAvailableAt();
    if (at === undefined || this.#closed) return;
    if (at >= this.#backoffTimerAt) return;
    clearTimeout(this.#backoffTimer);
    this.#backoffTimerAt = at;
    this.#backoffTimer = setTimeout(
      () => {
        this.#backoffTimerAt = Infinity;
        for (const t of this.#knownTypes) this.#maybeQueued.add(t);
        this.#kick();
        void this.#armBackoffTimer();
      },
      Math.max(0, at - this.#now()) + 1,
    );
    this.#backoffTimer.unref();
  }

  /**
   * One pruning round: batches of at most `pruneBatch` tasks (one transaction each, with a turn
   * of the event loop between them for submits and results) until nothing is over the retention
   * limits. One batch a round capped pruning at 10,000 tasks a minute, below what a busy grid
   * ends: its store then grew for ever. Rounds never overlap.
   */
  async #prune(): Promise<void> {
    if (this.#pruning) return;
    this.#pruning = true;
    let pruned = 0;
    let batches = 0;
    try {
      for (;;) {
        const r = await this.#store.prune(this.#now(), {
          keepMs: this.#o.keepFinishedMs,
          keepMax: this.#o.keepFinishedMax,
          limit: this.#o.pruneBatch,
        });
        pruned += r.pruned;
        batches++;
        for (const [type, c] of r.byType ?? []) {
          const t = this.#prunedTotals.get(type) ?? { succeeded: 0, failed: 0, cancelled: 0 };
          t.succeeded += c.succeeded;
          t.failed += c.failed;
          t.cancelled += c.cancelled;
          this.#prunedTotals.set(type, t);
        }
        if (!r.more || r.pruned === 0 || this.#closed) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.#closed) break;
      }
    } catch (err) {
      if (!this.#closed) this.#log.error({ err }, 'prune failed');
    } finally {
      this.#pruning = false;
      if (pruned > 0) this.#log.info({ pruned, batches }, 'pruned finished tasks');
    }
  }

  // ---- stats --------------------------------------------------------------------------

  async #stats(): Promise<ReplyBody<'stats'>> {
    const counts = await this.#store.counts();
    const oldest = await this.#store.oldestQueued();
    const now = this.#now();
    const types: Record<string, TypeStats> = {};
    const totals = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, throughput: 0 };
    for (const name of new Set([...this.#knownTypes, ...counts.keys()])) {
      const c = counts.get(name) ?? { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      const timing = this.#timing.timing(name, now);
      const oldestAt = oldest.get(name);
      const pruned = this.#prunedTotals.get(name);
      types[name] = {
        ...c,
        ...timing,
        ...(oldestAt !== undefined && { oldestQueuedMs: Math.max(0, now - oldestAt) }),
        ...(pruned && { pruned: { ...pruned } }),
      };
      totals.queued += c.queued;
      totals.running += c.running;
      totals.succeeded += c.succeeded;
      totals.failed += c.failed;
      totals.cancelled += c.cancelled;
      totals.throughput += timing.throughput;
    }
    const workers: WorkerStats[] = [...this.#workers.values()].map((w) => ({
      id: w.instance.id,
      address: w.instance.address,
      types: w.instance.types,
      capacity: w.instance.capacity,
      inFlight: w.inFlight,
      completed: w.completed,
      failed: w.failed,
    }));
    return { types, workers, totals, transport: { ...this.#t.counters() } };
  }
}

/** An attempt that did not run: the worker refused it or never acknowledged it. */
function failedAttempt(id: number, attempt: number, error: WireError): TaskOutcome {
  return { id, attempt, ok: false, error, permanent: false, runMs: 0 };
}

/** An upper bound of a task view's JSON size in bytes: its texts as if every character were escaped. */
function viewBytes(v: TaskView): number {
  let n = 320 + (v.type.length + (v.worker?.length ?? 0) + (v.key?.length ?? 0)) * 6;
  if (v.result !== undefined) n += v.result.length * 6;
  if (v.error !== undefined) n += v.error.message.length * 6;
  if (v.payload !== undefined) n += v.payload.length * 6;
  return n;
}
