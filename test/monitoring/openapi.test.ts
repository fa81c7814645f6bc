/**
 * The OpenAPI 3.1 document: valid against the official OpenAPI 3.1 schema (checked offline by
 * @seriousme/openapi-schema-validator), internally consistent, and true: a walk over every
 * documented path and method calls the app and checks each answer against the schema the
 * document gives for its status (JSON Schema 2020-12, compiled with zod's fromJSONSchema).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { z } from 'zod';
import {
  buildOpenApiDocument,
  type OpenApiDocument,
  type OperationObject,
} from '../../src/monitoring/openapi.ts';
import { EventReader, makeApp } from './helpers.ts';

const TOKEN = 'a-monitor-token-of-some-length';

/** Replaces the document's component references by `$defs` ones, for a standalone schema. */
function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        k === '$ref' && typeof v === 'string'
          ? v.replace('#/components/schemas/', '#/$defs/')
          : rewriteRefs(v),
      ]),
    );
  }
  return value;
}

/** A validator of `schema` as the document states it. */
function compile(doc: OpenApiDocument, schema: unknown): z.ZodType {
  const root = { ...(rewriteRefs(schema) as object), $defs: rewriteRefs(doc.components.schemas) };
  return z.fromJSONSchema(root as Parameters<typeof z.fromJSONSchema>[0]);
}

/** The response object of `status`, following a `$ref` into components.responses. */
function responseOf(
  doc: OpenApiDocument,
  op: OperationObject,
  status: number,
): Record<string, unknown> | undefined {
  const r = op.responses[String(status)];
  if (!r) return undefined;
  const ref = r.$ref;
  if (typeof ref === 'string') {
    const name = ref.replace('#/components/responses/', '');
    return (doc.components.responses as Record<string, Record<string, unknown>>)[name];
  }
  return r;
}

function jsonSchemaOf(response: Record<string, unknown>): unknown {
  const content = response.content as Record<string, { schema: unknown }> | undefined;
  return content?.['application/json']?.schema;
}

describe('the OpenAPI document', () => {
  const doc = buildOpenApiDocument({ version: '0.1.0' });

  test('is valid OpenAPI 3.1 by the official schema', async () => {
    const validator = new Validator({ strict: false });
    const result = await validator.validate(doc);
    assert.equal(validator.version, '3.1');
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  });

  test('has unique operation ids, declared path parameters and references that resolve', () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      assert.ok(path.startsWith('/'), path);
      for (const [method, op] of Object.entries(item)) {
        assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
        ids.add(op.operationId);
        const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
        const declared = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
        assert.deepEqual(declared, templated, `${method} ${path}: path parameters`);
        assert.ok(
          Object.keys(op.responses).some((s) => /^2\d\d$/.test(s)),
          `${method} ${path}: no success response`,
        );
      }
    }
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    assert.ok(refs.length > 20);
    for (const raw of new Set(refs)) {
      const pointer = raw.slice(8, -1).replace(/^#\//, '').split('/');
      let at: unknown = doc;
      for (const part of pointer) at = (at as Record<string, unknown>)[part];
      assert.ok(at !== undefined, `unresolved ${raw}`);
    }
  });

  test('its schemas really validate: a wrong body fails them', () => {
    const detail = compile(doc, { $ref: '#/components/schemas/TaskDetail' });
    const task = {
      id: 1,
      type: 'reverse',
      status: 'queued',
      priority: 0,
      attempts: 0,
      maxAttempts: 3,
      timeoutMs: 1000,
      createdAt: 1,
    };
    assert.equal(detail.safeParse({ task, attempts: [] }).success, true);
    assert.equal(detail.safeParse({ task: { ...task, status: 'done' }, attempts: [] }).success, false);
    assert.equal(detail.safeParse({ task: { ...task, colour: 'red' }, attempts: [] }).success, false);
    assert.equal(detail.safeParse({ task }).success, false);
    const error = compile(doc, { $ref: '#/components/schemas/ApiError' });
    assert.equal(error.safeParse({ error: { code: 'TG_ERR_NOT_FOUND', message: 'x' } }).success, true);
    assert.equal(error.safeParse({ error: { code: 'NOT_A_CODE', message: 'x' } }).success, false);
  });
});

