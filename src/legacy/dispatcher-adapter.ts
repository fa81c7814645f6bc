/**
 * TaskGrid+ messages on the dispatcher's port (POST_TASK, GET_RESULT, RESULT_RETURN, GET_STATS,
 * GET_ALL_TASKS), and TASK messages to TaskGrid+ workers.
 *
 * Nothing here keeps tasks: every message acts on the dispatcher and its store as the v1
 * request would. POST_TASK commits before it answers, as `submit` does, so the id it returns is
 * a real task id that GET_RESULT (and v1 `get-result`) accept. A TaskGrid+ worker gets one task
 * at a time (capacity 1) under the task's ordinary lease: TaskGrid+ has no acks, so a lost TASK
 * or RESULT_RETURN is covered by the lease lapsing, which puts the task back in its queue with
 * backoff. Its RESULT_RETURN is recorded through the dispatcher, once, fenced by the attempt
 * the TASK carried.
 */
import { ErrorCode } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type {
  Instance,
  ReplyBody,
  TaskAssignment,
  TaskOutcome,
  TaskSpec,
  TaskView,
} from '../protocol/messages.ts';
import type { TaskStore } from '../dispatcher/store/store.ts';
import type { PeerAddress, Transport } from '../transport/types.ts';
import { LegacyServer, route, type LegacyCounters } from './server.ts';
import {
  dispatcherMessages as m,
  encodeLegacy,
  encodeReply,
  fitList,
  formatAddress,
  isLegacyInstance,
  LegacyText,
  LegacyType,
  resultReply,
  taskIdOf,
  textOf,
  toLegacyTask,
  tooLargeReply,
  type LegacyTask,
} from './wire.ts';

/** What the adapter needs of the dispatcher: submitting and recording as v1 requests do. */
export interface LegacyDispatcherCore {
  /** As a `submit` request: one result per spec, ids committed before the promise resolves. */
  submitTasks(specs: TaskSpec[]): Promise<ReplyBody<'submit'>['results']>;
  /** As a `result` request: each outcome counts once, only for the attempt it names. */
  recordOutcomes(outcomes: TaskOutcome[]): Promise<{ recorded: number }>;
}

/** What the dispatcher calls to hand tasks to a TaskGrid+ worker (see `DispatcherOptions.legacy`). */
export interface LegacyTaskSender {
  /** Sends each task as a TASK message; a task that cannot be sent is failed through the core. */
  send(worker: Instance, tasks: TaskAssignment[]): void;
}

/** The store reads the adapter makes; writes go through the dispatcher. */
export type LegacyStoreView = Pick<TaskStore, 'get' | 'list' | 'counts' | 'listRunning'>;

/** Defaults of {@link LegacyDispatcherOptions}. */
export const LEGACY_DISPATCHER_DEFAULTS = {
  /** Succeeded tasks (the newest) that GET_STATS and GET_ALL_TASKS average completion times over. */
  statsWindow: 1_000,
  /** How long those averages are reused: dashboards poll GET_STATS every second. */
  statsCacheMs: 1_000,
  /** Open tasks listed by GET_STATS, as TaskGrid+ did. */
  pendingListed: 10,
  /** Tasks GET_ALL_TASKS considers (the newest); the reply holds as many as fit. */
  allTasksPage: 100,
  /** Tasks sent to TaskGrid+ workers whose attempt is remembered for their RESULT_RETURN. */
  maxTracked: 100_000,
} as const;

export interface LegacyDispatcherOptions {
  /** The dispatcher's transport (same port as protocol v1). */
  transport: Transport;
  store: LegacyStoreView;
  /** The dispatcher's view of the instances (its Directory). */
  directory: { instances(filter?: { type?: string; role?: Instance['role'] }): Instance[] };
  logger?: Logger;
  now?: () => number;
  /** Largest reply or TASK; default 4096 bytes. */
  maxDatagramBytes?: number;
  statsWindow?: number;
  statsCacheMs?: number;
  maxTracked?: number;
}

interface Tracked {
  attempt: number;
  worker: string;
  sentAt: number;
}

interface Averages {
  at: number;
  overall: number | undefined;
  byType: Record<string, number>;
}

