/**
 * Runs task handlers and reports their outcomes in batches: the part of a handler thread that
 * does the work, also used on a worker's main thread for task types declared `inline`. It
 * only reports what happened; the HandlerPool decides what a task's outcome finally is (a task
 * that ran past its timeout is TG_ERR_TASK_TIMEOUT whatever its handler did next).
 */
import { ErrorCode, TaskGridError, isErrorCode } from '../errors.ts';
import type { Handler, HandlerContext } from './handler-api.ts';
import { importHandler } from './import-handler.ts';
import {
  RUN_ATTEMPT,
  RUN_FIELDS,
  RUN_ID,
  RUN_PROGRESS,
  RUN_SEQ,
  RUN_TYPE,
  type AbortCause,
  type DoneItem,
  type FromThread,
  type ProgressItem,
  type ToThread,
} from './thread-protocol.ts';

/** The protocol's limits on an error message and a progress message. */
const MAX_ERROR_MESSAGE = 4096;
const MAX_PROGRESS_MESSAGE = 1024;

const ignoreProgress = (): void => {};

/** One running task: it is also the handler's context. */
class TaskRun implements HandlerContext {
  readonly taskId: number;
  readonly attempt: number;
  readonly type: string;
  readonly seq: number;
  readonly startedAt = performance.now();
  readonly #host: HandlerHost | undefined;
  // Created on first use, like the controller below: most handlers never report progress.
  #progress: ((fraction?: number, message?: string) => void) | undefined;
  // Created on first use: most handlers never look at their signal, and an AbortController per
  // task is a measurable share of a small task's cost.
  #controller: AbortController | undefined;

  /** `host` is undefined when nobody listens to the task's progress. */
  constructor(seq: number, taskId: number, attempt: number, type: string, host: HandlerHost | undefined) {
    this.seq = seq;
    this.taskId = taskId;
    this.attempt = attempt;
    this.type = type;
    this.#host = host;
  }

  /** A bound function rather than a method so that `const { progress } = ctx` works too. */
  get progress(): (fraction?: number, message?: string) => void {
    const host = this.#host;
    if (!host) return ignoreProgress;
    this.#progress ??= (f, m) => host.reportProgress(this, f, m);
    return this.#progress;
  }

  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  abort(cause: AbortCause): void {
    this.#controller ??= new AbortController();
    if (this.#controller.signal.aborted) return;
    const reason =
      cause === 'timeout'
        ? new TaskGridError(ErrorCode.TASK_TIMEOUT, `task ${this.taskId} timed out`)
        : new TaskGridError(ErrorCode.CANCELLED, `task ${this.taskId} was cancelled`);
    this.#controller.abort(reason);
  }
}

/** Runs the tasks of `run` messages and posts their outcomes as `out` messages. */
export class HandlerHost {
  readonly #post: (msg: FromThread) => void;
  readonly #handlers: ReadonlyMap<string, Handler>;
  readonly #types: readonly string[];
  readonly #running = new Map<number, TaskRun>();
  /** Successes since the last flush: (sequence number, run time) pairs, and their results. */
  #ok: number[] = [];
  #results: string[] = [];
  #failed: DoneItem[] = [];
  #progress = new Map<number, ProgressItem>();
  #flushQueued = false;
  #closed = false;
  readonly #onTheSameThread: boolean;

  /**
   * @param onTheSameThread the host runs on the thread it posts to (inline types): outcomes
   *   are posted from a microtask instead of the event loop's next turn.
   */
  constructor(
    post: (msg: FromThread) => void,
    handlers: ReadonlyMap<string, Handler>,
    types: readonly string[],
    onTheSameThread = false,
  ) {
    this.#post = post;
    this.#handlers = handlers;
    this.#types = types;
    this.#onTheSameThread = onTheSameThread;
  }

  onMessage(msg: ToThread): void {
    if (this.#closed) return;
    if (msg.k === 'run') {
      const { n, p } = msg;
      for (let i = 0, o = 0; i < p.length; i++, o += RUN_FIELDS) {
        const type = this.#types[n[o + RUN_TYPE]!] ?? `#${n[o + RUN_TYPE]}`;
        const run = new TaskRun(
          n[o + RUN_SEQ]!,
          n[o + RUN_ID]!,
          n[o + RUN_ATTEMPT]!,
          type,
          n[o + RUN_PROGRESS] === 1 ? this : undefined,
        );
        this.#start(run, p[i]!);
      }
    } else {
      for (const s of msg.s) this.#running.get(s)?.abort(msg.cause);
    }
  }

  reportProgress(run: TaskRun, fraction: unknown, message: unknown): void {
    if (!this.#running.has(run.seq)) return;
    const f =
      typeof fraction === 'number' && Number.isFinite(fraction)
        ? Math.min(1, Math.max(0, fraction))
        : undefined;
    const m = typeof message === 'string' ? message.slice(0, MAX_PROGRESS_MESSAGE) : undefined;
    if (f === undefined && m === undefined) return;
    // Coalesced per flush: a handler reporting in a tight loop costs one map entry, not a message each.
    const prev = this.#progress.get(run.seq);
    const fNext = f ?? prev?.f;
    const mNext = m ?? prev?.m;
    this.#progress.set(run.seq, {
      s: run.seq,
      ...(fNext === undefined ? {} : { f: fNext }),
      ...(mNext === undefined ? {} : { m: mNext }),
    });
    this.#queueFlush();
  }

