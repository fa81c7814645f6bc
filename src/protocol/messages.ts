/**
 * Protocol v1 message kinds: every request with the schema of its body and of its reply, and
 * every one-way notification. Pure: no I/O. Receivers validate a body against these schemas
 * before any handler sees it; docs/PROTOCOL.md describes each field.
 */
import { z } from 'zod';
import { ErrorCode } from '../errors.ts';
import { LIMITS } from './limits.ts';

const errorCodes = Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]];

/** A task type name: letters, digits, `_`, `-` and `.`, starting with a letter or digit. */
export const TaskTypeName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a task type is letters, digits, "_", "-" and "."');

export const TaskId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

export const Address = z.strictObject({
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
});

export const WireError = z.strictObject({
  code: z.enum(errorCodes),
  message: z.string().max(4096),
});

export const TaskStatus = z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']);

/** A task as the client submits it. */
export const TaskSpec = z.strictObject({
  type: TaskTypeName,
  payload: z.string(),
  /** Idempotency key: a resubmitted task with the same key is the same task. */
  key: z.string().min(1).max(256).optional(),
  /** Higher runs first; default 0. */
  priority: z.number().int().min(-1000).max(1000).optional(),
  /** Per-attempt timeout in milliseconds. */
  timeoutMs: z.number().int().min(1).max(86_400_000).optional(),
  /** Most attempts before the task is `failed`. */
  maxAttempts: z.number().int().min(1).max(100).optional(),
});

/** A task as the dispatcher reports it. */
export const TaskView = z.strictObject({
  id: TaskId,
  type: TaskTypeName,
  status: TaskStatus,
  payload: z.string().optional(),
  result: z.string().optional(),
  error: WireError.optional(),
  key: z.string().optional(),
  priority: z.number().int(),
  attempts: z.number().int().min(0),
  maxAttempts: z.number().int().min(1),
  timeoutMs: z.number().int().min(1),
  createdAt: z.number(),
  startedAt: z.number().optional(),
  finishedAt: z.number().optional(),
  worker: z.string().optional(),
  progress: z.number().min(0).max(1).optional(),
  /** The last message of the running attempt's progress reports (`ctx.progress(f, message)`). */
  progressMessage: z.string().max(1024).optional(),
});

/** A task as the dispatcher hands it to a worker. */
export const TaskAssignment = z.strictObject({
  id: TaskId,
  type: TaskTypeName,
  payload: z.string(),
  attempt: z.number().int().min(1),
  timeoutMs: z.number().int().min(1),
});

export const TaskOutcome = z.discriminatedUnion('ok', [
  z.strictObject({
    id: TaskId,
    attempt: z.number().int().min(1),
    ok: z.literal(true),
    result: z.string(),
    runMs: z.number().min(0),
  }),
  z.strictObject({
    id: TaskId,
    attempt: z.number().int().min(1),
    ok: z.literal(false),
    error: WireError,
    /** True when no further attempt should be made (PermanentTaskError, cancel). */
    permanent: z.boolean(),
    runMs: z.number().min(0),
  }),
]);

export const Role = z.enum(['worker', 'dispatcher', 'monitoring', 'client']);

/** A live service instance as the nameservice knows it. */
export const Instance = z.strictObject({
  id: z.string().min(1).max(128),
  role: Role,
  types: z.array(TaskTypeName).max(1000),
  address: Address,
  capacity: z.number().int().min(0).max(1_000_000),
  meta: z.record(z.string().max(64), z.string().max(1024)),
  registeredAt: z.number(),
  lastSeen: z.number(),
  inFlight: z.number().int().min(0).optional(),
});

const Percentiles = z.strictObject({ p50: z.number(), p95: z.number() });

export const TypeStats = z.strictObject({
  queued: z.number().int().min(0),
  running: z.number().int().min(0),
  succeeded: z.number().int().min(0),
  failed: z.number().int().min(0),
  cancelled: z.number().int().min(0),
  /** Tasks finished per second over the last minute. */
  throughput: z.number().min(0),
  runMs: Percentiles,
  waitMs: Percentiles,
  /** Age in ms of the oldest queued task (since its submission), by the dispatcher's clock; absent when none is queued. */
  oldestQueuedMs: z.number().min(0).optional(),
  /**
   * Tasks of the type the dispatcher pruned since it started, per final status: with the
   * counts above, what ended (monitoring's finished counters add them back). Absent when none.
   */
  pruned: z
    .strictObject({
      succeeded: z.number().int().min(0),
      failed: z.number().int().min(0),
      cancelled: z.number().int().min(0),
    })
    .optional(),
});

export const WorkerStats = z.strictObject({
  id: z.string(),
  address: Address,
  types: z.array(TaskTypeName),
  capacity: z.number().int().min(0),
  inFlight: z.number().int().min(0),
  completed: z.number().int().min(0),
  failed: z.number().int().min(0),
});

/** Transport counters, as every component reports them. */
export const TransportCounters = z.record(z.string(), z.number());

const Empty = z.strictObject({});
const batch = <T extends z.ZodType>(item: T) => z.array(item).min(1).max(LIMITS.maxBatch);

