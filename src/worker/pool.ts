/**
 * HandlerPool: runs task handlers off the main thread, in a fixed set of `node:worker_threads`,
 * so that a handler stuck in a synchronous loop, exhausting its memory or calling
 * process.exit() costs one thread (terminated and replaced), never the worker process.
 *
 * Design:
 * - `threads` threads (default: one per core, at most `concurrency`) each run several tasks at
 *   once when handlers are asynchronous; `concurrency` bounds the tasks running across the
 *   pool. A new task goes to the ready thread with the fewest running tasks; tasks beyond
 *   `concurrency`, or arriving while no thread is ready, wait in a FIFO queue in the pool.
 * - Tasks handed out in the same tick travel to a thread in one message, and a thread returns
 *   the outcomes of one turn of its event loop in one message; both as columns (a typed array
 *   of numbers and an array of strings), which clone much faster than an object per task.
 * - Timeouts and cancellation are decided here, on the main thread, where a stuck handler
 *   cannot stop the clock: at the deadline (or on abort) the handler's signal fires; a handler
 *   still running `abortGraceMs` later has its thread terminated. One timer per pool, armed
 *   for the earliest deadline of the running tasks, stands for a timer per task. The other tasks of that
 *   thread end with TG_ERR_WORKER_LOST (not permanent), so the dispatcher runs them again.
 * - A task's timeout counts from when the pool hands it to a thread, not from when it entered
 *   the pool's queue.
 * - A thread runs its tasks' synchronous code one at a time, so with more tasks than threads a
 *   long synchronous handler delays the others on its thread, and a task that overruns takes
 *   its thread-mates with it (as TG_ERR_WORKER_LOST; so do outcomes that were computed but had
 *   not yet left the thread). For long CPU-bound types, give as many threads as concurrency;
 *   asynchronous types (I/O, waits) can share a few threads among many tasks.
 * - Types named in `inline` run on the calling (main) thread instead, through the same
 *   HandlerHost a thread uses: no hand-over between threads, so a small task costs less and
 *   ends sooner, but nothing protects the process from its handler. A synchronous loop stops
 *   the whole worker (the deadline timer cannot even fire), process.exit() ends it, and its
 *   memory is the worker's own. A timeout or cancel fires the handler's signal; one that
 *   ignores it past the grace period is given up (its outcome stands, its later result is
 *   dropped) but cannot be stopped. For trusted, short handlers only. A pool whose types are
 *   all inline starts no thread.
 */
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError, ErrorCode, TaskGridError } from '../errors.ts';
import type { TaskOutcome } from '../protocol/messages.ts';
import type { Handler } from './handler-api.ts';
import { HandlerHost, loadHandlers } from './handler-host.ts';
import { findHandlerFile } from './loader.ts';
import type {
  AbortCause,
  DoneItem,
  FromThread,
  ProgressItem,
  ThreadData,
  ToThread,
} from './thread-protocol.ts';

/** Defaults of the pool's optional settings, in one place. */
export const POOL_DEFAULTS = {
  /** Timeout of a task that does not carry one. */
  defaultTimeoutMs: 60_000,
  /** How long a handler has to stop after its signal fires before its thread is terminated. */
  abortGraceMs: 1_000,
  /** Heap limit of each handler thread (V8 old generation), in MiB. */
  memoryLimitMb: 512,
  /** How long a thread may take to load the task type modules. */
  startTimeoutMs: 30_000,
  /** First delay before replacing a thread that failed to start; doubles up to the maximum. */
  respawnDelayMs: 100,
  maxRespawnDelayMs: 10_000,
  /** How long close({ drain: true }) waits for running and queued tasks. */
  drainTimeoutMs: 10_000,
  /**
   * Resident memory the worker process may use beyond its handler threads' heap limits
   * (threads x memoryLimitMb), in MiB: the default rssLimitMb is that sum plus this.
   */
  rssHeadroomMb: 1_024,
  /** How often the resident memory is checked while a handler thread runs a task. */
  rssCheckMs: 250,
} as const;

/** After stopping a thread for memory, the pool lets this long pass before it checks again. */
const RSS_SETTLE_MS = 2_000;

/** The memory this process may have, in MiB: its cgroup's limit in a container that sets one, else the machine's. */
export function availableMemoryMb(): number {
  const total = totalmem();
  // Node 20 answers 2^64 (cgroup v2 "max") or undefined when nothing constrains the process.
  const constrained = process.constrainedMemory?.() ?? 0;
  return Math.floor((constrained > 0 && constrained < total ? constrained : total) / 2 ** 20);
}

/**
 * The default limit on a worker process's resident memory, in MiB: its threads' heap limits
 * plus POOL_DEFAULTS.rssHeadroomMb, but no more than 90% of the memory it may have (a container's
 * limit, say), so that the pool acts before the operating system kills the whole process; and
 * never below 256 MiB, under which no worker runs anyway.
 */
