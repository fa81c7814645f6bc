/**
 * The monitoring service's timeouts, intervals and limits, in one place. The CLI uses these
 * defaults; tests shorten them by passing options, never by reading the environment.
 */

/** Defaults of every monitoring timeout, interval and limit. */
export const MONITORING_DEFAULTS = {
  /**
   * How often the dispatcher is polled for stats and task pages. The dispatcher does not push
   * to monitoring, so task changes are derived from these polls; once a second keeps the
   * dashboard live at the cost of three small UDP requests per second.
   */
  pollIntervalMs: 1_000,
  /** Newest tasks fetched per poll: changes among them become `tasks` events. */
  pollNewestTasks: 100,
  /** Running tasks fetched per poll, so that old long-running tasks are followed too. */
  pollRunningTasks: 500,
  /**
   * Tasks that left both polled pages while not final are looked up one by one to learn how
   * they ended; at most this many per poll, so that a burst cannot stall the poller.
   */
  finalLookupsPerPoll: 50,
  /** Stats samples kept for the charts: ten minutes at one sample a poll. */
  historySamples: 600,
  /** Tasks whose observed attempts are remembered for their detail view (least recent dropped). */
  attemptLogTasks: 10_000,
  /** Characters of payload and result carried in `tasks` events; the detail view fetches the rest. */
  previewChars: 200,
  /** Comment lines on idle event streams, so that proxies do not close them. */
  sseKeepAliveMs: 15_000,
  /** Reconnection delay the event stream suggests to browsers (`retry:`). */
  sseRetryMs: 2_000,
  /** Open event streams at once; more get 503. */
  sseMaxClients: 100,
  /** Events queued for one slow event-stream client before it is dropped (it reconnects and resyncs). */
  sseMaxQueued: 1_000,
  /** Largest request body accepted (POST /api/tasks); larger ones get 413. */
  maxBodyBytes: 1024 * 1024,
  /** Deadline of one ping in a health check. */
  healthTimeoutMs: 1_500,
  /** Worker instances pinged in one health check; the rest are reported from the registry alone. */
  healthMaxWorkerPings: 64,
  /** How long a health check result is reused, so that a busy dashboard does not ping every worker per view. */
  healthCacheMs: 2_000,
  /** Stats younger than this are served from the poller's cache rather than asked again. */
  statsMaxAgeMs: 2_000,
  /** Bytes read from the end of a log file for `GET /api/logs`. */
  logTailBytes: 256 * 1024,
  /** Lines returned by `GET /api/logs` when the request does not say. */
  logDefaultLines: 200,
  /** Most lines `GET /api/logs` returns. */
  logMaxLines: 2_000,
  /** Tasks per page of `GET /api/tasks` when the request does not say (the protocol allows 1..1000). */
  tasksDefaultLimit: 50,
  /** Distinct worker label values in metrics; later workers are counted under `other`. */
  maxWorkerSeries: 1_000,
} as const;

/** Overridable values of {@link MONITORING_DEFAULTS}. */
export type MonitoringTuning = { -readonly [K in keyof typeof MONITORING_DEFAULTS]?: number };

/** Every tuning value, defaults filled in. */
export type ResolvedMonitoringTuning = { -readonly [K in keyof typeof MONITORING_DEFAULTS]: number };

/** The defaults overlaid with the values `options` gives. */
export function resolveMonitoringTuning(options: MonitoringTuning = {}): ResolvedMonitoringTuning {
  const out: ResolvedMonitoringTuning = { ...MONITORING_DEFAULTS };
  for (const key of Object.keys(MONITORING_DEFAULTS) as (keyof ResolvedMonitoringTuning)[]) {
    const value = options[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
