/**
 * The REST API's bodies as zod schemas: requests are validated with them, and the OpenAPI
 * document (openapi.ts) is generated from them, so that the document cannot drift from what
 * the routes accept and answer. Task, instance and stats shapes are the protocol's own
 * (src/protocol/messages.ts): the API passes them on as the dispatcher and nameservice send them.
 */
import { z } from 'zod';
import {
  Address,
  Instance,
  TaskId,
  TaskSpec,
  TaskStatus,
  TaskTypeName,
  TaskView,
  TypeStats,
  WireError,
  WorkerStats,
  requests,
} from '../protocol/messages.ts';

export { Address, Instance, TaskSpec, TaskStatus, TaskTypeName, TaskView, TypeStats, WireError, WorkerStats };

/** Every error answer: `{error: {code, message}}` with a stable TG_ERR_* code. */
export const ApiError = z.strictObject({ error: WireError });

const Percentiles = z.strictObject({ p50: z.number().min(0), p95: z.number().min(0) });

/** `GET /api/stats`: the dispatcher's `stats` reply and when it was taken. */
export const StatsResponse = requests.stats.res.extend({
  /** When monitoring received these stats (ms since the epoch). */
  sampledAt: z.number(),
});

/** One point of the charts: the grid over one poll interval. */
export const StatsSample = z.strictObject({
  at: z.number(),
  /** Tasks that ended (succeeded, failed or cancelled) per second since the previous sample. */
  finishedPerSec: z.number().min(0),
  /** Tasks that ended failed per second since the previous sample. */
  failedPerSec: z.number().min(0),
  queued: z.number().int().min(0),
  running: z.number().int().min(0),
  /** Run time of the slowest type among those that finished tasks in the last minute. */
  runMs: Percentiles,
  /** Queue wait of the slowest type among those that finished tasks in the last minute. */
  waitMs: Percentiles,
  types: z.record(
    TaskTypeName,
    z.strictObject({
      queued: z.number().int().min(0),
      running: z.number().int().min(0),
      finishedPerSec: z.number().min(0),
    }),
  ),
});

/** `GET /api/stats/history`: the last minutes of samples, oldest first. */
export const StatsHistory = z.strictObject({
  intervalMs: z.number().int().positive(),
  samples: z.array(StatsSample),
});

/**
 * `GET /api/tasks`: a page of tasks, newest first, with the cursor of the next page. A task
 * whose payload and result together exceed the grid's maximum message size comes alone on its
 * page, without its payload, and its id is in `payloadOmitted` (`GET /api/tasks/{id}` says the same).
 */
export const TasksResponse = requests.tasks.res.extend({ payloadOmitted: z.array(TaskId).optional() });

const LIMIT_RANGE = 'limit is an integer from 1 to 1000';

/** Query of `GET /api/tasks`, as strings from the URL. */
export const TasksQuery = z.strictObject({
  status: TaskStatus.optional(),
  type: TaskTypeName.optional(),
  limit: z
    .string()
    .regex(/^\d{1,4}$/, LIMIT_RANGE)
    .transform(Number)
    .pipe(z.number().int().min(1, LIMIT_RANGE).max(1000, LIMIT_RANGE))
    .optional(),
  cursor: z.string().min(1).max(64).optional(),
});

/** One attempt of a task as this monitoring service saw it while polling. */
export const ObservedAttempt = z.strictObject({
  attempt: z.number().int().min(1),
  worker: z.string().optional(),
  startedAt: z.number().optional(),
  endedAt: z.number().optional(),
  /**
   * How the attempt ended: `requeued` = it failed and the task went back to its queue;
   * `unknown` = it ended between two polls without a trace; `running` = not ended yet.
   */
  outcome: z.enum(['running', 'succeeded', 'failed', 'cancelled', 'requeued', 'unknown']),
  error: WireError.optional(),
});
export type ObservedAttempt = z.output<typeof ObservedAttempt>;