export function defaultRssLimitMb(threads: number, memoryLimitMb: number, availableMb: number): number {
  return Math.max(
    256,
    Math.min(threads * memoryLimitMb + POOL_DEFAULTS.rssHeadroomMb, Math.floor(availableMb * 0.9)),
  );
}

/** The largest delay setTimeout honours (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pino-compatible logger: the pool only warns, about threads that died or failed to start. */
export interface PoolLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** Settings of a {@link HandlerPool}. */
export interface HandlerPoolOptions {
  /** Directory of the task type modules (`worker_types/`). */
  typesDir: string;
  /** Task types to load; every thread loads all of them but the inline ones. */
  types: readonly string[];
  /**
   * Types run on the main thread rather than in a handler thread (each must be in `types`):
   * for trusted, short handlers only, see the module's notes. Default: none.
   */
  inline?: readonly string[];
  /** Most tasks running at once across the pool. Default: the number of cores. */
  concurrency?: number;
  /** Handler threads. Default: the number of cores, but no more than `concurrency`. */
  threads?: number;
  defaultTimeoutMs?: number;
  abortGraceMs?: number;
  memoryLimitMb?: number;
  startTimeoutMs?: number;
  respawnDelayMs?: number;
  maxRespawnDelayMs?: number;
  drainTimeoutMs?: number;
  /**
   * Resident memory of the whole process, in MiB, above which the handler thread running the
   * longest task is stopped (its tasks fail with TG_ERR_INTERNAL and run again elsewhere). It
   * bounds what `memoryLimitMb` cannot: memory outside the V8 heap, such as Buffers. Default:
   * threads x memoryLimitMb + POOL_DEFAULTS.rssHeadroomMb, at most 90% of the memory the
   * process may have ({@link defaultRssLimitMb}).
   */
  rssLimitMb?: number;
  logger?: PoolLogger;
}

/** A task to run: a TaskAssignment, with the pool's default timeout when `timeoutMs` is absent. */
export interface PoolTask {
  readonly id: number;
  readonly type: string;
  readonly payload: string;
  readonly attempt: number;
  readonly timeoutMs?: number;
}

/** Per-run options. */
export interface RunOptions {
  /** Called with the handler's progress reports (coalesced, and only while the task runs). */
  onProgress?: (fraction?: number, message?: string) => void;
}

/**
 * Where {@link HandlerPool.submit} reports a task's end (and progress): one object can serve
 * many tasks, as each call names its task, so that a caller running thousands of tasks needs
 * no promise or closure per task.
 */
export interface TaskSink<T extends PoolTask = PoolTask> {
  /** Called once per submitted task, with its outcome. */
  done(outcome: TaskOutcome, task: T): void;
  /** The handler's progress reports (coalesced, and only while the task runs); when absent, the thread does not send them. */
  progress?: ((task: T, fraction?: number, message?: string) => void) | undefined;
}

type PoolState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

interface Job {
  readonly seq: number;
  readonly task: PoolTask;
  readonly timeoutMs: number;
  readonly sink: TaskSink;
  slot: ThreadSlot | undefined;
  startedAt: number;
  /** performance.now() at which the task times out, once it runs. */
  deadline: number;
  graceTimer: NodeJS.Timeout | undefined;
  /** Set once the deadline passed or the task was aborted: that decides the outcome. */
  stopped: AbortCause | undefined;
  done: boolean;
}

/** What the pool needs of a handler thread, or of the main-thread host of the inline types. */
interface SlotPort {
  postMessage(msg: ToThread): void;
  terminate(): Promise<unknown>;
}

/** One handler thread (or the inline host) and the tasks it runs. */
class ThreadSlot {
  state: 'starting' | 'ready' | 'dead' = 'starting';
  readonly jobs = new Map<number, Job>();
  /** Tasks handed to this thread in this tick: RUN_FIELDS numbers each, and their payloads. */
  outNums: number[] = [];
  outPayloads: string[] = [];
  flushQueued = false;
  lastError: Error | undefined;
  startTimer: NodeJS.Timeout | undefined;
  readonly ready: Promise<void>;
  resolveReady!: () => void;
  rejectReady!: (err: Error) => void;

  constructor(
    readonly worker: SlotPort,
    /** The host of the inline types on the main thread, not a thread. */
    readonly inline = false,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Whoever awaits `ready` handles a rejection; a replacement thread nobody awaits must not
    // turn it into an unhandled rejection.
    this.ready.catch(() => {});
  }
}

/** A FIFO queue with O(1) shift. */
class JobQueue {
  #items: (Job | undefined)[] = [];
  #head = 0;

  get size(): number {
    return this.#items.length - this.#head;
  }

  peek(): Job | undefined {
    return this.#items[this.#head];
  }

  push(job: Job): void {
    this.#items.push(job);
  }

  shift(): Job | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const job = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return job;
  }

  *[Symbol.iterator](): IterableIterator<Job> {
    for (let i = this.#head; i < this.#items.length; i++) {
      const job = this.#items[i];
      if (job) yield job;
    }
  }
}

