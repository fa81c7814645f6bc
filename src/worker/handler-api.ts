/**
 * The contract between TaskGrid and a task type's handler module. Handler authors import this
 * one file (from `worker_types/`: `import type { HandlerContext } from '../src/worker/handler-api.ts'`).
 *
 * A task type is a module named after the type (`worker_types/<type>.ts`, `.js` or `.mjs`)
 * exporting `handle`. It runs in a worker thread, so it may block; a handler that overruns its
 * timeout is stopped by terminating its thread. A type marked `"inline": true` in workers.json
 * runs on the worker's main thread instead, where it must not block: nothing can stop it there.
 *
 * @example
 * ```ts
 * import { PermanentTaskError, type HandlerContext } from '../src/worker/handler-api.ts';
 *
 * export function handle(payload: string, ctx: HandlerContext): string {
 *   if (payload === '') throw new PermanentTaskError('shout: the payload is empty');
 *   ctx.progress(1);
 *   return payload.toUpperCase() + '!';
 * }
 * ```
 */

export { ErrorCode, PermanentTaskError } from '../errors.ts';

/** What a handler gets besides its payload. */
export interface HandlerContext {
  /**
   * Fires when the task is cancelled or runs past its timeout. A handler that waits or loops
   * should stop promptly when it fires (`signal.throwIfAborted()`, or pass it to APIs that take
   * one); one that does not is stopped by terminating its thread after a short grace period.
   */
  readonly signal: AbortSignal;
  /**
   * Reports progress of this attempt: `fraction` in 0..1 (clamped) and/or a short message.
   * Cheap to call often: reports are coalesced before they leave the thread.
   */
  progress(fraction?: number, message?: string): void;
  /** The task's id, as the dispatcher assigned it. */
  readonly taskId: number;
  /** Which attempt this is, from 1. */
  readonly attempt: number;
  /** The task type's name. */
  readonly type: string;
}

/**
 * A task type's handler: the task's result, or a throw. Throwing {@link PermanentTaskError}
 * fails the task without further attempts; any other throw fails this attempt only
 * (TG_ERR_HANDLER_FAILED) and the dispatcher may retry it. Returning anything but a string
 * fails the attempt too.
 */
export type Handler = (payload: string, ctx: HandlerContext) => string | Promise<string>;

/** The shape a task type module must have (a `default` export of this shape is accepted too). */
export interface HandlerModule {
  handle: Handler;
}
