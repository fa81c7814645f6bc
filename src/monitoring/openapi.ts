/**
 * The OpenAPI 3.1 document of the monitoring REST API, served at `/api/openapi.json`. Its
 * schemas are generated from the zod schemas the routes validate with (schemas.ts), in JSON
 * Schema 2020-12 (the dialect of OpenAPI 3.1), so that the document says what the code does.
 */
import { z } from 'zod';
import * as S from './schemas.ts';

/** An OpenAPI document as plain JSON. */
export type OpenApiDocument = Record<string, unknown> & {
  openapi: string;
  paths: Record<string, Record<string, OperationObject>>;
  components: { schemas: Record<string, Record<string, unknown>> } & Record<string, unknown>;
};

/** The parts of an operation the tests walk. */
export interface OperationObject {
  operationId: string;
  parameters?: Record<string, unknown>[];
  requestBody?: Record<string, unknown>;
  responses: Record<string, Record<string, unknown>>;
  security?: Record<string, string[]>[];
  [key: string]: unknown;
}

/** Component schemas by name: every one is referenced as `#/components/schemas/<name>`. */
const COMPONENTS = {
  WireError: S.WireError,
  ApiError: S.ApiError,
  TaskSpec: S.TaskSpec,
  TaskView: S.TaskView,
  TaskSummary: S.TaskSummary,
  TaskStatus: S.TaskStatus,
  TypeStats: S.TypeStats,
  WorkerStats: S.WorkerStats,
  Instance: S.Instance,
  Address: S.Address,
  StatsResponse: S.StatsResponse,
  StatsSample: S.StatsSample,
  StatsHistory: S.StatsHistory,
  TasksResponse: S.TasksResponse,
  ObservedAttempt: S.ObservedAttempt,
  TaskDetail: S.TaskDetail,
  SubmitResponse: S.SubmitResponse,
  TaskChangeResponse: S.TaskChangeResponse,
  ComponentHealth: S.ComponentHealth,
  HealthResponse: S.HealthResponse,
  WorkerInstance: S.WorkerInstance,
  WorkerType: S.WorkerType,
  WorkersResponse: S.WorkersResponse,
  LogsResponse: S.LogsResponse,
  DispatcherState: S.DispatcherState,
  SnapshotEvent: S.SnapshotEvent,
  TasksEvent: S.TasksEvent,
  WorkersEvent: S.WorkersEvent,
  StatsEvent: S.StatsEvent,
  Liveness: z.strictObject({ status: z.literal('ok') }),
} as const;

type ComponentName = keyof typeof COMPONENTS;

/** Schemas of every component, with references between them. */
function componentSchemas(): Record<string, Record<string, unknown>> {
  // A registry of its own per call: nothing is shared at module level.
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(COMPONENTS)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    uri: (id) => `#/components/schemas/${id}`,
  });
  const out: Record<string, Record<string, unknown>> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    // $id and $schema repeat what the document already says.
    const { $id: _id, $schema: _schema, ...rest } = schema as Record<string, unknown>;
    out[id] = rest;
  }
  return out;
}

const ref = (name: ComponentName) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: ComponentName, description: string) => ({
  description,
  content: { 'application/json': { schema: ref(name) } },
});
const err = (status: number) => ({ $ref: `#/components/responses/Error${status}` });

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad parameters or body (TG_ERR_BAD_REQUEST, TG_ERR_UNKNOWN_TYPE, ...); the message says what was wrong.',
  401: 'TASKGRID_MONITOR_TOKEN is set and the request has no valid `Authorization: Bearer` token (TG_ERR_AUTH).',
  403: 'Refused (TG_ERR_AUTH): actions are disabled (bound beyond loopback without a token), or a cross-origin or foreign-host request.',
  404: 'No such task, log or route (TG_ERR_NOT_FOUND).',
  409: 'The task is not in a state that allows the action (TG_ERR_CONFLICT), e.g. cancelling a task that succeeded.',
  413: 'The body is larger than the limit (TG_ERR_TOO_LARGE).',
  415: 'The body is not `application/json` (TG_ERR_BAD_REQUEST).',
  500: 'An unexpected failure inside monitoring (TG_ERR_INTERNAL).',
  502: 'A single task is larger than the grid can send in one message (TG_ERR_TOO_LARGE).',
  503: 'The grid does not answer (TG_ERR_UNREACHABLE) or is busy (TG_ERR_BUSY, with Retry-After).',
};

