/**
 * The client library: submit tasks to the grid's dispatcher (found through the nameservice)
 * and get their results, one at a time or by the ten thousand.
 */
import type { z } from 'zod';
import { BusyError, ErrorCode, TaskGridError, TimeoutError } from '../errors.ts';
import {
  TaskSpec as TaskSpecSchema,
  type Instance,
  type ReplyBody,
  type RequestBody,
  type RequestKind,
  type TaskSpec,
  type TaskView,
  type WireError,
} from '../protocol/messages.ts';
import { isLoopbackHost } from '../protocol/address.ts';
import { fastCheck } from '../protocol/fast-check.ts';
import { createUdpTransport } from '../transport/index.ts';
import { systemClock, type Clock, type PeerAddress, type Transport } from '../transport/types.ts';
import { silentLogger, type Logger } from '../log.ts';
import { flatSize, planBatches } from './batches.ts';
import { Completions, type CompletionListener } from './completions.ts';
import { DispatcherLocator, formatAddress, listInstances } from './discovery.ts';
import { TaskFailedError } from './errors.ts';
import { DEFAULT_NAMESERVERS, resolveTuning, type ClientOptions, type ResolvedTuning } from './options.ts';

/** What became of one submitted task: its id once the dispatcher acknowledged it, or why not. */
export type SubmitOutcome =
  | {
      ok: true;
      id: number;
      /** The task's key named a task submitted before: this is that task. */ duplicate: boolean;
    }
  | { ok: false; error: WireError };

/** How far a {@link TaskGridClient.submitMany} has got. */
export interface SubmitProgress {
  total: number;
  /** Tasks the dispatcher acknowledged (durable). */
  acknowledged: number;
  /** Tasks refused: invalid, unknown type, or their batch could not be submitted. */
  rejected: number;
}

export interface SubmitManyOptions {
  /** Ask the dispatcher to push each task's end to this client (speeds up a later `wait`). */
  notify?: boolean;
  /** Called after each batch is answered. */
  onProgress?: (progress: SubmitProgress) => void;
}

export interface WaitOptions {
  /** Give up with TG_ERR_TIMEOUT after this long; default {@link CLIENT_DEFAULTS}.waitTimeoutMs; Infinity waits for ever. */
  timeoutMs?: number;
  /** Called as each task ends, in the order they end. */
  onTask?: (view: TaskView) => void;
  /**
   * Ends the wait early, rejecting with the signal's reason (an `AbortError` DOMException for
   * `controller.abort()`, a `TimeoutError` for `AbortSignal.timeout()`). Only this wait ends:
   * the tasks go on (cancel one with {@link TaskGridClient.cancel}), as do other waits.
   */
  signal?: AbortSignal | undefined;
}

/** Options of {@link TaskGridClient.run}: the task's own settings and how long to wait. */
export interface RunOptions {
  key?: string;
  priority?: number;
  maxAttempts?: number;
  /** Per-attempt timeout of the task (the task spec's `timeoutMs`). */
  taskTimeoutMs?: number;
  /** How long to wait for the result; see {@link WaitOptions.timeoutMs}. */
  timeoutMs?: number;
  /** Called with the task's id once the dispatcher has acknowledged it, before the wait. */
  onSubmitted?: (id: number) => void;
  /**
   * Ends the run early with the signal's reason: before the submission, nothing is submitted;
   * after it, the wait ends and the task goes on (see {@link WaitOptions.signal}).
   */
  signal?: AbortSignal | undefined;
}

export type StatsReply = ReplyBody<'stats'>;
export type PingReply = ReplyBody<'ping'>;
export type TasksQuery = RequestBody<'tasks'>;
export type TasksPage = ReplyBody<'tasks'>;

/** Longest delay a Node timer takes; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A request that went out and got no answer: unlike a failed lookup, the dispatcher may have
 * acted on it.
 */
