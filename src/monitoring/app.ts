/**
 * The monitoring HTTP application: REST API, event stream, Prometheus metrics and dashboard,
 * as a Hono app built from its dependencies. `createApp(deps)` binds nothing: tests call
 * `app.request('/api/stats')`, and only the CLI (service.ts) serves it on a port.
 *
 * Access rules, in order:
 * - over HTTP, a request without a Host header (or with an empty one) is refused with a 400;
 * - bound to loopback, requests must name a loopback host (a DNS-rebinding page cannot reach it);
 * - with a token, every /api and /metrics request needs `Authorization: Bearer <token>`;
 * - POST requests from another origin are refused (no cross-site actions on a local service);
 * - POST actions need a token unless the service is bound to loopback.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { findProjectRoot } from '../config/env.ts';
import type { WorkerTypeEntry } from '../config/workers.ts';
import { BusyError, ErrorCode, TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { isLoopbackHost } from '../protocol/address.ts';
import type { Instance, TaskView, WorkerStats } from '../protocol/messages.ts';
import { systemClock, type Clock } from '../transport/types.ts';
import { EventHub } from './events.ts';
import { fittingTasksPage, isTooLarge, type GridSource } from './grid.ts';
import { checkComponents } from './health.ts';
import { listLogComponents, tailLog } from './logs.ts';
import { MonitoringMetrics } from './metrics.ts';
import { buildOpenApiDocument } from './openapi.ts';
import { resolveMonitoringTuning, type MonitoringTuning, type ResolvedMonitoringTuning } from './options.ts';
import {
  LogsQuery,
  SubmitRequest,
  TasksQuery,
  type HealthResponse,
  type StatsResponse,
  type WorkerInstance,
  type WorkerType,
  type WorkersResponse,
} from './schemas.ts';
import { GridWatcher, wireError } from './watcher.ts';

/** What {@link createApp} builds on. Only `grid` is required. */
export interface MonitoringDeps {
  grid: GridSource;
  /** The poller; default one that is not started (routes then ask the grid directly). */
  watcher?: GridWatcher;
  /** The event fan-out the watcher publishes to; default a new one. */
  hub?: EventHub;
  metrics?: MonitoringMetrics;
  tuning?: MonitoringTuning;
  /** TASKGRID_MONITOR_TOKEN: when set, every /api and /metrics request needs it as a bearer token. */
  token?: string | undefined;
  /** The address the HTTP server binds; loopback allows actions without a token. Default 127.0.0.1. */
  bindHost?: string;
  /** TASKGRID_HOME, for `GET /api/logs`; undefined = no logs. */
  home?: string | undefined;
  /** The workers.json entries, read at each `GET /api/workers` (it may change while monitoring runs). */
  workerTypes?: () => readonly WorkerTypeEntry[];
  /** Reported by `/api/health` and the OpenAPI document. */
  version?: string;
  /** Folder of the dashboard's files; default src/monitoring/dashboard. */
  dashboardDir?: string;
  clock?: Clock;
  logger?: Logger;
}

/** The parts {@link createApp} made or was given, for the caller to start and stop. */
export interface MonitoringApp {
  app: Hono;
  watcher: GridWatcher;
  hub: EventHub;
  metrics: MonitoringMetrics;
}

/** Routes without parameters still refuse unknown ones, as typos. */
const EMPTY_QUERY = z.strictObject({});

/** HTTP status of each error code; anything else is 500. */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.CONFLICT]: 409,
  [ErrorCode.BAD_MESSAGE]: 400,
  [ErrorCode.BAD_ARGUMENT]: 400,
  [ErrorCode.UNKNOWN_TYPE]: 400,
  [ErrorCode.BAD_PAYLOAD]: 400,
  [ErrorCode.AUTH]: 401,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.TOO_LARGE]: 413,
  [ErrorCode.BUSY]: 503,
  [ErrorCode.UNREACHABLE]: 503,
  [ErrorCode.TIMEOUT]: 503,
  [ErrorCode.CLOSED]: 503,
  [ErrorCode.NO_WORKER]: 503,
  [ErrorCode.STORE]: 503,
  [ErrorCode.UNKNOWN_KIND]: 503,
};

