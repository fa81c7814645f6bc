/**
 * The compiled pre-checks never accept what zod rejects, and accept the common valid messages
 * as they are: checked against zod on samples of every message kind and on many thousands of
 * random mutations of them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { z } from 'zod';
import { compileCheck, fastCheck } from '../../src/protocol/fast-check.ts';
import { BusyReplyBody, ErrorReplyBody, notifications, requests } from '../../src/protocol/messages.ts';

const view = {
  id: 7,
  type: 'reverse',
  status: 'succeeded',
  payload: 'Hello',
  result: 'olleH',
  priority: 0,
  attempts: 1,
  maxAttempts: 3,
  timeoutMs: 30_000,
  createdAt: 1_700_000_000_000,
  startedAt: 1_700_000_000_001,
  finishedAt: 1_700_000_000_002,
  worker: 'w-1',
  progress: 1,
};
const { result: _result, ...unfinished } = view;
const failedView = {
  ...unfinished,
  status: 'failed',
  error: { code: 'TG_ERR_HANDLER_FAILED', message: 'boom' },
};
const instance = {
  id: 'w-1',
  role: 'worker',
  types: ['reverse', 'hash'],
  address: { host: '127.0.0.1', port: 6000 },
  capacity: 4,
  meta: { zone: 'a' },
  registeredAt: 1,
  lastSeen: 2,
  inFlight: 0,
};
const typeStats = {
  queued: 1,
  running: 2,
  succeeded: 3,
  failed: 0,
  cancelled: 0,
  throughput: 1.5,
  runMs: { p50: 1, p95: 2 },
  waitMs: { p50: 0.5, p95: 1 },
};

/** Valid samples of every schema the endpoint validates. */
const samples: [string, z.ZodType, unknown[]][] = [
  ['ping.req', requests.ping.req, [{}]],
  [
    'ping.res',
    requests.ping.res,
    [{ component: 'dispatcher', version: '1', uptimeMs: 5, pid: 42, id: 'd-1' }],
  ],
  [
    'submit.req',
    requests.submit.req,
    [
      { tasks: [{ type: 'reverse', payload: 'Hello' }] },
      {
        tasks: [{ type: 'my_type.v2', payload: '', key: 'k', priority: -5, timeoutMs: 1, maxAttempts: 100 }],
        notify: true,
      },
    ],
  ],
  [
    'submit.res',
    requests.submit.res,
    [{ results: [{ id: 1 }, { id: 2, duplicate: true }, { error: { code: 'TG_ERR_BUSY', message: 'x' } }] }],
  ],
  [
    'get-result.req',
    requests['get-result'].req,
    [{ ids: [1] }, { ids: [1, 2, 3], waitMs: 0, payload: true }],
  ],
  [
    'get-result.res',
    requests['get-result'].res,
    [
      { tasks: [], missing: [5] },
      { tasks: [view, failedView], missing: [] },
    ],
  ],
  ['watch.req', requests.watch.req, [{ ids: [1, 2] }]],
  ['watch.res', requests.watch.res, [{ finished: [view], missing: [3] }]],
  ['done.req', requests.done.req, [{ tasks: [view] }]],
  ['done.res', requests.done.res, [{}]],
  ['cancel.req', requests.cancel.req, [{ id: 9 }]],
  ['cancel.res', requests.cancel.res, [{ task: view }]],
  ['tasks.req', requests.tasks.req, [{}, { status: 'queued', type: 'reverse', limit: 10, cursor: 'abc' }]],
  ['tasks.res', requests.tasks.res, [{ tasks: [view], nextCursor: 'x' }]],
  [
    'stats.res',
    requests.stats.res,
    [
      {
        types: { reverse: typeStats },
        workers: [],
        totals: { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, throughput: 0 },
        transport: { datagramsIn: 5 },
      },
    ],
  ],
  [
    'task.req',
    requests.task.req,
    [{ tasks: [{ id: 1, type: 'reverse', payload: 'x', attempt: 1, timeoutMs: 1000 }] }],
  ],
  [
    'task.res',
    requests.task.res,
    [{ accepted: [1], rejected: [{ id: 2, error: { code: 'TG_ERR_UNKNOWN_TYPE', message: 'no' } }] }],
  ],
  [
    'result.req',
    requests.result.req,
    [
      {
        results: [
          { id: 1, attempt: 1, ok: true, result: 'olleH', runMs: 0.5 },
          {
            id: 2,
            attempt: 2,
            ok: false,
            error: { code: 'TG_ERR_TASK_TIMEOUT', message: 't' },
            permanent: false,
            runMs: 3,
          },
        ],
      },
    ],
  ],
  ['result.res', requests.result.res, [{ recorded: 2 }]],
  [
    'register.req',
    requests.register.req,
    [
      {
        role: 'worker',
        types: ['reverse'],
        address: { host: '127.0.0.1', port: 1 },
        capacity: 2,
        meta: { a: 'b' },
      },
    ],
  ],
  ['register.res', requests.register.res, [{ leaseId: 'l', id: 'w', ttlMs: 1000, heartbeatMs: 300 }]],
  ['heartbeat.req', requests.heartbeat.req, [{ leaseId: 'l', inFlight: 3 }]],
  ['lookup.req', requests.lookup.req, [{ type: 'reverse' }, { role: 'worker' }]],
  ['lookup.res', requests.lookup.res, [{ instances: [instance] }]],
  ['subscribe.req', requests.subscribe.req, [{ address: { host: 'h', port: 2 }, ttlMs: 5000 }]],
  ['subscribe.res', requests.subscribe.res, [{ instances: [instance], ttlMs: 5000, epoch: 'e', seq: 0 }]],
  ['changes.req', requests.changes.req, [{ epoch: 'e', seq: 3, upserted: [instance], removed: ['w-2'] }]],
  ['progress', notifications.progress, [{ id: 1, attempt: 1, progress: 0.5, message: 'half' }]],
  ['error', ErrorReplyBody, [{ code: 'TG_ERR_NOT_FOUND', message: 'task 1 not found' }]],
  ['busy', BusyReplyBody, [{ message: 'queue full', retryAfterMs: 250 }]],
];