/** Serves TaskGrid+'s dispatcher messages on a v1 dispatcher, and sends TASKs to TaskGrid+ workers. */
export class LegacyDispatcher implements LegacyTaskSender {
  readonly #server: LegacyServer;
  readonly #store: LegacyStoreView;
  readonly #dir: LegacyDispatcherOptions['directory'];
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #o: { statsWindow: number; statsCacheMs: number; maxTracked: number };
  /** Task id -> the attempt a TASK carried, for the RESULT_RETURN that does not repeat it. */
  readonly #tracked = new Map<number, Tracked>();
  #core: LegacyDispatcherCore | undefined;
  #averages: Averages | undefined;
  #tasksSent = 0;
  #resultsRecorded = 0;
  #resultsRefused = 0;

  constructor(options: LegacyDispatcherOptions) {
    this.#store = options.store;
    this.#dir = options.directory;
    this.#log = options.logger ?? silentLogger();
    this.#now = options.now ?? Date.now;
    const d = LEGACY_DISPATCHER_DEFAULTS;
    this.#o = {
      statsWindow: options.statsWindow ?? d.statsWindow,
      statsCacheMs: options.statsCacheMs ?? d.statsCacheMs,
      maxTracked: options.maxTracked ?? d.maxTracked,
    };
    this.#server = new LegacyServer({
      transport: options.transport,
      component: 'dispatcher',
      logger: this.#log,
      maxDatagramBytes: options.maxDatagramBytes,
      unknownTypeText: LegacyText.invalidMessageType,
      routes: {
        POST_TASK: route(m.POST_TASK, (d) => this.#postTask(d.type, textOf(d.payload))),
        GET_RESULT: route(
          m.GET_RESULT,
          (d) => this.#getResult(d.task_id),
          (size, limit) => tooLargeReply('The result', size, limit),
        ),
        RESULT_RETURN: route(m.RESULT_RETURN, (d, from) =>
          this.#resultReturn(d.task_id, textOf(d.result), from),
        ),
        GET_STATS: route(m.GET_STATS, () => this.#getStats()),
        GET_ALL_TASKS: route(m.GET_ALL_TASKS, () => this.#getAllTasks()),
      },
    });
  }

  /**
   * Starts answering TaskGrid+ messages; `core` is the dispatcher they act on. Call it after
   * the dispatcher started, as its v1 handlers are installed then too.
   */
  start(core: LegacyDispatcherCore): void {
    this.#core = core;
    this.#server.start();
  }

  /** Stops answering and sending. Tasks out with TaskGrid+ workers are covered by their leases. */
  close(): void {
    this.#server.close();
    this.#tracked.clear();
  }

  counters(): LegacyCounters & { tasksSent: number; resultsRecorded: number; resultsRefused: number } {
    return {
      ...this.#server.counters(),
      tasksSent: this.#tasksSent,
      resultsRecorded: this.#resultsRecorded,
      resultsRefused: this.#resultsRefused,
    };
  }

  #coreOrThrow(): LegacyDispatcherCore {
    if (!this.#core) throw new Error('LegacyDispatcher used before start()');
    return this.#core;
  }

  // ---- TASK to TaskGrid+ workers ----------------------------------------------------------

