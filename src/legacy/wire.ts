/**
 * The TaskGrid+ wire format, pure (no I/O): UTF-8 JSON datagrams `{"type": NAME, "data": ...}`,
 * the zod schema of each message's data, the replies, the 4096-byte rule, and how protocol v1
 * tasks look to TaskGrid+ programs. docs/PROTOCOL.md ("TaskGrid+ messages") is the prose form.
 *
 * Schemas are deliberately loose where TaskGrid+ was (unknown fields are ignored: its workers
 * send `address` in HEARTBEAT, for one) and strict where v1 is (task type names, ids).
 */
import { z } from 'zod';
import { TaskTypeName, type Instance, type TaskStatus, type TaskView } from '../protocol/messages.ts';
import type { PeerAddress } from '../transport/types.ts';

/** TaskGrid+'s fixed numbers, in one place; the adapters take overrides as options. */
export const LEGACY = {
  /** Bytes a TaskGrid+ program reads from one datagram (`recvfrom(4096)`): nothing larger is sent to one. */
  maxDatagramBytes: 4096,
  /** Port every TaskGrid+ worker listens on: a registration is the sender's IP with this port. */
  workerPort: 6000,
  /** A TaskGrid+ registration lapses this long after its last REGISTER_WORKER or HEARTBEAT. */
  leaseTtlMs: 30_000,
  /** Tasks a TaskGrid+ worker runs at once: TaskGrid+'s dispatcher gave each worker one at a time. */
  workerCapacity: 1,
  /** `meta.protocol` of the instances that TaskGrid+ registrations become. */
  protocol: 'taskgrid+',
  /** Longest message type name taken for one (TaskGrid+'s are at most 17 characters). */
  maxTypeName: 64,
} as const;

/** The message types of TaskGrid+, as they appear in `type`. */
export const LegacyType = {
  POST_TASK: 'POST_TASK',
  GET_RESULT: 'GET_RESULT',
  RESULT_RETURN: 'RESULT_RETURN',
  GET_STATS: 'GET_STATS',
  GET_ALL_TASKS: 'GET_ALL_TASKS',
  TASK: 'TASK',
  REGISTER_WORKER: 'REGISTER_WORKER',
  HEARTBEAT: 'HEARTBEAT',
  DEREGISTER_WORKER: 'DEREGISTER_WORKER',
  LOOKUP_WORKER: 'LOOKUP_WORKER',
  LIST_WORKERS: 'LIST_WORKERS',
  RESPONSE: 'RESPONSE',
} as const;
export type LegacyType = (typeof LegacyType)[keyof typeof LegacyType];

/** Reply texts TaskGrid+ programs compare against; kept byte for byte. */
export const LegacyText = {
  resultNotReady: 'Result not ready',
  taskNotFound: 'Task not found',
  taskIdNotFound: 'Task ID not found',
  resultStored: 'Result stored',
  invalidMessageType: 'Invalid message type',
  unknownMessageType: 'Unknown message type',
  taskReceived: (id: number) => `Task received, ID = ${id}`,
  noActiveWorker: (type: string) => `No active worker found for type '${type}'`,
} as const;

/** What a reply carries in `data`: TaskGrid+ replies are flat JSON objects. */
export type LegacyReplyData = Record<string, unknown>;

// ---- datagrams -------------------------------------------------------------------------

/** A datagram read as a TaskGrid+ message, or why it is not one. */
export type ParsedDatagram =
  | { readonly ok: true; readonly type: string; readonly data: unknown }
  | {
      readonly ok: false;
      /** True when it is a JSON object, i.e. a TaskGrid+ program is likely waiting for an answer. */
      readonly answerable: boolean;
      readonly reason: string;
    };

/**
 * Reads a datagram as `{"type": string, "data"?: any}`. Never throws. Invalid UTF-8, invalid
 * JSON and non-objects are not answerable (a reply would only reflect noise back); an object
 * whose `type` is missing or not a short string is answered like an unknown type, as
 * TaskGrid+ did.
 */
