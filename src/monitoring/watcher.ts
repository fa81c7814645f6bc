/**
 * The poller behind the live dashboard, the event stream and the metrics. The dispatcher does
 * not push to monitoring, so once a poll interval it asks for `stats`, the newest page of tasks
 * and the running tasks, and turns the differences from the previous poll into events:
 *
 * - a task that appeared or whose status, attempt, worker or progress changed -> `tasks`;
 * - a task that was running and left the running page is looked up once to learn how it ended
 *   (a bounded number per poll), so that old long-running tasks are followed too;
 * - each stats reply -> a chart sample (kept for the last minutes) and a `stats` event;
 * - the dispatcher going silent or answering again -> `dispatcher`.
 *
 * Worker changes come from the nameservice subscription (the Directory pushes them) and are
 * published as they happen, not polled.
 */
import { formatAddress, isFinal } from '../client/index.ts';
import type { StatsReply } from '../client/index.ts';
import { ErrorCode, TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { TaskView, WireError } from '../protocol/messages.ts';
import { systemClock, type Clock, type PeerAddress } from '../transport/types.ts';
import type { EventHub } from './events.ts';
import { fittingTasksPage, type GridSource } from './grid.ts';
import type { MonitoringMetrics } from './metrics.ts';
import type { ResolvedMonitoringTuning } from './options.ts';
import type {
  DispatcherState,
  EventData,
  ObservedAttempt,
  StatsResponse,
  StatsSample,
  TaskSummary,
} from './schemas.ts';

/** Polls between two pings of the dispatcher and the nameservices for their start times. */
const START_PROBE_EVERY = 10;

/** Options of a {@link GridWatcher}. */
export interface GridWatcherOptions {
  grid: GridSource;
  hub: EventHub;
  metrics: MonitoringMetrics;
  tuning: ResolvedMonitoringTuning;
  clock?: Clock;
  logger?: Logger;
}

/** The wire form of any error. */
export function wireError(err: unknown): WireError {
  if (err instanceof TaskGridError) return { code: err.code, message: err.message.slice(0, 4096) };
  return { code: ErrorCode.INTERNAL, message: 'unexpected error' };
}

/** A task without its full payload and result, for events. */
export function summarize(view: TaskView, previewChars: number): TaskSummary {
  const { payload, result, ...rest } = view;
  const summary: TaskSummary = { ...rest };
  if (payload !== undefined) summary.payloadPreview = payload.slice(0, previewChars);
  if (result !== undefined) summary.resultPreview = result.slice(0, previewChars);
  return summary;
}

/** What makes a change of a task worth an event. */
function signature(v: TaskView): string {
  return `${v.status}|${v.attempts}|${v.worker ?? ''}|${v.progress ?? ''}|${v.progressMessage ?? ''}|${v.finishedAt ?? ''}`;
}

/**
 * The attempts of each task as seen while polling, for the detail view: the dispatcher keeps
 * only a task's latest worker and error. Bounded: the least recently seen tasks are forgotten.
 */
export class AttemptLog {
  readonly #tasks = new Map<number, ObservedAttempt[]>();
  readonly #max: number;

  constructor(maxTasks: number) {
    this.#max = maxTasks;
  }

  /** The attempts seen of a task, oldest first (copies). */
  get(id: number): ObservedAttempt[] {
    return (this.#tasks.get(id) ?? []).map((a) => ({ ...a }));
  }

  /** Records what a view of the task shows. */
  note(view: TaskView): void {
    let list = this.#tasks.get(view.id);
    if (list) this.#tasks.delete(view.id); // re-inserted below: most recently seen last
    if (view.attempts === 0) {
      if (list) this.#tasks.set(view.id, list);
      return;
    }
    list ??= [];
    const last = list.at(-1);
    const lastEnded = last !== undefined && last.outcome !== 'running';
    const newRound = last === undefined || last.attempt !== view.attempts || (lastEnded && !isFinal(view));
    if (newRound) {
      // An attempt still marked running when a later one shows up ended without success.
      if (last && last.outcome === 'running')
        last.outcome = last.attempt < view.attempts ? 'requeued' : 'unknown';
      list.push({ attempt: view.attempts, outcome: 'running' });
    }
    const current = list.at(-1)!;
    if (view.worker !== undefined) current.worker = view.worker;
    if (view.startedAt !== undefined) current.startedAt = view.startedAt;
    if (view.status === 'running') current.outcome = 'running';
    else if (view.status === 'queued') {
      current.outcome = 'requeued';
      if (view.error) current.error = view.error;
    } else {
      current.outcome = view.status;
      if (view.finishedAt !== undefined) current.endedAt = view.finishedAt;
      if (view.error) current.error = view.error;
    }
    this.#tasks.set(view.id, list);
    while (this.#tasks.size > this.#max) {
      const oldest = this.#tasks.keys().next().value;
      if (oldest === undefined) break;
      this.#tasks.delete(oldest);
    }
  }
}

interface Totals {
  at: number;
  finished: number;
  failed: number;
  perType: Map<string, number>;
}

/** Polls the grid and publishes what changed; see the module comment. */
export class GridWatcher {
  readonly #grid: GridSource;
  readonly #hub: EventHub;
  readonly #metrics: MonitoringMetrics;
  readonly #t: ResolvedMonitoringTuning;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #attempts: AttemptLog;
  readonly #history: StatsSample[] = [];
  /** Signature of each task seen in the last poll (and of running ones awaiting a lookup). */
  #known = new Map<number, string>();
  /** Tasks that left the running page and are still to be looked up. */
  readonly #pending = new Set<number>();
  #baseline = true;
  /** Page sizes that last fitted one message (large payloads make pages shrink). */
  #newestLimit: number;
  #runningLimit: number;
  #prevTotals: Totals | undefined;
  #stats: StatsResponse | undefined;
  #dispatcher: DispatcherState = {
    reachable: false,
    error: { code: ErrorCode.UNREACHABLE, message: 'not polled yet' },
  };
  #timer: unknown;
  #polling: Promise<void> | undefined;
  /** Polls begun, for the start-time pings every few polls. */
  #polls = 0;
  #unsubscribe: (() => void) | undefined;
  #started = false;
  #closed = false;

  constructor(options: GridWatcherOptions) {
    this.#grid = options.grid;
    this.#hub = options.hub;
    this.#metrics = options.metrics;
    this.#t = options.tuning;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger();
    this.#attempts = new AttemptLog(this.#t.attemptLogTasks);
    this.#newestLimit = this.#t.pollNewestTasks;
    this.#runningLimit = this.#t.pollRunningTasks;
  }

  /** Follows worker changes and starts polling (the first poll at once). */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#metrics.updateInstances(this.#grid.instances());
    this.#unsubscribe = this.#grid.onInstancesChange((change) => {
      this.#metrics.updateInstances(this.#grid.instances());
      this.#hub.publish('workers', { upserted: change.upserted, removed: change.removed.map((i) => i.id) });
    });
    this.#schedule(0);
  }

  /** Stops polling; resolves once a poll in progress ended. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#unsubscribe?.();
    await this.#polling;
  }

  /** The latest stats reply, if any poll got one. */
  get stats(): StatsResponse | undefined {
    return this.#stats;
  }

  /** Whether the last poll reached the dispatcher. */
  get dispatcher(): DispatcherState {
    return this.#dispatcher;
  }

  /** Chart samples, oldest first. */
  history(): StatsSample[] {
    return [...this.#history];
  }

  /** The attempts of a task seen so far. */
  attempts(id: number): ObservedAttempt[] {
    return this.#attempts.get(id);
  }

  /** Records a view of a task fetched elsewhere (a detail view, a cancel), so that its attempts stay current. */
  noteTask(view: TaskView): void {
    this.#attempts.note(view);
  }

  /** What a new event stream starts with. */
  snapshot(): EventData<'snapshot'> {
    const sample = this.#history.at(-1);
    return {
      workers: this.#grid.instances(),
      ...(this.#stats && { stats: this.#stats }),
      ...(sample && { sample }),
      dispatcher: this.#dispatcher,
    };
  }

  /** One poll: stats and task pages, events for what changed. Polls never overlap. */
  pollOnce(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      const began = this.#clock.now();
      void this.pollOnce()
        .catch((err: unknown) => this.#log.error({ err }, 'poll failed'))
        .then(() => this.#schedule(Math.max(0, this.#t.pollIntervalMs - (this.#clock.now() - began))));
    }, ms);
  }

  /**
   * Every {@link START_PROBE_EVERY} polls (the first included): pings the dispatcher and each
   * nameservice for their uptime, which gives `taskgrid_component_start_time_seconds`. Not
   * awaited by the poll; a component that does not answer keeps its last value.
   */
  #probeStarts(): void {
    if (this.#polls++ % START_PROBE_EVERY !== 0) return;
    const probe = async (component: 'dispatcher' | 'nameservice', address: PeerAddress) => {
      const sent = this.#clock.now();
      const reply = await this.#grid.ping(address, this.#t.pollIntervalMs * 2);
      this.#metrics.setStartTime(component, formatAddress(address), sent - reply.uptimeMs);
    };
    const quiet = () => {};
    for (const ns of this.#grid.nameservers()) probe('nameservice', ns).catch(quiet);
    this.#grid
      .dispatcherAddress()
      .then((address) => probe('dispatcher', address))
      .catch(quiet);
  }

  async #poll(): Promise<void> {
    this.#probeStarts();
    // After pages had to shrink, try twice the size that fitted: back to full size when payloads shrink again.
    const [stats, newest, running] = await Promise.allSettled([
      this.#grid.stats(),
      fittingTasksPage(this.#grid, { limit: Math.min(this.#t.pollNewestTasks, this.#newestLimit * 2) }),
      fittingTasksPage(this.#grid, {
        status: 'running',
        limit: Math.min(this.#t.pollRunningTasks, this.#runningLimit * 2),
      }),
    ]);
    if (newest.status === 'fulfilled') this.#newestLimit = newest.value.limit;
    if (running.status === 'fulfilled') this.#runningLimit = running.value.limit;
    if (this.#closed) return;
    const now = this.#clock.now();
    this.#metrics.setUp('nameservice', this.#grid.synced());
    this.#metrics.updateInstances(this.#grid.instances());

    if (stats.status === 'fulfilled') {
      this.#onStats(stats.value, now);
      this.#setDispatcher({ reachable: true });
    } else {
      this.#setDispatcher({ reachable: false, error: wireError(stats.reason) });
    }
    this.#metrics.countPoll(stats.status === 'fulfilled');

    if (newest.status === 'fulfilled' && running.status === 'fulfilled') {
      try {
        await this.#onTasks([...newest.value.page.tasks, ...running.value.page.tasks]);
      } catch (err) {
        this.#log.warn({ err }, 'following task changes failed');
      }
    }
  }

  #setDispatcher(state: DispatcherState): void {
    const was = this.#dispatcher.reachable;
    this.#dispatcher = state;
    this.#metrics.setUp('dispatcher', state.reachable);
    if (was !== state.reachable) {
      this.#log.info({ reachable: state.reachable, error: state.error }, 'dispatcher reachability changed');
      this.#hub.publish('dispatcher', state);
    }
  }

  #onStats(reply: StatsReply, now: number): void {
    const stats: StatsResponse = { ...reply, sampledAt: now };
    this.#stats = stats;
    this.#metrics.updateStats(reply);

    const totals: Totals = {
      at: now,
      finished: reply.totals.succeeded + reply.totals.failed + reply.totals.cancelled,
      failed: reply.totals.failed,
      perType: new Map(
        Object.entries(reply.types).map(([t, s]) => [t, s.succeeded + s.failed + s.cancelled]),
      ),
    };
    const prev = this.#prevTotals;
    this.#prevTotals = totals;
    const seconds = prev ? Math.max(0.001, (now - prev.at) / 1000) : 0;
    const rate = (current: number, before: number | undefined): number =>
      prev && before !== undefined ? Math.max(0, current - before) / seconds : 0;

    const types: StatsSample['types'] = {};
    const runMs = { p50: 0, p95: 0 };
    const waitMs = { p50: 0, p95: 0 };
    for (const [type, s] of Object.entries(reply.types)) {
      types[type] = {
        queued: s.queued,
        running: s.running,
        finishedPerSec: rate(totals.perType.get(type) ?? 0, prev?.perType.get(type)),
      };
      if (s.throughput > 0) {
        runMs.p50 = Math.max(runMs.p50, s.runMs.p50);
        runMs.p95 = Math.max(runMs.p95, s.runMs.p95);
        waitMs.p50 = Math.max(waitMs.p50, s.waitMs.p50);
        waitMs.p95 = Math.max(waitMs.p95, s.waitMs.p95);
      }
    }
    const sample: StatsSample = {
      at: now,
      finishedPerSec: rate(totals.finished, prev?.finished),
      failedPerSec: rate(totals.failed, prev?.failed),
      queued: reply.totals.queued,
      running: reply.totals.running,
      runMs,
      waitMs,
      types,
    };
    this.#history.push(sample);
    if (this.#history.length > this.#t.historySamples)
      this.#history.splice(0, this.#history.length - this.#t.historySamples);
    this.#hub.publish('stats', { sample, stats });
  }

  async #onTasks(views: TaskView[]): Promise<void> {
    const seen = new Map<number, TaskView>();
    for (const v of views) seen.set(v.id, v);
    const changed: TaskView[] = [];
    const consider = (view: TaskView): void => {
      const before = this.#known.get(view.id);
      const sig = signature(view);
      if (before === sig) return;
      this.#attempts.note(view);
      if (this.#baseline) return;
      changed.push(view);
      const wasFinal = before !== undefined && /^(succeeded|failed|cancelled)\|/.test(before);
      if (isFinal(view) && !wasFinal) this.#metrics.observeFinished(view);
    };
    for (const view of seen.values()) consider(view);

    // Running tasks that left both pages ended or went back to their queue: look them up.
    for (const [id, sig] of this.#known) {
      if (!seen.has(id) && sig.startsWith('running|')) this.#pending.add(id);
    }
    const next = new Map<number, string>();
    let lookups = 0;
    for (const id of [...this.#pending]) {
      if (seen.has(id)) {
        this.#pending.delete(id);
        continue;
      }
      if (lookups >= this.#t.finalLookupsPerPoll) break;
      lookups++;
      this.#pending.delete(id);
      try {
        const view = await this.#grid.task(id, { payload: false });
        consider(view);
        next.set(id, signature(view));
      } catch (err) {
        if (!(err instanceof TaskGridError && err.code === ErrorCode.NOT_FOUND)) {
          // Unreachable or busy: try again next poll.
          this.#pending.add(id);
          const known = this.#known.get(id);
          if (known !== undefined) next.set(id, known);
        }
      }
      if (this.#closed) return;
    }
    // Bound the backlog: a dispatcher restart could strand thousands of "running" tasks.
    const maxPending = this.#t.finalLookupsPerPoll * 20;
    for (const id of this.#pending) {
      if (this.#pending.size <= maxPending) break;
      this.#pending.delete(id);
    }
    for (const id of this.#pending) {
      const known = this.#known.get(id);
      if (known !== undefined) next.set(id, known);
    }
    for (const [id, view] of seen) next.set(id, signature(view));
    this.#known = next;
    this.#baseline = false;
    if (changed.length > 0) {
      this.#hub.publish('tasks', { tasks: changed.map((v) => summarize(v, this.#t.previewChars)) });
    }
  }
}
