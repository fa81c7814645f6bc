import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TaskFailedError, TaskGridClient, type ClientOptions } from '../../src/client/index.ts';
import { ErrorCode, TaskGridError } from '../../src/errors.ts';
import type { TaskSpec } from '../../src/protocol/messages.ts';
import { Endpoint, MemoryNetwork, type EndpointOptions, type Faults } from '../../src/transport/index.ts';
import { FakeDispatcher, FakeNameservice, instance, type FakeDispatcherOptions } from './fake-grid.ts';

interface GridOptions {
  faults?: Partial<Faults>;
  dispatcher?: FakeDispatcherOptions;
  client?: Partial<ClientOptions>;
  /** Find the dispatcher through the nameservice instead of being given its address. */
  viaNameservice?: boolean;
  endpoint?: EndpointOptions;
}

/** A fake dispatcher and nameservice and a client, on one in-memory network. */
async function grid(options: GridOptions = {}) {
  const net = new MemoryNetwork(options.faults ?? {});
  const ep = options.endpoint ?? {};
  const dEp = new Endpoint(net.link('dispatcher'), ep);
  const nsEp = new Endpoint(net.link('nameservice'), ep);
  const cEp = new Endpoint(net.link('client'), ep);
  const dispatcher = new FakeDispatcher(dEp, options.dispatcher);
  const nameservice = new FakeNameservice(nsEp, [instance('dispatcher-1', 'dispatcher', dEp.address)]);
  const client = await TaskGridClient.connect({
    transport: cEp,
    nameservers: [nsEp.address],
    ...(options.viaNameservice ? {} : { dispatcher: dEp.address }),
    reconcileIntervalMs: 100,
    ...options.client,
  });
  return {
    net,
    dispatcher,
    nameservice,
    client,
    async close() {
      await client.close();
      dispatcher.close();
      await cEp.close();
      await dEp.close();
      await nsEp.close();
    },
  };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<TaskGridError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TaskGridError, `expected a TaskGridError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

test('submitMany splits tasks into batches and reports one outcome per task in order', async (t) => {
  const g = await grid({ client: { batchSize: 100 } });
  t.after(() => g.close());
  const specs: TaskSpec[] = Array.from({ length: 350 }, (_, i) => ({
    type: i % 50 === 7 ? 'nosuchtype' : 'reverse',
    payload: `p${i}`,
  }));
  specs[20] = { type: '', payload: 'invalid type name' };
  const progress: number[] = [];
  const outcomes = await g.client.submitMany(specs, {
    onProgress: (p) => progress.push(p.acknowledged + p.rejected),
  });

  assert.equal(outcomes.length, 350);
  // The invalid spec never left the client: 349 tasks in 4 batches of at most 100.
  assert.deepEqual(
    g.dispatcher.submits.map((s) => s.size),
    [100, 100, 100, 49],
  );
  assert.equal(g.dispatcher.count('submit'), 4);
  const bad = outcomes[20]!;
  assert.ok(!bad.ok && bad.error.code === ErrorCode.BAD_REQUEST, JSON.stringify(bad));
  for (const [i, o] of outcomes.entries()) {
    if (i === 20) continue;
    if (i % 50 === 7) {
      assert.ok(!o.ok && o.error.code === ErrorCode.UNKNOWN_TYPE, `task ${i}: ${JSON.stringify(o)}`);
    } else {
      assert.ok(o.ok, `task ${i}: ${JSON.stringify(o)}`);
      // Ids are the dispatcher's, and each names the task submitted at that position.
      assert.equal(g.dispatcher.tasks.get(o.id)?.payload, `p${i}`);
    }
  }
  assert.equal(progress.at(-1), 350);
});

test('submitMany keeps several batches in flight and splits by encoded size', async (t) => {
  const g = await grid({ client: { batchSize: 1000, maxBatchBytes: 10 * 1024, batchesInFlight: 3 } });
  t.after(() => g.close());
  const payload = 'x'.repeat(1000);
  const outcomes = await g.client.submitMany(Array.from({ length: 60 }, () => ({ type: 'upper', payload })));
  assert.ok(outcomes.every((o) => o.ok));
  assert.ok(
    g.dispatcher.submits.every((s) => s.size <= 10),
    JSON.stringify(g.dispatcher.submits),
  );
  assert.ok(g.dispatcher.count('submit') >= 6);
  assert.ok(g.dispatcher.maxConcurrentSubmits > 1 && g.dispatcher.maxConcurrentSubmits <= 3);
});

test('a batch refused as BUSY is re-sent after the retry-after the dispatcher asked for', async (t) => {
  const g = await grid({ dispatcher: { busyReplies: 2, retryAfterMs: 150 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'reverse', payload: 'abc' });
  assert.equal(g.dispatcher.tasks.get(id)?.payload, 'abc');
  const s = g.dispatcher.submits;
  assert.deepEqual(
    s.map((x) => x.busy),
    [true, true, false],
  );
  assert.ok(s[1]!.at - s[0]!.at >= 140, `re-sent after ${s[1]!.at - s[0]!.at} ms`);
  assert.ok(s[2]!.at - s[1]!.at >= 140, `re-sent after ${s[2]!.at - s[1]!.at} ms`);
});

test('a queue that stays full is reported as TG_ERR_BUSY and no id is made up', async (t) => {
  const g = await grid({
    dispatcher: { busyReplies: 1_000, retryAfterMs: 50 },
    client: { busyGiveUpMs: 300 },
  });
  t.after(() => g.close());
  const outcomes = await g.client.submitMany([
    { type: 'reverse', payload: 'a' },
    { type: 'reverse', payload: 'b' },
  ]);
  assert.deepEqual(
    outcomes.map((o) => (o.ok ? 'ok' : o.error.code)),
    [ErrorCode.BUSY, ErrorCode.BUSY],
  );
  assert.equal(g.dispatcher.tasks.size, 0);
  await rejectsWith(g.client.submit({ type: 'reverse', payload: 'c' }), ErrorCode.BUSY);
});

test('submitting a type nobody serves fails with TG_ERR_UNKNOWN_TYPE', async (t) => {
  const g = await grid();
  t.after(() => g.close());
  await rejectsWith(g.client.submit({ type: 'nosuchtype', payload: 'x' }), ErrorCode.UNKNOWN_TYPE);
  await rejectsWith(g.client.run('nosuchtype', 'x'), ErrorCode.UNKNOWN_TYPE);
});

test('wait resolves from the dispatcher push, without polling', async (t) => {
  const g = await grid({ client: { reconcileIntervalMs: 60_000 } });
  t.after(() => g.close());
  const ids = await Promise.all(['a', 'b', 'c'].map((p) => g.client.submit({ type: 'upper', payload: p })));
  const order: number[] = [];
  const views = await g.client.wait(ids, { timeoutMs: 5_000, onTask: (v) => order.push(v.id) });
  assert.deepEqual(
    views.map((v) => v.result),
    ['A', 'B', 'C'],
  );
  assert.deepEqual([...order].sort(), [...ids].sort());
  assert.equal(g.dispatcher.count('watch'), 1, 'the wait watched once and never polled');
  // Waiting again for ended tasks needs nothing but the watch's immediate answer.
  const again = await g.client.wait(ids[0]!, { timeoutMs: 1_000 });
  assert.equal(again.status, 'succeeded');
});

test('a wait whose watch request is never answered still ends, from the polls', async (t) => {
  const g = await grid({
    // The tasks end after the unanswered watch has timed out.
    dispatcher: { ignoreWatches: 1, dropPushes: true, runDelayMs: 800 },
    client: { reconcileIntervalMs: 50, requestTimeoutMs: 200 },
  });
  t.after(() => g.close());
  const ids = await Promise.all(['a', 'b'].map((p) => g.client.submit({ type: 'upper', payload: p })));
  const views = await g.client.wait(ids, { timeoutMs: 5_000 });
  assert.deepEqual(
    views.map((v) => v.result),
    ['A', 'B'],
  );
  assert.ok(g.dispatcher.count('watch') >= 2, 'the watch went unanswered, and polls found the ends');
});

test('several waits for one task all end with its one push; one giving up leaves the others waiting', async (t) => {
  const g = await grid({ dispatcher: { runDelayMs: 300 }, client: { reconcileIntervalMs: 60_000 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'upper', payload: 'shared' });
  const impatient = g.client.wait(id, { timeoutMs: 50 });
  const first = g.client.wait(id, { timeoutMs: 5_000 });
  const second = g.client.wait([id, id], { timeoutMs: 5_000 });
  await rejectsWith(impatient, ErrorCode.TIMEOUT);
  const [one, [two, three]] = await Promise.all([first, second]);
  for (const v of [one, two, three]) assert.equal(v?.result, 'SHARED');
  assert.equal(g.dispatcher.count('watch'), 3, 'one watch a wait, no poll: the push was enough');
});

test('wait still ends when the push is lost, by polling', async (t) => {
  const g = await grid({
    dispatcher: { dropPushes: true, runDelayMs: 50 },
    client: { reconcileIntervalMs: 100 },
  });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'reverse', payload: 'Hello' });
  const started = Date.now();
  const view = await g.client.wait(id, { timeoutMs: 5_000 });
  assert.equal(view.result, 'olleH');
  assert.ok(Date.now() - started < 2_000);
  assert.ok(g.dispatcher.count('watch') >= 2, 'the wait watched, then a poll found the end');
  assert.equal(g.dispatcher.count('get-result'), 0, 'polls ask for ended tasks only');
  // run() relies on the notify push alone; polling covers its loss too.
  assert.equal(await g.client.run('upper', 'openai'), 'OPENAI');
});

test('polls find every lost push when each reply carries only some of the ended tasks', async (t) => {
  const g = await grid({
    dispatcher: { dropPushes: true, runDelayMs: 20, watchViews: 3 },
    client: { reconcileIntervalMs: 100 },
  });
  t.after(() => g.close());
  const payloads = Array.from({ length: 10 }, (_, i) => `task ${i}`);
  const outcomes = await g.client.submitMany(payloads.map((payload) => ({ type: 'reverse', payload })));
  const ids = outcomes.map((o) => (o.ok ? o.id : assert.fail(JSON.stringify(o))));
  const views = await g.client.wait(ids, { timeoutMs: 5_000 });
  assert.deepEqual(
    views.map((v) => v.result),
    payloads.map((p) => [...p].reverse().join('')),
  );
  // The others of each reply are pushed, and those pushes are lost too: ten tasks at three a reply.
  assert.ok(g.dispatcher.count('watch') >= 5, `${g.dispatcher.count('watch')} watches`);
});

test('polls leave alone tasks awaited for less than the poll interval; their pushes suffice', async (t) => {
  const g = await grid({ client: { reconcileIntervalMs: 300 } });
  t.after(() => g.close());
  // Short waits one after another for over a second: each is younger than 300 ms at every poll.
  const started = Date.now();
  let runs = 0;
  while (Date.now() - started < 1_200) {
    assert.equal(await g.client.run('upper', `r${runs}`), `R${runs}`);
    runs++;
  }
  const ids = await g.client.submitMany(
    Array.from({ length: 50 }, (_, i) => ({ type: 'upper', payload: `b${i}` })),
  );
  await g.client.wait(
    ids.flatMap((o) => (o.ok ? [o.id] : [])),
    { timeoutMs: 5_000 },
  );
  assert.ok(runs > 5, `${runs} runs`);
  assert.equal(
    g.dispatcher.count('watch'),
    1,
    'the bulk wait watched; no poll asked about a task its push was about to end',
  );
});

test('a lost push is still found by the first poll after the wait has lasted the poll interval', async (t) => {
  const g = await grid({
    dispatcher: { dropPushes: true, runDelayMs: 20 },
    client: { reconcileIntervalMs: 200 },
  });
  t.after(() => g.close());
  // An older wait keeps the poll timer going, so that the next poll comes before the new wait is due.
  const long = await g.client.submit({ type: 'wait', payload: '30' });
  const longWait = g.client.wait(long, { timeoutMs: 10_000 }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 150));
  const id = await g.client.submit({ type: 'reverse', payload: 'abc' });
  const started = Date.now();
  const view = await g.client.wait(id, { timeoutMs: 5_000 });
  const took = Date.now() - started;
  assert.equal(view.result, 'cba');
  assert.ok(took >= 190 && took < 1_000, `found after ${took} ms`);
  await g.client.cancel(long).catch(() => undefined);
  void longWait;
});

test('polling backs off while pushes arrive, so long waits cost few requests', async (t) => {
  const g = await grid({
    dispatcher: { waitScaleMs: 1000 },
    client: { reconcileIntervalMs: 50, maxReconcileIntervalMs: 400 },
  });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'wait', payload: '1' });
  const view = await g.client.wait(id, { timeoutMs: 5_000 });
  assert.equal(view.result, 'waited 1s');
  // Without backing off: about 20 polls in that second; with it: 50, 100, 200, 400, 400 ms apart.
  // Each poll is a watch, as is the wait's first request.
  assert.ok(g.dispatcher.count('watch') <= 8, `${g.dispatcher.count('watch') - 1} polls`);
});

test('wait gives up with TG_ERR_TIMEOUT naming the task, and TG_ERR_NOT_FOUND for an unknown id', async (t) => {
  const g = await grid({ dispatcher: { waitScaleMs: 1000 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'wait', payload: '30' });
  const started = Date.now();
  const err = await rejectsWith(g.client.wait(id, { timeoutMs: 200 }), ErrorCode.TIMEOUT);
  assert.ok(Date.now() - started < 1_000);
  assert.match(err.message, new RegExp(`task ${id} had not ended within 200 ms`));
  await rejectsWith(g.client.wait(9_999, { timeoutMs: 2_000 }), ErrorCode.NOT_FOUND);
  await rejectsWith(g.client.result(9_999), ErrorCode.NOT_FOUND);
});

test('run returns the result of a task that succeeds', async (t) => {
  const g = await grid();
  t.after(() => g.close());
  assert.equal(await g.client.run('reverse', 'Hello'), 'olleH');
  assert.equal(await g.client.run('sum', '1,2,3', { priority: 5, maxAttempts: 2, taskTimeoutMs: 1000 }), '6');
  const [task] = [...g.dispatcher.tasks.values()].filter((v) => v.type === 'sum');
  assert.equal(task?.priority, 5);
  assert.equal(task?.maxAttempts, 2);
  assert.equal(task?.timeoutMs, 1000);
});

test('run throws TG_ERR_TASK_FAILED with the task error when the task fails', async (t) => {
  const g = await grid();
  t.after(() => g.close());
  const err = await rejectsWith(g.client.run('fail', 'boom'), ErrorCode.TASK_FAILED);
  assert.ok(err instanceof TaskFailedError);
  assert.equal(err.taskError?.code, ErrorCode.HANDLER_FAILED);
  assert.match(err.message, /failed after 1 attempt: TG_ERR_HANDLER_FAILED: fail: boom/);
  assert.equal(err.task.status, 'failed');
});

test('run with a key that names an ended task returns that task without resubmitting it', async (t) => {
  const g = await grid({ client: { reconcileIntervalMs: 60_000 } });
  t.after(() => g.close());
  assert.equal(await g.client.run('reverse', 'abc', { key: 'k1' }), 'cba');
  assert.equal(await g.client.run('reverse', 'abc', { key: 'k1', timeoutMs: 2_000 }), 'cba');
  assert.equal(g.dispatcher.tasks.size, 1);
});

test('cancel ends a running task, and retry puts it back', async (t) => {
  const g = await grid({ dispatcher: { waitScaleMs: 1000 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'wait', payload: '0.3' });
  const waiting = g.client.wait(id, { timeoutMs: 5_000 });
  const cancelled = await g.client.cancel(id);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal((await waiting).status, 'cancelled');
  const retried = await g.client.retry(id);
  assert.equal(retried.status, 'queued');
  assert.equal((await g.client.wait(id, { timeoutMs: 5_000 })).result, 'waited 0.3s');
  await rejectsWith(g.client.cancel(12_345), ErrorCode.NOT_FOUND);
});

test('run of a task that gets cancelled throws TG_ERR_CANCELLED', async (t) => {
  const g = await grid({ dispatcher: { waitScaleMs: 1000 } });
  t.after(() => g.close());
  const running = g.client.run('wait', '10', { key: 'to-cancel' });
  // The key makes the task findable before run() hands back anything.
  while (![...g.dispatcher.tasks.values()].some((v) => v.key === 'to-cancel')) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const task = [...g.dispatcher.tasks.values()].find((v) => v.key === 'to-cancel')!;
  await g.client.cancel(task.id);
  const err = await rejectsWith(running, ErrorCode.CANCELLED);
  assert.ok(err instanceof TaskFailedError);
  assert.match(err.message, /was cancelled/);
});

test('the dispatcher is found through a nameservice lookup', async (t) => {
  const g = await grid({ viaNameservice: true });
  t.after(() => g.close());
  assert.equal(
    await g.client.run('hash', 'abc'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
  assert.equal(await g.client.run('reverse', 'x'), 'x');
  // One lookup, cached for later calls.
  assert.equal(g.nameservice.lookups, 1);
  assert.deepEqual(await g.client.dispatcher(), g.dispatcher.transport.address);
  const stats = await g.client.stats();
  assert.equal(stats.totals.succeeded, 2);
  const workers = await g.client.workers();
  assert.deepEqual(
    workers.map((w) => w.role),
    ['dispatcher'],
  );
});

test('a grid with no nameservice answering is TG_ERR_UNREACHABLE within the lookup timeout', async (t) => {
  const net = new MemoryNetwork();
  const cEp = new Endpoint(net.link('client'));
  t.after(() => cEp.close());
  const client = await TaskGridClient.connect({
    transport: cEp,
    nameservers: [{ host: 'nowhere', port: 5001 }],
    lookupTimeoutMs: 300,
  });
  t.after(() => client.close());
  const started = Date.now();
  const err = await rejectsWith(client.run('reverse', 'x'), ErrorCode.UNREACHABLE);
  // Below the 2 s default: the 300 ms given is what bounds it (slack for a loaded machine).
  assert.ok(Date.now() - started < 1_800, `took ${Date.now() - started} ms`);
  // "nowhere" is a peer of the in-memory network; as a host name it does not resolve, which the
  // message says when the machine's resolver answers in time.
  assert.match(
    err.message,
    /no nameservice answered a lookup within 300 ms \(nowhere:5001: (TG_ERR_TIMEOUT|the host name "nowhere" does not resolve)/,
  );
  await rejectsWith(client.workers(), ErrorCode.UNREACHABLE);
});

test('a nameservice that knows no dispatcher, and a dispatcher that does not answer, are TG_ERR_UNREACHABLE', async (t) => {
  const net = new MemoryNetwork();
  const nsEp = new Endpoint(net.link('nameservice'));
  const cEp = new Endpoint(net.link('client'));
  new FakeNameservice(nsEp, []);
  t.after(async () => {
    await cEp.close();
    await nsEp.close();
  });
  const viaNs = await TaskGridClient.connect({
    transport: cEp,
    nameservers: [nsEp.address],
    lookupTimeoutMs: 300,
  });
  const err = await rejectsWith(viaNs.submit({ type: 'reverse', payload: 'x' }), ErrorCode.UNREACHABLE);
  assert.match(err.message, /no dispatcher is registered/);
  await viaNs.close();

  const direct = await TaskGridClient.connect({
    transport: cEp,
    dispatcher: { host: 'gone', port: 4000 },
    requestTimeoutMs: 300,
    submitTimeoutMs: 300,
  });
  t.after(() => direct.close());
  const started = Date.now();
  const outcomes = await direct.submitMany([
    { type: 'reverse', payload: 'x' },
    { type: 'reverse', payload: 'y' },
  ]);
  assert.ok(Date.now() - started < 1_000);
  for (const o of outcomes) {
    assert.ok(!o.ok && o.error.code === ErrorCode.UNREACHABLE);
    assert.match(o.error.message, /may or may not have been accepted/);
  }
  await rejectsWith(direct.stats(), ErrorCode.UNREACHABLE);
  await rejectsWith(direct.ping({ host: 'gone', port: 1 }), ErrorCode.UNREACHABLE);
});

test('2000 tasks over a network that loses 20% of datagrams are all submitted once and all results arrive', async (t) => {
  const g = await grid({
    faults: { loss: 0.2, reorder: 0.1, duplicate: 0.05 },
    client: { batchSize: 250, reconcileIntervalMs: 300, requestTimeoutMs: 10_000, submitTimeoutMs: 15_000 },
    endpoint: { initialRtoMs: 50 },
  });
  t.after(() => g.close());
  const specs = Array.from({ length: 2000 }, (_, i) => ({ type: 'reverse', payload: `task-${i}` }));
  const outcomes = await g.client.submitMany(specs, { notify: true });
  const ids = outcomes.map((o, i) => {
    assert.ok(o.ok, `task ${i}: ${JSON.stringify(o)}`);
    return o.id;
  });
  assert.equal(new Set(ids).size, 2000);
  // The transport's dedup means each batch reached the handler exactly once.
  assert.equal(g.dispatcher.count('submit'), 8);
  assert.equal(g.dispatcher.tasks.size, 2000);
  const views = await g.client.wait(ids, { timeoutMs: 20_000 });
  views.forEach((v, i) => assert.equal(v.result, [...`task-${i}`].reverse().join('')));
  assert.ok(g.net.stats.dropped > 0);
});

test('close ends waits in progress with TG_ERR_CLOSED and refuses later calls', async (t) => {
  const g = await grid({ dispatcher: { waitScaleMs: 1000 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'wait', payload: '30' });
  const waiting = g.client.wait(id, { timeoutMs: 10_000 });
  await new Promise((r) => setTimeout(r, 20));
  await g.client.close();
  await rejectsWith(waiting, ErrorCode.CLOSED);
  await rejectsWith(g.client.submit({ type: 'reverse', payload: 'x' }), ErrorCode.CLOSED);
});

test('an AbortSignal ends a wait or a run early with its reason, leaving the client and the task alone', async (t) => {
  const g = await grid({ dispatcher: { waitScaleMs: 1000 } });
  t.after(() => g.close());
  const id = await g.client.submit({ type: 'wait', payload: '30' });
  const controller = new AbortController();
  const waiting = g.client.wait(id, { timeoutMs: 10_000, signal: controller.signal });
  const other = g.client.wait(id, { timeoutMs: 10_000 });
  await new Promise((r) => setTimeout(r, 20));
  const started = Date.now();
  controller.abort();
  await assert.rejects(waiting, (err: Error) => err.name === 'AbortError');
  assert.ok(Date.now() - started < 500);
  // The other wait goes on; the task is still running; the client still serves.
  assert.equal((await g.client.result(id)).status, 'running');
  assert.equal((await g.client.cancel(id)).status, 'cancelled');
  assert.equal((await other).status, 'cancelled');

  // Already aborted: refused before anything is sent, with the signal's own reason.
  const reason = new Error('the user went away');
  const submitted: number[] = [];
  await assert.rejects(
    g.client.run('reverse', 'x', {
      signal: AbortSignal.abort(reason),
      onSubmitted: (i) => submitted.push(i),
    }),
    (err) => err === reason,
  );
  assert.deepEqual(submitted, []);
  // A timeout signal ends a run as its TimeoutError.
  await assert.rejects(
    g.client.run('wait', '30', { signal: AbortSignal.timeout(50) }),
    (err: Error) => err.name === 'TimeoutError',
  );
  assert.equal(await g.client.run('reverse', 'abc'), 'cba');
});
