/**
 * The dispatcher's durable task store: the queue operations the dispatcher needs, stated apart
 * from any datastore. The SQLite implementation lives in `sqlite.ts`; a PostgreSQL one (for
 * dispatcher high availability) is meant to implement this same interface and pass the same
 * conformance suite (`test/dispatcher/store.case.ts`).
 */
import { ErrorCode } from '../../errors.ts';
import type {
  TaskAssignment,
  TaskOutcome,
  TaskSpec,
  TaskStatus,
  TaskView,
  WireError,
} from '../../protocol/messages.ts';

/** Defaults for fields a spec leaves out, and the queue bound, for one `submit` call. */
export interface SubmitOptions {
  /** Per-attempt timeout of a spec without `timeoutMs`. */
  readonly timeoutMs: number;
  /** Attempt budget of a spec without `maxAttempts`. */
  readonly maxAttempts: number;
  /**
   * Most queued tasks (waiting or backing off) one type may hold. A new task that would exceed
   * it is refused with TG_ERR_BUSY; a duplicate (same idempotency key) is never refused.
   */
  readonly maxQueued?: number;
}

/** The outcome of one submitted spec, in the order of the specs. */
export type SubmitResult =
  | {
      readonly id: number;
      /** True when the spec's idempotency key named an existing task: this is that task. */
      readonly duplicate: boolean;
    }
  | { readonly error: WireError };

/** What `claim` takes off one type's queue, for whom, and under which lease. */
export interface ClaimRequest {
  readonly type: string;
  /** Most tasks to hand out; fewer (or none) when fewer are claimable. */
  readonly limit: number;
  /** Opaque worker id, recorded on the task so that `releaseWorker` can find its tasks. */
  readonly worker: string;
  /**
   * Lease length in milliseconds, or a function of the task's per-attempt timeout (a lease is
   * usually the timeout plus a grace period for the result to travel back).
   */
  readonly leaseMs: number | ((timeoutMs: number) => number);
}

/**
 * A claim for one worker over several queues: up to `limit` tasks in all, taken from the
 * queues of `types` in that order (the next type only when the previous one ran dry).
 */
export interface MultiClaim {
  readonly types: readonly string[];
  readonly limit: number;
  readonly worker: string;
  readonly leaseMs: number | ((timeoutMs: number) => number);
}

/**
 * Several operations in one transaction (one commit), in this order: `complete`, `submit`,
 * then the claims that `claims` returns once it has seen what the first two did. The
 * dispatcher makes one such batch per turn of its event loop, so that a task's submit and its
 * hand-out to an idle worker share a commit, and so do a worker's results and its next tasks.
 */
export interface BatchRequest {
  readonly complete?: readonly TaskOutcome[];
  readonly submit?: { readonly specs: readonly TaskSpec[]; readonly options: SubmitOptions };
  /** Called inside the transaction, after `complete` and `submit`. */
  readonly claims?: (done: { readonly completed: CompleteResult }) => readonly MultiClaim[];
}

/** What a {@link BatchRequest} did: as `complete`, `submit` and `claim` would say. */
export interface BatchResult {
  readonly completed: CompleteResult;
  readonly submitted: SubmitResult[];
  /** One list per claim, in the order of the claims; each assignment names its type. */
  readonly claimed: TaskAssignment[][];
  /** Types whose claimable tasks ran out during the claims (a claim got fewer than it asked). */
  readonly exhausted: ReadonlySet<string>;
}

/** How a failed attempt is retried: exponential backoff with a cap and optional jitter. */
export interface RetryPolicy {
  /** Delay before the second attempt. */
  readonly baseMs: number;
  /** Growth of the delay per further attempt. */
  readonly factor: number;
  /** Ceiling of the delay. */
  readonly maxMs: number;
  /** Fraction of the delay removed at random (0 = none, 0.2 = up to 20% earlier). */
  readonly jitter: number;
}

/** A task put back in its queue after an attempt ended without success. */
export interface RequeuedTask {
  readonly id: number;
  readonly type: string;
  /** The worker whose attempt ended. */
  readonly worker: string;
  /** The attempt (fencing number) that ended. */
  readonly attempt: number;
  /** When the task becomes claimable again (epoch ms). */
  readonly availableAt: number;
}

