/**
 * Prometheus metrics of the grid and of the monitoring process itself, on a prom-client
 * Registry of their own (never the global default registry, so that two services in one
 * process, as in tests, never share or clash).
 *
 * Where the numbers come from:
 * - queue depths, tasks per status, throughput and the dispatcher's percentiles: its `stats`
 *   reply, polled once a second (gauges);
 * - tasks finished per type and status (counters): increases of those counts between polls, plus
 *   the tasks the dispatcher says it pruned meanwhile, so that they stay monotonic across
 *   dispatcher restarts and the pruning of old tasks, and miss none that end as a round prunes;
 * - run time and queue wait histograms per type and worker: tasks monitoring saw end while
 *   polling (under heavy load it sees a sample of them, not every task);
 * - per-worker counters and the dispatcher's transport counters: mirrored from `stats` as the
 *   dispatcher counts them (they reset when it restarts, which Prometheus' rate() handles);
 * - live instances per type and their capacity, in flight and last heartbeat: the nameservice.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StatsReply } from '../client/index.ts';
import type { Instance, TaskView } from '../protocol/messages.ts';
import { newCounters } from '../transport/types.ts';

/** Options of {@link MonitoringMetrics}. */
export interface MonitoringMetricsOptions {
  /** Add prom-client's process metrics (CPU, memory, event loop) of this process; default true. */
  processMetrics?: boolean;
  /** Distinct worker label values; later workers are counted as `other`. */
  maxWorkerSeries: number;
  /** Counters of monitoring's own transport, read at each scrape. */
  transportCounters?: () => Readonly<Record<string, number>>;
  /** Open event streams, read at each scrape. */
  sseClients?: () => number;
}

const FINAL_STATUSES = ['succeeded', 'failed', 'cancelled'] as const;
const STATUSES = ['queued', 'running', ...FINAL_STATUSES] as const;

/** Buckets in seconds from 5 ms to 10 min: handlers range from a string reversal to long waits. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** `datagramsIn` -> `datagrams_in`: Prometheus names are snake_case. */
function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/**
 * Every metric the monitoring service exports. Feed it with {@link updateStats},
 * {@link updateInstances}, {@link observeFinished} and {@link observeHttp}; read it with
 * {@link render}.
 */
/** A start time that moves by more than this is a restart; less is the ping's own delay. */
const RESTART_SLACK_MS = 2_000;

export class MonitoringMetrics {
  /** The registry holding every metric below. */
  readonly registry = new Registry();
  readonly #o: MonitoringMetricsOptions;
  #stats: StatsReply | undefined;
  #instances: Instance[] = [];
  readonly #lastCounts = new Map<string, Record<(typeof FINAL_STATUSES)[number], number>>();
  readonly #workerLabels = new Set<string>();
  readonly #lastPruned = new Map<string, Record<(typeof FINAL_STATUSES)[number], number>>();
  /** Types some live worker served since this service started. */
  readonly #servedTypes = new Set<string>();

  readonly #up: Gauge<'component'>;
  readonly #startTime: Gauge<'component' | 'address'>;
  /** The start time each component's series holds, in ms, to tell a restart from ping jitter. */
  readonly #startedAt = new Map<string, number>();
  readonly #tasks: Gauge<'type' | 'status'>;
  readonly #queueDepth: Gauge<'type'>;
  readonly #oldestQueued: Gauge<'type'>;
  readonly #finished: Counter<'type' | 'status'>;
  readonly #runDuration: Histogram<'type' | 'worker'>;
  readonly #waitDuration: Histogram<'type'>;
  readonly #httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly #httpDuration: Histogram<'method' | 'route'>;
  readonly #polls: Counter<'result'>;