/**
 * Evaluated as the thread's first code: makes TypeScript importable when needed (tsx's
 * register(); `--import tsx` in a Worker's execArgv has no effect on Node 20), then imports
 * the real entry, thread.ts or its compiled thread.js.
 */
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
(async () => {
  for (const url of workerData.register) (await import(url)).register();
  await import(workerData.entry);
})();
`;

/**
 * Runs task handlers in worker threads with timeouts, cancellation, progress and a bound on
 * concurrency. `run()` never rejects: every way a task can end is a {@link TaskOutcome}.
 *
 * @example
 * ```ts
 * const pool = new HandlerPool({ typesDir: 'worker_types', types: ['reverse'], concurrency: 4 });
 * await pool.start();
 * const outcome = await pool.run({ id: 1, type: 'reverse', payload: 'Hello', attempt: 1, timeoutMs: 5000 });
 * // { id: 1, attempt: 1, ok: true, result: 'olleH', runMs: 0.05 }
 * await pool.close();
 * ```
 */
export class HandlerPool {
  readonly #typesDir: string;
  readonly #types: readonly string[];
  readonly #typeSet: ReadonlySet<string>;
  /** Index of each type in #types, as `run` messages name it. */
  readonly #typeIndex: ReadonlyMap<string, number>;
  readonly #inlineTypes: ReadonlySet<string>;
  #inlineHandlers: ReadonlyMap<string, Handler> | undefined;
  readonly #concurrency: number;
  readonly #threadCount: number;
  readonly #defaultTimeoutMs: number;
  readonly #abortGraceMs: number;
  readonly #memoryLimitMb: number;
  readonly #startTimeoutMs: number;
  readonly #respawnDelayMs: number;
  readonly #maxRespawnDelayMs: number;
  readonly #drainTimeoutMs: number;
  readonly #rssLimitMb: number;
  readonly #logger: PoolLogger | undefined;
  /** Checks the resident memory while tasks run in threads (see rssLimitMb). */
  #rssTimer: NodeJS.Timeout | undefined;
  #rssQuietUntil = 0;

  #state: PoolState = 'new';
  #threadData: ThreadData | undefined;
  readonly #threads: ThreadSlot[] = [];
  readonly #queue = new JobQueue();
  #queued = 0;
  #running = 0;
  #seq = 0;
  #respawnDelay = 0;
  readonly #respawnTimers = new Set<NodeJS.Timeout>();
  readonly #terminating = new Set<Promise<unknown>>();
  #idleWaiter: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  /** The one deadline timer, armed for #deadlineAt (a running task's deadline, or earlier). */
  #deadlineTimer: NodeJS.Timeout | undefined;
  #deadlineAt = Infinity;

  constructor(options: HandlerPoolOptions) {
    const cores = availableParallelism();
    this.#typesDir = options.typesDir;
    this.#typeSet = new Set(options.types);
    this.#types = [...this.#typeSet];
    this.#typeIndex = new Map(this.#types.map((type, i) => [type, i]));
    this.#inlineTypes = new Set(options.inline ?? []);
    for (const type of this.#inlineTypes) {
      if (!this.#typeSet.has(type)) {
        throw new ConfigError(
          `inline task type "${type}" is not one of this pool's types (${this.#types.join(', ')})`,
        );
      }
    }
    this.#concurrency = positiveInt('concurrency', options.concurrency ?? cores);
    this.#threadCount = positiveInt('threads', options.threads ?? Math.min(cores, this.#concurrency));
    this.#defaultTimeoutMs = positiveInt(
      'defaultTimeoutMs',
      options.defaultTimeoutMs ?? POOL_DEFAULTS.defaultTimeoutMs,
    );
    this.#abortGraceMs = nonNegativeInt('abortGraceMs', options.abortGraceMs ?? POOL_DEFAULTS.abortGraceMs);
    this.#memoryLimitMb = positiveInt('memoryLimitMb', options.memoryLimitMb ?? POOL_DEFAULTS.memoryLimitMb);
    this.#startTimeoutMs = positiveInt(
      'startTimeoutMs',
      options.startTimeoutMs ?? POOL_DEFAULTS.startTimeoutMs,
    );
    this.#respawnDelayMs = nonNegativeInt(
      'respawnDelayMs',
      options.respawnDelayMs ?? POOL_DEFAULTS.respawnDelayMs,
    );
    this.#maxRespawnDelayMs = nonNegativeInt(
      'maxRespawnDelayMs',
      options.maxRespawnDelayMs ?? POOL_DEFAULTS.maxRespawnDelayMs,
    );
    this.#drainTimeoutMs = nonNegativeInt(
      'drainTimeoutMs',
      options.drainTimeoutMs ?? POOL_DEFAULTS.drainTimeoutMs,
    );
    this.#rssLimitMb = positiveInt(
      'rssLimitMb',
      options.rssLimitMb ?? defaultRssLimitMb(this.#threadCount, this.#memoryLimitMb, availableMemoryMb()),
    );
    this.#logger = options.logger;
    if (this.#types.length === 0) throw new ConfigError('a handler pool needs at least one task type');
  }

  /** Most tasks running at once (the `concurrency` option). */
  get capacity(): number {
    return this.#concurrency;
  }

  /** Tasks accepted by run() and not yet ended: running plus queued. */
  get inFlight(): number {
    return this.#running + this.#queued;
  }

  /** Tasks handed to a thread and not yet ended. */
  get running(): number {
    return this.#running;
  }

  /** Tasks waiting in the pool for a free slot or a ready thread. */
  get queued(): number {
    return this.#queued;
  }

  /** Live handler threads, ready or starting (a replacement starts as soon as one dies). */
  get threads(): number {
    let n = 0;
    for (const slot of this.#threads) if (!slot.inline) n++;
    return n;
  }

  /** The task types this pool runs on the main thread. */
  get inline(): readonly string[] {
    return [...this.#inlineTypes];
  }

  /** The task types this pool runs. */
  get types(): readonly string[] {
    return this.#types;
  }

  /**
   * Starts the threads and loads every task type's module in each of them. Tasks passed to
   * run() before start() resolves wait for it.
   *
   * @throws ConfigError when a module is missing, fails to load or exports no `handle`, or the
   *   threads do not load within `startTimeoutMs`; the pool is then closed.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new TaskGridError(ErrorCode.INTERNAL, `start() on a ${this.#state} handler pool`);
    }
    this.#state = 'starting';
    try {
      const files: Record<string, string> = {};
      for (const type of this.#types) files[type] = await findHandlerFile(this.#typesDir, type);
      if (this.#state !== 'starting') throw closedWhileStarting();
      // Threads load the types they run: all but the inline ones.
      const threadFiles: Record<string, string> = {};
      for (const type of this.#types) if (!this.#inlineTypes.has(type)) threadFiles[type] = files[type]!;
      this.#threadData = threadData(threadFiles, this.#types);
      if (this.#inlineTypes.size > 0) {
        this.#inlineHandlers = await loadInline(files, [...this.#inlineTypes]);
        if (this.#state !== 'starting') throw closedWhileStarting();
        this.#spawnInline();
      }
      const count = Object.keys(threadFiles).length > 0 ? this.#threadCount : 0;
      const slots = Array.from({ length: count }, () => this.#spawn());
      await Promise.all(slots.map((slot) => slot.ready));
    } catch (err) {
      await this.close();
      throw err;
    }
    // close() during start() wins.
    if (this.#state !== 'starting') throw closedWhileStarting();
    this.#state = 'running';
    if (this.threads > 0) {
      this.#rssTimer = setInterval(this.#checkRss, POOL_DEFAULTS.rssCheckMs);
      this.#rssTimer.unref();
    }
    this.#pump();
  }

  /** The limit on the process's resident memory, in MiB (see HandlerPoolOptions.rssLimitMb). */
  get rssLimitMb(): number {
    return this.#rssLimitMb;
  }

  /**
   * Above rssLimitMb, stops the handler thread that has run a task the longest: a handler
   * hoarding memory outside its heap (Buffers) runs until stopped, so it is the likeliest one,
   * and terminating a thread frees everything it allocated. Its tasks fail (not permanently)
   * and run again; a new thread replaces it. Inline types run on this thread and are not
   * stopped. After a stop, the next check waits RSS_SETTLE_MS for the memory to be returned.
   */
  readonly #checkRss = (): void => {
    if (this.#running === 0 || this.#state !== 'running') return;
    const now = performance.now();
    if (now < this.#rssQuietUntil) return;
    const rss = process.memoryUsage.rss();
    if (rss <= this.#rssLimitMb * 2 ** 20) return;
    let victim: ThreadSlot | undefined;
    let oldest = Infinity;
    for (const slot of this.#threads) {
      if (slot.inline || slot.state !== 'ready') continue;
      for (const job of slot.jobs.values()) {
        if (job.startedAt > 0 && job.startedAt < oldest) {
          oldest = job.startedAt;
          victim = slot;
        }
      }
    }
    if (!victim) return;
    this.#rssQuietUntil = now + RSS_SETTLE_MS;
    const reason =
      `the worker process used ${Math.round(rss / 2 ** 20)} MB, above its limit of ${this.#rssLimitMb} MB ` +
      '(memory outside the V8 heap, such as Buffers, counts); the handler thread running the longest task was stopped';
    this.#logger?.warn({ rssMb: Math.round(rss / 2 ** 20), tasks: victim.jobs.size }, reason);
    this.#retire(victim, (job) => failure(job.task, ErrorCode.INTERNAL, reason, false, elapsed(job)));
    this.#respawn();
  };

  /**
   * Runs one task and resolves to its outcome; never rejects. Failures carry a stable code:
   * TG_ERR_HANDLER_FAILED (the handler threw or returned a non-string), the code of a
   * PermanentTaskError (permanent), TG_ERR_TASK_TIMEOUT, TG_ERR_CANCELLED (permanent),
   * TG_ERR_INTERNAL (the thread died under the task), TG_ERR_WORKER_LOST (the thread was
   * terminated for another task, or the pool closed), TG_ERR_UNKNOWN_TYPE (a type this pool
   * does not load).
   */
  run(task: PoolTask, options: RunOptions = {}): Promise<TaskOutcome> {
    const { onProgress } = options;
    return new Promise<TaskOutcome>((resolve) => {
      this.submit(task, {
        done: resolve,
        progress: onProgress && ((_task, fraction, message) => onProgress(fraction, message)),
      });
    });
  }

  /**
   * Runs one task like {@link run}, reporting its outcome (exactly once, never synchronously
   * from this call) and progress to `sink` rather than through a promise.
   */
  submit<T extends PoolTask>(task: T, sink: TaskSink<T>): void {
    const s = sink as unknown as TaskSink;
    if (!this.#typeSet.has(task.type)) {
      const outcome = failure(
        task,
        ErrorCode.UNKNOWN_TYPE,
        `this worker does not run task type "${task.type}"`,
        false,
        0,
      );
      queueMicrotask(() => s.done(outcome, task));
      return;
    }
    if (this.#state === 'closing' || this.#state === 'closed') {
      const outcome = failure(task, ErrorCode.WORKER_LOST, 'the handler pool is closed', false, 0);
      queueMicrotask(() => s.done(outcome, task));
      return;
    }
    const job: Job = {
      seq: ++this.#seq,
      task,
      timeoutMs: Math.min(MAX_TIMER_MS, task.timeoutMs ?? this.#defaultTimeoutMs),
      sink: s,
      slot: undefined,
      startedAt: 0,
      deadline: Infinity,
      graceTimer: undefined,
      stopped: undefined,
      done: false,
    };
    this.#queue.push(job);
    this.#queued++;
    this.#pump();
  }

  /**
   * Cancels every run of task `taskId`: a queued one ends at once, a running one has its
   * signal fired and its thread terminated if it has not stopped `abortGraceMs` later. Either
   * way its outcome is TG_ERR_CANCELLED (permanent).
   *
   * @returns whether a run of that task was found.
   */
  abort(taskId: number): boolean {
    let found = false;
    for (const job of this.#queue) {
      if (job.task.id !== taskId || job.done) continue;
      found = true;
      this.#queued--;
      this.#settle(job, stoppedOutcome(job, 'cancel', 0));
    }
    for (const slot of this.#threads) {
      for (const job of slot.jobs.values()) {
        if (job.task.id !== taskId) continue;
        found = true;
        this.#stop(job, 'cancel');
      }
    }
    return found;
  }

  /**
   * Stops every thread. Tasks still running or queued end with TG_ERR_WORKER_LOST (or their
   * timeout/cancel outcome). With `drain`, running and queued tasks first get up to
   * `timeoutMs` (default `drainTimeoutMs`) to finish; run() refuses new tasks meanwhile.
   */
  close(options: { drain?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.drain ?? false, options.timeoutMs ?? this.#drainTimeoutMs);
    return this.#closing;
  }

  async #close(drain: boolean, drainTimeoutMs: number): Promise<void> {
    this.#state = 'closing';
    clearInterval(this.#rssTimer);
    for (const timer of this.#respawnTimers) clearTimeout(timer);
    this.#respawnTimers.clear();
    if (drain && this.inFlight > 0 && this.#threads.length > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainTimeoutMs);
        this.#idleWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#idleWaiter = undefined;
    }
    this.#state = 'closed';
    for (let job = this.#queue.shift(); job; job = this.#queue.shift()) {
      if (job.done) continue;
      this.#settle(
        job,
        failure(job.task, ErrorCode.WORKER_LOST, 'the handler pool closed before the task ran', false, 0),
      );
    }
    this.#queued = 0;
    for (const slot of [...this.#threads]) {
      this.#retire(slot, (job) => lostOutcome(job, 'the handler pool closed while the task ran'));
    }
    this.#disarmDeadline();
    await Promise.all([...this.#terminating]);
  }

  #spawn(): ThreadSlot {
    const data = this.#threadData;
    if (!data) throw new TaskGridError(ErrorCode.INTERNAL, 'handler pool spawned a thread before start()');
    const worker = new Worker(BOOTSTRAP, {
      eval: true,
      workerData: data,
      resourceLimits: { maxOldGenerationSizeMb: this.#memoryLimitMb },
    });
    const slot = new ThreadSlot(worker);
    this.#threads.push(slot);
    worker.on('message', (msg: FromThread) => this.#onMessage(slot, msg));
    worker.on('error', (err) => {
      slot.lastError = err;
    });
    worker.on('exit', (code) => this.#onExit(slot, code));
    slot.startTimer = setTimeout(() => {
      if (slot.state !== 'starting') return;
      this.#failStart(
        slot,
        new ConfigError(
          `task type modules (${this.#types.join(', ')}) did not load within ${this.#startTimeoutMs} ms`,
        ),
      );
    }, this.#startTimeoutMs);
    return slot;
  }

  /** The host of the inline types: ready at once, on this thread. */
  #spawnInline(): ThreadSlot {
    const handlers = this.#inlineHandlers;
    if (!handlers)
      throw new TaskGridError(ErrorCode.INTERNAL, 'inline host spawned before its handlers loaded');
    // Outcomes come back from a microtask, never during a call: `slot` is set by then.
    const host = new HandlerHost((msg) => this.#onMessage(slot, msg), handlers, this.#types, true);
    const slot = new ThreadSlot(
      {
        postMessage: (msg) => host.onMessage(msg),
        terminate: () => {
          host.close();
          return Promise.resolve();
        },
      },
      true,
    );
    this.#threads.push(slot);
    slot.state = 'ready';
    slot.resolveReady();
    return slot;
  }

  #onMessage(slot: ThreadSlot, msg: FromThread): void {
    if (slot.state === 'dead') return;
    switch (msg.k) {
      case 'ready':
        clearTimeout(slot.startTimer);
        slot.state = 'ready';
        slot.resolveReady();
        if (this.#state === 'running' || this.#state === 'closing') this.#pump();
        break;
      case 'load-error':
        this.#failStart(slot, new ConfigError(msg.message));
        break;
      case 'out': {
        for (const p of msg.progress) this.#onProgress(slot, p);
        const { ok, r } = msg;
        for (let i = 0; i < r.length; i++) this.#onSuccess(slot, ok[2 * i]!, ok[2 * i + 1]!, r[i]!);
        for (const d of msg.failed) this.#onFailure(slot, d);
        if (this.#running === 0) this.#disarmDeadline();
        this.#pump();
        break;
      }
    }
  }

  #onProgress(slot: ThreadSlot, p: ProgressItem): void {
    const job = slot.jobs.get(p.s);
    if (!job?.sink.progress || job.stopped) return;
    try {
      job.sink.progress(job.task, p.f, p.m);
    } catch (err) {
      this.#logger?.warn({ err, taskId: job.task.id }, 'onProgress callback threw; ignored');
    }
  }

  #onSuccess(slot: ThreadSlot, seq: number, t: number, result: string): void {
    const job = slot.jobs.get(seq);
    if (!job) return;
    slot.jobs.delete(seq);
    this.#running--;
    // A stopped task is charged from its hand-over, as its deadline was: what the thread
    // measured leaves out the time the task waited to start there.
    this.#settle(
      job,
      job.stopped
        ? stoppedOutcome(job, job.stopped, elapsed(job))
        : { id: job.task.id, attempt: job.task.attempt, ok: true, result, runMs: round(t) },
    );
  }

  #onFailure(slot: ThreadSlot, d: DoneItem): void {
    const job = slot.jobs.get(d.s);
    if (!job) return;
    slot.jobs.delete(d.s);
    this.#running--;
    this.#settle(
      job,
      job.stopped
        ? stoppedOutcome(job, job.stopped, elapsed(job))
        : failure(job.task, d.c, d.m, d.p, round(d.t)),
    );
  }

  #onExit(slot: ThreadSlot, code: number): void {
    clearTimeout(slot.startTimer);
    if (slot.state === 'dead') return; // terminated on purpose; its tasks are already settled
    if (slot.state === 'starting') {
      const why = slot.lastError ? `: ${slot.lastError.message}` : ` with code ${code}`;
      this.#failStart(
        slot,
        new ConfigError(`handler thread exited while loading task types (${this.#types.join(', ')})${why}`),
      );
      return;
    }
    const reason = this.#describeDeath(slot, code);
    this.#logger?.warn(
      { code, err: slot.lastError, tasks: slot.jobs.size },
      `handler thread died: ${reason}`,
    );
    this.#retire(slot, (job) =>
      failure(job.task, ErrorCode.INTERNAL, `${reason} while running the task`, false, elapsed(job)),
    );
    this.#respawn();
  }

  #describeDeath(slot: ThreadSlot, code: number): string {
    const err = slot.lastError as (Error & { code?: unknown }) | undefined;
    if (err?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
      return `handler thread ran out of memory (limit ${this.#memoryLimitMb} MB)`;
    }
    if (err) return `handler thread crashed (${err.name}: ${err.message})`;
    return `handler thread exited with code ${code} (did the handler call process.exit()?)`;
  }

  /** A thread that did not become ready: fail start(), or retry later when replacing one. */
  #failStart(slot: ThreadSlot, err: Error): void {
    slot.rejectReady(err);
    this.#retire(slot, (job) => lostOutcome(job, 'its handler thread failed to start'));
    if (this.#state === 'running') {
      this.#logger?.warn({ err }, 'replacement handler thread failed to start; retrying');
      this.#respawnDelay = Math.min(
        this.#maxRespawnDelayMs,
        Math.max(this.#respawnDelayMs, this.#respawnDelay * 2),
      );
      this.#respawn();
    }
  }

  /** Marks a thread dead, settles its tasks with `outcomeOf`, and terminates it. */
  #retire(slot: ThreadSlot, outcomeOf: (job: Job) => TaskOutcome): void {
    if (slot.state === 'dead') return;
    slot.state = 'dead';
    clearTimeout(slot.startTimer);
    slot.rejectReady(closedWhileStarting()); // no-op unless it was still starting
    const i = this.#threads.indexOf(slot);
    if (i >= 0) this.#threads.splice(i, 1);
    for (const job of slot.jobs.values()) {
      this.#running--;
      this.#settle(job, job.stopped ? stoppedOutcome(job, job.stopped, elapsed(job)) : outcomeOf(job));
    }
    slot.jobs.clear();
    const terminated = slot.worker.terminate().catch(() => {});
    this.#terminating.add(terminated);
    void terminated.finally(() => this.#terminating.delete(terminated));
    this.#checkIdle();
  }

  #respawn(): void {
    if (this.#state !== 'running') return;
    const spawn = (): void => {
      const slot = this.#spawn();
      slot.ready.then(
        () => {
          this.#respawnDelay = 0;
        },
        () => {}, // #failStart has already scheduled the next attempt
      );
    };
    if (this.#respawnDelay === 0) {
      spawn();
      return;
    }
    const timer = setTimeout(() => {
      this.#respawnTimers.delete(timer);
      if (this.#state === 'running') spawn();
    }, this.#respawnDelay);
    this.#respawnTimers.add(timer);
  }

  /** Hands queued tasks, in order, to the inline host or the least busy ready thread while there is room. */
  #pump(): void {
    if (this.#state !== 'running' && this.#state !== 'closing') return;
    while (this.#queued > 0 && this.#running < this.#concurrency) {
      const job = this.#queue.peek();
      if (!job) return;
      if (!job.done) {
        const slot = this.#slotFor(job.task.type);
        if (!slot) return;
        this.#queued--;
        this.#dispatch(job, slot);
      }
      this.#queue.shift();
    }
  }

  /** The inline host for an inline type, else the ready thread with the fewest running tasks. */
  #slotFor(type: string): ThreadSlot | undefined {
    const inline = this.#inlineTypes.has(type);
    let best: ThreadSlot | undefined;
    for (const slot of this.#threads) {
      if (slot.state !== 'ready' || slot.inline !== inline) continue;
      if (inline) return slot;
      if (!best || slot.jobs.size < best.jobs.size) best = slot;
    }
    return best;
  }

  #dispatch(job: Job, slot: ThreadSlot): void {
    job.slot = slot;
    job.startedAt = performance.now();
    job.deadline = job.startedAt + job.timeoutMs;
    if (job.deadline < this.#deadlineAt) this.#armDeadline(job.deadline);
    slot.jobs.set(job.seq, job);
    this.#running++;
    const { id, attempt, type, payload } = job.task;
    // In the order of thread-protocol.ts's RUN_* offsets: seq, id, attempt, type, progress.
    slot.outNums.push(job.seq, id, attempt, this.#typeIndex.get(type)!, job.sink.progress ? 1 : 0);
    slot.outPayloads.push(payload);
    if (!slot.flushQueued) {
      slot.flushQueued = true;
      // A microtask: every task handed out by the caller's current synchronous loop (a TASK
      // message's batch, say) leaves in one postMessage.
      queueMicrotask(() => this.#flush(slot));
    }
  }

  #flush(slot: ThreadSlot): void {
    slot.flushQueued = false;
    if (slot.outPayloads.length === 0 || slot.state === 'dead') return;
    this.#post(slot, { k: 'run', n: new Float64Array(slot.outNums), p: slot.outPayloads });
    slot.outNums = [];
    slot.outPayloads = [];
  }

  #armDeadline(at: number): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineAt = at;
    this.#deadlineTimer = setTimeout(
      () => this.#onDeadline(),
      Math.max(1, Math.ceil(at - performance.now())),
    );
    // Running tasks keep the process alive through their threads; this timer need not.
    this.#deadlineTimer.unref();
  }

  #disarmDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    this.#deadlineAt = Infinity;
  }

  /** Stops the running tasks whose deadline has passed, and arms the timer for the next one. */
  #onDeadline(): void {
    this.#deadlineTimer = undefined;
    this.#deadlineAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const expired: Job[] = [];
    for (const slot of this.#threads) {
      for (const job of slot.jobs.values()) {
        if (job.stopped || job.done) continue;
        if (job.deadline <= now) expired.push(job);
        else if (job.deadline < next) next = job.deadline;
      }
    }
    for (const job of expired) this.#stop(job, 'timeout');
    if (next < this.#deadlineAt) this.#armDeadline(next);
  }

  #post(slot: ThreadSlot, msg: ToThread): void {
    slot.worker.postMessage(msg);
  }

  /** Fires a running task's signal, and terminates its thread if it has not ended after the grace period. */
  #stop(job: Job, cause: AbortCause): void {
    const slot = job.slot;
    if (job.done || job.stopped || !slot) return;
    job.stopped = cause;
    this.#flush(slot); // the task's `run` must reach the thread before its `abort`
    this.#post(slot, { k: 'abort', s: [job.seq], cause });
    job.graceTimer = setTimeout(() => {
      if (job.done || slot.state === 'dead') return;
      this.#logger?.warn(
        { taskId: job.task.id, cause, graceMs: this.#abortGraceMs, otherTasks: slot.jobs.size - 1 },
        slot.inline
          ? 'inline handler ignored its abort signal; giving up on it (it cannot be stopped)'
          : 'handler ignored its abort signal; terminating its thread',
      );
      this.#retire(slot, (other) =>
        lostOutcome(
          other,
          slot.inline
            ? `it ran inline beside task ${job.task.id}, which ignored its ${cause}`
            : `its handler thread was terminated to stop task ${job.task.id}, which ignored its ${cause}`,
        ),
      );
      if (!slot.inline) this.#respawn();
      else if (this.#state === 'running') this.#spawnInline();
    }, this.#abortGraceMs);
  }

  #settle(job: Job, outcome: TaskOutcome): void {
    if (job.done) return;
    job.done = true;
    clearTimeout(job.graceTimer);
    try {
      job.sink.done(outcome, job.task);
    } catch (err) {
      this.#logger?.warn({ err, taskId: job.task.id }, 'outcome callback threw; ignored');
    }
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#idleWaiter && (this.inFlight === 0 || this.#threads.length === 0)) this.#idleWaiter();
  }
}

