/**
 * The client library's public surface: connect to a grid, submit tasks, wait for results.
 */
export {
  TaskGridClient,
  defaultBindHost,
  type PingReply,
  type RunOptions,
  type StatsReply,
  type SubmitManyOptions,
  type SubmitOutcome,
  type SubmitProgress,
  type TasksPage,
  type TasksQuery,
  type WaitOptions,
} from './client.ts';
export { isFinal } from './completions.ts';
export { formatAddress, listInstances } from './discovery.ts';
export { TaskFailedError } from './errors.ts';
export { CLIENT_DEFAULTS, DEFAULT_NAMESERVERS, type ClientOptions, type ClientTuning } from './options.ts';
export {
  parseTaskLines,
  parseSimulationFile,
  type BadLine,
  type ParsedTaskLines,
  type SimulationTask,
} from './task-file.ts';