/** An error with an HTTP status of its own (403, 405, 415, 502) besides its stable code. */
class HttpError extends TaskGridError {
  override name = 'HttpError';
  readonly status: number;
  constructor(status: number, code: ErrorCode, message: string) {
    super(code, message);
    this.status = status;
  }
}

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export { isLoopbackHost };

function sameToken(given: string, expected: string): boolean {
  // Digests have equal lengths, so the comparison takes the same time whatever was sent.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function defaultDashboardDir(): string {
  const beside = fileURLToPath(new URL('./dashboard/', import.meta.url));
  // Compiled to dist/, this module has no dashboard beside it: the sources' copy serves.
  return existsSync(join(beside, 'index.html'))
    ? beside
    : join(findProjectRoot(), 'src', 'monitoring', 'dashboard');
}

interface Asset {
  body: string;
  type: string;
}

function loadAssets(dir: string): Map<string, Asset> {
  const files: [string, string, string][] = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/dashboard/app.js', 'app.js', 'text/javascript; charset=utf-8'],
    ['/dashboard/style.css', 'style.css', 'text/css; charset=utf-8'],
    ['/favicon.svg', 'favicon.svg', 'image/svg+xml'],
  ];
  return new Map(
    files.map(([path, file, type]) => [path, { body: readFileSync(join(dir, file), 'utf8'), type }]),
  );
}

/** Parses a query string against `schema`, refusing unknown and repeated parameters. */
function parseQuery<T extends z.ZodType>(c: Context, schema: T): z.output<T> {
  const raw: Record<string, string> = {};
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (values.length > 1)
      throw new TaskGridError(
        ErrorCode.BAD_REQUEST,
        `query parameter "${name}" is given ${values.length} times`,
      );
    raw[name] = values[0] ?? '';
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw badRequest(parsed.error);
  return parsed.data;
}

function badRequest(error: z.ZodError): TaskGridError {
  const what = error.issues
    .slice(0, 3)
    .map((i) => {
      if (i.code === 'unrecognized_keys')
        return `unknown ${i.path.length ? `field in ${i.path.join('.')}` : 'parameter'}: ${i.keys.join(', ')}`;
      return `${i.path.length ? i.path.join('.') : 'value'}: ${i.message}`;
    })
    .join('; ');
  return new TaskGridError(ErrorCode.BAD_REQUEST, what);
}

function taskId(c: Context): number {
  const text = c.req.param('id') ?? '';
  const id = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new TaskGridError(
      ErrorCode.BAD_REQUEST,
      `task id "${text.slice(0, 40)}" is not a positive integer`,
    );
  }
  return id;
}

/**
 * Builds the monitoring application and the parts it runs on.
 *
 * @example
 * const { app } = createApp({ grid });
 * const res = await app.request('/api/stats'); // 200, or 503 when the dispatcher does not answer
 */
