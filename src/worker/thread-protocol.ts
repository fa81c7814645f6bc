/**
 * Messages between a HandlerPool (main thread) and its handler threads. Internal to
 * src/worker/: both ends are built together, so nothing is validated, and the messages are
 * batched and kept flat because every structured clone is paid per task.
 */
import type { ErrorCode } from '../errors.ts';

/** What a handler thread is started with (its `workerData`). */
export interface ThreadData {
  /** URL of the thread's entry module (thread.ts, or thread.js in a build), which the bootstrap imports. */
  readonly entry: string;
  /** URLs of modules whose `register()` makes TypeScript importable (tsx); empty when none is needed. */
  readonly register: readonly string[];
  /** Absolute path of the module of each type the thread runs (all but the inline ones), by type name. */
  readonly files: Readonly<Record<string, string>>;
  /** The task types in the order `run` messages number them (RUN_TYPE). */
  readonly types: readonly string[];
}

/**
 * A batch of tasks handed to a thread, as columns: `n` holds RUN_FIELDS numbers per task (see
 * the RUN_* offsets) and `p` the payloads in the same order. One typed array and one array of
 * strings clone several times faster than an object per task.
 */
export interface RunBatch {
  readonly k: 'run';
  readonly n: Float64Array;
  readonly p: readonly string[];
}

/** The pool's sequence number of the run (not the task id): what outcomes and aborts name. */
export const RUN_SEQ = 0;
export const RUN_ID = 1;
export const RUN_ATTEMPT = 2;
/** Index of the task's type in ThreadData.types. */
export const RUN_TYPE = 3;
/** 1 when anyone listens to progress; when not, the thread does not send it. */
export const RUN_PROGRESS = 4;
export const RUN_FIELDS = 5;

/** Why a running task's signal fires. */
export type AbortCause = 'cancel' | 'timeout';

export type ToThread =
  RunBatch | { readonly k: 'abort'; readonly s: readonly number[]; readonly cause: AbortCause };

/** The failure of one run (a success travels in the `ok`/`r` columns of an `out` message). */
export interface DoneItem {
  readonly s: number;
  /** Milliseconds the handler ran. */
  readonly t: number;
  readonly c: ErrorCode;
  /** Error message. */
  readonly m: string;
  /** Permanent failure. */
  readonly p: boolean;
}

export interface ProgressItem {
  readonly s: number;
  readonly f?: number;
  readonly m?: string;
}

export type FromThread =
  | { readonly k: 'ready' }
  | { readonly k: 'load-error'; readonly code: ErrorCode; readonly message: string }
  | {
      readonly k: 'out';
      /** Successes as columns: pairs (run sequence number, milliseconds the handler ran) ... */
      readonly ok: Float64Array;
      /** ... and their results, in the same order. */
      readonly r: readonly string[];
      /** Failures. */
      readonly failed: readonly DoneItem[];
      readonly progress: readonly ProgressItem[];
    };