/** A deterministic generator, so that a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const oddValues: unknown[] = [
  null,
  undefined,
  true,
  false,
  0,
  -1,
  1.5,
  -0.5,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  1e300,
  NaN,
  Infinity,
  '',
  'x',
  'x'.repeat(5000),
  '../etc',
  'TG_ERR_BUSY',
  'queued',
  [],
  [1],
  {},
  { __proto__: null },
  JSON.parse('{"__proto__": {"x": 1}}') as unknown,
  { constructor: 'x' },
  [view],
];

type Json = unknown;

/** A copy of `v` with one random change somewhere inside: a leaf replaced, a key removed or added. */
function mutate(v: Json, r: () => number): Json {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  if (Array.isArray(v)) {
    const copy = [...(v as Json[])];
    const op = r();
    if (copy.length && op < 0.6) {
      const i = Math.floor(r() * copy.length);
      copy[i] = mutate(copy[i], r);
    } else if (op < 0.8) copy.push(pick(oddValues));
    else copy.length = 0;
    return copy;
  }
  if (v !== null && typeof v === 'object') {
    const copy: Record<string, Json> = { ...(v as Record<string, Json>) };
    const keys = Object.keys(copy);
    const op = r();
    if (keys.length && op < 0.6) {
      const k = pick(keys);
      copy[k] = mutate(copy[k], r);
    } else if (keys.length && op < 0.75) {
      delete copy[pick(keys)];
    } else if (op < 0.9) {
      copy[pick(['extra', 'id', 'type', 'constructor', 'toString', 'ids', 'ok'])] = pick(oddValues);
    } else {
      Object.defineProperty(copy, '__proto__', {
        value: pick(oddValues),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
    return copy;
  }
  return pick(oddValues);
}

test('the compiled check accepts the valid samples of every message kind as they are', () => {
  for (const [name, schema, values] of samples) {
    for (const v of values) {
      const parsed = schema.safeParse(v);
      assert.ok(
        parsed.success,
        `${name}: the sample itself is valid (${JSON.stringify(parsed.error?.issues)})`,
      );
      assert.equal(compileCheck(schema)(v), true, `${name}: ${JSON.stringify(v)}`);
    }
  }
});

test('the compiled check never accepts a value zod rejects, over random mutations of every sample', () => {
  const r = rng(20241128);
  let accepted = 0;
  let rejected = 0;
  for (const [name, schema, values] of samples) {
    const check = fastCheck(schema);
    for (const v of values) {
      for (let i = 0; i < 3000; i++) {
        let m = mutate(v, r);
        if (r() < 0.3) m = mutate(m, r);
        if (!check(m)) {
          rejected++;
          continue;
        }
        accepted++;
        const parsed = schema.safeParse(m);
        assert.ok(parsed.success, `${name}: accepted what zod rejects: ${JSON.stringify(m)}`);
        assert.deepEqual(parsed.data, m, `${name}: zod's output differs from the value accepted`);
      }
    }
  }
  // Both sides were exercised: mutations that stay valid and ones that do not.
  assert.ok(accepted > 1000 && rejected > 1000, `accepted ${accepted}, rejected ${rejected}`);
});

test('a JSON-parsed body with a __proto__ key or an unknown kind of check is left to zod', () => {
  const withProto = JSON.parse('{"ids":[1],"__proto__":{"x":1}}') as unknown;
  assert.equal(compileCheck(requests['get-result'].req)(withProto), false);
  const record = JSON.parse('{"__proto__":"x"}') as unknown;
  assert.equal(compileCheck(requests.register.req.shape.meta)(record), false);
});