/**
 * Attempts that ended (by a result, a lapsed lease or a lost worker): the tasks that reached a
 * final state, as the dispatcher reports them to waiting clients, and those that went back to
 * their queue.
 */
export interface TransitionResult {
  readonly finished: TaskView[];
  readonly requeued: RequeuedTask[];
}

/** What `complete` did with a batch of outcomes. */
export interface CompleteResult extends TransitionResult {
  /** Outcomes recorded; the rest were late, duplicate or for another attempt and were ignored. */
  readonly recorded: number;
}

/** What `cancel` or `retry` did with one task. */
export interface ChangeResult {
  /** The task after the call (unchanged when `changed` is false). */
  readonly task: TaskView;
  /** Its status before the call: `running` tells the caller to abort it on `task.worker`. */
  readonly previous: TaskStatus;
  /** False when the task's status did not allow the change (e.g. cancel of a finished task). */
  readonly changed: boolean;
}

/** A running attempt, as the dispatcher needs it after a restart. */
export interface RunningTask {
  readonly id: number;
  readonly type: string;
  readonly worker: string;
  readonly attempt: number;
  readonly leaseUntil: number;
}

/** Tasks of one type per status. */
export interface StatusCounts {
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

/** Tasks per final status. */
export interface FinalCounts {
  succeeded: number;
  failed: number;
  cancelled: number;
}

/** A page request over tasks, newest first. */
export interface ListQuery {
  readonly status?: TaskStatus;
  readonly type?: string;
  /** Page size, 1 to {@link STORE_LIMITS.maxPage}. */
  readonly limit: number;
  /** `nextCursor` of the previous page. */
  readonly cursor?: string;
  /** Include payloads in the views. */
  readonly payload?: boolean;
}

/** One page of tasks; `nextCursor` is present while older matching tasks remain. */
export interface TaskPage {
  readonly tasks: TaskView[];
  readonly nextCursor?: string;
}

/** How long and how many finished tasks are kept. */
export interface RetentionPolicy {
  /** Finished tasks older than this (by `finishedAt`) are removed. */
  readonly keepMs: number;
  /** Beyond this many finished tasks, the oldest are removed. */
  readonly keepMax: number;
  /** Most tasks removed by one call, so that one call stays short. */
  readonly limit?: number;
}

/** What `prune` removed. */
export interface PruneResult {
  readonly pruned: number;
  /** The tasks removed per type and final status (types with none removed are absent). */
  readonly byType?: ReadonlyMap<string, FinalCounts>;
  /** True when the limit stopped the call before everything due was removed: call again. */
  readonly more: boolean;
}

/** Ids found and not found. */
export interface GetResult {
  readonly tasks: TaskView[];
  readonly missing: number[];
}

/**
 * The dispatcher's durable task store.
 *
 * Every method is one atomic transaction: it either happens entirely and durably before its
 * promise resolves, or it rejects with a {@link TaskGridError} of code `TG_ERR_STORE` and
 * changes nothing. Hence "acknowledged means durable": the dispatcher acknowledges a SUBMIT
 * only after `submit` resolves. Every operation takes a batch where the dispatcher has one,
 * so that a datagram of 1,000 results is one commit, not 1,000.
 *
 * Ids are positive integers, assigned in submission order and never reused (not even after
 * `prune`): newest-first listing and keyset cursors rely on it, and so do TaskGrid+ clients.
 *
 * Attempts: `claim` gives each attempt a number, strictly increasing per task and never
 * reused (not even by `retry`), carried as `TaskAssignment.attempt`. It is a fencing token: a
 * result is recorded only while its task is running that very attempt, so a late, duplicate
 * or stale result is ignored (exactly-once recording under at-least-once execution).
 * `TaskView.attempts` instead counts the attempts made since the task was submitted or last
 * retried, which is what `maxAttempts` bounds.
 *
 * Deliberately NOT in this contract:
 * - No network, no timers, no clock: every time-dependent method takes `now` (epoch
 *   milliseconds, as leases and backoffs must survive a restart), and the caller decides when
 *   to call `expireLeases` (`nextLeaseExpiry`) and `claim` (`nextAvailableAt`).
 * - No notion of which workers exist or how much capacity they have: a worker is an opaque
 *   id recorded on its running tasks; the dispatcher learns of lost workers from the
 *   nameservice and calls `releaseWorker`.
 * - No waiting or notification: the store returns what finished; the dispatcher tells
 *   clients.
 * - No progress of running attempts: it is transient, kept by the dispatcher in memory, and
 *   not worth a write per progress report.
 * - No timing statistics (throughput, run and wait percentiles): the dispatcher derives them
 *   from the transitions it makes.
 * - No connection, transaction or SQL type: an implementation owns its connection(s).
 *
 * After a crash and restart, everything acknowledged is there: queued tasks, recorded results,
 * and running tasks with their leases and workers (`listRunning`), so that workers that
 * survived may still report results and lapsed leases are requeued by `expireLeases`.
 */
export interface TaskStore {
  /**
   * Stores new tasks as `queued`, one result per spec, in order. A spec whose idempotency key
   * already names a task (stored earlier, or earlier in the same batch) yields that task's id
   * with `duplicate: true`, whatever its other fields. Keys are remembered as long as their
   * task is (see `prune`). A spec the store cannot accept yields `{ error }` without failing
   * the others: TG_ERR_BUSY over `maxQueued`, TG_ERR_BAD_REQUEST for invalid values.
   *
   * @example
   * const [r] = await store.submit([{ type: 'echo', payload: 'hi' }], Date.now(), {
   *   timeoutMs: 30_000,
   *   maxAttempts: 3,
   * });
   */
  submit(specs: readonly TaskSpec[], now: number, options: SubmitOptions): Promise<SubmitResult[]>;