/**
 * Every request kind: `req` validates the body the requester sends, `res` the body of the
 * `ok` reply. A request may instead be answered with an `error` or `busy` reply.
 */
export const requests = {
  /** Liveness and identity of any component. */
  ping: {
    req: Empty,
    res: z.strictObject({
      component: z.string(),
      version: z.string(),
      uptimeMs: z.number().min(0),
      pid: z.number().int(),
      id: z.string().optional(),
    }),
  },
  /** Client -> dispatcher: submit one task or a batch. Acknowledged once committed. */
  submit: {
    req: z.strictObject({
      tasks: batch(TaskSpec),
      /** Send a `done` request to the submitter when each task ends. */
      notify: z.boolean().optional(),
    }),
    res: z.strictObject({
      /** One entry per submitted task, in order. */
      results: z.array(
        z.union([
          z.strictObject({ id: TaskId, duplicate: z.boolean().optional() }),
          z.strictObject({ error: WireError }),
        ]),
      ),
    }),
  },
  /** Client -> dispatcher: status and result of tasks; `waitMs` holds the reply until they end. */
  'get-result': {
    req: z.strictObject({
      ids: z.array(TaskId).min(1).max(1000),
      waitMs: z.number().int().min(0).max(60_000).optional(),
      /** Include payloads in the views. */
      payload: z.boolean().optional(),
    }),
    res: z.strictObject({
      tasks: z.array(TaskView),
      missing: z.array(TaskId),
      /** Known tasks left out so that the reply stays small (long results): ask for them again. */
      more: z.array(TaskId).optional(),
    }),
  },
  /** Client -> dispatcher: be told (by a `done` request) when these tasks end. */
  watch: {
    req: z.strictObject({ ids: z.array(TaskId).min(1).max(LIMITS.maxBatch) }),
    res: z.strictObject({ finished: z.array(TaskView), missing: z.array(TaskId) }),
  },
  /** Dispatcher -> client: tasks the client submitted with `notify` or watches have ended. */
  done: {
    req: z.strictObject({ tasks: z.array(TaskView).min(1).max(LIMITS.maxBatch) }),
    res: Empty,
  },
  /**
   * Client -> dispatcher: cancel a queued or running task. `changed` says whether this request
   * cancelled it (false: it had ended already, cancelled or otherwise).
   */
  cancel: {
    req: z.strictObject({ id: TaskId }),
    res: z.strictObject({ task: TaskView, changed: z.boolean().optional() }),
  },
  /**
   * Client -> dispatcher: put a failed or cancelled task back in its queue with fresh attempts.
   * `changed` says whether this request did (false: its status did not allow it).
   */
  retry: {
    req: z.strictObject({ id: TaskId }),
    res: z.strictObject({ task: TaskView, changed: z.boolean().optional() }),
  },
  /** Monitoring -> dispatcher: a page of tasks, newest first. */
  tasks: {
    req: z.strictObject({
      status: TaskStatus.optional(),
      type: TaskTypeName.optional(),
      limit: z.number().int().min(1).max(1000).optional(),
      cursor: z.string().max(64).optional(),
      /** Include payloads in the views (default true). */
      payload: z.boolean().optional(),
    }),
    res: z.strictObject({ tasks: z.array(TaskView), nextCursor: z.string().optional() }),
  },
  /** Anyone -> dispatcher: counters per type and per worker. */
  stats: {
    req: Empty,
    res: z.strictObject({
      types: z.record(TaskTypeName, TypeStats),
      workers: z.array(WorkerStats),
      totals: TypeStats.omit({ runMs: true, waitMs: true }),
      transport: TransportCounters,
    }),
  },
  /** Dispatcher -> worker: run these tasks (each under a lease of `timeoutMs` plus grace). */
  task: {
    req: z.strictObject({ tasks: batch(TaskAssignment) }),
    res: z.strictObject({
      accepted: z.array(TaskId),
      rejected: z.array(z.strictObject({ id: TaskId, error: WireError })),
    }),
  },
  /** Worker -> dispatcher: outcomes of attempts. Each is recorded once; duplicates are ignored. */
  result: {
    req: z.strictObject({ results: batch(TaskOutcome) }),
    res: z.strictObject({ recorded: z.number().int().min(0) }),
  },
  /** Dispatcher -> worker: stop these running tasks (their handlers' AbortSignal fires). */
  abort: {
    req: z.strictObject({ ids: z.array(TaskId).min(1).max(LIMITS.maxBatch) }),
    res: z.strictObject({ aborted: z.array(TaskId) }),
  },
  /**
   * Dispatcher -> worker, after the dispatcher restarted: which of these attempts, recorded as
   * running on the worker, it still holds (running, or ended with its result not yet
   * acknowledged). One it does not hold was claimed but never sent before the dispatcher
   * stopped: it goes back to its queue at once instead of at the end of its lease.
   */
  holding: {
    req: z.strictObject({
      tasks: batch(z.strictObject({ id: TaskId, attempt: z.number().int().min(1) })),
    }),
    res: z.strictObject({ held: z.array(TaskId) }),
  },
  /** Instance -> nameservice: register; the lease lives as long as its heartbeats. */
  register: {
    req: z.strictObject({
      /** Stable id of the instance; the nameservice picks one when absent. */
      id: z.string().min(1).max(128).optional(),
      role: Role,
      types: z.array(TaskTypeName).max(1000),
      address: Address,
      capacity: z.number().int().min(0).max(1_000_000),
      meta: z.record(z.string().max(64), z.string().max(1024)).optional(),
    }),
    res: z.strictObject({
      leaseId: z.string(),
      id: z.string(),
      ttlMs: z.number().int().positive(),
      heartbeatMs: z.number().int().positive(),
    }),
  },
  /** Instance -> nameservice: renew a lease. An unknown lease gets TG_ERR_UNKNOWN_LEASE. */
  heartbeat: {
    req: z.strictObject({
      leaseId: z.string().min(1).max(128),
      inFlight: z.number().int().min(0).optional(),
    }),
    res: z.strictObject({ ttlMs: z.number().int().positive() }),
  },
  /** Instance -> nameservice: end a lease. */
  deregister: {
    req: z.strictObject({ leaseId: z.string().min(1).max(128) }),
    res: Empty,
  },
  /** Anyone -> nameservice: live instances of a type and/or role. */
  lookup: {
    req: z.strictObject({ type: TaskTypeName.optional(), role: Role.optional() }),
    res: z.strictObject({ instances: z.array(Instance) }),
  },
  /** Anyone -> nameservice: every live instance with its last-seen time. */
  list: {
    req: Empty,
    res: z.strictObject({ instances: z.array(Instance) }),
  },
  /**
   * Dispatcher or monitoring -> nameservice: send me `changes` requests when instances come
   * and go. The subscription is a lease: renew it by subscribing again before `ttlMs`.
   */
  subscribe: {
    req: z.strictObject({ address: Address, ttlMs: z.number().int().min(1000).max(600_000).optional() }),
    res: z.strictObject({
      instances: z.array(Instance),
      ttlMs: z.number().int().positive(),
      /** Incarnation of the nameservice (random per start); every `changes` request carries it. */
      epoch: z.string().min(1).max(64),
      /** The snapshot holds every change up to this one; the next `changes` request is `seq + 1`. */
      seq: z.number().int().min(0),
    }),
  },
  /**
   * Nameservice -> subscriber: instances added (or re-registered with new state) and removed.
   * Sent one at a time per subscriber, in `seq` order.
   */
  changes: {
    req: z.strictObject({
      /** The sender's incarnation, as in its `subscribe` reply (source addresses can mislead). */
      epoch: z.string().min(1).max(64),
      seq: z.number().int().min(0),
      upserted: z.array(Instance),
      /** Ids of instances no longer registered. */
      removed: z.array(z.string().min(1).max(128)),
    }),
    res: Empty,
  },
} as const;