export function parseDatagram(bytes: Uint8Array): ParsedDatagram {
  let value: unknown;
  try {
    // fatal: bytes that are not UTF-8 are refused, not turned into U+FFFD and half-understood.
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, answerable: false, reason: 'not UTF-8 JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, answerable: false, reason: 'not a JSON object' };
  }
  const { type, data } = value as { type?: unknown; data?: unknown };
  if (typeof type !== 'string' || type.length === 0 || type.length > LEGACY.maxTypeName) {
    return { ok: false, answerable: true, reason: '"type" is missing or not a short string' };
  }
  return { ok: true, type, data };
}

/** Encodes a TaskGrid+ message: `{"type": type, "data": data}` as UTF-8 JSON. */
export function encodeLegacy(type: string, data: unknown): Buffer {
  return Buffer.from(JSON.stringify({ type, data }), 'utf8');
}

/** Encodes a reply: every TaskGrid+ reply is of type RESPONSE. */
export function encodeReply(data: LegacyReplyData): Buffer {
  return encodeLegacy(LegacyType.RESPONSE, data);
}

/**
 * The longest prefix of `items` whose encoding by `build` fits in `limit` bytes, with that
 * encoding; undefined when not even the empty list fits. `build` must grow with the count
 * (a list in a reply does), which lets a binary search find the prefix in O(log n) encodings.
 */
