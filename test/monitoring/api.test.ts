/**
 * The monitoring REST API through `app.request` over the in-memory fake grid: answers, errors
 * with their stable codes and statuses, access rules, logs, the event stream and the poller.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCode } from '../../src/errors.ts';
import { readToken } from '../../src/monitoring/service.ts';
import { AttemptLog } from '../../src/monitoring/watcher.ts';
import { systemClock } from '../../src/transport/types.ts';
import type {
  HealthResponse,
  LogsResponse,
  StatsHistory,
  StatsResponse,
  SubmitResponse,
  TaskChangeResponse,
  TaskDetail,
  TasksResponse,
  WorkersResponse,
} from '../../src/monitoring/schemas.ts';
import { EventReader, body, errorOf, makeApp } from './helpers.ts';

const TOKEN = 'a-monitor-token-of-some-length';

function post(path: string, json?: unknown, headers: Record<string, string> = {}): RequestInit {
  return {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    ...(json !== undefined && { body: JSON.stringify(json) }),
  };
}

describe('reading the grid', () => {
  test("GET /api/stats answers the dispatcher's stats with the time they were taken", async () => {
    const { app, grid, clock } = makeApp();
    grid.put({ type: 'reverse', status: 'succeeded', result: 'olleH', payload: 'Hello' });
    const res = await app.request('/api/stats');
    assert.equal(res.status, 200);
    const stats = await body<StatsResponse>(res);
    assert.equal(stats.sampledAt, clock.now());
    assert.equal(stats.types.reverse?.succeeded, 1);
    assert.equal(stats.totals.succeeded, 1);
    assert.equal(stats.transport.datagramsIn, 42);
  });

  test('GET /api/stats answers 503 TG_ERR_UNREACHABLE when the dispatcher does not answer', async () => {
    const { app, grid } = makeApp();
    grid.dispatcherDown = true;
    const res = await app.request('/api/stats');
    assert.equal(res.status, 503);
    assert.equal((await errorOf(res)).code, ErrorCode.UNREACHABLE);
  });

  test('GET /api/tasks filters by status and type and pages with the cursor', async () => {
    const { app, grid } = makeApp();
    for (let i = 0; i < 5; i++) grid.put({ type: 'reverse', payload: `r${i}` });
    grid.put({ type: 'sum', payload: '1,2' });
    const done = grid.put({ type: 'reverse', payload: 'x' });
    grid.finish(done.id, 'x');

    const queuedReverse = await body<TasksResponse>(
      await app.request('/api/tasks?status=queued&type=reverse&limit=3'),
    );
    assert.deepEqual(
      queuedReverse.tasks.map((t) => t.payload),
      ['r4', 'r3', 'r2'],
    );
    assert.ok(queuedReverse.nextCursor);
    const next = await body<TasksResponse>(
      await app.request(
        `/api/tasks?status=queued&type=reverse&limit=3&cursor=${queuedReverse.nextCursor ?? ''}`,
      ),
    );
    assert.deepEqual(
      next.tasks.map((t) => t.payload),
      ['r1', 'r0'],
    );
    assert.equal(next.nextCursor, undefined);
    const all = await body<TasksResponse>(await app.request('/api/tasks'));
    assert.equal(all.tasks.length, 7);
  });

  test('GET /api/tasks refuses bad parameters with 400 naming what was wrong', async () => {
    const { app } = makeApp();
    const cases: [string, RegExp][] = [
      ['/api/tasks?status=done', /status/],
      ['/api/tasks?limit=0', /limit is an integer from 1 to 1000/],
      ['/api/tasks?limit=-1', /limit is an integer from 1 to 1000/],
      ['/api/tasks?limit=1001', /limit is an integer from 1 to 1000/],
      ['/api/tasks?limit=5000', /limit is an integer from 1 to 1000/],
      ['/api/tasks?limit=abc', /limit is an integer from 1 to 1000/],
      ['/api/tasks?type=%3Cimg%3E', /type/],
      ['/api/tasks?colour=red', /unknown parameter: colour/],
      ['/api/tasks?status=queued&status=running', /given 2 times/],
      ['/api/tasks?cursor=nonsense', /cursor/],
      ['/api/stats?x=1', /unknown parameter: x/],
    ];
    for (const [path, message] of cases) {
      const res = await app.request(path);
      assert.equal(res.status, 400, path);
      const error = await errorOf(res);
      assert.equal(error.code, ErrorCode.BAD_REQUEST, path);
      assert.match(error.message, message, path);
    }
  });

  test('GET /api/tasks/{id} answers the task with its observed attempts, 404 for an unknown id and 400 for a non-id', async () => {
    const { app, grid } = makeApp();
    const t = grid.put({ type: 'hash', payload: 'abc' });
    grid.start(t.id, 'w1');
    grid.finish(t.id, 'digest');
    const res = await app.request(`/api/tasks/${t.id}`);
    assert.equal(res.status, 200);
    const detail = await body<TaskDetail>(res);
    assert.equal(detail.task.result, 'digest');
    assert.equal(detail.task.payload, 'abc');
    assert.deepEqual(
      detail.attempts.map((a) => [a.attempt, a.outcome, a.worker]),
      [[1, 'succeeded', 'w1']],
    );

    const missing = await app.request('/api/tasks/999');
    assert.equal(missing.status, 404);
    assert.equal((await errorOf(missing)).code, ErrorCode.NOT_FOUND);
    for (const bad of ['0', 'abc', '-1', '1.5', '99999999999999999']) {
      const r = await app.request(`/api/tasks/${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal((await errorOf(r)).code, ErrorCode.BAD_REQUEST);
    }
  });

  test('a page of large tasks shrinks to fit one message, and its cursor goes on after it', async () => {
    const { app, grid } = makeApp();
    for (let i = 0; i < 9; i++) grid.put({ type: 'hash', payload: `${i}`.repeat(1000) });
    grid.maxReplyBytes = 3500; // about three tasks
    const seen: number[] = [];
    let cursor = '';
    for (let pages = 0; pages < 20; pages++) {
      const res = await app.request(`/api/tasks?limit=8${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200);
      const page = await body<TasksResponse>(res);
      assert.ok(page.tasks.length >= 1 && page.tasks.length < 8, `${page.tasks.length} tasks`);
      seen.push(...page.tasks.map((t) => t.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    assert.deepEqual(seen, [9, 8, 7, 6, 5, 4, 3, 2, 1]);
    grid.maxReplyBytes = 500; // not even one task with its payload: the newest comes without it
    const alone = await app.request('/api/tasks');
    assert.equal(alone.status, 200);
    const page = await body<TasksResponse>(alone);
    assert.deepEqual(
      page.tasks.map((t) => t.id),
      [9],
    );
    assert.equal(page.tasks[0]!.payload, undefined);
    assert.deepEqual(page.payloadOmitted, [9]);
    assert.equal(page.nextCursor, '9');
    grid.maxReplyBytes = 100; // not even without it
    const tooBig = await app.request('/api/tasks');
    assert.equal(tooBig.status, 502);
    assert.equal((await errorOf(tooBig)).code, ErrorCode.TOO_LARGE);
  });

  test('a task whose payload and result exceed one message is shown without its payload', async () => {
    const { app, grid } = makeApp();
    const t = grid.put({ type: 'reverse', payload: 'p'.repeat(3000) });
    grid.finish(t.id, 'r'.repeat(2000));
    grid.maxReplyBytes = 4000;
    const detail = await body<TaskDetail>(await app.request(`/api/tasks/${t.id}`));
    assert.equal(detail.payloadOmitted, true);
    assert.equal(detail.task.payload, undefined);
    assert.equal(detail.task.result?.length, 2000);
  });

  test('GET /api/workers joins workers.json entries with live instances and the dispatcher accounting', async () => {
    const { app, grid } = makeApp();
    grid.addWorker('w-rev', ['reverse'], 6001, 4);
    grid.addWorker('w-many', ['sum', 'hash', 'extra'], 6002, 8);
    const t = grid.put({ type: 'reverse' });
    grid.start(t.id, 'w-rev');
    const res = await app.request('/api/workers');
    assert.equal(res.status, 200);
    const { fresh, types } = await body<WorkersResponse>(res);
    assert.equal(fresh, true);
    const by = new Map(types.map((x) => [x.name, x]));
    const get = (name: string) => {
      const t = by.get(name);
      assert.ok(t, name);
      return t;
    };
    assert.deepEqual([...by.keys()], ['reverse', 'sum', 'hash', 'upper', 'wait', 'shout', 'extra']);
    const reverse = get('reverse');
    assert.equal(reverse.registered, true);
    assert.equal(reverse.active, true);
    assert.equal(reverse.instances[0]?.inFlight, 1);
    assert.equal(reverse.instances[0]?.address.port, 6001);
    assert.equal(typeof reverse.instances[0]?.lastHeartbeat, 'number');
    assert.equal(get('upper').registered, false);
    assert.equal(get('shout').active, false);
    assert.equal(get('extra').configured, false);
    assert.equal(get('extra').registered, true);
  });

  test('a known path with another method gets 405 naming the methods it takes; an unknown path 404', async () => {
    const { app } = makeApp();
    const del = await app.request('/api/tasks/1', { method: 'DELETE' });
    assert.equal(del.status, 405);
    assert.equal(del.headers.get('allow'), 'GET, HEAD');
    assert.equal((await errorOf(del)).code, ErrorCode.BAD_REQUEST);
    const put = await app.request('/api/tasks', { method: 'PUT' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, HEAD, POST');
    const cancel = await app.request('/api/tasks/7/cancel');
    assert.equal(cancel.status, 405);
    assert.equal(cancel.headers.get('allow'), 'POST');
    const none = await app.request('/api/nothing-here');
    assert.equal(none.status, 404);
    assert.equal((await errorOf(none)).code, ErrorCode.NOT_FOUND);
  });

  test("a worker serving several types counts its running task in its type's inFlight only", async () => {
    const { app, grid } = makeApp();
    grid.addWorker('w-many', ['sum', 'hash', 'upper'], 6002, 8);
    const t = grid.put({ type: 'hash' });
    grid.start(t.id, 'w-many');
    const { types } = await body<WorkersResponse>(await app.request('/api/workers'));
    const inFlight = Object.fromEntries(types.map((x) => [x.name, x.inFlight]));
    assert.deepEqual([inFlight.sum, inFlight.hash, inFlight.upper], [0, 1, 0]);
    assert.equal(
      types.find((x) => x.name === 'hash')?.instances[0]?.inFlight,
      1,
      'the instance has it running',
    );
  });

  test('GET /api/workers keeps the last view when the nameservice stops answering, and is 503 when it knows none', async () => {
    const { app, grid } = makeApp();
    grid.nameserviceDown = true;
    const never = await app.request('/api/workers');
    assert.equal(never.status, 503);
    assert.equal((await errorOf(never)).code, ErrorCode.UNREACHABLE);
    grid.nameserviceDown = false;
    grid.addWorker('w1', ['reverse'], 6001);
    grid.nameserviceDown = true;
    // The cached view still lists w1, as a Directory keeps its last view through an outage.
    const stale = await app.request('/api/workers');
    assert.equal(stale.status, 200);
    const { fresh, types } = await body<WorkersResponse>(stale);
    assert.equal(fresh, false);
    assert.equal(types[0]?.instances[0]?.id, 'w1');
  });

  test('GET /api/health says which components answer: a silent worker degrades the grid, a silent dispatcher takes it down', async () => {
    const { app, grid, clock } = makeApp({ tuning: { healthCacheMs: 0 } });
    grid.addWorker('w1', ['reverse'], 6001);
    grid.addWorker('w2', ['sum'], 6002);
    let health = await body<HealthResponse>(await app.request('/api/health'));
    assert.equal(health.status, 'ok');
    assert.deepEqual(
      health.components.map((c) => [c.component, c.reachable]),
      [
        ['nameservice', true],
        ['dispatcher', true],
        ['worker', true],
        ['worker', true],
      ],
    );
    assert.equal(health.components[1]?.version, '0.1.0');
    assert.equal(health.monitoring.actionsAllowed, true);
    assert.equal(health.monitoring.authRequired, false);

    grid.deadPorts.add(6002);
    clock.advance(10);
    health = await body<HealthResponse>(await app.request('/api/health'));
    assert.equal(health.status, 'degraded');
    assert.equal(health.components.find((c) => c.id === 'w2')?.error?.code, ErrorCode.UNREACHABLE);

    grid.dispatcherDown = true;
    clock.advance(10);
    health = await body<HealthResponse>(await app.request('/api/health'));
    assert.equal(health.status, 'down');
  });
});

describe('acting on tasks', () => {
  test('POST /api/tasks submits a task and answers 201 with its id and Location', async () => {
    const { app, grid } = makeApp();
    const res = await app.request(
      '/api/tasks',
      post('/api/tasks', { type: 'reverse', payload: 'Hello', priority: 5 }),
    );
    assert.equal(res.status, 201);
    const { id, duplicate } = await body<SubmitResponse>(res);
    assert.equal(duplicate, false);
    assert.equal(res.headers.get('location'), `/api/tasks/${id}`);
    assert.equal(grid.tasksById.get(id)?.priority, 5);
    const again = await body<SubmitResponse>(
      await app.request('/api/tasks', post('', { type: 'reverse', payload: 'x', key: 'k1' })),
    );
    const dup = await body<SubmitResponse>(
      await app.request('/api/tasks', post('', { type: 'reverse', payload: 'y', key: 'k1' })),
    );
    assert.equal(dup.id, again.id);
    assert.equal(dup.duplicate, true);
  });

  test('POST /api/tasks refuses bad bodies with 400, other media types with 415 and large bodies with 413', async () => {
    const { app } = makeApp({ tuning: { maxBodyBytes: 1024 } });
    const cases: [RequestInit, number, string, RegExp][] = [
      [
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"type": "reverse",' },
        400,
        ErrorCode.BAD_REQUEST,
        /not valid JSON/,
      ],
      [post('', { type: 'reverse' }), 400, ErrorCode.BAD_REQUEST, /payload/],
      [
        post('', { type: 'reverse', payload: 'x', colour: 'red' }),
        400,
        ErrorCode.BAD_REQUEST,
        /unknown field|colour/,
      ],
      [post('', { type: 'reverse', payload: 'x', priority: 5000 }), 400, ErrorCode.BAD_REQUEST, /priority/],
      [post('', ['reverse', 'x']), 400, ErrorCode.BAD_REQUEST, /expected object/],
      [post('', { type: 'nosuch', payload: 'x' }), 400, ErrorCode.UNKNOWN_TYPE, /nosuch/],
      [
        { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' },
        415,
        ErrorCode.BAD_REQUEST,
        /application\/json/,
      ],
      [post('', { type: 'reverse', payload: 'x'.repeat(2000) }), 413, ErrorCode.TOO_LARGE, /1024 bytes/],
    ];
    for (const [init, status, code, message] of cases) {
      const res = await app.request('/api/tasks', init);
      assert.equal(res.status, status, `expected ${status} for ${message}`);
      const error = await errorOf(res);
      assert.equal(error.code, code);
      assert.match(error.message, message);
    }
  });

  test('cancel and retry answer the changed task, 409 when the status does not allow it, 404 for unknown ids', async () => {
    const { app, grid } = makeApp();
    const queued = grid.put({ type: 'wait', payload: '10' });
    const res = await app.request(`/api/tasks/${queued.id}/cancel`, post(''));
    assert.equal(res.status, 200);
    assert.equal((await body<TaskChangeResponse>(res)).task.status, 'cancelled');
    const again = await app.request(`/api/tasks/${queued.id}/cancel`, post(''));
    assert.equal(again.status, 200, 'cancelling a cancelled task is a no-op');

    const retried = await app.request(`/api/tasks/${queued.id}/retry`, post(''));
    assert.equal(retried.status, 200);
    assert.equal((await body<TaskChangeResponse>(retried)).task.status, 'queued');
    const queuedAgain = await app.request(`/api/tasks/${queued.id}/retry`, post(''));
    assert.equal(queuedAgain.status, 409, 'a queued task cannot be retried');
    const refusal = await errorOf(queuedAgain);
    assert.equal(refusal.code, 'TG_ERR_CONFLICT');
    assert.match(refusal.message, /cannot be retried: it is queued/);

    const done = grid.put({ type: 'reverse' });
    grid.finish(done.id, 'ok');
    const conflict = await app.request(`/api/tasks/${done.id}/cancel`, post(''));
    assert.equal(conflict.status, 409);
    const ended = await errorOf(conflict);
    assert.equal(ended.code, 'TG_ERR_CONFLICT');
    assert.match(ended.message, /cannot be cancelled: it had already ended \(succeeded\)/);
    assert.equal((await app.request(`/api/tasks/${done.id}/retry`, post(''))).status, 409);
    assert.equal((await app.request('/api/tasks/4242/cancel', post(''))).status, 404);
    assert.equal((await app.request('/api/tasks/x/retry', post(''))).status, 400);
  });
});

describe('access', () => {
  test('with a token, every API call needs it; the dashboard and /healthz do not', async () => {
    const { app } = makeApp({ token: TOKEN });
    for (const path of ['/api/stats', '/api/tasks', '/api/openapi.json', '/metrics', '/api/events']) {
      const none = await app.request(path);
      assert.equal(none.status, 401, path);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal((await errorOf(none)).code, ErrorCode.AUTH);
      const wrong = await app.request(path, { headers: { Authorization: 'Bearer not-the-token-at-all' } });
      assert.equal(wrong.status, 401, path);
    }
    const ok = await app.request('/api/stats', { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.status, 200);
    const submit = await app.request(
      '/api/tasks',
      post('', { type: 'reverse', payload: 'x' }, { Authorization: `Bearer ${TOKEN}` }),
    );
    assert.equal(submit.status, 201);
    assert.equal((await app.request('/')).status, 200);
    assert.equal((await app.request('/healthz')).status, 200);
  });

  test('bound beyond loopback without a token, reads work and actions are refused with 403', async () => {
    const { app } = makeApp({ bindHost: '0.0.0.0' });
    assert.equal((await app.request('http://10.1.2.3:8080/api/stats')).status, 200);
    const res = await app.request(
      'http://10.1.2.3:8080/api/tasks',
      post('', { type: 'reverse', payload: 'x' }),
    );
    assert.equal(res.status, 403);
    const error = await errorOf(res);
    assert.equal(error.code, ErrorCode.AUTH);
    assert.match(error.message, /TASKGRID_MONITOR_TOKEN/);
    assert.equal(
      (await body<HealthResponse>(await app.request('http://10.1.2.3:8080/api/health'))).monitoring
        .actionsAllowed,
      false,
    );
    // With a token, the same service allows them.
    const withToken = makeApp({ bindHost: '0.0.0.0', token: TOKEN });
    const ok = await withToken.app.request(
      'http://10.1.2.3:8080/api/tasks',
      post('', { type: 'reverse', payload: 'x' }, { Authorization: `Bearer ${TOKEN}` }),
    );
    assert.equal(ok.status, 201);
  });

  test('bound to loopback, requests naming another host and cross-origin actions are refused', async () => {
    const { app } = makeApp();
    const rebound = await app.request('http://evil.example:8080/api/stats');
    assert.equal(rebound.status, 403, 'a DNS-rebinding page names its own host');
    assert.equal((await app.request('http://127.0.0.1:8080/api/stats')).status, 200);
    assert.equal((await app.request('http://[::1]:8080/api/stats')).status, 200);
    const crossSite = await app.request(
      'http://127.0.0.1:8080/api/tasks',
      post('', { type: 'reverse', payload: 'x' }, { Origin: 'https://evil.example' }),
    );
    assert.equal(crossSite.status, 403);
    const sameSite = await app.request(
      'http://127.0.0.1:8080/api/tasks',
      post('', { type: 'reverse', payload: 'x' }, { Origin: 'http://127.0.0.1:8080' }),
    );
    assert.equal(sameSite.status, 201);
  });

  test('the dashboard is served with a strict content security policy and no third-party URL', async () => {
    const { app } = makeApp();
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/dashboard/app.js', 'text/javascript'],
      ['/dashboard/style.css', 'text/css'],
      ['/favicon.svg', 'image/svg+xml'],
    ] as const) {
      const res = await app.request(path);
      assert.equal(res.status, 200, path);
      assert.ok((res.headers.get('content-type') ?? '').startsWith(type), path);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const text = await res.text();
      // The only absolute URLs are XML namespaces, never something a browser fetches.
      const urls = (text.match(/https?:\/\/[^\s"'`)]+/g) ?? []).filter(
        (u) => u !== 'http://www.w3.org/2000/svg',
      );
      assert.deepEqual(urls, [], path);
    }
    const missing = await app.request('/nope');
    assert.equal(missing.status, 404);
    assert.equal((await errorOf(missing)).code, ErrorCode.NOT_FOUND);
  });
});

describe('logs', () => {
  const home = mkdtempSync(join(tmpdir(), 'taskgrid-monitoring-logs-'));
  after(() => rmSync(home, { recursive: true, force: true }));
  mkdirSync(join(home, 'logs'));
  writeFileSync(
    join(home, 'logs', 'dispatcher.log'),
    Array.from({ length: 500 }, (_, i) => `line ${i}`).join('\n') + '\n',
  );
  writeFileSync(join(home, 'logs', 'worker-reverse.log'), 'hello\n');
  writeFileSync(join(home, 'secret.txt'), 'do not read');
  symlinkSync(join(home, 'secret.txt'), join(home, 'logs', 'sneaky.log'));

  test('GET /api/logs lists the components with logs and tails the one asked for', async () => {
    const { app } = makeApp({ home });
    const list = await body<LogsResponse>(await app.request('/api/logs'));
    assert.deepEqual(list.components, ['dispatcher', 'worker-reverse']);
    const tail = await body<LogsResponse>(await app.request('/api/logs?component=dispatcher&lines=3'));
    assert.deepEqual(tail.lines, ['line 497', 'line 498', 'line 499']);
    assert.equal(tail.truncated, true);
    const small = await body<LogsResponse>(await app.request('/api/logs?component=worker-reverse'));
    assert.deepEqual(small.lines, ['hello']);
    assert.equal(small.truncated, false);
  });

  test('GET /api/logs refuses names that could leave the logs folder, and symbolic links', async () => {
    const { app } = makeApp({ home });
    for (const bad of ['../secret', '..%2Fsecret', '.hidden', 'a/b', '%2Fetc%2Fpasswd']) {
      const res = await app.request(`/api/logs?component=${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal((await errorOf(res)).code, ErrorCode.BAD_REQUEST);
    }
    for (const absent of ['nameservice', 'sneaky']) {
      const res = await app.request(`/api/logs?component=${absent}`);
      assert.equal(res.status, 404, absent);
      assert.match((await errorOf(res)).message, /local mode/);
    }
    const noHome = makeApp();
    assert.deepEqual((await body<LogsResponse>(await noHome.app.request('/api/logs'))).components, []);
  });
});

describe('events and polling', () => {
  test('the event stream opens with a snapshot and carries task, worker and stats events', async () => {
    const { app, grid, watcher } = makeApp();
    grid.addWorker('w1', ['reverse'], 6001);
    watcher.start();
    await watcher.pollOnce(); // the baseline
    const res = await app.request('/api/events');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = new EventReader(res);
    try {
      const snapshot = await events.next();
      assert.equal(snapshot.event, 'snapshot');
      const snap = JSON.parse(snapshot.data) as {
        workers: { id: string }[];
        dispatcher: { reachable: boolean };
      };
      assert.deepEqual(
        snap.workers.map((w) => w.id),
        ['w1'],
      );
      assert.equal(snap.dispatcher.reachable, true);

      const t = grid.put({ type: 'reverse', payload: '<b>'.repeat(100) });
      await watcher.pollOnce();
      const stats = await events.nextOf('stats');
      assert.equal((JSON.parse(stats.data) as { stats: StatsResponse }).stats.totals.queued, 1);
      const tasks = JSON.parse((await events.nextOf('tasks')).data) as {
        tasks: { id: number; status: string; payloadPreview: string }[];
      };
      assert.deepEqual(
        tasks.tasks.map((x) => [x.id, x.status]),
        [[t.id, 'queued']],
      );
      assert.equal(tasks.tasks[0]?.payloadPreview.length, 200, 'events carry previews, not whole payloads');

      grid.addWorker('w2', ['sum'], 6002);
      const workers = JSON.parse((await events.nextOf('workers')).data) as { upserted: { id: string }[] };
      assert.deepEqual(
        workers.upserted.map((w) => w.id),
        ['w2'],
      );

      grid.dispatcherDown = true;
      await watcher.pollOnce();
      const down = JSON.parse((await events.nextOf('dispatcher')).data) as {
        reachable: boolean;
        error: { code: string };
      };
      assert.deepEqual([down.reachable, down.error.code], [false, ErrorCode.UNREACHABLE]);
    } finally {
      await events.close();
      await watcher.close();
    }
  });

  test('the poller follows a task from queued to succeeded, and looks up a running task that left the pages', async () => {
    const { app, grid, watcher, hub } = makeApp({ tuning: { pollNewestTasks: 2, pollRunningTasks: 10 } });
    const seen: { id: number; status: string }[] = [];
    const sub = hub.subscribe();
    assert.ok(sub);
    const old = grid.put({ type: 'wait', payload: '5' });
    grid.start(old.id, 'w1');
    await watcher.pollOnce(); // baseline: nothing published for what already existed
    const a = grid.put({ type: 'reverse' });
    const b = grid.put({ type: 'reverse' });
    grid.put({ type: 'reverse' });
    await watcher.pollOnce();
    grid.finish(old.id, 'waited 5s'); // leaves the running page, and is not among the 2 newest
    grid.start(b.id, 'w1');
    await watcher.pollOnce();
    const lookupsBefore = grid.lookups;
    for (;;) {
      const next = await sub.next(systemClock, 20);
      if (typeof next === 'string') break;
      if (next.event === 'tasks') {
        for (const t of (JSON.parse(next.data) as { tasks: { id: number; status: string }[] }).tasks)
          seen.push({ id: t.id, status: t.status });
      }
    }
    sub.close();
    assert.ok(
      seen.some((x) => x.id === old.id && x.status === 'succeeded'),
      JSON.stringify(seen),
    );
    assert.ok(seen.some((x) => x.id === b.id && x.status === 'running'));
    assert.ok(
      !seen.some((x) => x.id === a.id),
      'a fell out of the 2 newest while queued; it is not followed',
    );
    assert.equal(lookupsBefore, 1, 'one lookup, for the running task that left the pages');
    const detail = await body<TaskDetail>(await app.request(`/api/tasks/${old.id}`));
    assert.deepEqual(
      detail.attempts.map((x) => x.outcome),
      ['succeeded'],
    );
    await watcher.close();
  });

  test('the stats history turns counts into rates per second', async () => {
    const { app, grid, watcher, clock } = makeApp();
    await watcher.pollOnce();
    for (let i = 0; i < 4; i++) grid.finish(grid.put({ type: 'sum' }).id, '3');
    clock.advance(2_000);
    await watcher.pollOnce();
    const { intervalMs, samples } = await body<StatsHistory>(await app.request('/api/stats/history'));
    assert.equal(intervalMs, 1_000);
    assert.equal(samples.length, 2);
    assert.equal(samples[1]?.finishedPerSec, 2);
    assert.equal(samples[1]?.types.sum?.finishedPerSec, 2);
    assert.equal(samples[1]?.runMs.p95, 40);
    await watcher.close();
  });
});

describe('attempt log', () => {
  test('records each attempt with its worker and how it ended, and forgets the least recent tasks', () => {
    const log = new AttemptLog(2);
    const base = { id: 1, type: 'sum', priority: 0, maxAttempts: 3, timeoutMs: 1000, createdAt: 0 } as const;
    log.note({ ...base, status: 'running', attempts: 1, worker: 'w1', startedAt: 10 });
    log.note({
      ...base,
      status: 'queued',
      attempts: 1,
      worker: 'w1',
      error: { code: ErrorCode.WORKER_LOST, message: 'lost' },
    });
    log.note({ ...base, status: 'running', attempts: 2, worker: 'w2', startedAt: 20 });
    log.note({
      ...base,
      status: 'failed',
      attempts: 2,
      worker: 'w2',
      finishedAt: 30,
      error: { code: ErrorCode.HANDLER_FAILED, message: 'boom' },
    });
    assert.deepEqual(
      log.get(1).map((a) => [a.attempt, a.worker, a.outcome, a.error?.code]),
      [
        [1, 'w1', 'requeued', ErrorCode.WORKER_LOST],
        [2, 'w2', 'failed', ErrorCode.HANDLER_FAILED],
      ],
    );
    // A retry starts a new round at attempt 1.
    log.note({ ...base, status: 'running', attempts: 1, worker: 'w3', startedAt: 40 });
    assert.deepEqual(
      log.get(1).map((a) => [a.attempt, a.outcome]),
      [
        [1, 'requeued'],
        [2, 'failed'],
        [1, 'running'],
      ],
    );
    log.note({ ...base, id: 2, status: 'running', attempts: 1 });
    log.note({ ...base, id: 3, status: 'running', attempts: 1 });
    assert.deepEqual(log.get(1), [], 'task 1 was the least recently seen of three, with room for two');
  });
});

describe('the token', () => {
  test('TASKGRID_MONITOR_TOKEN is refused when short or padded, without showing it', () => {
    assert.equal(readToken({}), undefined);
    assert.equal(readToken({ TASKGRID_MONITOR_TOKEN: '' }), undefined);
    assert.equal(readToken({ TASKGRID_MONITOR_TOKEN: TOKEN }), TOKEN);
    assert.throws(
      () => readToken({ TASKGRID_MONITOR_TOKEN: 'hunter2' }),
      (err: Error & { code?: string }) =>
        err.code === ErrorCode.CONFIG && /at least 16/.test(err.message) && !err.message.includes('hunter2'),
    );
    assert.throws(
      () => readToken({ TASKGRID_MONITOR_TOKEN: `${TOKEN}\n` }),
      (err: Error & { code?: string }) => err.code === ErrorCode.CONFIG && /whitespace/.test(err.message),
    );
  });
});
