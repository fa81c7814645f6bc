/**
 * The monitoring service's public surface: the HTTP app, the grid source it reads, the poller,
 * the metrics and the OpenAPI document.
 */
export { createApp, isLoopbackHost, joinWorkers, type MonitoringApp, type MonitoringDeps } from './app.ts';
export { EventHub, Subscription, type EventHubOptions, type NextEvent, type ServerEvent } from './events.ts';
export { MONITORING_CLIENT_TUNING, ProtocolGrid, type GridSource, type ProtocolGridOptions } from './grid.ts';
export { checkComponents, type HealthCheckOptions } from './health.ts';
export { listLogComponents, tailLog, type LogTail } from './logs.ts';
export { MonitoringMetrics, type MonitoringMetricsOptions } from './metrics.ts';
export {
  buildOpenApiDocument,
  type OpenApiDocument,
  type OpenApiOptions,
  type OperationObject,
} from './openapi.ts';
export {
  MONITORING_DEFAULTS,
  resolveMonitoringTuning,
  type MonitoringTuning,
  type ResolvedMonitoringTuning,
} from './options.ts';
export { EVENT_SCHEMAS, type EventData, type EventKind } from './schemas.ts';
export {
  listen,
  readToken,
  registerMonitoringCommands,
  runMonitoring,
  TOKEN_ENV,
  type HttpListener,
} from './service.ts';
export { AttemptLog, GridWatcher, summarize, wireError, type GridWatcherOptions } from './watcher.ts';