describe('every documented route answers as documented', () => {
  const doc = buildOpenApiDocument({ version: '0.1.0' });
  const home = mkdtempSync(join(tmpdir(), 'taskgrid-openapi-'));
  after(() => rmSync(home, { recursive: true, force: true }));
  mkdirSync(join(home, 'logs'));
  writeFileSync(join(home, 'logs', 'dispatcher.log'), '{"msg":"ready"}\n');

  /** A grid with a task in every state the routes need, polled once. */
  async function setup(token?: string) {
    const parts = makeApp({ home, ...(token !== undefined && { token }) });
    const { grid } = parts;
    grid.addWorker('w1', ['reverse', 'sum'], 6001);
    const done = grid.put({ type: 'reverse', payload: 'Hello' });
    grid.start(done.id, 'w1');
    grid.finish(done.id, 'olleH');
    const queued = grid.put({ type: 'wait', payload: '5' });
    const failed = grid.put({ type: 'sum', payload: 'x' });
    grid.fail(failed.id, { code: 'TG_ERR_BAD_PAYLOAD', message: 'not a number' }, false);
    await parts.watcher.pollOnce();
    await parts.watcher.pollOnce();
    const idFor = (path: string) =>
      path.endsWith('/cancel') ? queued.id : path.endsWith('/retry') ? failed.id : done.id;
    return { ...parts, idFor };
  }

  /** Checks one answer against the document; returns what was checked, for the report. */
  async function check(op: OperationObject, method: string, path: string, res: Response): Promise<void> {
    const where = `${method.toUpperCase()} ${path} -> ${res.status}`;
    const response = responseOf(doc, op, res.status);
    assert.ok(response, `${where}: status not documented`);
    const content = response.content as Record<string, unknown> | undefined;
    if (!content) return;
    const type = res.headers.get('content-type') ?? '';
    const documented = Object.keys(content);
    assert.ok(
      documented.some((t) => type.startsWith(t)),
      `${where}: content type ${type}, documented ${documented.join(', ')}`,
    );
    if (type.startsWith('application/json')) {
      const data: unknown = await res.json();
      const result = compile(doc, jsonSchemaOf(response)).safeParse(data);
      assert.ok(
        result.success,
        `${where}: ${result.error?.message ?? ''}\n${JSON.stringify(data).slice(0, 800)}`,
      );
    } else if (type.startsWith('text/event-stream')) {
      const events = new EventReader(res);
      try {
        const first = await events.next();
        const schemas = op['x-events'] as Record<string, unknown>;
        assert.ok(schemas[first.event], `${where}: undocumented event ${first.event}`);
        const result = compile(doc, schemas[first.event]).safeParse(JSON.parse(first.data));
        assert.ok(result.success, `${where}: event ${first.event}: ${result.error?.message ?? ''}`);
      } finally {
        await events.close();
      }
    } else {
      assert.equal(typeof (await res.text()), 'string');
    }
  }

  function request(path: string, method: string, id: number, token?: string): [string, RequestInit] {
    const url = path.replace('{id}', String(id));
    const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
    if (method === 'post') {
      headers['Content-Type'] = 'application/json';
      const body =
        path === '/api/tasks' ? JSON.stringify({ type: 'reverse', payload: 'Hi', key: 'k' }) : '{}';
      return [url, { method: 'POST', headers, body }];
    }
    return [url, { headers }];
  }

  test('success answers match their schemas', async () => {
    const { app, idFor, watcher } = await setup();
    const checked: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const [url, init] = request(path, method, idFor(path));
        const res = await app.request(url, init);
        if (res.status >= 300) assert.fail(`${method} ${url}: ${res.status} ${await res.text()}`);
        await check(op, method, path, res);
        checked.push(`${method} ${path}`);
      }
    }
    assert.equal(checked.length, 15);
    await watcher.close();
  });

  test('documented error answers match their schemas', async () => {
    const { app, idFor, watcher } = await setup();
    const withToken = await setup(TOKEN);
    let count = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const statuses = Object.keys(op.responses).map(Number);
        const [url, init] = request(path, method, idFor(path));
        if (statuses.includes(400)) {
          const res = await app.request(`${url}?bogus=1`, init);
          assert.equal(res.status, 400, `${method} ${path}?bogus=1`);
          await check(op, method, path, res);
          count++;
        }
        if (statuses.includes(404) && path.includes('{id}')) {
          const [missing, missingInit] = request(path, method, 987_654);
          const res = await app.request(missing, missingInit);
          assert.equal(res.status, 404);
          await check(op, method, path, res);
          count++;
        }
        if (statuses.includes(401)) {
          const res = await withToken.app.request(url, init);
          assert.equal(res.status, 401, `${method} ${path} without the token`);
          await check(op, method, path, res);
          count++;
        }
      }
    }
    // Actions refused (403), conflicts (409), bodies refused (413, 415) and a silent grid (503).
    const exposed = makeApp({ bindHost: '0.0.0.0', home });
    const full = makeApp({ tuning: { sseMaxClients: 0 } });
    const huge = await setup();
    huge.grid.maxReplyBytes = 100; // not one task fits a message
    const down = await setup();
    down.grid.dispatcherDown = true;
    down.grid.nameserviceDown = true;
    down.grid.workers = []; // no last view to fall back on either
    down.clock.advance(60_000); // and no stats recent enough to serve from the poller's cache
    const done = idFor('/api/tasks/{id}');
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const statuses = Object.keys(op.responses).map(Number);
        const [url, init] = request(path, method, idFor(path));
        const cases: [number, Response | Promise<Response>][] = [];
        if (statuses.includes(403))
          cases.push([403, exposed.app.request(`http://10.0.0.1:8080${url}`, init)]);
        if (statuses.includes(409)) cases.push([409, app.request(...request(path, method, done))]);
        // The event stream opens whatever the grid's state (its snapshot says so): it is 503 when full.
        if (statuses.includes(503))
          cases.push([503, (path === '/api/events' ? full : down).app.request(url, init)]);
        if (statuses.includes(502)) cases.push([502, huge.app.request(url, init)]);
        if (statuses.includes(415))
          cases.push([415, app.request(url, { ...init, headers: { 'Content-Type': 'text/plain' } })]);
        if (statuses.includes(413))
          cases.push([
            413,
            app.request(url, {
              ...init,
              body: JSON.stringify({ type: 'reverse', payload: 'x'.repeat(1100 * 1024) }),
            }),
          ]);
        for (const [status, pending] of cases) {
          const res = await pending;
          assert.equal(res.status, status, `${method} ${path} expected ${status}`);
          await check(op, method, path, res);
          count++;
        }
      }
    }
    // Every documented error status of every route, but 500 (no bug to trigger on purpose).
    assert.equal(count, 39, `checked ${count} error answers`);
    await watcher.close();
    await withToken.watcher.close();
    await down.watcher.close();
    await huge.watcher.close();
  });
});