export function createApp(deps: MonitoringDeps): MonitoringApp {
  const t: ResolvedMonitoringTuning = resolveMonitoringTuning(deps.tuning);
  const grid = deps.grid;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger ?? silentLogger();
  const hub = deps.hub ?? new EventHub({ maxClients: t.sseMaxClients, maxQueued: t.sseMaxQueued });
  const metrics =
    deps.metrics ??
    new MonitoringMetrics({
      maxWorkerSeries: t.maxWorkerSeries,
      processMetrics: false,
      transportCounters: () => grid.transportCounters(),
      sseClients: () => hub.clients,
    });
  const watcher = deps.watcher ?? new GridWatcher({ grid, hub, metrics, tuning: t, clock, logger: log });
  const bindHost = deps.bindHost ?? '127.0.0.1';
  const loopbackOnly = isLoopbackHost(bindHost);
  const token = deps.token !== undefined && deps.token !== '' ? deps.token : undefined;
  const actionsAllowed = token !== undefined || loopbackOnly;
  const version = deps.version ?? '0.0.0';
  const startedAt = clock.now();
  const assets = loadAssets(deps.dashboardDir ?? defaultDashboardDir());
  const openapi = JSON.stringify(buildOpenApiDocument({ version }));
  let health: { at: number; value: Promise<HealthResponse> } | undefined;

  const app = new Hono();

  app.onError((error, c) => {
    const status =
      error instanceof HttpError
        ? error.status
        : error instanceof TaskGridError
          ? (HTTP_STATUS[error.code] ?? 500)
          : 500;
    if (status >= 500 && !(error instanceof TaskGridError))
      log.error({ err: error, path: c.req.path }, 'request failed');
    const body =
      error instanceof TaskGridError
        ? wireError(error)
        : { code: ErrorCode.INTERNAL, message: 'unexpected failure inside monitoring' };
    if (error instanceof TaskGridError && error.code === ErrorCode.BUSY) {
      const ms = error instanceof BusyError ? error.retryAfterMs : 1_000;
      c.header('Retry-After', String(Math.max(1, Math.ceil(ms / 1000))));
    }
    if (status === 401) c.header('WWW-Authenticate', 'Bearer realm="taskgrid"');
    return c.json({ error: body }, status as ContentfulStatusCode);
  });
  app.notFound((c) => {
    // A path served with other methods: 405 with the methods it takes, not "no route".
    const allowed = new Set<string>();
    for (const r of app.routes) {
      if (r.method === 'ALL' || !routePattern(r.path).test(c.req.path)) continue;
      allowed.add(r.method);
      if (r.method === 'GET') allowed.add('HEAD');
    }
    if (allowed.size > 0) {
      c.header('Allow', [...allowed].sort().join(', '));
      return c.json(
        {
          error: {
            code: ErrorCode.BAD_REQUEST,
            message: `${c.req.method} is not allowed on ${c.req.path.slice(0, 200)} (allowed: ${[...allowed].sort().join(', ')})`,
          },
        },
        405,
      );
    }
    return c.json(
      {
        error: { code: ErrorCode.NOT_FOUND, message: `no route ${c.req.method} ${c.req.path.slice(0, 200)}` },
      },
      404,
    );
  });

  // Metrics of every request, by route pattern (never the raw path: ids would explode the series).
  const observe = async (c: Context, next: () => Promise<void>): Promise<void> => {
    const began = performance.now();
    try {
      await next();
    } finally {
      const matched = routePath(c, -1);
      const route = c.res.status === 404 && matched === '*' ? 'unmatched' : matched;
      metrics.observeHttp(c.req.method, route, c.res.status, (performance.now() - began) / 1000);
    }
  };
  app.use('*', observe);

  app.use('*', async (c, next) => {
    if (withoutHostHeader(c.env)) {
      throw new HttpError(
        400,
        ErrorCode.BAD_REQUEST,
        'the Host header is missing: every request must name the host it is for (HTTP/1.0 too)',
      );
    }
    if (loopbackOnly && !isLoopbackHost(requestUrl(c.req.url).hostname)) {
      throw new HttpError(
        403,
        ErrorCode.AUTH,
        'this service is bound to loopback: use http://127.0.0.1 or http://localhost',
      );
    }
    await next();
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    c.header('Cross-Origin-Resource-Policy', 'same-origin');
  });

  const guard = async (c: Context, next: () => Promise<void>) => {
    if (token !== undefined) {
      const header = c.req.header('authorization') ?? '';
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match?.[1] || !sameToken(match[1], token)) {
        throw new TaskGridError(
          ErrorCode.AUTH,
          'this service needs a token: send Authorization: Bearer <TASKGRID_MONITOR_TOKEN>',
        );
      }
    }
    if (c.req.method === 'POST') {
      const origin = c.req.header('origin');
      if (origin !== undefined && origin !== 'null' && requestUrl(c.req.url).host !== hostOf(origin)) {
        throw new HttpError(
          403,
          ErrorCode.AUTH,
          `cross-origin requests are refused (origin ${origin.slice(0, 100)})`,
        );
      }
      if (origin === 'null')
        throw new HttpError(403, ErrorCode.AUTH, 'requests from an opaque origin are refused');
      if (!actionsAllowed) {
        throw new HttpError(
          403,
          ErrorCode.AUTH,
          `actions are disabled: this service is bound to ${bindHost} without TASKGRID_MONITOR_TOKEN; set a token or bind to loopback`,
        );
      }
    }
    await next();
  };
  app.use('/api/*', guard);
  app.use('/metrics', guard);

  // ---- dashboard and meta ------------------------------------------------------------------

  for (const [path, asset] of assets) {
    app.get(path, (c) => {
      c.header('Cache-Control', 'no-cache');
      return c.body(asset.body, 200, { 'Content-Type': asset.type });
    });
  }
  app.get('/healthz', (c) => c.json({ status: 'ok' as const }));
  app.get('/api/openapi.json', (c) => c.body(openapi, 200, { 'Content-Type': 'application/json' }));
  app.get('/metrics', async (c) =>
    c.body(await metrics.render(), 200, { 'Content-Type': metrics.contentType }),
  );

  // ---- grid ----------------------------------------------------------------------------------

  const freshStats = async (): Promise<StatsResponse> => {
    const cached = watcher.stats;
    if (cached && clock.now() - cached.sampledAt <= t.statsMaxAgeMs) return cached;
    const reply = await grid.stats();
    return { ...reply, sampledAt: clock.now() };
  };

  app.get('/api/health', async (c) => {
    parseQuery(c, EMPTY_QUERY);
    const now = clock.now();
    if (!health || now - health.at > t.healthCacheMs) {
      const value = checkComponents(grid, {
        timeoutMs: t.healthTimeoutMs,
        maxWorkerPings: t.healthMaxWorkerPings,
        now: () => clock.now(),
      }).then((r): HealthResponse => ({
        ...r,
        checkedAt: clock.now(),
        monitoring: {
          version,
          uptimeMs: Math.max(0, clock.now() - startedAt),
          pid: process.pid,
          authRequired: token !== undefined,
          actionsAllowed,
        },
      }));
      health = { at: now, value };
      value.catch(() => (health = undefined));
    }
    return c.json(await health.value);
  });

  app.get('/api/workers', async (c) => {
    parseQuery(c, EMPTY_QUERY);
    let instances: Instance[];
    let fresh = true;
    try {
      instances = await grid.listInstances();
    } catch (error) {
      instances = grid.instances();
      fresh = false;
      if (!grid.synced() && instances.length === 0) throw error;
    }
    const stats = await freshStats().catch(() => undefined);
    let entries: readonly WorkerTypeEntry[] = [];
    try {
      entries = deps.workerTypes?.() ?? [];
    } catch (error) {
      log.warn({ err: error }, 'workers.json is not usable; listing live types only');
    }
    const running = stats && new Map(Object.entries(stats.types).map(([name, t]) => [name, t.running]));
    return c.json(joinWorkers(entries, instances, stats?.workers ?? [], fresh, running));
  });

  app.get('/api/stats', async (c) => {
    parseQuery(c, EMPTY_QUERY);
    return c.json(await freshStats());
  });

  app.get('/api/stats/history', (c) => {
    parseQuery(c, EMPTY_QUERY);
    return c.json({ intervalMs: t.pollIntervalMs, samples: watcher.history() });
  });

  app.get('/api/tasks', async (c) => {
    const q = parseQuery(c, TasksQuery);
    try {
      const { page, payloadOmitted } = await fittingTasksPage(grid, {
        limit: q.limit ?? t.tasksDefaultLimit,
        ...(q.status !== undefined && { status: q.status }),
        ...(q.type !== undefined && { type: q.type }),
        ...(q.cursor !== undefined && { cursor: q.cursor }),
      });
      return c.json(payloadOmitted ? { ...page, payloadOmitted } : page);
    } catch (error) {
      if (!isTooLarge(error)) throw error;
      throw new HttpError(
        502,
        ErrorCode.TOO_LARGE,
        'a task here is larger than the grid can send in one message',
      );
    }
  });

  app.post(
    '/api/tasks',
    bodyLimit({
      maxSize: t.maxBodyBytes,
      onError: () => {
        throw new HttpError(413, ErrorCode.TOO_LARGE, `the body exceeds ${t.maxBodyBytes} bytes`);
      },
    }),
    async (c) => {
      parseQuery(c, EMPTY_QUERY);
      const type = c.req.header('content-type') ?? '';
      if (!/^application\/json\s*(;|$)/i.test(type)) {
        throw new HttpError(
          415,
          ErrorCode.BAD_REQUEST,
          'the body must be JSON (Content-Type: application/json)',
        );
      }
      const text = await c.req.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (error) {
        throw new TaskGridError(
          ErrorCode.BAD_REQUEST,
          `the body is not valid JSON: ${error instanceof Error ? error.message : 'parse error'}`,
        );
      }
      const spec = SubmitRequest.safeParse(body);
      if (!spec.success) throw badRequest(spec.error);
      const { id, duplicate } = await grid.submit(spec.data);
      c.header('Location', `/api/tasks/${id}`);
      return c.json({ id, duplicate }, 201);
    },
  );

  app.get('/api/tasks/:id', async (c) => {
    parseQuery(c, EMPTY_QUERY);
    const id = taskId(c);
    let view: TaskView;
    let payloadOmitted = false;
    try {
      view = await grid.task(id);
    } catch (error) {
      // Payload and result together can exceed one message; the result matters more.
      if (!isTooLarge(error)) throw error;
      view = await grid.task(id, { payload: false }).catch((again: unknown) => {
        throw isTooLarge(again)
          ? new HttpError(
              502,
              ErrorCode.TOO_LARGE,
              `task ${id} is larger than the grid can send in one message`,
            )
          : again;
      });
      payloadOmitted = true;
    }
    watcher.noteTask(view);
    return c.json({
      task: view,
      attempts: watcher.attempts(view.id),
      ...(payloadOmitted && { payloadOmitted }),
    });
  });

  const change = (action: 'cancel' | 'retry') => async (c: Context) => {
    parseQuery(c, EMPTY_QUERY);
    const id = taskId(c);
    // A change the task's status does not allow is refused by the client: TG_ERR_CONFLICT, 409.
    const view = action === 'cancel' ? await grid.cancel(id) : await grid.retry(id);
    watcher.noteTask(view);
    return c.json({ task: view });
  };
  app.post('/api/tasks/:id/cancel', change('cancel'));
  app.post('/api/tasks/:id/retry', change('retry'));

  app.get('/api/events', (c) => {
    parseQuery(c, EMPTY_QUERY);
    const sub = hub.subscribe();
    if (!sub) throw new TaskGridError(ErrorCode.BUSY, `${t.sseMaxClients} event streams are open already`);
    c.header('Cache-Control', 'no-cache');
    c.header('X-Accel-Buffering', 'no');
    return streamSSE(
      c,
      async (stream) => {
        stream.onAbort(() => sub.close());
        const first = hub.event('snapshot', watcher.snapshot());
        await stream.writeSSE({
          event: first.event,
          data: first.data,
          id: String(first.id),
          retry: t.sseRetryMs,
        });
        for (;;) {
          const next = await sub.next(clock, t.sseKeepAliveMs);
          if (next === 'closed' || stream.aborted) break;
          if (next === 'idle') await stream.write(': keep-alive\n\n');
          else await stream.writeSSE({ event: next.event, data: next.data, id: String(next.id) });
        }
        sub.close();
      },
      (error) => {
        sub.close();
        log.debug({ err: error }, 'event stream ended with an error');
        return Promise.resolve();
      },
    );
  });

  app.get('/api/logs', async (c) => {
    const q = parseQuery(c, LogsQuery);
    const components = deps.home !== undefined ? await listLogComponents(deps.home) : [];
    if (q.component === undefined) return c.json({ components });
    if (deps.home === undefined)
      throw new TaskGridError(ErrorCode.NOT_FOUND, 'logs are kept in local mode only');
    const tail = await tailLog(
      deps.home,
      q.component,
      Math.min(q.lines ?? t.logDefaultLines, t.logMaxLines),
      t.logTailBytes,
    );
    return c.json({ components, component: q.component, ...tail });
  });

  return { app, watcher, hub, metrics };
}