  /**
   * Takes up to `limit` claimable tasks of a type (queued, backoff over: `availableAt <= now`),
   * highest priority first, then oldest first, and marks them `running` for `worker` with the
   * next attempt number, `startedAt = now` and a lease until `now + leaseMs`.
   */
  claim(request: ClaimRequest, now: number): Promise<TaskAssignment[]>;

  /**
   * Records outcomes of attempts. An outcome counts only if its task is `running` that same
   * attempt; any other (late, duplicate, stale) is ignored. Success makes the task
   * `succeeded` with its result. A failure makes it `failed` when permanent or out of
   * attempts, else puts it back in its queue after a backoff (see {@link RetryPolicy}).
   */
  complete(outcomes: readonly TaskOutcome[], now: number): Promise<CompleteResult>;

  /**
   * `complete`, `submit` and claims in one atomic transaction (see {@link BatchRequest}):
   * all of it durably, or nothing and a TG_ERR_STORE rejection. A claim skips a type that an
   * earlier claim of the same batch found exhausted.
   */
  batch(request: BatchRequest, now: number): Promise<BatchResult>;

  /**
   * Ends running attempts whose lease lapsed (`leaseUntil <= now`), oldest lease first, at most
   * `limit`: each task goes back to its queue after a backoff, or becomes `failed` with
   * TG_ERR_TASK_TIMEOUT when out of attempts. The dispatcher calls it at `nextLeaseExpiry()`,
   * and at start for the leases that lapsed while it was down.
   */
  expireLeases(now: number, limit?: number): Promise<TransitionResult>;

  /** Ends every running attempt of a worker known to be gone, as `expireLeases` would, with TG_ERR_WORKER_LOST. */
  releaseWorker(worker: string, now: number): Promise<TransitionResult>;

  /**
   * Cancels a task: a queued one becomes `cancelled`; so does a running one, and the result
   * (`previous: 'running'`) tells the caller to abort it on its worker (its late result is then
   * ignored); a finished one is left as it is (`changed: false`). Undefined when no task has
   * that id.
   */
  cancel(id: number, now: number): Promise<ChangeResult | undefined>;

  /**
   * Puts a `failed` or `cancelled` task back in its queue with a fresh attempt budget;
   * other statuses are left as they are (`changed: false`). Undefined when no task has that id.
   */
  retry(id: number, now: number): Promise<ChangeResult | undefined>;