/** `GET /api/tasks/{id}`: the task with its payload and result, and the attempts monitoring saw. */
export const TaskDetail = z.strictObject({
  task: TaskView,
  /**
   * The attempts this monitoring service observed, oldest first. The dispatcher keeps only a
   * task's latest worker and error, so earlier attempts are known only if they were seen.
   */
  attempts: z.array(ObservedAttempt),
  /** The payload and result together exceed the grid's maximum message size: the payload is left out. */
  payloadOmitted: z.boolean().optional(),
});

/** `POST /api/tasks`: the task as the protocol's submit takes it. */
export const SubmitRequest = TaskSpec;

/** `POST /api/tasks` answer (201): the task's id once the dispatcher committed it. */
export const SubmitResponse = z.strictObject({
  id: z.number().int().positive(),
  /** The request's `key` named a task submitted before: this is that task. */
  duplicate: z.boolean(),
});

/** `POST /api/tasks/{id}/cancel` and `/retry` answer: the task after the change. */
export const TaskChangeResponse = z.strictObject({ task: TaskView });

/** One component as a health check found it. */
export const ComponentHealth = z.strictObject({
  component: z.enum(['nameservice', 'dispatcher', 'worker']),
  /** The instance id (workers, the dispatcher when it says). */
  id: z.string().optional(),
  /** `host:port` asked. */
  address: z.string(),
  reachable: z.boolean(),
  /** False when the worker was not pinged (more workers than a health check pings). */
  checked: z.boolean(),
  version: z.string().optional(),
  uptimeMs: z.number().min(0).optional(),
  pid: z.number().int().optional(),
  /** Round trip of the ping. */
  latencyMs: z.number().min(0).optional(),
  error: WireError.optional(),
});
export type ComponentHealth = z.output<typeof ComponentHealth>;

/** `GET /api/health`. */
export const HealthResponse = z.strictObject({
  /** `down`: no nameservice or no dispatcher answers; `degraded`: a worker does not. */
  status: z.enum(['ok', 'degraded', 'down']),
  checkedAt: z.number(),
  monitoring: z.strictObject({
    version: z.string(),
    uptimeMs: z.number().min(0),
    pid: z.number().int(),
    /** Every API call needs `Authorization: Bearer <TASKGRID_MONITOR_TOKEN>`. */
    authRequired: z.boolean(),
    /** POST actions (submit, cancel, retry) are allowed: a token is set or the service is bound to loopback. */
    actionsAllowed: z.boolean(),
  }),
  components: z.array(ComponentHealth),
});

/** One live worker instance, as `GET /api/workers` reports it. */
export const WorkerInstance = z.strictObject({
  id: z.string(),
  address: Address,
  types: z.array(TaskTypeName),
  capacity: z.number().int().min(0),
  /** Tasks running on it: the dispatcher's count, else what its last heartbeat said. */
  inFlight: z.number().int().min(0),
  /** Attempts it finished and failed since the dispatcher started (absent when the dispatcher is unreachable). */
  completed: z.number().int().min(0).optional(),
  failed: z.number().int().min(0).optional(),
  registeredAt: z.number(),
  /** When the nameservice last heard its heartbeat. */
  lastHeartbeat: z.number(),
  meta: z.record(z.string(), z.string()),
});

/** One task type: its workers.json entry (if any) joined with its live instances. */
export const WorkerType = z.strictObject({
  name: TaskTypeName,
  description: z.string(),
  /** Listed in workers.json. */
  configured: z.boolean(),
  /** workers.json says it should run (false for unlisted types that a worker serves anyway). */
  active: z.boolean(),
  replicas: z.number().int().min(0).optional(),
  concurrency: z.number().int().min(1).optional(),
  timeoutMs: z.number().int().min(1).optional(),
  maxAttempts: z.number().int().min(1).optional(),
  /** At least one live instance serves it. */
  registered: z.boolean(),
  instances: z.array(WorkerInstance),
  /** Slots of its instances (an instance serving several types shares its slots among them). */
  capacity: z.number().int().min(0),
  /** Its tasks running: the dispatcher's count per type, else the sum its instances reported. */
  inFlight: z.number().int().min(0),
});

