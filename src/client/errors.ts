/**
 * Errors the client raises about tasks (as opposed to about the grid, which the shared
 * classes in src/errors.ts cover).
 */
import { ErrorCode, TaskGridError } from '../errors.ts';
import type { TaskView, WireError } from '../protocol/messages.ts';

/**
 * A task the caller waited for ended without a result: `failed` (code TG_ERR_TASK_FAILED) or
 * `cancelled` (code TG_ERR_CANCELLED). The task's own error is in `taskError` and its code is
 * part of the message, so that one line says what went wrong (once: a cancelled task's own
 * TG_ERR_CANCELLED is this error's code already).
 */
export class TaskFailedError extends TaskGridError {
  override name = 'TaskFailedError';
  /** The task as it ended. */
  readonly task: TaskView;
  /** The task's own error (e.g. TG_ERR_HANDLER_FAILED), when the dispatcher recorded one. */
  readonly taskError: WireError | undefined;

  constructor(task: TaskView) {
    const cancelled = task.status === 'cancelled';
    const what = `task ${task.id} (${task.type}) ${cancelled ? 'was cancelled' : 'failed'}`;
    const attempts = cancelled ? '' : ` after ${task.attempts} attempt${task.attempts === 1 ? '' : 's'}`;
    const code = cancelled ? ErrorCode.CANCELLED : ErrorCode.TASK_FAILED;
    const own = task.error && task.error.code !== code ? `${task.error.code}: ` : '';
    const detail = task.error ? `: ${own}${task.error.message}` : '';
    super(code, `${what}${attempts}${detail}`);
    this.task = task;
    this.taskError = task.error;
  }
}