  /** Views of tasks by id, in the order asked (each once), and the ids not found. */
  get(ids: readonly number[], options?: { readonly payload?: boolean }): Promise<GetResult>;

  /**
   * Of the tasks asked (each once), the views of those that have ended (succeeded, failed or
   * cancelled), in the order asked, and the ids not found; open tasks are left out. What a
   * watch needs: `get` would build a view of every open task too.
   */
  ended(ids: readonly number[]): Promise<GetResult>;

  /**
   * A page of tasks, newest (highest id) first, optionally of one status and/or type. Keyset
   * pagination: following `nextCursor` visits every matching task that existed throughout,
   * once, whatever is added meanwhile. An invalid cursor is TG_ERR_BAD_REQUEST.
   */
  list(query: ListQuery): Promise<TaskPage>;

  /** Tasks per type and status (types ever seen), cheap enough to call every second. */
  counts(): Promise<Map<string, StatusCounts>>;

  /**
   * Per type with queued tasks (waiting or backing off), the submission time (`createdAt`) of
   * its oldest queued task: the lowest id, as ids grow with submission. Cheap enough to call
   * every second (an indexed lookup per type). Types with none queued are absent.
   */
  oldestQueued(): Promise<Map<string, number>>;

  /** Queued tasks of a type (waiting or backing off), as `counts` would say. */
  queueDepth(type: string): Promise<number>;

  /**
   * When the earliest task now backing off (of a type, or of any type) becomes claimable, or
   * undefined when none is backing off. May be in the past: then claim now.
   */
  nextAvailableAt(type?: string): Promise<number | undefined>;

  /** The earliest lease of a running task, or undefined when nothing runs. */
  nextLeaseExpiry(): Promise<number | undefined>;

  /** Running attempts, of one worker or all (a set bounded by the workers' capacity). */
  listRunning(worker?: string): Promise<RunningTask[]>;

  /**
   * Removes finished tasks finished before `now - keepMs`, and the oldest finished ones beyond
   * the newest `keepMax`, at most `limit` in one call.
   */
  prune(now: number, policy: RetentionPolicy): Promise<PruneResult>;

  /** Releases the store; later calls reject with TG_ERR_STORE. Idempotent. */
  close(): Promise<void>;
}

/** Defaults of the store contract, in one place; implementations take overrides as options. */
export const STORE_DEFAULTS = {
  retry: { baseMs: 1_000, factor: 2, maxMs: 60_000, jitter: 0.2 } satisfies RetryPolicy,
  /** Most leases ended by one `expireLeases` call. */
  expireLimit: 10_000,
  /** Most tasks removed by one `prune` call. */
  pruneLimit: 10_000,
} as const;

/** Hard limits of the store contract. */
export const STORE_LIMITS = {
  /** Largest `list` page. */
  maxPage: 1_000,
} as const;

/**
 * Delay before the attempt after `attempt` (1-based count of attempts made in this round):
 * `baseMs * factor^(attempt-1)`, capped at `maxMs`, minus up to `jitter` of itself.
 */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number): number {
  const exp = policy.baseMs * Math.pow(policy.factor, Math.max(0, attempt - 1));
  const capped = Math.min(policy.maxMs, Number.isFinite(exp) ? exp : policy.maxMs);
  return Math.max(0, Math.round(capped * (1 - policy.jitter * random())));
}

/** True for a value usable as a task id; anything else can only be missing. */
export function isTaskId(id: unknown): id is number {
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0;
}

/** Keyset cursors are the last id of a page, in decimal: stable and store-independent. */
export function encodeCursor(lastId: number): string {
  return String(lastId);
}

/** The id a cursor continues below, or undefined when it is not a cursor. */
export function decodeCursor(cursor: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(cursor)) return undefined;
  const id = Number(cursor);
  return isTaskId(id) ? id : undefined;
}

/** The error a spec gets when its queue is at its bound. */
export function busyError(type: string, maxQueued: number): WireError {
  return { code: ErrorCode.BUSY, message: `the queue of type "${type}" is full (${maxQueued} tasks)` };
}