/** `GET /api/workers`. */
export const WorkersResponse = z.strictObject({
  /** The instances come from a live nameservice answer (false: the last view the subscription kept). */
  fresh: z.boolean(),
  types: z.array(WorkerType),
});

/** Query of `GET /api/logs`. */
export const LogsQuery = z.strictObject({
  component: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'a component name is letters, digits, "_", "-" and "."')
    .optional(),
  lines: z
    .string()
    .regex(/^\d{1,5}$/, 'lines is a positive integer')
    .transform(Number)
    .pipe(z.number().int().min(1))
    .optional(),
});

/** `GET /api/logs`: the components that have a log, and the tail of the one asked for. */
export const LogsResponse = z.strictObject({
  components: z.array(z.string()),
  component: z.string().optional(),
  lines: z.array(z.string()).optional(),
  /** Older lines exist than those returned. */
  truncated: z.boolean().optional(),
});

/** A task in an event: the view without its full payload and result, which the detail fetches. */
export const TaskSummary = TaskView.omit({ payload: true, result: true }).extend({
  payloadPreview: z.string().optional(),
  resultPreview: z.string().optional(),
});
export type TaskSummary = z.output<typeof TaskSummary>;

/** Reachability of the dispatcher, as the poller last found it. */
export const DispatcherState = z.strictObject({ reachable: z.boolean(), error: WireError.optional() });

/** Event `snapshot`, first on every stream: where things stand. */
export const SnapshotEvent = z.strictObject({
  workers: z.array(Instance),
  stats: StatsResponse.optional(),
  sample: StatsSample.optional(),
  dispatcher: DispatcherState,
});
/** Event `tasks`: tasks that appeared or changed since the previous poll. */
export const TasksEvent = z.strictObject({ tasks: z.array(TaskSummary) });
/** Event `workers`: instances that registered or changed, and ids of those that left. */
export const WorkersEvent = z.strictObject({ upserted: z.array(Instance), removed: z.array(z.string()) });
/** Event `stats`: one poll's stats and chart sample. */
export const StatsEvent = z.strictObject({ sample: StatsSample, stats: StatsResponse });
/** Event `dispatcher`: the dispatcher became reachable or unreachable. */
export const DispatcherEvent = DispatcherState;

/** Every event kind of `GET /api/events` with the schema of its `data`. */
export const EVENT_SCHEMAS = {
  snapshot: SnapshotEvent,
  tasks: TasksEvent,
  workers: WorkersEvent,
  stats: StatsEvent,
  dispatcher: DispatcherEvent,
} as const;
export type EventKind = keyof typeof EVENT_SCHEMAS;
export type EventData<K extends EventKind> = z.output<(typeof EVENT_SCHEMAS)[K]>;

export type ApiError = z.output<typeof ApiError>;
export type StatsResponse = z.output<typeof StatsResponse>;
export type StatsHistory = z.output<typeof StatsHistory>;
export type TasksResponse = z.output<typeof TasksResponse>;
export type TaskDetail = z.output<typeof TaskDetail>;
export type SubmitResponse = z.output<typeof SubmitResponse>;
export type TaskChangeResponse = z.output<typeof TaskChangeResponse>;
export type LogsResponse = z.output<typeof LogsResponse>;
export type StatsSample = z.output<typeof StatsSample>;
export type HealthResponse = z.output<typeof HealthResponse>;
export type WorkersResponse = z.output<typeof WorkersResponse>;
export type WorkerType = z.output<typeof WorkerType>;
export type WorkerInstance = z.output<typeof WorkerInstance>;
export type DispatcherState = z.output<typeof DispatcherState>;
