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
  /** Absolute path of each task type's module, by type name. */
  readonly files: Readonly<Record<string, string>>;
}

/** One task handed to a thread. `s` is the pool's sequence number of the run, not the task id. */
export interface RunItem {
  readonly s: number;
  readonly id: number;
  readonly attempt: number;
  readonly type: string;
  readonly payload: string;
  /** Whether anyone listens to progress; when not, the thread does not send it. */
  readonly progress: boolean;
}

/** Why a running task's signal fires. */
export type AbortCause = 'cancel' | 'timeout';

export type ToThread =
  | { readonly k: 'run'; readonly items: readonly RunItem[] }
  | { readonly k: 'abort'; readonly s: readonly number[]; readonly cause: AbortCause };

/** The end of one run: `r` is the result when `c` (an error code) is absent. */
export interface DoneItem {
  readonly s: number;
  /** Milliseconds the handler ran. */
  readonly t: number;
  readonly r?: string;
  readonly c?: ErrorCode;
  /** Error message, with `c`. */
  readonly m?: string;
  /** Permanent failure, with `c`. */
  readonly p?: boolean;
}

export interface ProgressItem {
  readonly s: number;
  readonly f?: number;
  readonly m?: string;
}

export type FromThread =
  | { readonly k: 'ready' }
  | { readonly k: 'load-error'; readonly code: ErrorCode; readonly message: string }
  | { readonly k: 'out'; readonly done: readonly DoneItem[]; readonly progress: readonly ProgressItem[] };