  #start(run: TaskRun, payload: string): void {
    const handle = this.#handlers.get(run.type);
    this.#running.set(run.seq, run);
    if (!handle) {
      this.#fail(run, ErrorCode.INTERNAL, `task type "${run.type}" is not loaded in this thread`, false);
      return;
    }
    let value: unknown;
    try {
      value = handle(payload, run);
    } catch (err) {
      this.#failWith(run, err);
      return;
    }
    // Synchronous handlers finish here, without a promise per task.
    if (typeof value === 'string') {
      this.#succeed(run, value);
    } else if (isThenable(value)) {
      Promise.resolve(value).then(
        (result: unknown) => {
          if (typeof result === 'string') this.#succeed(run, result);
          else this.#failNotString(run, result, 'resolved to');
        },
        (err: unknown) => this.#failWith(run, err),
      );
    } else {
      this.#failNotString(run, value, 'returned');
    }
  }

  #succeed(run: TaskRun, result: string): void {
    if (!this.#end(run)) return;
    this.#ok.push(run.seq, performance.now() - run.startedAt);
    this.#results.push(result);
  }

  #failWith(run: TaskRun, err: unknown): void {
    if (isPermanentTaskError(err)) this.#fail(run, err.code, err.message, true);
    else this.#fail(run, ErrorCode.HANDLER_FAILED, describeThrown(err), false);
  }

  #failNotString(run: TaskRun, value: unknown, verb: string): void {
    const what =
      value === null || value === undefined
        ? String(value)
        : Array.isArray(value)
          ? 'an array'
          : typeof value === 'object'
            ? 'an object'
            : `a ${typeof value}`;
    this.#fail(
      run,
      ErrorCode.HANDLER_FAILED,
      `handler of task type "${run.type}" ${verb} ${what}, not a string`,
      false,
    );
  }

  #fail(run: TaskRun, code: ErrorCode, message: string, permanent: boolean): void {
    if (!this.#end(run)) return;
    const m = message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE - 1)}…` : message;
    this.#failed.push({ s: run.seq, t: performance.now() - run.startedAt, c: code, m, p: permanent });
  }

  /** Forgets a run; false when it had already ended (a handler settles only once, but be sure). */
  #end(run: TaskRun): boolean {
    if (!this.#running.delete(run.seq)) return false;
    this.#progress.delete(run.seq);
    this.#queueFlush();
    return true;
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    if (this.#onTheSameThread) {
      // A microtask: every outcome of one incoming batch of synchronous tasks still leaves
      // together, and the worker's result for a task reaches the transport before the end of
      // the task, in time to share the datagram of the task's acknowledgement.
      queueMicrotask(() => this.#flush());
    } else {
      // setImmediate rather than a microtask: every outcome of one incoming batch of synchronous
      // tasks, and of async tasks settled by the same I/O turn, leaves in one message.
      setImmediate(() => this.#flush());
    }
  }

  /**
   * Fires the signal of every running task and posts nothing more: the end of a host on a
   * worker's main thread, which cannot be terminated like a thread.
   */
  close(): void {
    this.#closed = true;
    for (const run of this.#running.values()) run.abort('cancel');
    this.#running.clear();
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#closed) return;
    if (this.#results.length === 0 && this.#failed.length === 0 && this.#progress.size === 0) return;
    const msg: FromThread = {
      k: 'out',
      ok: new Float64Array(this.#ok),
      r: this.#results,
      failed: this.#failed,
      progress: this.#progress.size === 0 ? [] : [...this.#progress.values()],
    };
    this.#ok = [];
    this.#results = [];
    this.#failed = [];
    if (this.#progress.size > 0) this.#progress = new Map();
    this.#post(msg);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * By name and code rather than `instanceof`: a handler may import its PermanentTaskError from
 * a different copy of errors.ts than this thread (TypeScript sources beside a compiled dist/).
 */
function isPermanentTaskError(err: unknown): err is Error & { code: ErrorCode } {
  return (
    err instanceof Error && err.name === 'PermanentTaskError' && isErrorCode((err as { code?: unknown }).code)
  );
}

function describeThrown(err: unknown): string {
  if (err instanceof Error) {
    const text = err.message === '' ? '(no message)' : err.message;
    return err.name === 'Error' || err.name === '' ? text : `${err.name}: ${text}`;
  }
  try {
    return `handler threw a non-Error value: ${typeof err === 'string' ? err : JSON.stringify(err)}`;
  } catch {
    return 'handler threw a non-Error value';
  }
}

/**
 * Imports the handler of every type, in order.
 *
 * @throws ConfigError (TG_ERR_CONFIG) naming the type and file of the first that fails.
 */
export async function loadHandlers(
  files: Readonly<Record<string, string>>,
  types: readonly string[],
): Promise<Map<string, Handler>> {
  const handlers = new Map<string, Handler>();
  for (const type of types) handlers.set(type, await importHandler(files[type]!, type));
  return handlers;
}