class NoReplyError extends TaskGridError {
  override name = 'NoReplyError';
  constructor(message: string, cause: unknown) {
    super(ErrorCode.UNREACHABLE, message, { cause });
  }
}

/** Codes after which later batches of the same `submitMany` are not even tried. */
const STOP_CODES: ReadonlySet<string> = new Set([ErrorCode.UNREACHABLE, ErrorCode.CLOSED, ErrorCode.AUTH]);

function summarize(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(task)'}: ${i.message}`)
    .join('; ');
}

function toWire(err: unknown): WireError {
  if (err instanceof TaskGridError) return { code: err.code, message: err.message };
  return { code: ErrorCode.INTERNAL, message: err instanceof Error ? err.message : String(err) };
}

/**
 * The address the client binds when none is given: loopback when everything it talks to is on
 * this machine, so that a local client is not reachable from the network; else every interface,
 * since the dispatcher's replies and pushes come from elsewhere.
 */
export function defaultBindHost(targets: readonly PeerAddress[]): string {
  if (targets.length > 0 && targets.every((t) => isLoopbackHost(t.host))) {
    return targets.every((t) => t.host === '::1') ? '::1' : '127.0.0.1';
  }
  return targets.some((t) => t.host.includes(':')) ? '::' : '0.0.0.0';
}

type BatchAnswer = { results: ReplyBody<'submit'>['results'] } | { error: TaskGridError };

/**
 * A connection to a TaskGrid: finds the dispatcher through the nameservice (or uses the one it
 * is given), submits tasks in batches and waits for their results, pushed by the dispatcher
 * and polled now and then in case a push is lost. Every failure is a {@link TaskGridError}
 * with a stable code: TG_ERR_UNREACHABLE when no dispatcher can be found or answers,
 * TG_ERR_TIMEOUT when a wait runs out, the dispatcher's code (TG_ERR_UNKNOWN_TYPE, ...) when it
 * refuses, and {@link TaskFailedError} when a task run with {@link TaskGridClient.run} fails.
 *
 * @example
 * const client = await TaskGridClient.connect({ nameservers: [{ host: '10.0.0.5', port: 5001 }] });
 * try {
 *   console.log(await client.run('reverse', 'Hello')); // "olleH"
 *   const outcomes = await client.submitMany(lines.map((payload) => ({ type: 'hash', payload })));
 *   const ids = outcomes.flatMap((o) => (o.ok ? [o.id] : []));
 *   const views = await client.wait(ids, { timeoutMs: 60_000 });
 * } finally {
 *   await client.close();
 * }
 */
export class TaskGridClient {
  readonly #transport: Transport;
  readonly #ownsTransport: boolean;
  readonly #nameservers: readonly PeerAddress[];
  readonly #locator: DispatcherLocator;
  readonly #t: ResolvedTuning;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #completions: Completions;
  /** Rejecters of the waits in progress, so that close() can end them. */
  readonly #openWaits = new Set<(err: Error) => void>();
  #reconcileHandle: unknown = undefined;
  #reconcileDelay: number;
  #reconciling = false;
  #lastPollError: TaskGridError | undefined;
  #closed = false;

  /**
   * Connects to a grid: binds a UDP socket on a free port (unless a transport is given). No
   * datagram is sent until the first call; the dispatcher is looked up then.
   */
  static async connect(options: ClientOptions = {}): Promise<TaskGridClient> {
    if (options.transport) return new TaskGridClient(options.transport, false, options);
    const nameservers = options.nameservers ?? DEFAULT_NAMESERVERS;
    const targets = options.dispatcher ? [options.dispatcher, ...nameservers] : nameservers;
    const transport = await createUdpTransport({
      host: options.bindHost ?? defaultBindHost(targets),
      port: 0,
      secret: options.secret,
      ...(options.datagramBudget !== undefined && { datagramBudget: options.datagramBudget }),
      ...(options.maxMessageBytes !== undefined && { maxMessageBytes: options.maxMessageBytes }),
      ...(options.clock && { clock: options.clock }),
    });
    return new TaskGridClient(transport, true, options);
  }