/** Where the thread entry is, and what it needs to load TypeScript. */
function threadData(files: Record<string, string>, types: readonly string[]): ThreadData {
  // Under tsx (tests, `tsx src/...`) this module is pool.ts and its thread entry is thread.ts;
  // compiled into dist/ they are both .js.
  const self = fileURLToPath(import.meta.url);
  const ext = self.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`./thread${ext}`, import.meta.url).href;
  const needsTs = ext === '.ts' || Object.values(files).some((file) => file.endsWith('.ts'));
  // Resolved here, from this package, so that the thread finds tsx whatever its working
  // directory. Only the ESM half: task type modules live in this "type": "module" package, and
  // each registration costs every thread start-up time (tsx's ESM hooks alone take ~0.4 s).
  const register = needsTs ? [import.meta.resolve('tsx/esm/api')] : [];
  return { entry, register, files, types };
}

/**
 * Imports the inline types' handlers on this thread. TypeScript modules need a loader: this
 * thread has one when this module is TypeScript itself (tsx); a build registers tsx for them,
 * as each handler thread does.
 */
async function loadInline(
  files: Record<string, string>,
  types: readonly string[],
): Promise<Map<string, Handler>> {
  const selfIsTs = fileURLToPath(import.meta.url).endsWith('.ts');
  if (!selfIsTs && types.some((type) => files[type]!.endsWith('.ts'))) {
    ((await import(import.meta.resolve('tsx/esm/api'))) as { register(): void }).register();
  }
  return loadHandlers(files, types);
}

