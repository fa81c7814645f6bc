/**
 * TaskGrid+ messages on the dispatcher's port, over the in-memory network: a real nameservice
 * and dispatcher (SQLite in memory) with their adapters, TaskGrid+ programs sending raw JSON,
 * and v1 clients and workers beside them.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { LegacyGrid, type LegacyGridOptions } from './support.ts';

const grids: LegacyGrid[] = [];
async function grid(options: LegacyGridOptions = {}): Promise<LegacyGrid> {
  const g = new LegacyGrid(options);
  grids.push(g);
  await g.ready;
  return g;
}
after(async () => {
  for (const g of grids) await g.close();
});

const idOf = (message: unknown): number => {
  const m = /^Task received, ID = (\d+)$/.exec(String(message));
  assert.ok(m, `not a task receipt: ${String(message)}`);
  return Number(m[1]);
};

describe('TaskGrid+ clients on the dispatcher port', () => {
  test('POST_TASK commits the task and answers its integer id, which GET_RESULT and v1 get-result accept', async () => {
    const g = await grid();
    const client = g.program('old-client');
    const posted = await client.must(g.dAddr, 'POST_TASK', { type: 'echo', payload: 'Hello' });
    assert.equal(posted.type, 'RESPONSE');
    const id = idOf(posted.data.message);
    assert.deepEqual((await client.must(g.dAddr, 'GET_RESULT', { task_id: id })).data, {
      error: 'Result not ready',
    });
    // A TaskGrid+ client may send the id as it read it: text.
    assert.deepEqual((await client.must(g.dAddr, 'GET_RESULT', { task_id: String(id) })).data, {
      error: 'Result not ready',
    });
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [id], payload: true });
    assert.equal(tasks[0]?.status, 'queued');
    assert.equal(tasks[0]?.payload, 'Hello');

    await g.v1Worker(['echo']);
    for (;;) {
      const r = await client.must(g.dAddr, 'GET_RESULT', { task_id: id });
      if (r.data.error === 'Result not ready') {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      assert.deepEqual(r.data, { result: 'Hello' });
      break;
    }
  });

  test('a payload that is not a string arrives as its JSON text', async () => {
    const g = await grid();
    const client = g.program('old-client');
    const id = idOf(
      (await client.must(g.dAddr, 'POST_TASK', { type: 'echo', payload: [1, 2, 3] })).data.message,
    );
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [id], payload: true });
    assert.equal(tasks[0]?.payload, '[1,2,3]');
  });

  test('GET_RESULT of an id that names no task answers "Task not found"', async () => {
    const g = await grid();
    const client = g.program('old-client');
    for (const task_id of [424242, 0, -3, 'seven', '']) {
      assert.deepEqual((await client.must(g.dAddr, 'GET_RESULT', { task_id })).data, {
        error: 'Task not found',
      });
    }
  });

  test('a task of an unknown type is refused with TG_ERR_UNKNOWN_TYPE rather than left pending forever', async () => {
    const g = await grid();
    const r = await g.program('old-client').must(g.dAddr, 'POST_TASK', { type: 'nosuchtype', payload: 'x' });
    assert.match(
      String(r.data.error),
      /^Task not accepted: unknown task type "nosuchtype".*\(TG_ERR_UNKNOWN_TYPE\)$/,
    );
    assert.equal(r.data.message, undefined);
  });

  test('malformed TaskGrid+ input never reaches a handler, is counted, and is answered where a program waits', async () => {
    const g = await grid();
    const p = g.program('old-client');
    const before = g.dT.counters();
    assert.equal(await p.ask(g.dAddr, Buffer.from('not json at all'), undefined, 300), undefined);
    assert.equal(await p.ask(g.dAddr, Buffer.from([0x7b, 0xff, 0xfe]), undefined, 300), undefined);
    assert.deepEqual((await p.must(g.dAddr, 'FROBNICATE', {})).data, { error: 'Invalid message type' });
    const noType = await p.ask(g.dAddr, Buffer.from('{"data": {}}'));
    assert.deepEqual(noType?.data, { error: 'Invalid message type' });
    const bad = await p.must(g.dAddr, 'POST_TASK', { type: 'echo' });
    assert.match(String(bad.data.error), /^Invalid POST_TASK: payload: /);
    const badType = await p.must(g.dAddr, 'POST_TASK', { type: '../etc', payload: 'x' });
    assert.match(String(badType.data.error), /^Invalid POST_TASK: type: /);
    const after = g.dT.counters();
    assert.equal(after.malformed - before.malformed, 6);
    assert.equal(after.rawIn - before.rawIn, 6);
    assert.equal(g.legacyD?.counters().malformed, 6);
    const { tasks } = await g.client.request(g.dAddr, 'tasks', {});
    assert.equal(tasks.length, 0, 'nothing was submitted');
    // And the dispatcher still serves.
    idOf((await p.must(g.dAddr, 'POST_TASK', { type: 'echo', payload: 'still here' })).data.message);
  });
});

describe('TaskGrid+ workers behind the dispatcher', () => {
  test('a TaskGrid+ worker gets one TASK at a time, and each RESULT_RETURN is recorded once; "" and 0 are results', async () => {
    const g = await grid();
    const worker = g.program('legacy-1');
    const inbox = worker.listen();
    assert.match(
      String((await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' })).data.message),
      /^Registered plus/,
    );
    const client = g.program('old-client');
    const ids: number[] = [];
    for (const payload of ['a', 'b', 'c']) {
      ids.push(idOf((await client.must(g.dAddr, 'POST_TASK', { type: 'plus', payload })).data.message));
    }

    const first = await inbox.nth(1);
    assert.equal(first.type, 'TASK');
    assert.deepEqual(Object.keys(first.data), [
      'id',
      'type',
      'payload',
      'result',
      'status',
      'timestamp_created',
      'timestamp_completed',
      'assigned_worker',
    ]);
    assert.equal(first.data.id, ids[0]);
    assert.equal(first.data.payload, 'a');
    assert.equal(first.data.result, null);
    assert.equal(first.data.status, 'pending');
    assert.equal(first.data.assigned_worker, 'legacy-1:6000');
    assert.equal(typeof first.data.timestamp_created, 'number');
    // Capacity 1: while it holds one, the others wait in the queue.
    const stats = await g.client.request(g.dAddr, 'stats', {});
    assert.equal(stats.types.plus?.running, 1);
    assert.equal(stats.types.plus?.queued, 2);
    const w = stats.workers.find((x) => x.address.host === 'legacy-1');
    assert.equal(w?.capacity, 1);
    assert.equal(w?.address.port, 6000);

    const stored = await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: first.data.id, result: '' });
    assert.deepEqual(stored.data, { message: 'Result stored' });
    assert.deepEqual((await client.must(g.dAddr, 'GET_RESULT', { task_id: ids[0] })).data, { result: '' });
    // A repeated RESULT_RETURN changes nothing and is told so.
    assert.deepEqual((await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: ids[0], result: '' })).data, {
      message: 'Result stored',
    });

    const second = await inbox.nth(2);
    assert.equal(second.data.id, ids[1]);
    await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: ids[1], result: 0 });
    assert.deepEqual((await client.must(g.dAddr, 'GET_RESULT', { task_id: ids[1] })).data, { result: '0' });

    const third = await inbox.nth(3);
    await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: third.data.id, result: 'C' });
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids });
    assert.deepEqual(
      tasks.map((v) => [v.status, v.result, v.attempts]),
      [
        ['succeeded', '', 1],
        ['succeeded', '0', 1],
        ['succeeded', 'C', 1],
      ],
    );
    assert.equal(inbox.received.length, 3);
    assert.equal(g.legacyD?.counters().resultsRecorded, 3);
  });

  test('RESULT_RETURN for an unknown id answers "Task ID not found"; for a task not waiting for it, an error', async () => {
    const g = await grid();
    const worker = g.program('legacy-1');
    assert.deepEqual((await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: 999, result: 'x' })).data, {
      error: 'Task ID not found',
    });
    const id = idOf((await worker.must(g.dAddr, 'POST_TASK', { type: 'echo', payload: 'x' })).data.message);
    const refused = await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: id, result: 'forged' });
    assert.match(String(refused.data.error), /^Result not accepted: task \d+ is queued/);
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [id] });
    assert.equal(tasks[0]?.status, 'queued');
  });

  test('a lost TASK is covered by the lease: the task goes back to its queue and is sent again', async () => {
    const g = await grid({ types: new Map([['plus', { timeoutMs: 200 }]]), leaseGraceMs: 100 });
    const worker = g.program('legacy-1');
    const inbox = worker.listen();
    await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    const id = idOf((await worker.must(g.dAddr, 'POST_TASK', { type: 'plus', payload: 'p' })).data.message);
    const lost = await inbox.nth(1);
    assert.equal(lost.data.id, id);
    // Nothing answers it: the lease lapses and the task is sent again.
    const again = await inbox.nth(2);
    assert.equal(again.data.id, id);
    assert.deepEqual((await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: id, result: 'P' })).data, {
      message: 'Result stored',
    });
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [id] });
    assert.equal(tasks[0]?.status, 'succeeded');
    assert.equal(tasks[0]?.attempts, 2);
  });

  test('a task too large for a TaskGrid+ worker fails with TG_ERR_TOO_LARGE instead of being sent cut', async () => {
    const g = await grid();
    const worker = g.program('legacy-1');
    const inbox = worker.listen();
    await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    await g.untilDirectory((types) => types.includes('plus'), 'the TaskGrid+ worker');
    const [r] = (
      await g.client.request(g.dAddr, 'submit', { tasks: [{ type: 'plus', payload: 'x'.repeat(5_000) }] })
    ).results;
    assert.ok(r && 'id' in r);
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [r.id], waitMs: 5_000 });
    assert.equal(tasks[0]?.status, 'failed');
    assert.equal(tasks[0]?.error?.code, 'TG_ERR_TOO_LARGE');
    assert.match(tasks[0]?.error?.message ?? '', /4096 bytes a TaskGrid\+ worker reads/);
    assert.equal(tasks[0]?.attempts, 1, 'no v1 worker serves the type: not retried');
    assert.equal(inbox.received.length, 0, 'nothing was sent to the worker');
    const legacy = await worker.must(g.dAddr, 'GET_RESULT', { task_id: r.id });
    assert.match(String(legacy.data.error), /^Task failed: .*\(TG_ERR_TOO_LARGE\)$/);
    // The next task, small, is sent as usual: the worker's capacity was given back.
    const id = idOf(
      (await worker.must(g.dAddr, 'POST_TASK', { type: 'plus', payload: 'small' })).data.message,
    );
    assert.equal((await inbox.nth(1)).data.id, id);
  });

  test('a result too large for a TaskGrid+ reply is answered with TG_ERR_TOO_LARGE in a reply that fits', async () => {
    const g = await grid();
    const worker = g.program('legacy-1');
    const inbox = worker.listen();
    await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    const id = idOf((await worker.must(g.dAddr, 'POST_TASK', { type: 'plus', payload: 'big' })).data.message);
    await inbox.nth(1);
    const big = 'R'.repeat(6_000);
    // Datagrams to TaskGrid must fit UDP, not 4096 bytes: only what TaskGrid+ programs read is bounded.
    assert.deepEqual((await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: id, result: big })).data, {
      message: 'Result stored',
    });
    const r = await worker.must(g.dAddr, 'GET_RESULT', { task_id: id });
    assert.ok(r.bytes <= 4096);
    assert.match(
      String(r.data.error),
      /^The result of \d+ bytes exceeds the 4096 bytes a TaskGrid\+ program reads \(TG_ERR_TOO_LARGE\)/,
    );
    const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [id] });
    assert.equal(tasks[0]?.result, big, 'v1 reads it whole');
    assert.equal(g.legacyD?.counters().tooLarge, 1);
  });

  test('a dispatcher without the TaskGrid+ adapter never uses TaskGrid+ workers', async () => {
    const g = await grid({ legacyDispatcher: false });
    const worker = g.program('legacy-1');
    await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    await g.untilDirectory((_types, meta) => meta.protocol === 'taskgrid+', 'the TaskGrid+ worker');
    const stats = await g.client.request(g.dAddr, 'stats', {});
    assert.deepEqual(stats.workers, []);
    // And TaskGrid+ messages to it are not understood (counted as malformed, unanswered).
    assert.equal(await worker.ask(g.dAddr, 'GET_STATS', {}, 300), undefined);
    assert.equal(g.dT.counters().malformed, 1);
  });
});

describe('TaskGrid+ statistics', () => {
  test('GET_STATS and GET_ALL_TASKS answer in TaskGrid+ shapes, within 4096 bytes however many tasks', async () => {
    const g = await grid();
    const p = g.program('dashboard');
    const worker = g.program('legacy-1');
    const inbox = worker.listen();
    await worker.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    const first = idOf(
      (await p.must(g.dAddr, 'POST_TASK', { type: 'plus', payload: 'done one' })).data.message,
    );
    await inbox.nth(1);
    await worker.must(g.dAddr, 'RESULT_RETURN', { task_id: first, result: 'ok' });
    const specs = Array.from({ length: 60 }, (_, i) => ({
      type: 'echo',
      payload: `payload ${i} `.padEnd(200, '.'),
    }));
    await g.client.request(g.dAddr, 'submit', { tasks: specs });

    const stats = await p.must(g.dAddr, 'GET_STATS', {});
    assert.ok(stats.bytes <= 4096, `${stats.bytes} bytes`);
    const s = stats.data.stats as Record<string, unknown>;
    assert.equal(s.total_tasks, 61);
    assert.equal(s.completed_tasks, 1);
    assert.equal(s.open_tasks, 60);
    assert.equal(typeof s.avg_completion_time, 'number');
    assert.deepEqual(Object.keys(s.avg_completion_by_worker as object), ['plus']);
    const pending = stats.data.pending as { id: number; status: string; payload: string }[];
    assert.ok(pending.length > 0 && pending.length <= 10, `${pending.length} pending listed`);
    assert.ok(pending.every((t) => t.status === 'pending' && t.payload.startsWith('payload')));

    const all = await p.must(g.dAddr, 'GET_ALL_TASKS', {});
    assert.ok(all.bytes <= 4096, `${all.bytes} bytes`);
    assert.deepEqual(all.data.stats, {
      total: 61,
      done: 1,
      pending: 60,
      avg_completion_time: s.avg_completion_time,
    });
    const listed = all.data.tasks as { id: number }[];
    assert.ok(listed.length > 0 && listed.length < 61);
    const listedIds = listed.map((t) => t.id);
    assert.deepEqual(
      listedIds,
      [...listedIds].sort((a, b) => a - b),
      'oldest first, as TaskGrid+ listed them',
    );
    assert.equal(listedIds.at(-1), 61, 'the newest tasks are the ones listed');
  });
});
