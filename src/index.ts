/**
 * The package's entry point (`import { TaskGridClient } from 'taskgrid'`): the client library,
 * the error classes and codes every failure carries, and the shapes of what the grid answers.
 * Components are run through the `taskgrid` command, not imported.
 */
export * from './client/index.ts';
export {
  BusyError,
  ConfigError,
  ErrorCode,
  RemoteError,
  TaskGridError,
  TimeoutError,
  TooLargeError,
  isErrorCode,
} from './errors.ts';
export type {
  Instance,
  TaskAssignment,
  TaskOutcome,
  TaskSpec,
  TaskStatus,
  TaskView,
  TypeStats,
  WorkerStats,
} from './protocol/messages.ts';
/** For handler modules written outside this repository: what `handle(payload, ctx)` gets and may throw. */
export {
  PermanentTaskError,
  type Handler,
  type HandlerContext,
  type HandlerModule,
} from './worker/handler-api.ts';
