/**
 * The task store on SQLite (better-sqlite3): one file, WAL journal, one transaction per call,
 * prepared statements only. Queues are index ranges, not heap structures, so a million queued
 * tasks cost disk, not memory.
 */
import { accessSync, constants as fsConstants, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { WalFlusher } from './wal-flush.ts';
import { ErrorCode, TaskGridError, isErrorCode } from '../../errors.ts';
import type {
  TaskAssignment,
  TaskOutcome,
  TaskSpec,
  TaskStatus,
  TaskView,
  WireError,
} from '../../protocol/messages.ts';
import {
  STORE_DEFAULTS,
  STORE_LIMITS,
  backoffMs,
  busyError,
  decodeCursor,
  encodeCursor,
  isTaskId,
} from './store.ts';
import type {
  BatchRequest,
  BatchResult,
  ChangeResult,
  ClaimRequest,
  CompleteResult,
  FinalCounts,
  GetResult,
  ListQuery,
  PruneResult,
  RequeuedTask,
  RetentionPolicy,
  RetryPolicy,
  RunningTask,
  StatusCounts,
  SubmitOptions,
  SubmitResult,
  TaskPage,
  TaskStore,
  TransitionResult,
} from './store.ts';

/**
 * `synchronous` in WAL mode. `normal`: a commit is written to the WAL (the OS has it) before
 * the call returns, and fsynced at checkpoints: durable across a process crash (SIGKILL, OOM
 * kill) but the last commits may be lost if the machine loses power or the kernel crashes.
 * `full`: the WAL is also fsynced at every commit: durable across power loss, at the price of
 * one fsync per call.
 */
export type Synchronous = 'normal' | 'full';

/** Options of {@link SqliteTaskStore}. */
export interface SqliteTaskStoreOptions {
  /** The database file (its directory is created), or `:memory:` for tests. */
  readonly path: string;
  /** See {@link Synchronous}; default `normal`. */
  readonly synchronous?: Synchronous;
  /** Backoff of failed attempts; defaults in {@link STORE_DEFAULTS}. */
  readonly retry?: Partial<RetryPolicy>;
  /** Source of backoff jitter, in [0, 1). */
  readonly random?: () => number;
  /** SQLite page cache in KiB (memory held for hot index pages). */
  readonly cacheKiB?: number;
  /** Refuse to grow the file beyond about this many bytes (TG_ERR_STORE), like a full disk. */
  readonly maxBytes?: number;
  /** Open an existing file for reading only; every write rejects with TG_ERR_STORE. */
  readonly readOnly?: boolean;
  /**
   * Hold the file's lock for as long as the store is open (SQLite's exclusive locking mode),
   * so that a second dispatcher on the same file fails at start instead of sharing its
   * queues. Also spares WAL's shared-memory index. Default true.
   */
  readonly exclusive?: boolean;
  /**
   * Flush the WAL in the background every this many commits (0: never); see
   * {@link WalFlusher}. Only with `synchronous: 'normal'` on an exclusive file (FULL syncs
   * every commit itself). Default {@link SQLITE_DEFAULTS}.walFlushCommits.
   */
  readonly walFlushCommits?: number;
}

/** Defaults of the SQLite store; measured with `bench/store.ts`. */
export const SQLITE_DEFAULTS = {
  synchronous: 'normal' as Synchronous,
  /**
   * Page cache. The hot pages are few (the right edge of the tables and indexes, where tasks
   * are added, and the left edge of each queue, where they are claimed): 8 MiB held every page
   * a million-task queue touched; 32 MiB pushed the dispatcher past 200 MiB RSS at that depth.
   */
  cacheKiB: 8 * 1024,
  /**
   * Pages of new files. A commit writes each page it touched to the WAL, whole: 4 KiB pages
   * measured 25% less time per lone task than 8 KiB, and half the checkpoint stall (p99).
   */
  pageSize: 4096,
  /** Keeps the WAL file from staying huge after a burst (it is reset after checkpoints). */
  journalSizeLimit: 64 * 1024 * 1024,
  /**
   * WAL pages between automatic checkpoints: SQLite's default. 10,000 measured better (a
   * checkpoint's cost is mostly its fsyncs; round-trip p99 about 24 -> 5-9 ms, see
   * docs/PERFORMANCE.md) but let the WAL reach about 80 MB, which stalled a dispatcher on a
   * 64 MiB data disk that 1,000 pages serve (test/chaos/storage.test.ts at full scale).
   */
  walAutocheckpointPages: 1_000,
  /**
   * Commits between background flushes of the WAL (src/dispatcher/store/wal-flush.ts): each
   * checkpoint then syncs what the last few commits wrote, not 1,000 pages. Every 128 commits
   * (about 64 sequential tasks, 2-3 flushes between checkpoints): round-trip p99 -20 to -30%,
   * p50 about +5%. Every 16: p99 as low, but p50 +100 us, as commits waited for the flushes
   * (docs/PERFORMANCE.md).
   */
  walFlushCommits: 128,
  /** Another process holding the file: fail at start after this long rather than hang. */
  busyTimeoutMs: 1_000,
} as const;

/** Task states as stored. `delayed` is a queued task backing off: `queued` to the outside. */
const State = {
  ready: 0,
  running: 1,
  succeeded: 2,
  failed: 3,
  cancelled: 4,
  delayed: 5,
} as const;
type State = (typeof State)[keyof typeof State];

/** Index of each public status in the counters (and stored state code of all but queued). */
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const satisfies TaskStatus[];
const publicStatus = (state: number): number => (state === State.delayed ? 0 : state);

/**
 * Schema migrations: entry `n` takes `user_version` n to n+1. Append, never edit: a file
 * written by a version of this code carries its `user_version`.
 */
const MIGRATIONS: ReadonlyArray<(db: Database.Database) => void> = [
  (db) => {
    db.exec(`
      -- Small named integers: the id sequence lives here (not in max(id)) so that an id is
      -- never reused once pruned.
      CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta (name, value) VALUES ('next_id', 1);

      -- Type names interned: rows and indexes carry a small integer, not the name.
      CREATE TABLE types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);

      -- Tasks per type and public status, kept in the transactions that move tasks, so that
      -- counts never scan the tasks.
      CREATE TABLE counts (
        type_id INTEGER NOT NULL,
        status INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (type_id, status)
      ) WITHOUT ROWID;

      -- Small fixed columns first, the large texts last: SQLite decodes columns in order.
      -- attempts is the absolute attempt number (the fencing token); attempt_base its value
      -- at the last retry, so attempts - attempt_base is the attempts of this round.
      CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        type_id INTEGER NOT NULL,
        state INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        attempt_base INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        available_at INTEGER,
        started_at INTEGER,
        finished_at INTEGER,
        lease_until INTEGER,
        worker TEXT,
        error_code TEXT,
        error_message TEXT,
        key TEXT,
        payload TEXT NOT NULL,
        result TEXT
      );

      -- Claim order within a type: a range scan that stops after LIMIT rows.
      CREATE INDEX tasks_ready ON tasks (type_id, priority DESC, id) WHERE state = 0;
      -- Backing-off tasks by due time, promoted to ready by claim.
      CREATE INDEX tasks_delayed ON tasks (type_id, available_at) WHERE state = 5;
      -- Running attempts by lease (small: bounded by worker capacity).
      CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 1;
      -- Finished tasks by age, for pruning.
      CREATE INDEX tasks_finished ON tasks (finished_at) WHERE state IN (2, 3, 4);
      -- Listing by status and/or type, newest first (covering for ids).
      CREATE INDEX tasks_list ON tasks (state, type_id, id);
      CREATE UNIQUE INDEX tasks_key ON tasks (key) WHERE key IS NOT NULL;
    `);
  },
  (db) => {
    db.exec(`
      -- Fewer pages per commit (docs/PERFORMANCE.md, "The store"): the counters and the running
      -- attempts live in the store's memory, rebuilt from the rows when the file is opened
      -- (the tasks_list index covers both), and the id sequence is written only by pruning.
      -- A commit of a lone task used to write 5-6 pages; it now writes 3.
      DROP INDEX tasks_running;
      DROP TABLE counts;
    `);
  },
];

/** The schema version this code reads and writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings a database to {@link SCHEMA_VERSION} (or to `target`, for tests of old files), one
 * transaction per step. A file from a newer version is refused rather than misread.
 */
export function migrate(db: Database.Database, target: number = MIGRATIONS.length): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new TaskGridError(
      ErrorCode.STORE,
      `task store schema version ${version} is newer than this TaskGrid understands (${MIGRATIONS.length})`,
    );
  }
  for (let v = version; v < Math.min(target, MIGRATIONS.length); v++) {
    const step = MIGRATIONS[v];
    if (step === undefined) break;
    db.transaction(() => {
      step(db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

/** Columns of a task view, payload excluded. */
const VIEW_COLUMNS = `id, type_id, state, priority, attempts - attempt_base AS attempts, max_attempts, timeout_ms,
  created_at, started_at, finished_at, worker, error_code, error_message, key, result`;

/** A running attempt's view columns, plus what ending it needs. */
const ATTEMPT_COLUMNS = `${VIEW_COLUMNS}, attempts AS attempt, lease_until`;

interface ViewRow {
  id: number;
  type_id: number;
  state: number;
  priority: number;
  attempts: number;
  max_attempts: number;
  timeout_ms: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  worker: string | null;
  error_code: string | null;
  error_message: string | null;
  key: string | null;
  result: string | null;
  payload?: string;
}

/** A running attempt, read to decide what happens when it ends (and to report it). */
interface AttemptRow extends ViewRow {
  /** The absolute attempt number (`attempts` is this round's count). */
  attempt: number;
  worker: string;
  lease_until: number;
}

interface ReadyRow {
  id: number;
  priority: number;
  attempts: number;
  attempt_base: number;
  max_attempts: number;
  timeout_ms: number;
  created_at: number;
  key: string | null;
  payload: string;
}

/**
 * A task submitted in a batch whose row is written only once the batch's claims are known
 * (see #batch): straight as running when a claim takes it, else as ready.
 */
interface HeldTask {
  readonly id: number;
  readonly priority: number;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly payload: string;
}

/** The held tasks of one type, in id order until the first claim sorts them into claim order. */
class HeldQueue {
  readonly tasks: HeldTask[] = [];
  /** The first task not yet claimed nor written. */
  next = 0;
  sorted = false;
  get size(): number {
    return this.tasks.length - this.next;
  }
}

const MAX_PRIORITY = 1000;
const MAX_TIMEOUT_MS = 86_400_000;
const MAX_ATTEMPTS = 100;

/** Counter changes of one transaction, written once at its end. */
class CountDeltas {
  readonly #deltas = new Map<number, number>();
  add(typeId: number, state: number, delta: number): void {
    const k = typeId * 8 + publicStatus(state);
    this.#deltas.set(k, (this.#deltas.get(k) ?? 0) + delta);
  }
  move(typeId: number, from: number, to: number): void {
    if (publicStatus(from) === publicStatus(to)) return;
    this.add(typeId, from, -1);
    this.add(typeId, to, 1);
  }
  pending(typeId: number, status: number): number {
    return this.#deltas.get(typeId * 8 + status) ?? 0;
  }
  /** Adds these changes to `into` (the transaction's pending counters). */
  flush(into: Map<number, number>): void {
    for (const [k, d] of this.#deltas) if (d !== 0) into.set(k, (into.get(k) ?? 0) + d);
  }
}

function checkSpec(spec: TaskSpec, options: SubmitOptions): string | undefined {
  if (typeof spec.type !== 'string' || spec.type.length === 0 || spec.type.length > 64)
    return 'a task type is 1 to 64 characters';
  if (typeof spec.payload !== 'string') return 'a payload is a string';
  if (spec.key !== undefined && (typeof spec.key !== 'string' || spec.key.length === 0))
    return 'an idempotency key is a non-empty string';
  const priority = spec.priority ?? 0;
  if (!Number.isInteger(priority) || Math.abs(priority) > MAX_PRIORITY)
    return `priority is an integer from -${MAX_PRIORITY} to ${MAX_PRIORITY}`;
  const timeoutMs = spec.timeoutMs ?? options.timeoutMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS)
    return `timeoutMs is an integer from 1 to ${MAX_TIMEOUT_MS}`;
  const maxAttempts = spec.maxAttempts ?? options.maxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > MAX_ATTEMPTS)
    return `maxAttempts is an integer from 1 to ${MAX_ATTEMPTS}`;
  return undefined;
}

/** Why the directory cannot be written to (a read-only file system, no permission), or undefined. */
function unwritable(dir: string): string | undefined {
  try {
    accessSync(dir, fsConstants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return `the data directory ${dir} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') return `the data directory ${dir} is not writable`;
    return undefined;
  }
}

/**
 * The store's failure as TG_ERR_STORE. A file that could not be written (SQLite's I/O,
 * read-only, cannot-open and full errors) also says where the data lives and what to look at:
 * why `dir` cannot be written to if it cannot, else the likely causes. `dir` is the data
 * directory where the caller knows it.
 */
function storeError(what: string, err: unknown, dir?: string): TaskGridError {
  if (err instanceof TaskGridError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const detail = err instanceof Error ? err.message : String(err);
  let message = `task store: ${what} failed: ${detail}${typeof code === 'string' ? ` (${code})` : ''}`;
  // Opening states unwritable()'s reason in `what` already: not said twice.
  if (
    typeof code === 'string' &&
    /^SQLITE_(IOERR|READONLY|CANTOPEN|FULL)/.test(code) &&
    !what.includes('the data directory')
  ) {
    const why = dir === undefined ? undefined : unwritable(dir);
    const where = dir ?? 'the data directory';
    const likely = code.startsWith('SQLITE_FULL') ? 'file system full?' : 'read-only or failing file system?';
    message += `: ${why ?? `could not write ${where} (${likely})`}`;
  }
  return new TaskGridError(ErrorCode.STORE, message, { cause: err });
}

/**
 * {@link TaskStore} on a SQLite file. Synchronous underneath (better-sqlite3): each call runs
 * its transaction to completion before its promise is returned, so calls never interleave.
 *
 * @example
 * const store = new SqliteTaskStore({ path: join(home, 'data', 'dispatcher.db') });
 */
export class SqliteTaskStore implements TaskStore {
  readonly #db: Database.Database;
  /** The data directory, named in errors (undefined in memory). */
  readonly #dir: string | undefined;
  readonly #retry: RetryPolicy;
  readonly #random: () => number;
  /** Committed type ids; ids are never deleted nor renumbered, so the cache never goes stale. */
  readonly #typeIds = new Map<string, number>();
  readonly #typeNames = new Map<number, string>();
  /** Types inserted by the running transaction: cached only once it commits. */
  readonly #pendingTypes = new Map<string, number>();
  /**
   * Every running attempt (state 1), as `attempt` would read it, by task id: loaded from the
   * rows at open, kept by the transactions that start and end attempts, and loaded again from
   * the rows when a transaction fails. Bounded by the tasks running at once. Lease expiry,
   * releasing a lost worker and listing what runs read it instead of an index on the table.
   * The UPDATE that ends an attempt still checks the fence (state and attempt) itself.
   */
  readonly #runningRows = new Map<number, AttemptRow>();
  /** Tasks per type and public status (key typeId * 8 + status), as committed. */
  readonly #counts = new Map<number, number>();
  /** Counter changes of the running transaction: added to #counts if it commits. */
  readonly #txCounts = new Map<number, number>();
  /** The next task id: above every id ever stored (pruning records it in `meta`). */
  #nextId = 1;
  /**
   * Per type id, a time before which no backing-off (delayed) task of the type is due: at most
   * the earliest `available_at` among them, Infinity when there are none. A claim before it
   * skips the UPDATE that promotes due tasks (an index probe and a write statement per claim,
   * for nothing in the common case). A type not listed is unknown: its next claim promotes
   * and reads the earliest due time left. Requeues lower it; a failed transaction forgets all.
   */
  readonly #delayedFrom = new Map<number, number>();
  /** The held tasks of the batch being run, by type id (see #batch); undefined outside one. */
  #held: Map<number, HeldQueue> | undefined;
  readonly #s: ReturnType<typeof prepare>;
  readonly #tx: {
    submit: (specs: readonly TaskSpec[], now: number, options: SubmitOptions) => SubmitResult[];
    claim: (request: ClaimRequest, typeId: number, now: number) => TaskAssignment[];
    complete: (outcomes: readonly TaskOutcome[], now: number) => CompleteResult;
    batch: (request: BatchRequest, now: number) => BatchResult;
    expire: (now: number, limit: number) => TransitionResult;
    release: (worker: string, now: number) => TransitionResult;
    cancel: (id: number, now: number) => ChangeResult | undefined;
    retry: (id: number, now: number) => ChangeResult | undefined;
    prune: (now: number, policy: RetentionPolicy) => PruneResult;
  };
  #closed = false;
  /** Background flushes of the WAL; undefined when they would not help. */
  readonly #walFlusher: WalFlusher | undefined;

  constructor(options: SqliteTaskStoreOptions) {
    const { path } = options;
    const memory = path === ':memory:';
    const readOnly = options.readOnly ?? false;
    this.#dir = memory ? undefined : dirname(path);
    this.#retry = { ...STORE_DEFAULTS.retry, ...options.retry };
    this.#random = options.random ?? Math.random;
    let db: Database.Database | undefined;
    try {
      if (!memory && !readOnly) mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, {
        readonly: readOnly,
        fileMustExist: readOnly,
        timeout: SQLITE_DEFAULTS.busyTimeoutMs,
      });
      configure(db, options);
      if (readOnly) {
        const version = db.pragma('user_version', { simple: true }) as number;
        if (version !== SCHEMA_VERSION)
          throw new TaskGridError(
            ErrorCode.STORE,
            `task store schema version ${version} is not ${SCHEMA_VERSION} and the file is opened read-only`,
          );
      } else {
        migrate(db);
      }
      this.#s = prepare(db);
      this.#load();
    } catch (err) {
      db?.close();
      // SQLite reports a read-only or unwritable directory as an I/O or lock error: say what it is.
      const why = !memory && !readOnly ? unwritable(dirname(path)) : undefined;
      throw storeError(why ? `opening ${path} (${why})` : `opening ${path}`, err);
    }
    this.#db = db;
    const flushEvery = options.walFlushCommits ?? SQLITE_DEFAULTS.walFlushCommits;
    this.#walFlusher =
      !memory &&
      !readOnly &&
      flushEvery > 0 &&
      (options.exclusive ?? true) &&
      (options.synchronous ?? SQLITE_DEFAULTS.synchronous) === 'normal'
        ? new WalFlusher(`${path}-wal`, flushEvery)
        : undefined;
    this.#tx = {
      submit: this.#transaction((specs, now, opts) => this.#submit(specs, now, opts)),
      claim: this.#transaction((request, typeId, now) => this.#claim(request, typeId, now)),
      complete: this.#transaction((outcomes, now) => this.#complete(outcomes, now)),
      batch: this.#transaction((request, now) => this.#batch(request, now)),
      expire: this.#transaction((now, limit) => this.#expire(now, limit)),
      release: this.#transaction((worker, now) => this.#release(worker, now)),
      cancel: this.#transaction((id, now) => this.#cancel(id, now)),
      retry: this.#transaction((id, now) => this.#retryTask(id, now)),
      prune: this.#transaction((now, policy) => this.#prune(now, policy)),
    };
  }

  submit(specs: readonly TaskSpec[], now: number, options: SubmitOptions): Promise<SubmitResult[]> {
    return this.#call('submit', () => (specs.length === 0 ? [] : this.#tx.submit(specs, now, options)));
  }

  claim(request: ClaimRequest, now: number): Promise<TaskAssignment[]> {
    return this.#call('claim', () => {
      const typeId = this.#findTypeId(request.type);
      if (typeId === undefined || !(request.limit >= 1)) return [];
      return this.#tx.claim(request, typeId, now);
    });
  }

  complete(outcomes: readonly TaskOutcome[], now: number): Promise<CompleteResult> {
    return this.#call('complete', () =>
      outcomes.length === 0 ? { recorded: 0, finished: [], requeued: [] } : this.#tx.complete(outcomes, now),
    );
  }

  batch(request: BatchRequest, now: number): Promise<BatchResult> {
    return this.#call('batch', () => this.#tx.batch(request, now));
  }

  expireLeases(now: number, limit: number = STORE_DEFAULTS.expireLimit): Promise<TransitionResult> {
    return this.#call('expireLeases', () => this.#tx.expire(now, limit));
  }

  releaseWorker(worker: string, now: number): Promise<TransitionResult> {
    return this.#call('releaseWorker', () => this.#tx.release(worker, now));
  }

  cancel(id: number, now: number): Promise<ChangeResult | undefined> {
    return this.#call('cancel', () => (isTaskId(id) ? this.#tx.cancel(id, now) : undefined));
  }

  retry(id: number, now: number): Promise<ChangeResult | undefined> {
    return this.#call('retry', () => (isTaskId(id) ? this.#tx.retry(id, now) : undefined));
  }

  get(ids: readonly number[], options?: { readonly payload?: boolean }): Promise<GetResult> {
    const stmt = options?.payload === true ? this.#s.viewWithPayload : this.#s.view;
    return this.#lookUp('get', ids, (id) => stmt.get(id) as ViewRow | undefined);
  }

  ended(ids: readonly number[]): Promise<GetResult> {
    const s = this.#s;
    // A running attempt is in memory: no read. Otherwise its state alone says whether the view
    // is wanted (most tasks of a fresh watch are still open).
    return this.#lookUp('ended', ids, (id) => {
      if (this.#runningRows.has(id)) return null;
      const state = s.state.get(id) as number | undefined;
      if (state === undefined) return undefined;
      const ended = state === State.succeeded || state === State.failed || state === State.cancelled;
      return ended ? (s.view.get(id) as ViewRow) : null;
    });
  }

  /**
   * Views of tasks by id, each id once, in the order asked; only valid ids are read. `read`
   * gives a task's row, undefined when there is no such task, null when it is not wanted.
   */
  #lookUp(
    what: string,
    ids: readonly number[],
    read: (id: number) => ViewRow | null | undefined,
  ): Promise<GetResult> {
    return this.#call(what, () => {
      const seen = new Set<number>();
      const tasks: TaskView[] = [];
      const missing: number[] = [];
      for (const id of ids) {
        if (seen.has(id)) continue;
        seen.add(id);
        const row = isTaskId(id) ? read(id) : undefined;
        if (row === undefined) missing.push(id);
        else if (row !== null) tasks.push(this.#view(row));
      }
      return { tasks, missing };
    });
  }

  list(query: ListQuery): Promise<TaskPage> {
    return this.#call('list', () => this.#list(query));
  }

  counts(): Promise<Map<string, StatusCounts>> {
    return this.#call('counts', () => {
      const out = new Map<string, StatusCounts>();
      for (const { id, name } of this.#s.allTypes.all() as { id: number; name: string }[]) {
        this.#remember(id, name);
        out.set(name, { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
      }
      for (const [k, n] of this.#counts) {
        const counts = out.get(this.#typeName(Math.floor(k / 8)));
        const status = STATUSES[k % 8];
        if (counts !== undefined && status !== undefined) counts[status] = n;
      }
      return out;
    });
  }

  oldestQueued(): Promise<Map<string, number>> {
    return this.#call('oldestQueued', () => {
      const out = new Map<string, number>();
      for (const { id: typeId, name } of this.#s.allTypes.all() as { id: number; name: string }[]) {
        if (this.#count(typeId, 0) === 0) continue;
        // One indexed MIN per state: MIN over `state IN (0, 5)` would scan the type's queue.
        let oldest: number | undefined;
        for (const state of [State.ready, State.delayed]) {
          const id = this.#s.oldestInState.get(state, typeId) as number | null;
          if (id !== null && (oldest === undefined || id < oldest)) oldest = id;
        }
        if (oldest === undefined) continue;
        const createdAt = this.#s.createdAt.get(oldest) as number | undefined;
        if (createdAt !== undefined) out.set(name, createdAt);
      }
      return out;
    });
  }

  queueDepth(type: string): Promise<number> {
    return this.#call('queueDepth', () => {
      const typeId = this.#findTypeId(type);
      return typeId === undefined ? 0 : this.#count(typeId, 0);
    });
  }

  nextAvailableAt(type?: string): Promise<number | undefined> {
    return this.#call('nextAvailableAt', () => {
      let typeIds: number[];
      if (type === undefined) {
        typeIds = (this.#s.allTypes.all() as { id: number }[]).map((t) => t.id);
      } else {
        const typeId = this.#findTypeId(type);
        typeIds = typeId === undefined ? [] : [typeId];
      }
      let earliest: number | undefined;
      // One indexed MIN per type: the delayed index is ordered by due time within a type.
      for (const typeId of typeIds) {
        const at = this.#s.nextDelayed.get(typeId) as number | null;
        if (at !== null && (earliest === undefined || at < earliest)) earliest = at;
      }
      return earliest;
    });
  }

  nextLeaseExpiry(): Promise<number | undefined> {
    return this.#call('nextLeaseExpiry', () => {
      let at: number | undefined;
      for (const row of this.#runningRows.values())
        if (at === undefined || row.lease_until < at) at = row.lease_until;
      return at;
    });
  }

  listRunning(worker?: string): Promise<RunningTask[]> {
    return this.#call('listRunning', () => {
      return this.#runningBy(worker).map((r) => ({
        id: r.id,
        type: this.#typeName(r.type_id),
        worker: r.worker,
        attempt: r.attempt,
        leaseUntil: r.lease_until,
      }));
    });
  }

  prune(now: number, policy: RetentionPolicy): Promise<PruneResult> {
    return this.#call('prune', () => this.#tx.prune(now, policy));
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#walFlusher?.close();
      try {
        this.#db.close();
      } catch (err) {
        return Promise.reject(storeError('close', err, this.#dir));
      }
    }
    return Promise.resolve();
  }

  /** Runs one operation; any failure becomes a TG_ERR_STORE rejection. */
  #call<T>(what: string, fn: () => T): Promise<T> {
    try {
      if (this.#closed) throw new TaskGridError(ErrorCode.STORE, 'task store is closed');
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(storeError(what, err, this.#dir));
    }
  }

  /**
   * Wraps a function in a write transaction (BEGIN IMMEDIATE: the write lock is taken at the
   * start, so the transaction cannot fail half-way for want of it). Types it created are
   * cached only if it commits.
   */
  #transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    const tx = this.#db.transaction(fn);
    return (...args: A): R => {
      const nextId = this.#nextId;
      try {
        const result = tx.immediate(...args);
        this.#walFlusher?.committed();
        for (const [name, id] of this.#pendingTypes) this.#remember(id, name);
        for (const [k, d] of this.#txCounts) this.#counts.set(k, (this.#counts.get(k) ?? 0) + d);
        return result;
      } catch (err) {
        // Rolled back: what the transaction changed in memory goes back to what the file says.
        this.#nextId = nextId;
        this.#loadRunning();
        this.#delayedFrom.clear();
        throw err;
      } finally {
        this.#pendingTypes.clear();
        this.#txCounts.clear();
      }
    };
  }

  #remember(id: number, name: string): void {
    this.#typeIds.set(name, id);
    this.#typeNames.set(id, name);
  }

  #findTypeId(name: string): number | undefined {
    const cached = this.#typeIds.get(name) ?? this.#pendingTypes.get(name);
    if (cached !== undefined) return cached;
    const id = this.#s.typeId.get(name) as number | undefined;
    // Not inserted by the running transaction (that one is pending), so already committed.
    if (id !== undefined) this.#remember(id, name);
    return id;
  }

  #typeIdForInsert(name: string): number {
    const found = this.#findTypeId(name);
    if (found !== undefined) return found;
    const id = Number(this.#s.insertType.run(name).lastInsertRowid);
    this.#pendingTypes.set(name, id);
    return id;
  }

  #typeName(id: number): string {
    const cached = this.#typeNames.get(id);
    if (cached !== undefined) return cached;
    for (const [name, pendingId] of this.#pendingTypes) if (pendingId === id) return name;
    const name = this.#s.typeName.get(id) as string | undefined;
    if (name === undefined) throw new TaskGridError(ErrorCode.STORE, `task store: type ${id} is unknown`);
    this.#remember(id, name);
    return name;
  }

  /** Tasks of a type in a public status, the running transaction's changes included. */
  #count(typeId: number, status: number): number {
    const k = typeId * 8 + status;
    return (this.#counts.get(k) ?? 0) + (this.#txCounts.get(k) ?? 0);
  }

  /** Reads what the store keeps in memory from the file: counters, running attempts, next id. */
  #load(): void {
    const s = this.#s;
    this.#counts.clear();
    for (const row of s.countRows.all() as { type_id: number; state: number; n: number }[]) {
      const k = row.type_id * 8 + publicStatus(row.state);
      this.#counts.set(k, (this.#counts.get(k) ?? 0) + row.n);
    }
    const maxId = (s.maxId.get() as number | null) ?? 0;
    this.#nextId = Math.max(maxId + 1, (s.nextId.get() as number | undefined) ?? 1);
    this.#loadRunning();
  }

  /** Running attempts (of one worker, or all) by lease expiry. */
  #runningBy(worker?: string): AttemptRow[] {
    const rows: AttemptRow[] = [];
    for (const row of this.#runningRows.values())
      if (worker === undefined || row.worker === worker) rows.push(row);
    return rows.sort((a, b) => a.lease_until - b.lease_until || a.id - b.id);
  }

  #loadRunning(): void {
    this.#runningRows.clear();
    for (const row of this.#s.running.all() as AttemptRow[]) this.#runningRows.set(row.id, row);
  }

  #view(row: ViewRow): TaskView {
    const view: TaskView = {
      id: row.id,
      type: this.#typeName(row.type_id),
      status: STATUSES[publicStatus(row.state)] ?? 'queued',
      priority: row.priority,
      attempts: row.attempts,
      maxAttempts: row.max_attempts,
      timeoutMs: row.timeout_ms,
      createdAt: row.created_at,
    };
    if (row.payload !== undefined) view.payload = row.payload;
    if (row.result !== null) view.result = row.result;
    if (row.error_code !== null)
      view.error = {
        code: isErrorCode(row.error_code) ? row.error_code : ErrorCode.INTERNAL,
        message: row.error_message ?? '',
      };
    if (row.key !== null) view.key = row.key;
    if (row.started_at !== null) view.startedAt = row.started_at;
    if (row.finished_at !== null) view.finishedAt = row.finished_at;
    if (row.worker !== null) view.worker = row.worker;
    return view;
  }

  #submit(specs: readonly TaskSpec[], now: number, options: SubmitOptions): SubmitResult[] {
    const s = this.#s;
    let nextId = this.#nextId;
    const results: SubmitResult[] = [];
    const batchKeys = new Map<string, number>();
    const deltas = new CountDeltas();
    const maxQueued = options.maxQueued;
    const depthBefore = new Map<number, number>();
    for (const spec of specs) {
      const invalid = checkSpec(spec, options);
      if (invalid !== undefined) {
        results.push({ error: { code: ErrorCode.BAD_REQUEST, message: invalid } });
        continue;
      }
      const key = spec.key ?? null;
      if (key !== null) {
        const inBatch = batchKeys.get(key);
        if (inBatch !== undefined) {
          results.push({ id: inBatch, duplicate: true });
          continue;
        }
      }
      const typeId = this.#typeIdForInsert(spec.type);
      if (maxQueued !== undefined) {
        let before = depthBefore.get(typeId);
        if (before === undefined) depthBefore.set(typeId, (before = this.#count(typeId, 0)));
        if (before + deltas.pending(typeId, 0) >= maxQueued) {
          // A full queue still answers a resubmission with its task.
          const existing = key === null ? undefined : (s.idByKey.get(key) as number | undefined);
          results.push(
            existing === undefined
              ? { error: busyError(spec.type, maxQueued) }
              : { id: existing, duplicate: true },
          );
          continue;
        }
      }
      const held = this.#held;
      if (held !== undefined && key === null) {
        // No key, so no conflict to find out: the row is written by #batch, once it knows
        // whether a claim of the same batch takes the task.
        let q = held.get(typeId);
        if (q === undefined) held.set(typeId, (q = new HeldQueue()));
        q.tasks.push({
          id: nextId,
          priority: spec.priority ?? 0,
          maxAttempts: spec.maxAttempts ?? options.maxAttempts,
          timeoutMs: spec.timeoutMs ?? options.timeoutMs,
          payload: spec.payload,
        });
        results.push({ id: nextId, duplicate: false });
        deltas.add(typeId, State.ready, 1);
        nextId++;
        continue;
      }
      const inserted = s.insert.run(
        nextId,
        typeId,
        spec.priority ?? 0,
        spec.maxAttempts ?? options.maxAttempts,
        spec.timeoutMs ?? options.timeoutMs,
        now,
        key,
        spec.payload,
      ).changes;
      if (inserted === 0 && key !== null) {
        // The key's unique index refused the row: the key names an older task.
        const existing = s.idByKey.get(key) as number;
        batchKeys.set(key, existing);
        results.push({ id: existing, duplicate: true });
        continue;
      }
      if (key !== null) batchKeys.set(key, nextId);
      results.push({ id: nextId, duplicate: false });
      deltas.add(typeId, State.ready, 1);
      nextId++;
    }
    this.#nextId = nextId;
    deltas.flush(this.#txCounts);
    return results;
  }

  #claim(request: ClaimRequest, typeId: number, now: number): TaskAssignment[] {
    const s = this.#s;
    const held = this.#held?.get(typeId);
    if (held !== undefined && held.size > 0) {
      // Queued tasks of the type are the held ones and those in the file (ready or backing
      // off): with none in the file, the held ones are all the claim can take.
      if (this.#count(typeId, State.ready) === held.size) return this.#claimHeld(request, typeId, held, now);
      this.#writeHeld(typeId, held, now);
    }
    const due = this.#delayedFrom.get(typeId);
    if (due === undefined || due <= now) {
      s.promote.run(typeId, now);
      this.#delayedFrom.set(typeId, (s.nextDelayed.get(typeId) as number | null) ?? Infinity);
    }
    const rows = s.ready.all(typeId, Math.floor(request.limit)) as ReadyRow[];
    const out: TaskAssignment[] = [];
    const lease = request.leaseMs;
    for (const row of rows) {
      const attempt = row.attempts + 1;
      const leaseUntil = now + (typeof lease === 'number' ? lease : lease(row.timeout_ms));
      s.markRunning.run(request.worker, now, leaseUntil, row.id);
      out.push({ id: row.id, type: request.type, payload: row.payload, attempt, timeoutMs: row.timeout_ms });
      this.#runningRows.set(row.id, {
        id: row.id,
        type_id: typeId,
        state: State.running,
        priority: row.priority,
        attempts: attempt - row.attempt_base,
        max_attempts: row.max_attempts,
        timeout_ms: row.timeout_ms,
        created_at: row.created_at,
        started_at: now,
        finished_at: null,
        worker: request.worker,
        error_code: null,
        error_message: null,
        key: row.key,
        result: null,
        attempt,
        lease_until: leaseUntil,
      });
    }
    this.#countClaimed(typeId, out.length);
    return out;
  }

  /**
   * Claims held tasks of a type (none of the type in the file) in claim order, priority first
   * then id, as `ready` would read them once written: each row is written once, as running.
   */
  #claimHeld(request: ClaimRequest, typeId: number, held: HeldQueue, now: number): TaskAssignment[] {
    const s = this.#s;
    if (!held.sorted) {
      held.sorted = true;
      // Stable: within a priority, tasks stay in id order.
      if (held.tasks.length > 1) held.tasks.sort((a, b) => b.priority - a.priority);
    }
    const end = Math.min(held.tasks.length, held.next + Math.floor(request.limit));
    const out: TaskAssignment[] = [];
    const lease = request.leaseMs;
    for (let i = held.next; i < end; i++) {
      const t = held.tasks[i]!;
      const leaseUntil = now + (typeof lease === 'number' ? lease : lease(t.timeoutMs));
      s.insertRunning.run(
        t.id,
        typeId,
        t.priority,
        t.maxAttempts,
        t.timeoutMs,
        now,
        now,
        leaseUntil,
        request.worker,
        t.payload,
      );
      out.push({ id: t.id, type: request.type, payload: t.payload, attempt: 1, timeoutMs: t.timeoutMs });
      this.#runningRows.set(t.id, {
        id: t.id,
        type_id: typeId,
        state: State.running,
        priority: t.priority,
        attempts: 1,
        max_attempts: t.maxAttempts,
        timeout_ms: t.timeoutMs,
        created_at: now,
        started_at: now,
        finished_at: null,
        worker: request.worker,
        error_code: null,
        error_message: null,
        key: null,
        result: null,
        attempt: 1,
        lease_until: leaseUntil,
      });
    }
    held.next = end;
    this.#countClaimed(typeId, out.length);
    return out;
  }

  /** `n` tasks of a type claimed: counted as running, no longer as ready. */
  #countClaimed(typeId: number, n: number): void {
    if (n === 0) return;
    const deltas = new CountDeltas();
    deltas.add(typeId, State.ready, -n);
    deltas.add(typeId, State.running, n);
    deltas.flush(this.#txCounts);
  }

  /** Writes the held tasks of a type not claimed (yet) as ready rows. */
  #writeHeld(typeId: number, held: HeldQueue, now: number): void {
    const s = this.#s;
    for (let i = held.next; i < held.tasks.length; i++) {
      const t = held.tasks[i]!;
      // Without a key nothing can conflict; should the row not be written all the same, the
      // batch fails (and rolls back) rather than acknowledge a task it did not store.
      if (
        s.insert.run(t.id, typeId, t.priority, t.maxAttempts, t.timeoutMs, now, null, t.payload).changes !== 1
      )
        throw new TaskGridError(ErrorCode.STORE, `task store: task ${t.id} was not written`);
    }
    held.next = held.tasks.length;
  }

  #complete(outcomes: readonly TaskOutcome[], now: number): CompleteResult {
    const s = this.#s;
    const deltas = new CountDeltas();
    const finished: TaskView[] = [];
    const requeued: RequeuedTask[] = [];
    let recorded = 0;
    for (const outcome of outcomes) {
      if (!isTaskId(outcome.id)) continue;
      // The fence: only the attempt the task is running right now may end it (the UPDATEs
      // below check it again against the row itself).
      const row = this.#runningRows.get(outcome.id);
      if (row === undefined || row.attempt !== outcome.attempt) continue;
      this.#runningRows.delete(outcome.id);
      if (outcome.ok) {
        if (s.succeed.run(outcome.result, now, row.id, row.attempt).changes === 0) continue;
        recorded++;
        deltas.move(row.type_id, State.running, State.succeeded);
        row.state = State.succeeded;
        row.result = outcome.result;
        row.finished_at = now;
        row.error_code = row.error_message = null;
        finished.push(this.#view(row));
      } else if (this.#endAttempt(row, outcome.error, outcome.permanent, now, deltas, finished, requeued)) {
        recorded++;
      }
    }
    deltas.flush(this.#txCounts);
    return { recorded, finished, requeued };
  }

  /**
   * A batch's new tasks without a key are held in memory rather than written at once (see
   * #claim): a task that a claim of the same batch takes is then written once, as running,
   * instead of inserted as ready, read back and updated (a lone task's submit commit writes
   * two pages instead of three). The rest are written as ready before the batch ends. The
   * rows, ids, counts and claim order are what inserting them at once would give.
   */
  #batch(request: BatchRequest, now: number): BatchResult {
    const outcomes = request.complete ?? [];
    const completed: CompleteResult =
      outcomes.length === 0 ? { recorded: 0, finished: [], requeued: [] } : this.#complete(outcomes, now);
    const specs = request.submit?.specs ?? [];
    const hold = specs.length > 0 && request.claims !== undefined;
    if (hold) this.#held = new Map();
    try {
      return this.#submitAndClaim(request, specs, completed, now);
    } finally {
      if (hold) this.#held = undefined;
    }
  }

  #submitAndClaim(
    request: BatchRequest,
    specs: readonly TaskSpec[],
    completed: CompleteResult,
    now: number,
  ): BatchResult {
    const submitted =
      request.submit && specs.length > 0 ? this.#submit(specs, now, request.submit.options) : [];
    const claims = request.claims?.({ completed }) ?? [];
    const exhausted = new Set<string>();
    const claimed = claims.map((c) => {
      const out: TaskAssignment[] = [];
      for (const type of c.types) {
        const want = Math.floor(c.limit) - out.length;
        if (!(want >= 1)) break;
        if (exhausted.has(type)) continue;
        const typeId = this.#findTypeId(type);
        const got =
          typeId === undefined
            ? []
            : this.#claim({ type, limit: want, worker: c.worker, leaseMs: c.leaseMs }, typeId, now);
        if (got.length < want) exhausted.add(type);
        for (const a of got) out.push(a);
      }
      return out;
    });
    const held = this.#held;
    if (held !== undefined) for (const [typeId, q] of held) if (q.size > 0) this.#writeHeld(typeId, q, now);
    return { completed, submitted, claimed, exhausted };
  }

  /**
   * A running attempt ended without success: fail the task or requeue it after a backoff.
   * False when the task was not running that attempt (nothing changed).
   */
  #endAttempt(
    row: AttemptRow,
    error: WireError,
    permanent: boolean,
    now: number,
    deltas: CountDeltas,
    finished: TaskView[],
    requeued: RequeuedTask[],
  ): boolean {
    const s = this.#s;
    const round = row.attempts;
    this.#runningRows.delete(row.id);
    if (permanent || round >= row.max_attempts) {
      if (s.fail.run(now, error.code, error.message, row.id, row.attempt).changes === 0) return false;
      deltas.move(row.type_id, State.running, State.failed);
      row.state = State.failed;
      row.finished_at = now;
      row.error_code = error.code;
      row.error_message = error.message;
      finished.push(this.#view(row));
      return true;
    }
    const availableAt = now + backoffMs(this.#retry, round, this.#random);
    if (s.requeue.run(availableAt, error.code, error.message, row.id, row.attempt).changes === 0)
      return false;
    deltas.move(row.type_id, State.running, State.delayed);
    const due = this.#delayedFrom.get(row.type_id);
    if (due !== undefined && availableAt < due) this.#delayedFrom.set(row.type_id, availableAt);
    requeued.push({
      id: row.id,
      type: this.#typeName(row.type_id),
      worker: row.worker,
      attempt: row.attempt,
      availableAt,
    });
    return true;
  }

  #expire(now: number, limit: number): TransitionResult {
    const rows: AttemptRow[] = [];
    for (const row of this.#runningRows.values()) if (row.lease_until <= now) rows.push(row);
    rows.sort((a, b) => a.lease_until - b.lease_until || a.id - b.id);
    rows.length = Math.min(rows.length, Math.max(0, Math.floor(limit)));
    return this.#endAttempts(rows, now, (row) => ({
      code: ErrorCode.TASK_TIMEOUT,
      message: `no result from worker ${row.worker} before the lease of attempt ${row.attempt} ran out`,
    }));
  }

  #release(worker: string, now: number): TransitionResult {
    return this.#endAttempts(this.#runningBy(worker), now, (row) => ({
      code: ErrorCode.WORKER_LOST,
      message: `worker ${row.worker} was lost during attempt ${row.attempt}`,
    }));
  }

  #endAttempts(rows: AttemptRow[], now: number, error: (row: AttemptRow) => WireError): TransitionResult {
    const deltas = new CountDeltas();
    const finished: TaskView[] = [];
    const requeued: RequeuedTask[] = [];
    for (const row of rows) this.#endAttempt(row, error(row), false, now, deltas, finished, requeued);
    deltas.flush(this.#txCounts);
    return { finished, requeued };
  }

  #cancel(id: number, now: number): ChangeResult | undefined {
    const s = this.#s;
    const row = s.view.get(id) as ViewRow | undefined;
    if (row === undefined) return undefined;
    const before = row.state;
    const previous = STATUSES[publicStatus(before)] ?? 'queued';
    if (before === State.succeeded || before === State.failed || before === State.cancelled) {
      return { task: this.#view(row), previous, changed: false };
    }
    const message = 'cancelled';
    this.#runningRows.delete(id);
    s.cancel.run(now, ErrorCode.CANCELLED, message, id);
    const deltas = new CountDeltas();
    deltas.move(row.type_id, before, State.cancelled);
    deltas.flush(this.#txCounts);
    row.state = State.cancelled;
    row.finished_at = now;
    row.error_code = ErrorCode.CANCELLED;
    row.error_message = message;
    return { task: this.#view(row), previous, changed: true };
  }

  #retryTask(id: number, now: number): ChangeResult | undefined {
    const s = this.#s;
    const row = s.view.get(id) as ViewRow | undefined;
    if (row === undefined) return undefined;
    const before = row.state;
    const previous = STATUSES[publicStatus(before)] ?? 'queued';
    if (before !== State.failed && before !== State.cancelled) {
      return { task: this.#view(row), previous, changed: false };
    }
    s.retry.run(now, id);
    const deltas = new CountDeltas();
    deltas.move(row.type_id, before, State.ready);
    deltas.flush(this.#txCounts);
    return { task: this.#view(s.view.get(id) as ViewRow), previous, changed: true };
  }

  #prune(now: number, policy: RetentionPolicy): PruneResult {
    const s = this.#s;
    const limit = Math.max(0, Math.floor(policy.limit ?? STORE_DEFAULTS.pruneLimit));
    const deltas = new CountDeltas();
    let pruned = 0;
    const byType = new Map<string, FinalCounts>();
    const take = (rows: { id: number; type_id: number; state: number }[]): void => {
      for (const row of rows) {
        s.remove.run(row.id);
        deltas.add(row.type_id, row.state, -1);
        const name = this.#typeName(row.type_id);
        let c = byType.get(name);
        if (!c) byType.set(name, (c = { succeeded: 0, failed: 0, cancelled: 0 }));
        if (row.state === State.succeeded) c.succeeded++;
        else if (row.state === State.failed) c.failed++;
        else if (row.state === State.cancelled) c.cancelled++;
      }
      pruned += rows.length;
    };
    take(
      s.finishedBefore.all(now - policy.keepMs, limit) as { id: number; type_id: number; state: number }[],
    );
    const ageDone = pruned < limit;
    // Counters (with this transaction's deletions) say how many finished tasks remain.
    let finishedTotal = 0;
    for (const [k, n] of this.#counts) {
      const typeId = Math.floor(k / 8);
      const status = k % 8;
      if (status >= State.succeeded)
        finishedTotal += n + (this.#txCounts.get(k) ?? 0) + deltas.pending(typeId, status);
    }
    const excess = Math.max(0, finishedTotal - Math.max(0, policy.keepMax));
    const room = limit - pruned;
    if (excess > 0 && room > 0) {
      take(s.oldestFinished.all(Math.min(excess, room)) as { id: number; type_id: number; state: number }[]);
    }
    deltas.flush(this.#txCounts);
    // The id sequence is kept only here: ids above every stored one are free, except those of
    // pruned tasks, which must never come back.
    if (pruned > 0) s.setNextId.run(this.#nextId);
    return { pruned, byType, more: !ageDone || excess > room };
  }

  #list(query: ListQuery): TaskPage {
    const s = this.#s;
    const limit = query.limit;
    if (!Number.isInteger(limit) || limit < 1 || limit > STORE_LIMITS.maxPage)
      throw new TaskGridError(ErrorCode.BAD_REQUEST, `limit is an integer from 1 to ${STORE_LIMITS.maxPage}`);
    let below = Number.MAX_SAFE_INTEGER;
    if (query.cursor !== undefined) {
      const id = decodeCursor(query.cursor);
      if (id === undefined)
        throw new TaskGridError(ErrorCode.BAD_REQUEST, `not a task list cursor: ${query.cursor}`);
      below = id;
    }
    if (query.status !== undefined && !STATUSES.includes(query.status))
      throw new TaskGridError(ErrorCode.BAD_REQUEST, `not a task status: ${String(query.status)}`);
    const withPayload = query.payload === true;
    let ids: number[];
    if (query.status === undefined && query.type === undefined) {
      ids = s.pageAll.all(below, limit + 1) as number[];
    } else {
      let typeIds: number[];
      if (query.type !== undefined) {
        const typeId = this.#findTypeId(query.type);
        if (typeId === undefined) return { tasks: [] };
        typeIds = [typeId];
      } else {
        typeIds = (s.allTypes.all() as { id: number }[]).map((t) => t.id);
      }
      const states =
        query.status === undefined
          ? Object.values(State)
          : query.status === 'queued'
            ? [State.ready, State.delayed]
            : [STATUSES.indexOf(query.status)];
      // The list index holds each (state, type) range in id order: take the newest limit+1 of
      // each and merge, a bounded amount of work whatever the table's size.
      ids = [];
      for (const state of states)
        for (const typeId of typeIds)
          ids.push(...(s.pageOf.all(state, typeId, below, limit + 1) as number[]));
      ids.sort((a, b) => b - a);
      ids.length = Math.min(ids.length, limit + 1);
    }
    const more = ids.length > limit;
    if (more) ids.length = limit;
    const stmt = withPayload ? s.viewWithPayload : s.view;
    const tasks: TaskView[] = [];
    for (const id of ids) {
      const row = stmt.get(id) as ViewRow | undefined;
      if (row !== undefined) tasks.push(this.#view(row));
    }
    const last = ids[ids.length - 1];
    return more && last !== undefined ? { tasks, nextCursor: encodeCursor(last) } : { tasks };
  }
}

function configure(db: Database.Database, options: SqliteTaskStoreOptions): void {
  const readOnly = options.readOnly ?? false;
  const synchronous = options.synchronous ?? SQLITE_DEFAULTS.synchronous;
  if (synchronous !== 'normal' && synchronous !== 'full')
    throw new TaskGridError(
      ErrorCode.CONFIG,
      `synchronous is "normal" or "full", not "${String(synchronous)}"`,
    );
  if (!readOnly) {
    // Exclusive mode must precede the switch to WAL for the WAL index to live in the heap.
    if (options.exclusive ?? true) db.pragma('locking_mode = EXCLUSIVE');
    // Takes effect only on a new file (before its first table).
    db.pragma(`page_size = ${SQLITE_DEFAULTS.pageSize}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
    if (mode !== 'wal' && options.path !== ':memory:')
      throw new TaskGridError(ErrorCode.STORE, `could not switch the journal to WAL (got ${mode})`);
    db.pragma(`journal_size_limit = ${SQLITE_DEFAULTS.journalSizeLimit}`);
    db.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULTS.walAutocheckpointPages}`);
  }
  db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
  db.pragma(`cache_size = -${Math.max(1024, Math.floor(options.cacheKiB ?? SQLITE_DEFAULTS.cacheKiB))}`);
  db.pragma('temp_store = MEMORY');
  if (options.maxBytes !== undefined) {
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
  }
}

/**
 * Every statement, prepared once. Queue queries name their index (INDEXED BY): the planner,
 * seeing `state = ?` on the list index, would otherwise scan a whole status range and sort
 * it, where the partial index is already in the wanted order. A missing index then fails at
 * start instead of silently scanning a million rows.
 */
function prepare(db: Database.Database) {
  const p = (sql: string): Database.Statement => db.prepare(sql);
  /** A statement whose rows are their first column's value. */
  const v = (sql: string): Database.Statement => db.prepare(sql).pluck();
  return {
    nextId: v(`SELECT value FROM meta WHERE name = 'next_id'`),
    setNextId: p(`UPDATE meta SET value = ? WHERE name = 'next_id'`),
    typeId: v(`SELECT id FROM types WHERE name = ?`),
    typeName: v(`SELECT name FROM types WHERE id = ?`),
    insertType: p(`INSERT INTO types (name) VALUES (?)`),
    allTypes: p(`SELECT id, name FROM types ORDER BY id`),
    // Read once at open: a scan of the covering list index (about 0.1 s a million tasks).
    countRows: p(
      `SELECT type_id, state, COUNT(*) AS n FROM tasks INDEXED BY tasks_list GROUP BY state, type_id`,
    ),
    maxId: v(`SELECT MAX(id) FROM tasks`),
    insert: p(
      `INSERT INTO tasks (id, type_id, state, priority, attempts, max_attempts, timeout_ms, created_at, key, payload)
       VALUES (?, ?, 0, ?, 0, ?, ?, ?, ?, ?)
       ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING`,
    ),
    idByKey: v(`SELECT id FROM tasks WHERE key = ?`),
    // A new task claimed in the batch that submits it: the row insert then markRunning would
    // leave, written once. Only for tasks without a key (no conflict possible).
    insertRunning: p(
      `INSERT INTO tasks (id, type_id, state, priority, attempts, max_attempts, timeout_ms, created_at,
         started_at, lease_until, worker, payload)
       VALUES (?, ?, 1, ?, 1, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    promote: p(
      `UPDATE tasks INDEXED BY tasks_delayed SET state = 0 WHERE state = 5 AND type_id = ? AND available_at <= ?`,
    ),
    // `LIMIT +?`, not `LIMIT ?`: SQLite's planner reads the value bound to a bare parameter in
    // LIMIT, and so marks the statement to be prepared again on the next step after every
    // bind, even of the same value (twice the time of the whole query: 14 against 6.5 us). A
    // unary plus hides the value from the planner; the plan is fixed by INDEXED BY anyway.
    ready: p(
      `SELECT id, priority, attempts, attempt_base, max_attempts, timeout_ms, created_at, key, payload
       FROM tasks INDEXED BY tasks_ready
       WHERE state = 0 AND type_id = ? ORDER BY priority DESC, id LIMIT +?`,
    ),
    markRunning: p(
      `UPDATE tasks SET state = 1, attempts = attempts + 1, worker = ?, started_at = ?, lease_until = ?,
         available_at = NULL
       WHERE id = ?`,
    ),
    // Transitions re-read nothing: the running attempt's row is in memory (#runningRows) and
    // the view is built from it. UPDATE ... RETURNING measured 2-3x slower.
    succeed: p(
      `UPDATE tasks SET state = 2, result = ?, finished_at = ?, lease_until = NULL,
         error_code = NULL, error_message = NULL
       WHERE id = ? AND state = 1 AND attempts = ?`,
    ),
    fail: p(
      `UPDATE tasks SET state = 3, finished_at = ?, lease_until = NULL, error_code = ?, error_message = ?
       WHERE id = ? AND state = 1 AND attempts = ?`,
    ),
    requeue: p(
      `UPDATE tasks SET state = 5, available_at = ?, lease_until = NULL, started_at = NULL, worker = NULL,
         error_code = ?, error_message = ?
       WHERE id = ? AND state = 1 AND attempts = ?`,
    ),
    running: p(`SELECT ${ATTEMPT_COLUMNS} FROM tasks INDEXED BY tasks_list WHERE state = 1`),
    oldestInState: v(`SELECT MIN(id) FROM tasks INDEXED BY tasks_list WHERE state = ? AND type_id = ?`),
    createdAt: v(`SELECT created_at FROM tasks WHERE id = ?`),
    nextDelayed: v(
      `SELECT MIN(available_at) FROM tasks INDEXED BY tasks_delayed WHERE state = 5 AND type_id = ?`,
    ),
    state: v(`SELECT state FROM tasks WHERE id = ?`),
    view: p(`SELECT ${VIEW_COLUMNS} FROM tasks WHERE id = ?`),
    viewWithPayload: p(`SELECT ${VIEW_COLUMNS}, payload FROM tasks WHERE id = ?`),
    cancel: p(
      `UPDATE tasks SET state = 4, finished_at = ?, lease_until = NULL, error_code = ?, error_message = ?
       WHERE id = ?`,
    ),
    retry: p(
      `UPDATE tasks SET state = 0, attempt_base = attempts, available_at = ?,
         started_at = NULL, finished_at = NULL, lease_until = NULL, worker = NULL,
         error_code = NULL, error_message = NULL, result = NULL
       WHERE id = ?`,
    ),
    pageAll: v(`SELECT id FROM tasks WHERE id < ? ORDER BY id DESC LIMIT ?`),
    pageOf: v(
      `SELECT id FROM tasks INDEXED BY tasks_list WHERE state = ? AND type_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
    ),
    finishedBefore: p(
      `SELECT id, type_id, state FROM tasks INDEXED BY tasks_finished
       WHERE state IN (2, 3, 4) AND finished_at < ? ORDER BY finished_at LIMIT ?`,
    ),
    oldestFinished: p(
      `SELECT id, type_id, state FROM tasks INDEXED BY tasks_finished
       WHERE state IN (2, 3, 4) ORDER BY finished_at LIMIT ?`,
    ),
    remove: p(`DELETE FROM tasks WHERE id = ?`),
  };
}