/**
 * True for a request that came over HTTP (@hono/node-server passes Node's request as
 * `c.env.incoming`) without a Host header, or with an empty one: HTTP/1.1 without one (service.ts
 * lets Node pass it on) and HTTP/1.0. Its URL then names a stand-in host, not one the client
 * named, so the loopback check has nothing to check. `app.request()` has no `incoming`: its URL
 * names the host.
 */
function withoutHostHeader(env: unknown): boolean {
  const incoming = (env as Partial<HttpBindings> | undefined)?.incoming;
  return incoming !== undefined && !incoming.headers.host;
}

/**
 * The request's URL. Its host comes from the Host header, which may not parse (a last label
 * that is a number makes it an IPv4 address: `Host: g127.0.0.1` is invalid): a 400, not a 500.
 */
function requestUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new HttpError(400, ErrorCode.BAD_REQUEST, 'the Host header does not name a valid host');
  }
}

/** A route path (`/api/tasks/:id`) as a regular expression over request paths. */
function routePattern(path: string): RegExp {
  const parts = path
    .split('/')
    .map((p) => (p.startsWith(':') ? '[^/]+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${parts.join('/')}/?$`);
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/**
 * workers.json entries joined with live instances and the dispatcher's accounting. A type's
 * `inFlight` is the dispatcher's count of its running tasks (`running`, per type) when known:
 * an instance serving several types has one count for all of them.
 */
export function joinWorkers(
  entries: readonly WorkerTypeEntry[],
  instances: readonly Instance[],
  accounting: readonly WorkerStats[],
  fresh: boolean,
  running?: ReadonlyMap<string, number>,
): WorkersResponse {
  const byId = new Map(accounting.map((w) => [w.id, w]));
  const workers = instances.filter((i) => i.role === 'worker');
  const view = (i: Instance): WorkerInstance => {
    const a = byId.get(i.id);
    return {
      id: i.id,
      address: { host: i.address.host, port: i.address.port },
      types: [...i.types],
      capacity: i.capacity,
      inFlight: a?.inFlight ?? i.inFlight ?? 0,
      ...(a && { completed: a.completed, failed: a.failed }),
      registeredAt: i.registeredAt,
      lastHeartbeat: i.lastSeen,
      meta: { ...i.meta },
    };
  };
  const types: WorkerType[] = [];
  const make = (name: string, entry: WorkerTypeEntry | undefined): WorkerType => {
    const live = workers.filter((i) => i.types.includes(name)).map(view);
    live.sort((a, b) => a.id.localeCompare(b.id));
    return {
      name,
      description: entry?.description ?? '',
      configured: entry !== undefined,
      active: entry?.active ?? false,
      ...(entry && { replicas: entry.replicas, concurrency: entry.concurrency }),
      ...(entry?.timeoutMs !== undefined && { timeoutMs: entry.timeoutMs }),
      ...(entry?.maxAttempts !== undefined && { maxAttempts: entry.maxAttempts }),
      registered: live.length > 0,
      instances: live,
      capacity: live.reduce((n, i) => n + i.capacity, 0),
      inFlight: running?.get(name) ?? live.reduce((n, i) => n + i.inFlight, 0),
    };
  };
  for (const entry of entries) types.push(make(entry.name, entry));
  const listed = new Set(entries.map((e) => e.name));
  const extra = [...new Set(workers.flatMap((i) => i.types))].filter((name) => !listed.has(name)).sort();
  for (const name of extra) types.push(make(name, undefined));
  return { fresh, types };
}
