/**
 * The worker: registers the task types it serves with the nameservice, accepts TASK batches
 * from the dispatcher, runs them in its handler pool (off the main thread) and reports each
 * outcome with RESULT until the dispatcher acknowledges it.
 *
 * Results are batched per dispatcher and re-sent until acknowledged; the dispatcher records
 * each attempt's outcome once, so re-sending is safe. On stop, the worker first advertises no
 * capacity (so no new tasks come), lets running tasks finish up to a bound, delivers their
 * results, and only then deregisters.
 */
import { ErrorCode, TaskGridError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { Registration } from '../nameservice/registration.ts';
import type { ReplyBody, TaskAssignment, TaskOutcome } from '../protocol/messages.ts';
import type { PeerAddress, Transport } from '../transport/types.ts';
import { HandlerPool, type TaskSink } from './pool.ts';

export const WORKER_DEFAULTS = {
  concurrency: 4,
  /** How long stop() lets running tasks finish. */
  drainTimeoutMs: 30_000,
  /** First delay before re-sending unacknowledged results; doubles up to the maximum. */
  resultRetryMs: 200,
  maxResultRetryMs: 5_000,
  /** Results not acknowledged for this long are dropped (the task's lease has long lapsed). */
  resultGiveUpMs: 10 * 60_000,
  /** Most progress reports per task per second. */
  progressPerSecond: 5,
  version: '0.1.0',
} as const;

export interface WorkerOptions {
  transport: Transport;
  nameservers: PeerAddress[];
  /** Task types served; each needs a module in `typesDir`. */
  types: string[];
  typesDir: string;
  /** Tasks run at once (the capacity the worker registers). */
  concurrency?: number;
  /** Types whose handlers run on the main thread (see HandlerPoolOptions.inline); default none. */
  inline?: readonly string[];
  /** Handler threads; default from the pool. */
  threads?: number;
  /** Heap limit of each handler thread in MiB; default from the pool (512). */
  memoryLimitMb?: number;
  /** The address the dispatcher reaches this worker at. */
  advertise: PeerAddress;
  id?: string;
  logger?: Logger;
  drainTimeoutMs?: number;
  resultRetryMs?: number;
  maxResultRetryMs?: number;
  resultGiveUpMs?: number;
  /** Options passed to the registration (heartbeat interval, for tests). */
  heartbeatMs?: number;
  version?: string;
}

/**
 * One dispatcher's side of the worker: the pool reports the ends and progress of its tasks
 * here (one object for all of them, no closure per task), and their results wait here for the
 * next flush.
 */
interface DispatcherLink extends TaskSink<TaskAssignment> {
  readonly peer: PeerAddress;
  outcomes: TaskOutcome[];
}

export class TaskWorker {
  readonly #t: Transport;
  readonly #pool: HandlerPool;
  readonly #reg: Registration;
  readonly #log: Logger;
  readonly #o: WorkerOptions & {
    -readonly [K in keyof typeof WORKER_DEFAULTS]: (typeof WORKER_DEFAULTS)[K] extends number
      ? number
      : string;
  };
  readonly #started = Date.now();
  readonly #running = new Map<number, number>(); // task id -> attempt
  /**
   * Batches of results on their way to a dispatcher, not yet acknowledged: read only when a
   * restarted dispatcher asks what this worker holds (`holding`), so kept per batch, not per task.
   */
  readonly #inDelivery = new Set<readonly TaskOutcome[]>();
  /** By dispatcher address ("host:port"); links with results to send are also in #outbox. */
  readonly #links = new Map<string, DispatcherLink>();
  readonly #outbox = new Set<DispatcherLink>();
  #flushScheduled = false;
  #unacked = 0;
  #draining = false;
  #completed = 0;
  #failed = 0;
  readonly #lastProgress = new Map<number, number>();

  constructor(options: WorkerOptions) {
    this.#o = { ...WORKER_DEFAULTS, ...options };
    this.#t = options.transport;
    this.#log = options.logger ?? silentLogger();
    this.#pool = new HandlerPool({
      typesDir: options.typesDir,
      types: options.types,
      concurrency: this.#o.concurrency,
      ...(options.inline !== undefined ? { inline: options.inline } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.memoryLimitMb !== undefined ? { memoryLimitMb: options.memoryLimitMb } : {}),
      logger: this.#log,
    });
    this.#reg = new Registration({
      transport: this.#t,
      nameservers: options.nameservers,
      instance: {
        ...(options.id !== undefined ? { id: options.id } : {}),
        role: 'worker',
        types: options.types,
        address: options.advertise,
        capacity: this.#o.concurrency,
        meta: { pid: String(process.pid), version: this.#o.version },
      },
      logger: this.#log,
      keepTrying: true,
      inFlight: () => this.#running.size,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    });
  }

  /** The instance id registered with the nameservice. */
  get id(): string {
    return this.#reg.id;
  }

  get inFlight(): number {
    return this.#running.size;
  }

  /** Loads every handler (a bad module fails here), then registers and takes tasks. */
  async start(): Promise<void> {
    try {
      await this.#pool.start();
    } catch (err) {
      // A handler module that cannot load: stop whatever threads did start, so that nothing
      // keeps the process alive behind the error.
      await this.#pool.close({ drain: false }).catch(() => {});
      throw err;
    }
    this.#install();
    // With no nameservice yet, keep trying in the background: it may come up later.
    await this.#reg
      .start()
      .catch((err: unknown) => this.#log.warn({ err }, 'no nameservice answered yet; still trying'));
    // Debug: the process announces `ready` itself (src/cli/components.ts), once.
    this.#log.debug(
      { types: this.#o.types, concurrency: this.#o.concurrency, id: this.#reg.id },
      'worker started',
    );
  }

  /**
   * Stops taking tasks, lets running ones finish (up to the drain bound), delivers their
   * results, then deregisters and stops the pool.
   */
  async stop(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    this.#log.info({ running: this.#running.size }, 'worker draining');
    // Not awaited: a nameservice that is gone would hold the drain for a whole request timeout.
    // Tasks sent meanwhile are refused (draining), and the registration's stop ends the update.
    void this.#reg.update({ capacity: 0 }).catch(() => {});
    const until = Date.now() + this.#o.drainTimeoutMs;
    while ((this.#running.size > 0 || this.#unacked > 0) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.#pool.close({ drain: false });
    await this.#reg.stop();
    this.#log.info({ completed: this.#completed, failed: this.#failed }, 'worker stopped');
  }

  #install(): void {
    this.#t.handle('ping', () => ({
      component: 'worker',
      version: this.#o.version,
      uptimeMs: Date.now() - this.#started,
      pid: process.pid,
      id: this.#reg.id,
    }));
    this.#t.handle('task', (body, ctx) => this.#onTasks(body.tasks, ctx.peer));
    this.#t.handle('abort', ({ ids }) => ({ aborted: ids.filter((id) => this.#pool.abort(id)) }));
    this.#t.handle('holding', ({ tasks }) => {
      const unacknowledged = new Map<number, number>();
      for (const results of this.#inDelivery) for (const r of results) unacknowledged.set(r.id, r.attempt);
      for (const link of this.#outbox) for (const r of link.outcomes) unacknowledged.set(r.id, r.attempt);
      const held: number[] = [];
      for (const t of tasks)
        if (this.#running.get(t.id) === t.attempt || unacknowledged.get(t.id) === t.attempt) held.push(t.id);
      return { held };
    });
  }

  #onTasks(tasks: TaskAssignment[], dispatcher: PeerAddress): ReplyBody<'task'> {
    const accepted: number[] = [];
    const rejected: ReplyBody<'task'>['rejected'] = [];
    const link = this.#link(dispatcher);
    for (const task of tasks) {
      if (this.#draining) {
        rejected.push({ id: task.id, error: { code: ErrorCode.BUSY, message: 'worker is shutting down' } });
        continue;
      }
      if (!this.#o.types.includes(task.type)) {
        rejected.push({
          id: task.id,
          error: { code: ErrorCode.UNKNOWN_TYPE, message: `this worker does not serve "${task.type}"` },
        });
        continue;
      }
      if (this.#running.get(task.id) === task.attempt) {
        accepted.push(task.id); // already running this very attempt
        continue;
      }
      this.#running.set(task.id, task.attempt);
      accepted.push(task.id);
      this.#pool.submit(task, link);
    }
    return { accepted, rejected };
  }

  /** The link to the dispatcher at `peer`, made on its first task. */
  #link(peer: PeerAddress): DispatcherLink {
    const key = `${peer.host}:${peer.port}`;
    let link = this.#links.get(key);
    if (!link) {
      const made: DispatcherLink = {
        peer: { host: peer.host, port: peer.port },
        outcomes: [],
        done: (outcome, task) => this.#onDone(made, task, outcome),
        progress: (task, fraction, message) => this.#progress(task, made.peer, fraction, message),
      };
      this.#links.set(key, (link = made));
    }
    return link;
  }

  #onDone(link: DispatcherLink, task: TaskAssignment, outcome: TaskOutcome): void {
    if (this.#running.get(task.id) === task.attempt) this.#running.delete(task.id);
    if (this.#lastProgress.size > 0) this.#lastProgress.delete(task.id);
    if (outcome.ok) this.#completed++;
    else this.#failed++;
    this.#queueResult(link, outcome);
  }

  #progress(task: TaskAssignment, dispatcher: PeerAddress, fraction?: number, message?: string): void {
    const now = Date.now();
    const last = this.#lastProgress.get(task.id) ?? 0;
    if (now - last < 1000 / this.#o.progressPerSecond) return;
    this.#lastProgress.set(task.id, now);
    this.#t.notify(dispatcher, 'progress', {
      id: task.id,
      attempt: task.attempt,
      ...(fraction !== undefined && Number.isFinite(fraction)
        ? { progress: Math.min(1, Math.max(0, fraction)) }
        : {}),
      ...(message !== undefined ? { message: message.slice(0, 1024) } : {}),
    });
  }

  /** Results leave in a microtask: all the outcomes the pool delivers in one go share a request, without waiting for the next turn of the event loop. */
  #queueResult(link: DispatcherLink, outcome: TaskOutcome): void {
    link.outcomes.push(outcome);
    this.#outbox.add(link);
    this.#unacked++;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    for (const link of this.#outbox) {
      const { outcomes } = link;
      link.outcomes = [];
      const now = Date.now();
      if (outcomes.length <= 1000) this.#deliver(link.peer, outcomes, now, this.#o.resultRetryMs);
      else {
        for (let i = 0; i < outcomes.length; i += 1000) {
          this.#deliver(link.peer, outcomes.slice(i, i + 1000), now, this.#o.resultRetryMs);
        }
      }
    }
    this.#outbox.clear();
  }

  /** Sends results until acknowledged, backing off between tries. */
  #deliver(peer: PeerAddress, results: TaskOutcome[], since: number, delay: number): void {
    this.#inDelivery.add(results);
    this.#t.request(peer, 'result', { results }).then(
      () => {
        this.#unacked -= results.length;
        this.#inDelivery.delete(results);
      },
      (err: unknown) => {
        const closed = err instanceof TaskGridError && err.code === ErrorCode.CLOSED;
        if (closed || Date.now() - since > this.#o.resultGiveUpMs) {
          this.#unacked -= results.length;
          this.#inDelivery.delete(results);
          this.#log.error({ err, results: results.length }, 'gave up delivering results');
          return;
        }
        this.#log.warn({ err, results: results.length }, 'results not acknowledged; re-sending');
        const t = setTimeout(
          () => this.#deliver(peer, results, since, Math.min(delay * 2, this.#o.maxResultRetryMs)),
          delay,
        );
        t.unref();
      },
    );
  }
}
