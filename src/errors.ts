/**
 * Errors with stable codes. The same code travels in UDP error replies, REST bodies and CLI
 * messages; docs/PROTOCOL.md lists them all. Callers branch on `code` (or on the class).
 */

export const ErrorCode = {
  /** A datagram or message failed validation (bad frame, bad JSON, bad body). */
  BAD_MESSAGE: 'TG_ERR_BAD_MESSAGE',
  /** The envelope's protocol version is not spoken here. */
  UNSUPPORTED_VERSION: 'TG_ERR_UNSUPPORTED_VERSION',
  /** The message kind has no handler on the receiving component. */
  UNKNOWN_KIND: 'TG_ERR_UNKNOWN_KIND',
  /** A message exceeds the configured maximum message size; refused before sending. */
  TOO_LARGE: 'TG_ERR_TOO_LARGE',
  /** No response before the request's deadline. */
  TIMEOUT: 'TG_ERR_TIMEOUT',
  /** The receiver is overloaded (e.g. a full queue); retry after `retryAfterMs`. */
  BUSY: 'TG_ERR_BUSY',
  /** The transport was closed while the request was pending. */
  CLOSED: 'TG_ERR_CLOSED',
  /** A signed grid got an unsigned, badly signed or stale datagram (never replied to). */
  AUTH: 'TG_ERR_AUTH',
  /** No active workers.json entry names the type and no worker registered it since the dispatcher started. */
  UNKNOWN_TYPE: 'TG_ERR_UNKNOWN_TYPE',
  /** A task, lease or other object with that id does not exist. */
  NOT_FOUND: 'TG_ERR_NOT_FOUND',
  /** A heartbeat or deregister named a lease the nameservice does not hold. */
  UNKNOWN_LEASE: 'TG_ERR_UNKNOWN_LEASE',
  /** No live worker serves the type. */
  NO_WORKER: 'TG_ERR_NO_WORKER',
  /** A request was well formed but its values are not acceptable. */
  BAD_REQUEST: 'TG_ERR_BAD_REQUEST',
  /**
   * The task's status does not allow the change asked for: cancelling a task that had ended
   * otherwise, retrying one that is queued, running or succeeded.
   */
  CONFLICT: 'TG_ERR_CONFLICT',
  /** A task's payload is not acceptable to its handler. */
  BAD_PAYLOAD: 'TG_ERR_BAD_PAYLOAD',
  /** A task handler threw; the attempt failed. */
  HANDLER_FAILED: 'TG_ERR_HANDLER_FAILED',
  /** A task attempt ran past its timeout and was stopped. */
  TASK_TIMEOUT: 'TG_ERR_TASK_TIMEOUT',
  /** The task was cancelled. */
  CANCELLED: 'TG_ERR_CANCELLED',
  /** The worker running the task was lost (lease lapsed, process died). */
  WORKER_LOST: 'TG_ERR_WORKER_LOST',
  /** The task ended `failed` (used by clients that wait for a result). */
  TASK_FAILED: 'TG_ERR_TASK_FAILED',
  /** The dispatcher's store could not commit; nothing was acknowledged. */
  STORE: 'TG_ERR_STORE',
  /** A configuration file, flag or environment variable is invalid. */
  CONFIG: 'TG_ERR_CONFIG',
  /** A command-line argument is invalid. */
  BAD_ARGUMENT: 'TG_ERR_BAD_ARGUMENT',
  /** A component could not be reached at all. */
  UNREACHABLE: 'TG_ERR_UNREACHABLE',
  /** A bug or unexpected failure inside the receiving component. */
  INTERNAL: 'TG_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** True when `code` is one of TaskGrid's stable error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && knownCodes.has(code);
}

/** Base class of every error TaskGrid raises on purpose. */
export class TaskGridError extends Error {
  override name = 'TaskGridError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  /** The wire form of this error, as carried in error replies. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** A request got no response before its deadline. */
export class TimeoutError extends TaskGridError {
  override name = 'TimeoutError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.TIMEOUT, message, options);
  }
}

/** The peer is overloaded; try again after `retryAfterMs`. */
export class BusyError extends TaskGridError {
  override name = 'BusyError';
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number) {
    super(ErrorCode.BUSY, message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** A message is larger than the maximum message size. */
export class TooLargeError extends TaskGridError {
  override name = 'TooLargeError';
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number, what = 'message') {
    super(ErrorCode.TOO_LARGE, `${what} of ${size} bytes exceeds the maximum message size of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

/** Input failed validation; never reaches a handler. */
export class ProtocolError extends TaskGridError {
  override name = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.BAD_MESSAGE, message, options);
  }
}

/** An error reply from a peer, rebuilt on the requesting side with the peer's code. */
export class RemoteError extends TaskGridError {
  override name = 'RemoteError';
}

/** A configuration value (file, flag or environment variable) is invalid. */
export class ConfigError extends TaskGridError {
  override name = 'ConfigError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.CONFIG, message, options);
  }
}

/**
 * Thrown by a task handler to fail the task at once, without further attempts
 * (a bad payload, say, that no retry can fix).
 */
export class PermanentTaskError extends TaskGridError {
  override name = 'PermanentTaskError';
  constructor(message: string, code: ErrorCode = ErrorCode.BAD_PAYLOAD) {
    super(code, message);
  }
}

/** Every error class, gathered for callers that prefer one import. */
export const errors = {
  TaskGridError,
  TimeoutError,
  BusyError,
  TooLargeError,
  ProtocolError,
  RemoteError,
  ConfigError,
  PermanentTaskError,
} as const;