  private constructor(transport: Transport, ownsTransport: boolean, options: ClientOptions) {
    this.#transport = transport;
    this.#ownsTransport = ownsTransport;
    this.#t = resolveTuning(options);
    this.#reconcileDelay = this.#t.reconcileIntervalMs;
    this.#log = options.logger ?? silentLogger();
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#nameservers = options.nameservers ?? DEFAULT_NAMESERVERS;
    this.#locator = new DispatcherLocator(transport, {
      dispatcher: options.dispatcher,
      nameservers: this.#nameservers,
      lookupTimeoutMs: this.#t.lookupTimeoutMs,
    });
    this.#completions = new Completions(
      { maxEntries: this.#t.recentDoneEntries, maxBytes: this.#t.recentDoneBytes },
      () => this.#clock.now(),
    );
    transport.handle('done', ({ tasks }) => {
      for (const view of tasks) this.#completions.settle(view);
      return {};
    });
  }

  /** The client's own address (where the dispatcher's pushes arrive). */
  get address(): PeerAddress {
    return this.#transport.address;
  }

  /**
   * The dispatcher's address, looked up at the nameservices if it was not given.
   *
   * @throws TaskGridError TG_ERR_UNREACHABLE when no nameservice answers or none knows a dispatcher.
   */
  dispatcher(): Promise<PeerAddress> {
    this.#assertOpen();
    return this.#locator.get();
  }

  /**
   * Submits one task and resolves with its id once the dispatcher has committed it.
   *
   * @throws TaskGridError with the dispatcher's code (TG_ERR_UNKNOWN_TYPE, TG_ERR_STORE, ...),
   *   TG_ERR_BAD_REQUEST for an invalid spec, TG_ERR_BUSY when the queue stayed full.
   */
  async submit(spec: TaskSpec, options: { notify?: boolean } = {}): Promise<number> {
    return (await this.#submitOne(spec, options.notify ?? false)).id;
  }

  async #submitOne(spec: TaskSpec, notify: boolean): Promise<{ id: number; duplicate: boolean }> {
    this.#assertOpen();
    let valid: TaskSpec;
    if (fastCheck(TaskSpecSchema)(spec)) {
      valid = { ...spec };
    } else {
      const parsed = TaskSpecSchema.safeParse(spec);
      if (!parsed.success)
        throw new TaskGridError(ErrorCode.BAD_REQUEST, `invalid task: ${summarize(parsed.error)}`);
      valid = parsed.data;
    }
    const answer = await this.#submitBatch([valid], notify);
    if ('error' in answer) throw answer.error;
    const first = answer.results[0];
    if (!first) throw new TaskGridError(ErrorCode.BAD_MESSAGE, 'the dispatcher acknowledged no task');
    if ('error' in first) throw new TaskGridError(first.error.code, first.error.message);
    return { id: first.id, duplicate: first.duplicate ?? false };
  }

  /**
   * Submits many tasks: in batches (by count and size), several in flight, re-sending a batch
   * the dispatcher refused as BUSY after the pause it asked for. Resolves with one outcome per
   * task, in the order given; an outcome has an id only if the dispatcher acknowledged that
   * task. Never rejects for a task's sake: invalid specs, unknown types and batches that could
   * not be submitted are outcomes with an error. After a batch finds the grid unreachable, the
   * batches not yet sent are not tried.
   */
  async submitMany(specs: readonly TaskSpec[], options: SubmitManyOptions = {}): Promise<SubmitOutcome[]> {
    this.#assertOpen();
    const outcomes: (SubmitOutcome | undefined)[] = Array.from({ length: specs.length }, () => undefined);
    const valid: TaskSpec[] = [];
    const items: { index: number; bytes: number }[] = [];
    const progress: SubmitProgress = { total: specs.length, acknowledged: 0, rejected: 0 };
    const isSpec = fastCheck(TaskSpecSchema);
    specs.forEach((spec, index) => {
      // The compiled check accepts a valid spec as it is (a shallow copy then stands for zod's
      // parsed copy); zod runs only for what it does not accept, and words the error.
      if (isSpec(spec)) {
        const copy = { ...spec };
        valid[index] = copy;
        items.push({ index, bytes: flatSize(copy) });
        return;
      }
      const parsed = TaskSpecSchema.safeParse(spec);
      if (parsed.success) {
        valid[index] = parsed.data;
        items.push({ index, bytes: flatSize(parsed.data) });
      } else {
        outcomes[index] = {
          ok: false,
          error: { code: ErrorCode.BAD_REQUEST, message: `task ${index + 1}: ${summarize(parsed.error)}` },
        };
        progress.rejected++;
      }
    });
    const batches = planBatches(items, this.#t.batchSize, this.#t.maxBatchBytes);
    let stopped: WireError | undefined;
    let next = 0;

    const lane = async (): Promise<void> => {
      for (let batch = batches[next++]; batch; batch = batches[next++]) {
        if (stopped) {
          const error = { code: stopped.code, message: `not submitted: ${stopped.message}` };
          for (const i of batch) outcomes[i] = { ok: false, error };
          progress.rejected += batch.length;
        } else {
          const answer = await this.#submitBatch(
            batch.map((i) => valid[i]!),
            options.notify ?? false,
          );
          if ('error' in answer) {
            const error = toWire(answer.error);
            if (STOP_CODES.has(error.code)) stopped ??= error;
            for (const i of batch) outcomes[i] = { ok: false, error };
            progress.rejected += batch.length;
          } else {
            answer.results.forEach((r, k) => {
              const i = batch[k]!;
              if ('error' in r) {
                outcomes[i] = { ok: false, error: r.error };
                progress.rejected++;
              } else {
                outcomes[i] = { ok: true, id: r.id, duplicate: r.duplicate ?? false };
                progress.acknowledged++;
              }
            });
          }
        }
        options.onProgress?.({ ...progress });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#t.batchesInFlight, batches.length) }, lane));
    if (batches.length === 0) options.onProgress?.({ ...progress });
    return outcomes as SubmitOutcome[];
  }

  /**
   * The task's current state (with its result once it succeeded). With `waitMs`, the
   * dispatcher holds the answer until the task ends or that time passes.
   *
   * @throws TaskGridError TG_ERR_NOT_FOUND for an id the dispatcher does not know.
   */
  async result(id: number, options: { waitMs?: number; payload?: boolean } = {}): Promise<TaskView> {
    this.#assertOpen();
    const body: RequestBody<'get-result'> = { ids: [id] };
    if (options.waitMs !== undefined) body.waitMs = options.waitMs;
    if (options.payload) body.payload = true;
    const reply = await this.#call('get-result', body, (options.waitMs ?? 0) + this.#t.requestTimeoutMs);
    const view = reply.tasks.find((t) => t.id === id);
    if (!view) throw notFound(id);
    return view;
  }

  /**
   * Resolves when the task (or every task listed) has ended, with its final state, whatever
   * that is; it does not throw for a failed task (see {@link run} for that). The dispatcher
   * pushes each end; a `get-result` now and then catches any push that went missing.
   *
   * @throws TimeoutError (TG_ERR_TIMEOUT) when tasks are still running at the timeout;
   *   TG_ERR_NOT_FOUND for an unknown id; TG_ERR_UNREACHABLE when the dispatcher cannot be reached.
   */
  wait(id: number, options?: WaitOptions): Promise<TaskView>;
  wait(ids: readonly number[], options?: WaitOptions): Promise<TaskView[]>;
  async wait(idOrIds: number | readonly number[], options: WaitOptions = {}): Promise<TaskView | TaskView[]> {
    if (typeof idOrIds === 'number') {
      const [view] = await this.#wait([idOrIds], options, true);
      return view!;
    }
    return this.#wait(idOrIds, options, true);
  }

  /**
   * Submits a task and waits for its result.
   *
   * @example
   * const digest = await client.run('hash', 'abc', { timeoutMs: 10_000 });
   * @throws TaskFailedError (TG_ERR_TASK_FAILED or TG_ERR_CANCELLED) when the task does not
   *   succeed; whatever {@link submit} and {@link wait} throw.
   */
  async run(type: string, payload: string, options: RunOptions = {}): Promise<string> {
    options.signal?.throwIfAborted();
    const spec: TaskSpec = { type, payload };
    if (options.key !== undefined) spec.key = options.key;
    if (options.priority !== undefined) spec.priority = options.priority;
    if (options.maxAttempts !== undefined) spec.maxAttempts = options.maxAttempts;
    if (options.taskTimeoutMs !== undefined) spec.timeoutMs = options.taskTimeoutMs;
    const { id, duplicate } = await this.#submitOne(spec, true);
    options.onSubmitted?.(id);
    const waitOptions: WaitOptions = {};
    if (options.timeoutMs !== undefined) waitOptions.timeoutMs = options.timeoutMs;
    if (options.signal !== undefined) waitOptions.signal = options.signal;
    // A new task was submitted with notify, so its end will be pushed without a watch; a
    // duplicate (same key) may have ended long ago, and only a watch says so at once.
    const [view] = await this.#wait([id], waitOptions, duplicate);
    if (view!.status === 'succeeded') return view!.result ?? '';
    throw new TaskFailedError(view!);
  }

  /**
   * Cancels a queued or running task; resolves with its state after the cancel (also for a task
   * cancelled before: cancelling is idempotent).
   *
   * @throws TaskGridError TG_ERR_NOT_FOUND for an unknown id; TG_ERR_CONFLICT for a task that
   *   had ended otherwise (succeeded or failed).
   */
  async cancel(id: number): Promise<TaskView> {
    this.#assertOpen();
    const { task } = await this.#call('cancel', { id });
    if (task.status !== 'cancelled') {
      throw new TaskGridError(
        ErrorCode.CONFLICT,
        `task ${id} cannot be cancelled: it had already ended (${task.status})`,
      );
    }
    return task;
  }

  /**
   * Puts a failed or cancelled task back in its queue with fresh attempts; resolves with its
   * state after the retry.
   *
   * @throws TaskGridError TG_ERR_NOT_FOUND for an unknown id; TG_ERR_CONFLICT for a task whose
   *   status does not allow it (queued, running or succeeded).
   */
  async retry(id: number): Promise<TaskView> {
    this.#assertOpen();
    const { task, changed } = await this.#call('retry', { id });
    // `changed` from dispatchers that say it; else what a retry leaves: the task back in its queue.
    if (
      changed === false ||
      (changed === undefined && task.status !== 'queued' && task.status !== 'running')
    ) {
      throw new TaskGridError(
        ErrorCode.CONFLICT,
        `task ${id} cannot be retried: it is ${task.status}, and only a failed or cancelled task can be`,
      );
    }
    return task;
  }

  /** The dispatcher's counters per type and per worker. */
  stats(): Promise<StatsReply> {
    this.#assertOpen();
    return this.#call('stats', {});
  }

  /** A page of tasks, newest first. */
  tasks(query: TasksQuery = {}): Promise<TasksPage> {
    this.#assertOpen();
    return this.#call('tasks', query);
  }

  /**
   * Every live instance (workers, dispatchers, ...) the nameservices know.
   *
   * @throws TaskGridError TG_ERR_UNREACHABLE when no nameservice answers.
   */
  workers(): Promise<Instance[]> {
    this.#assertOpen();
    return listInstances(this.#transport, this.#nameservers, this.#t.lookupTimeoutMs);
  }

  /**
   * Pings any component (the dispatcher when no address is given): its name, version and uptime.
   *
   * @throws TaskGridError TG_ERR_UNREACHABLE when it does not answer in time.
   */
  async ping(address?: PeerAddress): Promise<PingReply> {
    this.#assertOpen();
    if (!address) return this.#call('ping', {});
    try {
      return await this.#transport.request(address, 'ping', {}, { timeoutMs: this.#t.requestTimeoutMs });
    } catch (err) {
      throw unreachable(err, `${formatAddress(address)} did not answer ping`);
    }
  }

  /** Ends waits in progress with TG_ERR_CLOSED and releases the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimeout(this.#reconcileHandle);
    const closedError = new TaskGridError(ErrorCode.CLOSED, 'client closed while waiting');
    for (const reject of [...this.#openWaits]) reject(closedError);
    this.#completions.clear();
    if (this.#ownsTransport) await this.#transport.close();
  }

  // ---- internals ------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new TaskGridError(ErrorCode.CLOSED, 'client is closed');
  }

  /** A request to the dispatcher; silence means unreachable, and the address is looked up again next time. */
  async #call<K extends RequestKind>(
    kind: K,
    body: RequestBody<K>,
    timeoutMs = this.#t.requestTimeoutMs,
  ): Promise<ReplyBody<K>> {
    if (this.#closed) throw new TaskGridError(ErrorCode.CLOSED, 'client is closed');
    const address = await this.#locator.get();
    try {
      return await this.#transport.request(address, kind, body, { timeoutMs });
    } catch (err) {
      if (err instanceof TimeoutError) {
        this.#locator.invalidate(address);
        throw new NoReplyError(
          `the dispatcher at ${formatAddress(address)} did not answer ${kind} (${err.message})`,
          err,
        );
      }
      throw err;
    }
  }

  /** One `submit` request, re-sent while the dispatcher answers BUSY (nothing was accepted then). */
  async #submitBatch(tasks: TaskSpec[], notify: boolean): Promise<BatchAnswer> {
    const body: RequestBody<'submit'> = notify ? { tasks, notify: true } : { tasks };
    const started = this.#clock.now();
    for (;;) {
      try {
        const reply = await this.#call('submit', body, this.#t.submitTimeoutMs);
        if (reply.results.length !== tasks.length) {
          return {
            error: new TaskGridError(
              ErrorCode.BAD_MESSAGE,
              `the dispatcher answered ${reply.results.length} results for ${tasks.length} tasks`,
            ),
          };
        }
        return { results: reply.results };
      } catch (err) {
        if (err instanceof BusyError && !this.#closed) {
          const pause = Math.max(err.retryAfterMs, this.#t.busyMinPauseMs) * (1 + 0.25 * this.#random());
          const waited = this.#clock.now() - started;
          if (waited + pause > this.#t.busyGiveUpMs) {
            return {
              error: new TaskGridError(
                ErrorCode.BUSY,
                `the dispatcher's queue stayed full for ${waited} ms (${err.message})`,
              ),
            };
          }
          this.#log.debug(
            { retryAfterMs: err.retryAfterMs, tasks: tasks.length },
            'dispatcher busy; re-sending the batch later',
          );
          await this.#sleep(pause);
          continue;
        }
        if (err instanceof NoReplyError) {
          // Sent but unanswered: the dispatcher may have committed it; only keys make a resend safe.
          return {
            error: new TaskGridError(
              ErrorCode.UNREACHABLE,
              `${err.message}; the tasks may or may not have been accepted`,
              { cause: err },
            ),
          };
        }
        return {
          error:
            err instanceof TaskGridError
              ? err
              : new TaskGridError(ErrorCode.INTERNAL, String(err), { cause: err }),
        };
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  #wait(ids: readonly number[], options: WaitOptions, watch: boolean): Promise<TaskView[]> {
    if (this.#closed) return Promise.reject(new TaskGridError(ErrorCode.CLOSED, 'client is closed'));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    for (const id of ids) {
      if (!Number.isSafeInteger(id) || id < 1) {
        return Promise.reject(new TaskGridError(ErrorCode.BAD_REQUEST, `${String(id)} is not a task id`));
      }
    }
    const unique = [...new Set(ids)];
    const timeoutMs = options.timeoutMs ?? this.#t.waitTimeoutMs;
    return new Promise<TaskView[]>((resolve, reject) => {
      const found = new Map<number, TaskView>();
      let settled = false;
      let timer: unknown;
      const onAbort = (): void => fail(signal!.reason as Error);
      const cleanup = (): void => {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        this.#clock.clearTimeout(timer);
        this.#openWaits.delete(fail);
        for (const id of unique) this.#completions.unlisten(id, listener);
      };
      const fail = (err: Error): void => {
        if (settled) return;
        cleanup();
        reject(err);
      };
      const accept = (view: TaskView): void => {
        if (settled || found.has(view.id)) return;
        found.set(view.id, view);
        try {
          options.onTask?.(view);
        } catch (err) {
          fail(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (found.size === unique.length) {
          cleanup();
          resolve(ids.map((id) => found.get(id)!));
        }
      };
      const listener: CompletionListener = {
        onTask: accept,
        onError: (_id, err) => fail(err),
        since: this.#clock.now(),
      };

      const open: number[] = [];
      const known: TaskView[] = [];
      for (const id of unique) {
        const view = this.#completions.take(id);
        if (view === undefined) {
          open.push(id);
          this.#completions.listen(id, listener);
        } else {
          known.push(view);
        }
      }
      for (const view of known) accept(view);
      if (settled) return;

      this.#openWaits.add(fail);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Beyond what a Node timer can hold (about 24.8 days) counts as no deadline.
      if (timeoutMs <= MAX_TIMER_MS) {
        timer = this.#clock.setTimeout(() => fail(this.#timeoutError(unique, found, timeoutMs)), timeoutMs);
      }
      if (watch) {
        this.#watch(open).catch((err: unknown) => {
          // A watch that got no answer (lost, the dispatcher restarting or busy) is only a
          // speed-up: the polls below find the tasks' ends all the same, within the wait's
          // own timeout. Anything else (a refused request) ends the wait.
          const code = err instanceof TaskGridError ? err.code : undefined;
          if (code === ErrorCode.TIMEOUT || code === ErrorCode.UNREACHABLE || code === ErrorCode.BUSY) {
            this.#lastPollError = err as TaskGridError;
            return;
          }
          fail(err instanceof Error ? err : new Error(String(err)));
        });
      }
      // A new wait may be the one whose push gets lost: poll it soon, then back off again.
      if (this.#reconcileDelay > this.#t.reconcileIntervalMs) {
        this.#reconcileDelay = this.#t.reconcileIntervalMs;
        this.#clock.clearTimeout(this.#reconcileHandle);
        this.#reconcileHandle = undefined;
      }
      this.#armReconcile();
    });
  }

  #timeoutError(
    ids: readonly number[],
    found: ReadonlyMap<number, TaskView>,
    timeoutMs: number,
  ): TimeoutError {
    const open = ids.filter((id) => !found.has(id));
    const which =
      ids.length === 1
        ? `task ${open[0]} had not ended`
        : `${open.length} of ${ids.length} tasks had not ended (${open.slice(0, 5).join(', ')}${open.length > 5 ? ', ...' : ''})`;
    const poll = this.#lastPollError
      ? `; last poll: ${this.#lastPollError.code}: ${this.#lastPollError.message}`
      : '';
    return new TimeoutError(`${which} within ${timeoutMs} ms${poll}`);
  }

  /** Asks the dispatcher to push the ends of `ids`; those already ended come back at once. */
  async #watch(ids: readonly number[]): Promise<void> {
    for (let i = 0; i < ids.length; i += this.#t.watchChunk) {
      const reply = await this.#call('watch', { ids: ids.slice(i, i + this.#t.watchChunk) });
      for (const view of reply.finished) this.#completions.settle(view);
      for (const id of reply.missing) this.#completions.fail(id, notFound(id));
    }
  }

  #armReconcile(delay = this.#reconcileDelay): void {
    if (this.#reconciling || this.#reconcileHandle !== undefined || this.#closed) return;
    this.#reconcileHandle = this.#clock.setTimeout(() => {
      this.#reconcileHandle = undefined;
      void this.#reconcile();
    }, delay);
  }

  /**
   * Polls the tasks still awaited: the safety net under lost pushes. A poll is a `watch`: its
   * reply carries the views of the tasks that have ended (what the pushes missed; any that do
   * not fit it are pushed at once) and it renews the watch of the others, which a restarted
   * dispatcher has forgotten. (`get-result` would also bring a view of every open task, a few
   * hundred bytes each for the dispatcher to read and this client to parse and drop: in a bulk
   * wait, tens of thousands a poll.) While polls find nothing
   * the pushes missed, the pause between them doubles (up to maxReconcileIntervalMs), so that
   * a long bulk wait does not fetch every pending task every few seconds. A task awaited for
   * less than reconcileIntervalMs is left to its push for now (asking about it that soon
   * mostly fetches what the push is about to bring, or has just brought): the poll after it
   * has waited that long covers it.
   */
  async #reconcile(): Promise<void> {
    if (this.#closed) return;
    const { ids, nextSince } = this.#completions.due(this.#clock.now() - this.#t.reconcileIntervalMs);
    if (ids.length === 0) {
      if (nextSince !== undefined) this.#armReconcile(this.#untilDue(nextSince));
      return;
    }
    this.#reconciling = true;
    let missed = 0;
    try {
      for (let i = 0; i < ids.length; i += this.#t.watchChunk) {
        const reply = await this.#call('watch', { ids: ids.slice(i, i + this.#t.watchChunk) });
        for (const view of reply.finished) {
          // A push may have ended the task's waits while the poll was on its way: then it
          // missed nothing, and nothing needs keeping.
          if (this.#completions.isAwaited(view.id)) missed++;
          this.#completions.settle(view, false);
        }
        for (const id of reply.missing) this.#completions.fail(id, notFound(id));
      }
      this.#lastPollError = undefined;
    } catch (err) {
      // Not fatal: the next poll (or a push) may get through; the wait's own timeout bounds it.
      this.#lastPollError =
        err instanceof TaskGridError ? err : new TaskGridError(ErrorCode.INTERNAL, String(err));
      this.#log.debug({ err }, 'polling awaited tasks failed');
    } finally {
      this.#reconciling = false;
    }
    this.#reconcileDelay =
      missed > 0 || this.#lastPollError
        ? this.#t.reconcileIntervalMs
        : Math.min(this.#reconcileDelay * 2, this.#t.maxReconcileIntervalMs);
    if (this.#completions.waitingCount === 0) return;
    // Waits too young for this poll are due at their own time, if that comes before the next poll.
    this.#armReconcile(
      nextSince === undefined
        ? this.#reconcileDelay
        : Math.min(this.#reconcileDelay, this.#untilDue(nextSince)),
    );
  }

  /** Milliseconds until a wait that began at `since` is due for a poll. */
  #untilDue(since: number): number {
    return Math.max(0, since + this.#t.reconcileIntervalMs - this.#clock.now());
  }
}

function notFound(id: number): TaskGridError {
  return new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} is not known to the dispatcher`);
}

function unreachable(err: unknown, what: string): unknown {
  if (err instanceof TimeoutError) {
    return new TaskGridError(ErrorCode.UNREACHABLE, `${what} (${err.message})`, { cause: err });
  }
  return err;
}
