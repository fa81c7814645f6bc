/**
 * The TaskGrid+ wire format, pure: reading datagrams (byte by byte for the prefixes of a valid
 * one), the message schemas, replies that fit in 4096 bytes, and the mapping of v1 tasks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TaskView } from '../../src/protocol/messages.ts';
import {
  dispatcherMessages,
  encodeLegacy,
  encodeReply,
  fitList,
  formatAddress,
  isLegacyInstance,
  nameserviceMessages,
  parseDatagram,
  resultReply,
  summarizeIssues,
  taskIdOf,
  textOf,
  toLegacyTask,
} from '../../src/legacy/wire.ts';

const view = (over: Partial<TaskView>): TaskView => ({
  id: 7,
  type: 'reverse',
  status: 'queued',
  priority: 0,
  attempts: 0,
  maxAttempts: 3,
  timeoutMs: 30_000,
  createdAt: 1_700_000_000_000,
  ...over,
});

describe('reading TaskGrid+ datagrams', () => {
  test('a TaskGrid+ message gives its type and data', () => {
    const parsed = parseDatagram(encodeLegacy('POST_TASK', { type: 'reverse', payload: 'Hello' }));
    assert.deepEqual(parsed, { ok: true, type: 'POST_TASK', data: { type: 'reverse', payload: 'Hello' } });
  });

  test('every strict prefix of a message is refused, never thrown', () => {
    const bytes = encodeLegacy('GET_RESULT', { task_id: 12 });
    for (let n = 0; n < bytes.length; n++) {
      const parsed = parseDatagram(bytes.subarray(0, n));
      assert.equal(parsed.ok, false, `prefix of ${n} bytes`);
    }
  });

  test('noise is not answered, an object without a usable type is', () => {
    const cases: [Uint8Array, boolean][] = [
      [Buffer.from([0xff, 0xfe, 0x7b]), false],
      [Buffer.from('{"type": "POST_TASK", "data": "\xff"}', 'latin1'), false],
      [Buffer.from('[1,2,3]'), false],
      [Buffer.from('"POST_TASK"'), false],
      [Buffer.from('null'), false],
      [Buffer.from('{}'), true],
      [Buffer.from('{"type": 5, "data": {}}'), true],
      [Buffer.from(`{"type": "${'X'.repeat(65)}"}`), true],
    ];
    for (const [bytes, answerable] of cases) {
      const parsed = parseDatagram(bytes);
      assert.equal(parsed.ok, false);
      if (!parsed.ok) assert.equal(parsed.answerable, answerable, Buffer.from(bytes).toString('latin1'));
    }
  });

  test('a message without data is read as one with no data', () => {
    assert.deepEqual(parseDatagram(Buffer.from('{"type": "LIST_WORKERS"}')), {
      ok: true,
      type: 'LIST_WORKERS',
      data: undefined,
    });
  });
});

describe('the schemas of TaskGrid+ messages', () => {
  test('POST_TASK takes a valid type and any payload but null', () => {
    assert.ok(dispatcherMessages.POST_TASK.safeParse({ type: 'sum', payload: [1, 2, 3] }).success);
    assert.ok(dispatcherMessages.POST_TASK.safeParse({ type: 'wait', payload: 3 }).success);
    assert.ok(dispatcherMessages.POST_TASK.safeParse({ type: 'reverse', payload: '', extra: 1 }).success);
    const bad = dispatcherMessages.POST_TASK.safeParse({ type: 'not a type!', payload: null });
    assert.equal(bad.success, false);
    if (!bad.success) assert.match(summarizeIssues(bad.error), /type: .*payload: expected a value/);
    const missing = dispatcherMessages.POST_TASK.safeParse({ type: 'reverse' });
    assert.equal(missing.success, false);
    assert.equal(dispatcherMessages.POST_TASK.safeParse('POST_TASK').success, false);
  });

  test('RESULT_RETURN needs a task id and a result; a result may be 0 or empty', () => {
    assert.ok(dispatcherMessages.RESULT_RETURN.safeParse({ task_id: 3, result: 0 }).success);
    assert.ok(dispatcherMessages.RESULT_RETURN.safeParse({ task_id: '3', result: '' }).success);
    assert.equal(dispatcherMessages.RESULT_RETURN.safeParse({ task_id: 3 }).success, false);
    assert.equal(
      dispatcherMessages.RESULT_RETURN.safeParse({ task_id: { id: 3 }, result: 'x' }).success,
      false,
    );
  });

  test('HEARTBEAT and DEREGISTER_WORKER take nothing, or the worker type and address', () => {
    assert.deepEqual(nameserviceMessages.HEARTBEAT.parse(undefined), {});
    assert.deepEqual(nameserviceMessages.HEARTBEAT.parse(null), {});
    assert.deepEqual(
      nameserviceMessages.DEREGISTER_WORKER.parse({ type: 'reverse', address: 'worker:6000' }),
      {
        type: 'reverse',
        address: 'worker:6000',
      },
    );
    assert.equal(nameserviceMessages.HEARTBEAT.safeParse({ type: 'bad type' }).success, false);
    assert.equal(nameserviceMessages.REGISTER_WORKER.safeParse({ address: 'x:6000' }).success, false);
  });
});

describe('mapping between TaskGrid+ and protocol v1', () => {
  test('task ids are positive integers or their decimal text; anything else names no task', () => {
    assert.equal(taskIdOf(12), 12);
    assert.equal(taskIdOf('12'), 12);
    for (const v of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1, '012', '1e3', '', ' 1']) {
      assert.equal(taskIdOf(v), undefined, String(v));
    }
  });

  test('payloads and results travel as text: strings as they are, other values as JSON', () => {
    assert.equal(textOf('Hello'), 'Hello');
    assert.equal(textOf(''), '');
    assert.equal(textOf([1, 2, 3]), '[1,2,3]');
    assert.equal(textOf(6.0), '6');
    assert.equal(textOf(0), '0');
    assert.equal(textOf({ a: 1 }), '{"a":1}');
  });

  test('GET_RESULT: a result is a result even when empty or "0"; open, failed, cancelled and missing tasks say so', () => {
    assert.deepEqual(resultReply(view({ status: 'succeeded', result: '' })), { result: '' });
    assert.deepEqual(resultReply(view({ status: 'succeeded', result: '0' })), { result: '0' });
    assert.deepEqual(resultReply(view({ status: 'queued' })), { error: 'Result not ready' });
    assert.deepEqual(resultReply(view({ status: 'running' })), { error: 'Result not ready' });
    assert.deepEqual(
      resultReply(
        view({
          status: 'failed',
          error: { code: 'TG_ERR_BAD_PAYLOAD', message: 'sum: "x" is not a number' },
        }),
      ),
      { error: 'Task failed: sum: "x" is not a number (TG_ERR_BAD_PAYLOAD)' },
    );
    assert.deepEqual(resultReply(view({ status: 'cancelled' })), {
      error: 'Task cancelled (TG_ERR_CANCELLED)',
    });
    assert.deepEqual(resultReply(undefined), { error: 'Task not found' });
  });

  test("a v1 task becomes TaskGrid+'s task object, with its fields only", () => {
    const done = toLegacyTask(
      view({ status: 'succeeded', payload: 'Hello', result: 'olleH', finishedAt: 1_700_000_001_500 }),
      '127.0.0.1:6000',
    );
    assert.deepEqual(done, {
      id: 7,
      type: 'reverse',
      payload: 'Hello',
      result: 'olleH',
      status: 'done',
      timestamp_created: 1_700_000_000,
      timestamp_completed: 1_700_000_001.5,
      assigned_worker: '127.0.0.1:6000',
    });
    const open = toLegacyTask(view({ status: 'running', payload: 'x' }), null);
    assert.equal(open.status, 'pending');
    assert.equal(open.result, null);
    assert.equal(open.timestamp_completed, 0);
    const failed = toLegacyTask(
      view({ status: 'failed', error: { code: 'TG_ERR_TASK_TIMEOUT', message: 'too slow' } }),
      null,
    );
    assert.equal(failed.result, 'TG_ERR_TASK_TIMEOUT: too slow');
  });

  test('addresses are host:port, IPv6 in brackets', () => {
    assert.equal(formatAddress({ host: '10.0.0.5', port: 6000 }), '10.0.0.5:6000');
    assert.equal(formatAddress({ host: '::1', port: 6000 }), '[::1]:6000');
  });

  test('TaskGrid+ instances are told apart by their meta', () => {
    assert.equal(isLegacyInstance({ meta: { protocol: 'taskgrid+' } }), true);
    assert.equal(isLegacyInstance({ meta: {} }), false);
  });
});

describe('the 4096-byte rule', () => {
  test('fitList keeps the longest prefix whose reply fits, and nothing when nothing fits', () => {
    const items = Array.from({ length: 200 }, (_, i) => ({ id: i, payload: 'p'.repeat(50) }));
    const fit = fitList(items, (x) => encodeReply({ tasks: x }), 4096);
    assert.ok(fit);
    assert.ok(fit.bytes.length <= 4096);
    assert.ok(fit.count > 0 && fit.count < items.length);
    assert.ok(encodeReply({ tasks: items.slice(0, fit.count + 1) }).length > 4096, 'one more would not fit');
    assert.deepEqual(JSON.parse(fit.bytes.toString('utf8')), {
      type: 'RESPONSE',
      data: { tasks: items.slice(0, fit.count) },
    });
    assert.equal(
      fitList(items, (x) => encodeReply({ big: 'x'.repeat(5000), tasks: x }), 4096),
      undefined,
    );
    assert.equal(fitList([], (x) => encodeReply({ tasks: x }), 4096)?.count, 0);
  });

  test('sizes are counted in UTF-8 bytes, not characters', () => {
    const items = Array.from({ length: 100 }, () => 'é'.repeat(40));
    const fit = fitList(items, (x) => encodeReply({ x }), 4096);
    assert.ok(
      fit &&
        fit.bytes.length <= 4096 &&
        Buffer.byteLength(JSON.stringify({ type: 'RESPONSE', data: { x: items.slice(0, fit.count) } })) <=
          4096,
    );
  });
});