  send(worker: Instance, tasks: TaskAssignment[]): void {
    this.#sendTasks(worker, tasks).catch((err: unknown) => {
      // The leases put the tasks back; this is worth a line in the log, not more.
      this.#log.error({ err, worker: worker.id }, 'could not send tasks to a TaskGrid+ worker');
    });
  }

  async #sendTasks(worker: Instance, tasks: TaskAssignment[]): Promise<void> {
    // TaskGrid+'s task object carries its creation time, which an assignment does not.
    const created = new Map<number, number>();
    try {
      for (const v of (await this.#store.get(tasks.map((t) => t.id))).tasks) created.set(v.id, v.createdAt);
    } catch (err) {
      this.#log.debug({ err }, 'creation times unavailable; sending the dispatch time');
    }
    const now = this.#now();
    const refused: TaskOutcome[] = [];
    for (const t of tasks) {
      const task: LegacyTask = {
        id: t.id,
        type: t.type,
        payload: t.payload,
        result: null,
        status: 'pending',
        timestamp_created: (created.get(t.id) ?? now) / 1000,
        timestamp_completed: 0,
        assigned_worker: formatAddress(worker.address),
      };
      const bytes = encodeLegacy(LegacyType.TASK, task);
      if (!this.#server.sendRaw(bytes, worker.address)) {
        refused.push({
          id: t.id,
          attempt: t.attempt,
          ok: false,
          error: {
            code: ErrorCode.TOO_LARGE,
            message: `the TASK message of ${bytes.length} bytes exceeds the ${this.#server.maxDatagramBytes} bytes a TaskGrid+ worker reads; only a protocol v1 worker can run this task`,
          },
          // Another try can only help if a v1 worker may get it.
          permanent: !this.#v1Serves(t.type),
          runMs: 0,
        });
        continue;
      }
      this.#track(t.id, { attempt: t.attempt, worker: worker.id, sentAt: now });
      this.#tasksSent++;
    }
    if (refused.length > 0) {
      this.#log.warn(
        { worker: worker.id, tasks: refused.map((o) => o.id) },
        'tasks too large for a TaskGrid+ worker',
      );
      await this.#coreOrThrow().recordOutcomes(refused);
    }
  }

  #v1Serves(type: string): boolean {
    return this.#dir.instances({ type, role: 'worker' }).some((i) => !isLegacyInstance(i));
  }

  #track(id: number, t: Tracked): void {
    this.#tracked.delete(id);
    this.#tracked.set(id, t);
    // Oldest first: an entry this old belongs to a task whose lease lapsed long ago.
    if (this.#tracked.size > this.#o.maxTracked) {
      const oldest = this.#tracked.keys().next();
      if (!oldest.done) this.#tracked.delete(oldest.value);
    }
  }

  // ---- messages ---------------------------------------------------------------------------

  async #postTask(type: string, payload: string): Promise<{ message: string } | { error: string }> {
    const [r] = await this.#coreOrThrow().submitTasks([{ type, payload }]);
    if (r && 'id' in r) return { message: LegacyText.taskReceived(r.id) };
    const e = r?.error ?? { code: ErrorCode.INTERNAL, message: 'no result for the task' };
    return { error: `Task not accepted: ${e.message} (${e.code})` };
  }

  async #getResult(taskId: number | string): Promise<Record<string, unknown>> {
    const id = taskIdOf(taskId);
    if (id === undefined) return { error: LegacyText.taskNotFound };
    return resultReply((await this.#store.get([id])).tasks[0]);
  }

  async #resultReturn(
    taskId: number | string,
    result: string,
    from: PeerAddress,
  ): Promise<Record<string, unknown>> {
    const id = taskIdOf(taskId);
    if (id === undefined) return { error: LegacyText.taskIdNotFound };
    const sent = this.#tracked.get(id) ?? (await this.#runningOnLegacyWorker(id));
    if (sent) {
      const runMs = Math.max(0, this.#now() - sent.sentAt);
      const { recorded } = await this.#coreOrThrow().recordOutcomes([
        { id, attempt: sent.attempt, ok: true, result, runMs },
      ]);
      if (recorded > 0) {
        this.#tracked.delete(id);
        this.#resultsRecorded++;
        return { message: LegacyText.resultStored };
      }
    }
    const view = (await this.#store.get([id])).tasks[0];
    if (!view) return { error: LegacyText.taskIdNotFound };
    // The same result again (TaskGrid+ workers may repeat themselves): it is stored.
    if (view.status === 'succeeded' && view.result === result) return { message: LegacyText.resultStored };
    this.#resultsRefused++;
    this.#log.info({ task: id, status: view.status, peer: from }, 'TaskGrid+ result refused');
    return {
      error: `Result not accepted: task ${id} is ${view.status}${view.status === 'running' ? ' on another worker' : ''} and does not wait for this result`,
    };
  }

  /** After a restart nothing is tracked: the store still knows which attempt runs where. */
  async #runningOnLegacyWorker(id: number): Promise<Tracked | undefined> {
    const r = (await this.#store.listRunning()).find((x) => x.id === id);
    if (!r) return undefined;
    const worker = this.#dir.instances({ role: 'worker' }).find((i) => i.id === r.worker);
    if (!worker || !isLegacyInstance(worker)) return undefined;
    return { attempt: r.attempt, worker: r.worker, sentAt: this.#now() };
  }

  async #getStats(): Promise<Record<string, unknown>> {
    const counts = await this.#store.counts();
    let open = 0;
    let finished = 0;
    for (const c of counts.values()) {
      open += c.queued + c.running;
      finished += c.succeeded + c.failed + c.cancelled;
    }
    const avg = await this.#averagesNow();
    const [running, queued] = await Promise.all([
      this.#store.list({ status: 'running', limit: LEGACY_DISPATCHER_DEFAULTS.pendingListed, payload: true }),
      this.#store.list({ status: 'queued', limit: LEGACY_DISPATCHER_DEFAULTS.pendingListed, payload: true }),
    ]);
    const workers = this.#workerAddresses();
    const pending = [...running.tasks, ...queued.tasks]
      .sort((a, b) => a.id - b.id)
      .slice(0, LEGACY_DISPATCHER_DEFAULTS.pendingListed)
      .map((v) => this.#legacyTask(v, workers));
    const stats = {
      total_tasks: open + finished,
      completed_tasks: finished,
      open_tasks: open,
      avg_completion_time: avg.overall ?? 0,
      avg_completion_by_worker: avg.byType,
    };
    // Payloads can be long: list the pending tasks that fit rather than none at all.
    const fit = fitList(pending, (p) => encodeReply({ stats, pending: p }), this.#server.maxDatagramBytes);
    return { stats, pending: pending.slice(0, fit?.count ?? 0) };
  }

  async #getAllTasks(): Promise<Record<string, unknown>> {
    const counts = await this.#store.counts();
    let total = 0;
    let done = 0;
    let pending = 0;
    for (const c of counts.values()) {
      total += c.queued + c.running + c.succeeded + c.failed + c.cancelled;
      done += c.succeeded;
      pending += c.queued + c.running;
    }
    const avg = await this.#averagesNow();
    const stats = { total, done, pending, avg_completion_time: avg.overall ?? null };
    // TaskGrid+ sent every task, which stopped fitting in 4096 bytes after a few dozen: the
    // newest that fit are sent, oldest first as TaskGrid+ listed them; `stats` counts them all.
    const page = await this.#store.list({ limit: LEGACY_DISPATCHER_DEFAULTS.allTasksPage, payload: true });
    const workers = this.#workerAddresses();
    const newest = page.tasks.map((v) => this.#legacyTask(v, workers));
    const fit = fitList(newest, (t) => encodeReply({ stats, tasks: t }), this.#server.maxDatagramBytes);
    return { stats, tasks: newest.slice(0, fit?.count ?? 0).reverse() };
  }

  /** Instance id -> address, to show where a task ran the way TaskGrid+ did. */
  #workerAddresses(): Map<string, string> {
    return new Map(this.#dir.instances({ role: 'worker' }).map((i) => [i.id, formatAddress(i.address)]));
  }

  #legacyTask(v: TaskView, workers: Map<string, string>): LegacyTask {
    return toLegacyTask(v, v.worker === undefined ? null : (workers.get(v.worker) ?? v.worker));
  }

  /**
   * Average seconds from creation to completion over the newest succeeded tasks, overall and
   * per type (TaskGrid+ named the per-type map `avg_completion_by_worker`). Not over every task
   * ever: that would read the whole store on every poll.
   */
  async #averagesNow(): Promise<Averages> {
    const now = this.#now();
    if (this.#averages && now - this.#averages.at < this.#o.statsCacheMs) return this.#averages;
    const { tasks } = await this.#store.list({ status: 'succeeded', limit: this.#o.statsWindow });
    const sums = new Map<string, { total: number; n: number }>();
    let total = 0;
    let n = 0;
    for (const v of tasks) {
      if (v.finishedAt === undefined) continue;
      const s = (v.finishedAt - v.createdAt) / 1000;
      total += s;
      n++;
      const t = sums.get(v.type) ?? { total: 0, n: 0 };
      t.total += s;
      t.n++;
      sums.set(v.type, t);
    }
    const round = (x: number) => Math.round(x * 100) / 100;
    const byType: Record<string, number> = {};
    for (const [type, t] of sums) byType[type] = round(t.total / t.n);
    this.#averages = { at: now, overall: n > 0 ? round(total / n) : undefined, byType };
    return this.#averages;
  }
}