/** One-way messages: no reply, no retransmission. */
export const notifications = {
  /** Worker -> dispatcher: progress of a running attempt (0..1 and/or a message). */
  progress: z.strictObject({
    id: TaskId,
    attempt: z.number().int().min(1),
    progress: z.number().min(0).max(1).optional(),
    message: z.string().max(1024).optional(),
  }),
} as const;

export type RequestKind = keyof typeof requests;
export type NotificationKind = keyof typeof notifications;
export type RequestBody<K extends RequestKind> = z.input<(typeof requests)[K]['req']>;
export type ReplyBody<K extends RequestKind> = z.output<(typeof requests)[K]['res']>;
export type ParsedRequest<K extends RequestKind> = z.output<(typeof requests)[K]['req']>;
export type NotificationBody<K extends NotificationKind> = z.output<(typeof notifications)[K]>;

export type TaskSpec = z.output<typeof TaskSpec>;
export type TaskView = z.output<typeof TaskView>;
export type TaskStatus = z.output<typeof TaskStatus>;
export type TaskAssignment = z.output<typeof TaskAssignment>;
export type TaskOutcome = z.output<typeof TaskOutcome>;
export type Instance = z.output<typeof Instance>;
export type Role = z.output<typeof Role>;
export type TypeStats = z.output<typeof TypeStats>;
export type WorkerStats = z.output<typeof WorkerStats>;
export type WireError = z.output<typeof WireError>;
export type AddressBody = z.output<typeof Address>;

export function isRequestKind(kind: string): kind is RequestKind {
  return Object.hasOwn(requests, kind);
}

export function isNotificationKind(kind: string): kind is NotificationKind {
  return Object.hasOwn(notifications, kind);
}

/** Reply kinds on the wire: `ok` carries the request's reply body; `error` and `busy` say why not. */
export const ReplyKind = { OK: 'ok', ERROR: 'error', BUSY: 'busy' } as const;
export type ReplyKind = (typeof ReplyKind)[keyof typeof ReplyKind];

export const ErrorReplyBody = WireError;
export const BusyReplyBody = z.strictObject({
  message: z.string().max(4096),
  retryAfterMs: z.number().int().min(0).max(3_600_000),
});