const idParam = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'Task id.',
  schema: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
};

/** Options of {@link buildOpenApiDocument}. */
export interface OpenApiOptions {
  version: string;
}

/** The OpenAPI 3.1 document of the API. */
export function buildOpenApiDocument(options: OpenApiOptions): OpenApiDocument {
  const api = (op: OperationObject, ...errors: number[]): OperationObject => ({
    ...op,
    responses: { ...op.responses, ...Object.fromEntries([401, ...errors].map((s) => [String(s), err(s)])) },
  });
  const open = { security: [] };

  const paths: Record<string, Record<string, OperationObject>> = {
    '/api/health': {
      get: api(
        {
          operationId: 'getHealth',
          summary: 'Each component reachable or not, with its version and uptime',
          description:
            "Pings every nameservice, the dispatcher and the live workers. Answers 200 whatever the grid's state: `status` says it.",
          tags: ['grid'],
          responses: { '200': json('HealthResponse', 'The health of the grid and of monitoring.') },
        },
        500,
      ),
    },
    '/api/workers': {
      get: api(
        {
          operationId: 'listWorkers',
          summary: 'workers.json entries joined with live instances',
          tags: ['grid'],
          responses: {
            '200': json('WorkersResponse', 'Every configured or served type with its instances.'),
          },
        },
        503,
      ),
    },
    '/api/stats': {
      get: api(
        {
          operationId: 'getStats',
          summary:
            'Totals and per type: queued, running, succeeded, failed, throughput, run time and queue wait',
          tags: ['grid'],
          responses: { '200': json('StatsResponse', "The dispatcher's stats.") },
        },
        503,
      ),
    },
    '/api/stats/history': {
      get: api({
        operationId: 'getStatsHistory',
        summary: 'The last minutes of chart samples (throughput, latency, queue depths)',
        tags: ['grid'],
        responses: { '200': json('StatsHistory', 'Samples, oldest first.') },
      }),
    },
    '/api/tasks': {
      get: api(
        {
          operationId: 'listTasks',
          summary: 'A page of tasks, newest first',
          tags: ['tasks'],
          parameters: [
            { name: 'status', in: 'query', schema: ref('TaskStatus') },
            {
              name: 'type',
              in: 'query',
              schema: {
                type: 'string',
                minLength: 1,
                maxLength: 64,
                pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
              },
            },
            {
              name: 'limit',
              in: 'query',
              schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
            },
            {
              name: 'cursor',
              in: 'query',
              description: 'The `nextCursor` of the previous page.',
              schema: { type: 'string', minLength: 1, maxLength: 64 },
            },
          ],
          responses: {
            '200': json(
              'TasksResponse',
              'Tasks, newest first; `nextCursor` when more match. A page of large tasks may hold fewer than `limit`; a task whose payload and result together exceed one protocol message comes alone, without its payload, its id in `payloadOmitted`.',
            ),
          },
        },
        400,
        502,
        503,
      ),
      post: api(
        {
          operationId: 'submitTask',
          summary: 'Submit a task',
          description:
            'Answers once the dispatcher committed the task. Needs a token unless monitoring is bound to loopback.',
          tags: ['tasks'],
          requestBody: { required: true, content: { 'application/json': { schema: ref('TaskSpec') } } },
          responses: {
            '201': {
              ...json('SubmitResponse', 'Committed.'),
              headers: {
                Location: { description: 'The task: /api/tasks/{id}.', schema: { type: 'string' } },
              },
            },
          },
        },
        400,
        403,
        413,
        415,
        503,
      ),
    },
    '/api/tasks/{id}': {
      get: api(
        {
          operationId: 'getTask',
          summary: 'A task with its payload, result and observed attempts',
          tags: ['tasks'],
          parameters: [idParam],
          responses: { '200': json('TaskDetail', 'The task.') },
        },
        400,
        404,
        502,
        503,
      ),
    },
    '/api/tasks/{id}/cancel': {
      post: api(
        {
          operationId: 'cancelTask',
          summary: 'Cancel a queued or running task',
          tags: ['tasks'],
          parameters: [idParam],
          responses: {
            '200': json(
              'TaskChangeResponse',
              'The task, cancelled (again cancelling a cancelled task is a no-op).',
            ),
          },
        },
        400,
        403,
        404,
        409,
        503,
      ),
    },
    '/api/tasks/{id}/retry': {
      post: api(
        {
          operationId: 'retryTask',
          summary: 'Put a failed or cancelled task back in its queue with fresh attempts',
          tags: ['tasks'],
          parameters: [idParam],
          responses: { '200': json('TaskChangeResponse', 'The task, queued again.') },
        },
        400,
        403,
        404,
        409,
        503,
      ),
    },
    '/api/events': {
      get: api(
        {
          operationId: 'streamEvents',
          summary: 'Server-Sent Events: task and worker changes and periodic stats',
          description:
            "Every stream starts with a `snapshot`. Then `tasks` (tasks that appeared or changed, from polling the dispatcher once a second), `workers` (pushed by the nameservice), `stats` (each poll) and `dispatcher` (reachability changes). `x-events` gives the schema of each event's `data` (JSON).",
          tags: ['grid'],
          'x-events': {
            snapshot: ref('SnapshotEvent'),
            tasks: ref('TasksEvent'),
            workers: ref('WorkersEvent'),
            stats: ref('StatsEvent'),
            dispatcher: ref('DispatcherState'),
          },
          responses: {
            '200': {
              description: 'An event stream.',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
          },
        },
        503,
      ),
    },
    '/api/logs': {
      get: api(
        {
          operationId: 'getLogs',
          summary: "The tail of a component's log (local mode)",
          description:
            'Lists the components that have a log in TASKGRID_HOME/logs; with `component`, returns the last `lines` lines of its log.',
          tags: ['grid'],
          parameters: [
            {
              name: 'component',
              in: 'query',
              schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' },
            },
            {
              name: 'lines',
              in: 'query',
              schema: { type: 'integer', minimum: 1, maximum: 2000, default: 200 },
            },
          ],
          responses: { '200': json('LogsResponse', 'The components with logs, and the tail asked for.') },
        },
        400,
        404,
      ),
    },
    '/api/openapi.json': {
      get: api({
        operationId: 'getOpenApi',
        summary: 'This document',
        tags: ['meta'],
        responses: {
          '200': {
            description: 'OpenAPI 3.1.',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
        },
      }),
    },
    '/metrics': {
      get: api({
        operationId: 'getMetrics',
        summary: 'Prometheus metrics of the grid and of monitoring',
        tags: ['meta'],
        responses: {
          '200': {
            description: 'Prometheus text exposition format 0.0.4.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      }),
    },
    '/healthz': {
      get: {
        operationId: 'getLiveness',
        summary: 'Liveness of the monitoring process itself (no token needed, no grid contact)',
        tags: ['meta'],
        ...open,
        responses: { '200': json('Liveness', 'Monitoring runs.') },
      },
    },
    '/': {
      get: {
        operationId: 'getDashboard',
        summary: 'The dashboard (no token needed to load it; it asks for one when the API does)',
        tags: ['meta'],
        ...open,
        responses: {
          '200': {
            description: 'The dashboard page.',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
        },
      },
    },
  };

  return {
    openapi: '3.1.0',
    info: {
      title: 'TaskGrid monitoring API',
      version: options.version,
      description:
        'Read the grid (health, workers, stats, tasks, events, logs, metrics) and act on tasks (submit, cancel, retry). ' +
        'Errors are `{error: {code, message}}` with stable TG_ERR_* codes (docs/PROTOCOL.md). With TASKGRID_MONITOR_TOKEN set, every /api and /metrics request needs `Authorization: Bearer <token>`.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'grid', description: 'The grid as a whole.' },
      { name: 'tasks', description: 'Tasks.' },
      { name: 'meta', description: 'The service itself.' },
    ],
    security: [{ bearerToken: [] }, {}],
    paths,
    components: {
      schemas: componentSchemas(),
      responses: Object.fromEntries(
        Object.entries(ERROR_DESCRIPTIONS).map(([status, description]) => [
          `Error${status}`,
          { description, content: { 'application/json': { schema: ref('ApiError') } } },
        ]),
      ),
      securitySchemes: {
        bearerToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'TASKGRID_MONITOR_TOKEN. Needed only when the service was started with it set.',
        },
      },
    },
  };
}