function closedWhileStarting(): TaskGridError {
  return new TaskGridError(ErrorCode.CLOSED, 'the handler pool was closed while starting');
}

function failure(
  task: PoolTask,
  code: ErrorCode,
  message: string,
  permanent: boolean,
  runMs: number,
): TaskOutcome {
  return { id: task.id, attempt: task.attempt, ok: false, error: { code, message }, permanent, runMs };
}

function stoppedOutcome(job: Job, cause: AbortCause, runMs: number): TaskOutcome {
  return cause === 'timeout'
    ? failure(
        job.task,
        ErrorCode.TASK_TIMEOUT,
        `task ${job.task.id} timed out after ${job.timeoutMs} ms`,
        false,
        runMs,
      )
    : failure(job.task, ErrorCode.CANCELLED, `task ${job.task.id} was cancelled`, true, runMs);
}

function lostOutcome(job: Job, why: string): TaskOutcome {
  return failure(
    job.task,
    ErrorCode.WORKER_LOST,
    `task ${job.task.id} was lost: ${why}`,
    false,
    elapsed(job),
  );
}

function elapsed(job: Job): number {
  return job.startedAt === 0 ? 0 : round(performance.now() - job.startedAt);
}

function round(ms: number): number {
  return Math.max(0, Math.round(ms * 1000) / 1000);
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1)
    throw new ConfigError(`handler pool option ${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegativeInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new ConfigError(`handler pool option ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}