  constructor(options: MonitoringMetricsOptions) {
    this.#o = options;
    const registers = [this.registry];
    // Metrics read at scrape time refer to themselves by name in their collect().

    this.#startTime = new Gauge({
      name: 'taskgrid_component_start_time_seconds',
      help: "When the dispatcher's and each nameservice's process started (seconds since the epoch), from their ping's uptime every 10 s: it changes when the component restarts.",
      labelNames: ['component', 'address'],
      registers,
    });
    this.#up = new Gauge({
      name: 'taskgrid_up',
      help: 'Whether monitoring reaches the component (1) or not (0), as of its last poll.',
      labelNames: ['component'],
      registers,
    });
    this.#tasks = new Gauge({
      name: 'taskgrid_tasks',
      help: "Tasks in the dispatcher's store, per type and status.",
      labelNames: ['type', 'status'],
      registers,
    });
    this.#queueDepth = new Gauge({
      name: 'taskgrid_queue_depth',
      help: 'Queued tasks per type (waiting or backing off before a retry).',
      labelNames: ['type'],
      registers,
    });
    this.#oldestQueued = new Gauge({
      name: 'taskgrid_queue_oldest_age_seconds',
      help: "Age of the oldest queued task per type, since its submission (the dispatcher's clock); 0 when none is queued.",
      labelNames: ['type'],
      registers,
    });
    this.#finished = new Counter({
      name: 'taskgrid_tasks_finished_total',
      help: 'Tasks that ended, per type and final status, counted from the increases monitoring saw.',
      labelNames: ['type', 'status'],
      registers,
    });
    const throughput: Gauge<string> = new Gauge({
      name: 'taskgrid_throughput_tasks_per_second',
      help: 'Tasks finished per second over the last minute, per type, as the dispatcher measures it.',
      labelNames: ['type'],
      registers,
      collect: () => {
        throughput.reset();
        for (const [type, s] of Object.entries(this.#stats?.types ?? {}))
          throughput.set({ type }, s.throughput);
      },
    });
    for (const [what, key, help] of [
      ['run', 'runMs', 'Run time of recent tasks'],
      ['queue_wait', 'waitMs', 'Time recent tasks waited in their queue'],
    ] as const) {
      for (const p of ['p50', 'p95'] as const) {
        const percentile: Gauge<string> = new Gauge({
          name: `taskgrid_task_${what}_${p}_seconds`,
          help: `${help}, ${p === 'p50' ? 'median' : '95th percentile'}, per type (the dispatcher's window of its last 1024 tasks).`,
          labelNames: ['type'],
          registers,
          collect: () => {
            percentile.reset();
            for (const [type, s] of Object.entries(this.#stats?.types ?? {}))
              percentile.set({ type }, s[key][p] / 1000);
          },
        });
      }
    }
    this.#runDuration = new Histogram({
      name: 'taskgrid_task_run_duration_seconds',
      help: 'Run time of the attempt that ended each task monitoring saw end, per type and worker.',
      labelNames: ['type', 'worker'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#waitDuration = new Histogram({
      name: 'taskgrid_task_queue_wait_duration_seconds',
      help: 'Time from submission to the start of the last attempt of each task monitoring saw end, per type.',
      labelNames: ['type'],
      buckets: DURATION_BUCKETS,
      registers,
    });

    // Workers: the dispatcher's accounting, and the nameservice's registrations.
    const workerAttempts: Counter<string> = new Counter({
      name: 'taskgrid_worker_attempts_total',
      help: 'Attempts a worker finished, per outcome, as the dispatcher counted them since it started.',
      labelNames: ['worker', 'outcome'],
      registers,
      collect: () => {
        workerAttempts.reset();
        for (const w of this.#stats?.workers ?? []) {
          const worker = this.#workerLabel(w.id);
          workerAttempts.inc({ worker, outcome: 'completed' }, w.completed);
          workerAttempts.inc({ worker, outcome: 'failed' }, w.failed);
        }
      },
    });
    const inFlight: Gauge<string> = new Gauge({
      name: 'taskgrid_worker_in_flight',
      help: 'Tasks running on a worker, as the dispatcher accounts them.',
      labelNames: ['worker'],
      registers,
      collect: () => {
        inFlight.reset();
        for (const w of this.#stats?.workers ?? [])
          inFlight.inc({ worker: this.#workerLabel(w.id) }, w.inFlight);
      },
    });
    const capacity: Gauge<string> = new Gauge({
      name: 'taskgrid_worker_capacity',
      help: 'Tasks a live worker instance runs at once, as it registered.',
      labelNames: ['worker'],
      registers,
      collect: () => {
        capacity.reset();
        for (const i of this.#liveWorkers()) capacity.inc({ worker: this.#workerLabel(i.id) }, i.capacity);
      },
    });
    const heartbeat: Gauge<string> = new Gauge({
      name: 'taskgrid_worker_last_heartbeat_timestamp_seconds',
      help: 'When the nameservice last heard from a live worker instance (Unix time).',
      labelNames: ['worker'],
      registers,
      collect: () => {
        heartbeat.reset();
        for (const i of this.#liveWorkers())
          heartbeat.set({ worker: this.#workerLabel(i.id) }, i.lastSeen / 1000);
      },
    });
    const perType: Gauge<string> = new Gauge({
      name: 'taskgrid_worker_instances',
      help: 'Live worker instances per task type they serve; 0 for a type none serves that was served before or has tasks queued or running.',
      labelNames: ['type'],
      registers,
      collect: () => {
        perType.reset();
        // A type whose workers are all gone, or whose tasks wait for a worker, keeps its series
        // at 0, so that an alert on `taskgrid_worker_instances == 0` fires (a missing series
        // matches no comparison). A type only left in the store (removed from workers.json,
        // nothing waiting) gets none, so that it raises no alert for ever.
        for (const i of this.#liveWorkers()) for (const type of i.types) this.#servedTypes.add(type);
        for (const [type, s] of Object.entries(this.#stats?.types ?? {}))
          if (s.queued + s.running > 0) perType.set({ type }, 0);
        for (const type of this.#servedTypes) perType.set({ type }, 0);
        for (const i of this.#liveWorkers()) for (const type of i.types) perType.inc({ type });
      },
    });

    // Transport counters: the dispatcher's (from stats) and monitoring's own.
    for (const key of Object.keys(newCounters())) {
      const dispatcherCounter: Counter<string> = new Counter({
        name: `taskgrid_dispatcher_transport_${snake(key)}_total`,
        help: `The dispatcher's transport counter ${key} (docs/PROTOCOL.md, Transport counters).`,
        registers,
        collect: () => {
          const value = this.#stats?.transport[key];
          dispatcherCounter.reset();
          if (value !== undefined && value >= 0) dispatcherCounter.inc(value);
        },
      });
      const monitoringCounter: Counter<string> = new Counter({
        name: `taskgrid_monitoring_transport_${snake(key)}_total`,
        help: `Monitoring's own transport counter ${key} (docs/PROTOCOL.md, Transport counters).`,
        registers,
        collect: () => {
          const value = this.#o.transportCounters?.()[key];
          monitoringCounter.reset();
          if (value !== undefined && value >= 0) monitoringCounter.inc(value);
        },
      });
    }

    // The monitoring process itself.
    this.#httpRequests = new Counter({
      name: 'taskgrid_monitoring_http_requests_total',
      help: 'HTTP requests monitoring answered, per method, route and status code.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: 'taskgrid_monitoring_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (for event streams: to open it), per method and route.',
      labelNames: ['method', 'route'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    const streams: Gauge<string> = new Gauge({
      name: 'taskgrid_monitoring_event_streams',
      help: 'Open event streams (GET /api/events).',
      registers,
      collect: () => {
        streams.set(this.#o.sseClients?.() ?? 0);
      },
    });
    this.#polls = new Counter({
      name: 'taskgrid_monitoring_polls_total',
      help: 'Polls of the dispatcher, per result (ok or error).',
      labelNames: ['result'],
      registers,
    });
    if (options.processMetrics ?? true) {
      const prefix = 'taskgrid_monitoring_';
      collectDefaultMetrics({ register: this.registry, prefix });
      // prom-client names these gauges `*_total`, which promtool rightly refuses (a `_total`
      // suffix promises a counter); the per-type gauges without the suffix say the same.
      for (const name of [
        'nodejs_active_handles_total',
        'nodejs_active_requests_total',
        'nodejs_active_resources_total',
      ]) {
        this.registry.removeSingleMetric(`${prefix}${name}`);
      }
    }
  }

  /** The Content-Type of {@link render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** A component answered (or not). */
  setUp(component: 'dispatcher' | 'nameservice', up: boolean): void {
    this.#up.set({ component }, up ? 1 : 0);
  }

  /**
   * A component's process started at `startedAtMs` (this clock: the time of the ping less its
   * uptime). Kept unless it moves by more than {@link RESTART_SLACK_MS}, so that the series only
   * changes at a restart, not with the ping's round trip.
   */
  setStartTime(component: 'dispatcher' | 'nameservice', address: string, startedAtMs: number): void {
    const key = `${component} ${address}`;
    const was = this.#startedAt.get(key);
    if (was !== undefined && Math.abs(startedAtMs - was) <= RESTART_SLACK_MS) return;
    this.#startedAt.set(key, startedAtMs);
    this.#startTime.set({ component, address }, Math.round(startedAtMs / 1000));
  }

  /** A poll ended. */
  countPoll(ok: boolean): void {
    this.#polls.inc({ result: ok ? 'ok' : 'error' });
  }

  /** The dispatcher's latest `stats` reply. */
  updateStats(stats: StatsReply): void {
    this.#stats = stats;
    this.#tasks.reset();
    this.#queueDepth.reset();
    this.#oldestQueued.reset();
    for (const [type, s] of Object.entries(stats.types)) {
      for (const status of STATUSES) this.#tasks.set({ type, status }, s[status]);
      this.#queueDepth.set({ type }, s.queued);
      this.#oldestQueued.set({ type }, (s.oldestQueuedMs ?? 0) / 1000);
      const last = this.#lastCounts.get(type);
      const lastPruned = this.#lastPruned.get(type);
      for (const status of FINAL_STATUSES) {
        // The first sight of a type counts what it already has; afterwards the increase of the
        // stored count plus what the dispatcher pruned meanwhile (its pruned counters restart
        // from 0 with it), so that tasks ending in the same poll as a pruning round are counted
        // and pruning and restarts never make the counter go back.
        const pruned = s.pruned?.[status] ?? 0;
        const before = lastPruned?.[status] ?? 0;
        const prunedDelta = pruned >= before ? pruned - before : pruned;
        const delta = last ? s[status] - last[status] + prunedDelta : s[status];
        if (delta > 0) this.#finished.inc({ type, status }, delta);
        else if (!last) this.#finished.inc({ type, status }, 0);
      }
      this.#lastCounts.set(type, { succeeded: s.succeeded, failed: s.failed, cancelled: s.cancelled });
      this.#lastPruned.set(type, {
        succeeded: s.pruned?.succeeded ?? 0,
        failed: s.pruned?.failed ?? 0,
        cancelled: s.pruned?.cancelled ?? 0,
      });
    }
  }

  /** The nameservice's live instances. */
  updateInstances(instances: readonly Instance[]): void {
    this.#instances = [...instances];
  }

  /** A task monitoring saw end: its run and wait go into the histograms. */
  observeFinished(view: TaskView): void {
    if (view.startedAt === undefined) return; // cancelled before it ever ran
    const wait = view.startedAt - view.createdAt;
    if (wait >= 0) this.#waitDuration.observe({ type: view.type }, wait / 1000);
    if (view.finishedAt !== undefined && view.finishedAt >= view.startedAt) {
      const worker = this.#workerLabel(view.worker ?? 'unknown');
      this.#runDuration.observe({ type: view.type, worker }, (view.finishedAt - view.startedAt) / 1000);
    }
  }

  /** An HTTP request was answered. `route` is the route pattern, never the raw path. */
  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.#httpRequests.inc({ method, route, status: String(status) });
    this.#httpDuration.observe({ method, route }, seconds);
  }

  #liveWorkers(): Instance[] {
    return this.#instances.filter((i) => i.role === 'worker');
  }

  #workerLabel(id: string): string {
    if (this.#workerLabels.has(id)) return id;
    if (this.#workerLabels.size >= this.#o.maxWorkerSeries) return 'other';
    this.#workerLabels.add(id);
    return id;
  }
}