export function fitList<T>(
  items: readonly T[],
  build: (items: readonly T[]) => Buffer,
  limit: number,
): { bytes: Buffer; count: number } | undefined {
  let lo = 0;
  let hi = items.length;
  let best: Buffer | undefined;
  let bestCount = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const bytes = build(items.slice(0, mid));
    if (bytes.length <= limit) {
      best = bytes;
      bestCount = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best === undefined ? undefined : { bytes: best, count: bestCount };
}

// ---- message data ------------------------------------------------------------------------

/** Any JSON value but null: a TaskGrid+ payload or result (Python sent lists and numbers too). */
const JsonValue = z.json().refine((v) => v !== null, 'expected a value, got null');

/** A JSON value as it came in a TaskGrid+ message. */
export type LegacyValue = z.output<typeof JsonValue>;

/** A task id as TaskGrid+ programs send it: an integer, or its decimal text. */
const TaskIdField = z.union([z.number(), z.string().max(32)]);

/** The data of each TaskGrid+ message the dispatcher understands. */
export const dispatcherMessages = {
  POST_TASK: z.looseObject({ type: TaskTypeName, payload: JsonValue }),
  GET_RESULT: z.looseObject({ task_id: TaskIdField }),
  RESULT_RETURN: z.looseObject({ task_id: TaskIdField, result: JsonValue }),
  // TaskGrid+ sent `{}` or nothing; whatever comes is ignored.
  GET_STATS: z.unknown(),
  GET_ALL_TASKS: z.unknown(),
} as const;

/** HEARTBEAT and DEREGISTER_WORKER: TaskGrid+ workers send their type and address; both optional. */
const WorkerSelf = z
  .looseObject({ type: TaskTypeName.optional(), address: z.string().max(255).optional() })
  .nullish()
  .transform((v) => v ?? {});

/** The data of each TaskGrid+ message the nameservice understands. */
export const nameserviceMessages = {
  REGISTER_WORKER: z.looseObject({ type: TaskTypeName, address: z.string().max(255).optional() }),
  HEARTBEAT: WorkerSelf,
  DEREGISTER_WORKER: WorkerSelf,
  // A name that is not a valid type is simply not found, as in TaskGrid+.
  LOOKUP_WORKER: z.looseObject({ type: z.string().max(256) }),
  LIST_WORKERS: z.unknown(),
} as const;

/** `path: problem` of the first issues of a failed parse, for error replies and logs. */
export function summarizeIssues(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : 'data'}: ${i.message}`)
    .join('; ');
}

// ---- mapping to and from protocol v1 ---------------------------------------------------------

/** The task id a TaskGrid+ program named, or undefined when it cannot name any task. */
export function taskIdOf(value: number | string): number | undefined {
  const n = typeof value === 'string' ? (/^[1-9][0-9]{0,15}$/.test(value) ? Number(value) : NaN) : value;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * A TaskGrid+ value (payload or result) as the string protocol v1 carries: a string as it is,
 * anything else as its JSON text (`[1, 2, 3]` -> `"[1,2,3]"`, `6.0` -> `"6"`).
 */
export function textOf(value: LegacyValue): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** TaskGrid+ knew `pending` and `done`; v1's other ends keep their names. */
export function legacyStatus(status: TaskStatus): 'pending' | 'done' | 'failed' | 'cancelled' {
  switch (status) {
    case 'queued':
    case 'running':
      return 'pending';
    case 'succeeded':
      return 'done';
    case 'failed':
    case 'cancelled':
      return status;
  }
}

/** TaskGrid+'s task object (its `Task` dataclass): exactly these fields, in this order. */
export interface LegacyTask {
  id: number;
  type: string;
  payload: string;
  /** null until done, as TaskGrid+'s dispatcher had it; an error text once failed. */
  result: string | null;
  status: 'pending' | 'done' | 'failed' | 'cancelled';
  /** Seconds since the epoch, as Python's time.time(). */
  timestamp_created: number;
  /** Seconds since the epoch; 0 until the task ended. */
  timestamp_completed: number;
  /** `host:port` of the worker, or null. */
  assigned_worker: string | null;
}

/** A v1 task view as TaskGrid+ listed tasks (GET_STATS, GET_ALL_TASKS). */
export function toLegacyTask(view: TaskView, assignedWorker: string | null): LegacyTask {
  let result: string | null = null;
  if (view.status === 'succeeded') result = view.result ?? '';
  else if (view.error) result = `${view.error.code}: ${view.error.message}`;
  return {
    id: view.id,
    type: view.type,
    payload: view.payload ?? '',
    result,
    status: legacyStatus(view.status),
    timestamp_created: view.createdAt / 1000,
    timestamp_completed:
      view.status === 'queued' || view.status === 'running' ? 0 : (view.finishedAt ?? 0) / 1000,
    assigned_worker: assignedWorker,
  };
}

/**
 * The GET_RESULT reply for a task (undefined: no such task). A succeeded task's result is a
 * result whatever it is, `""` and `"0"` included (TaskGrid+ took them for "not ready"). A task
 * that ended without one gets an error naming why, instead of "not ready" forever.
 */
export function resultReply(view: TaskView | undefined): LegacyReplyData {
  if (!view) return { error: LegacyText.taskNotFound };
  switch (view.status) {
    case 'succeeded':
      return { result: view.result ?? '' };
    case 'queued':
    case 'running':
      return { error: LegacyText.resultNotReady };
    case 'failed':
      return {
        error: view.error
          ? `Task failed: ${view.error.message} (${view.error.code})`
          : 'Task failed (TG_ERR_TASK_FAILED)',
      };
    case 'cancelled':
      return { error: 'Task cancelled (TG_ERR_CANCELLED)' };
  }
}

/** True for an instance registered through TaskGrid+ messages (it takes TASK, not v1 `task`). */
export function isLegacyInstance(instance: Pick<Instance, 'meta'>): boolean {
  return instance.meta.protocol === LEGACY.protocol;
}

/** `host:port` as TaskGrid+ wrote addresses (IPv6 in brackets, so that the port stays last). */
export function formatAddress(a: PeerAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** The error reply of a reply that would not fit in one TaskGrid+ datagram. */
export function tooLargeReply(what: string, size: number, limit: number): LegacyReplyData {
  return {
    error: `${what} of ${size} bytes exceeds the ${limit} bytes a TaskGrid+ program reads (TG_ERR_TOO_LARGE); use protocol v1 for it`,
  };
}
