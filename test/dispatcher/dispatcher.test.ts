/**
 * The dispatcher as a component: a real nameservice, dispatcher (SQLite in memory), workers
 * (with their thread pools) and a client endpoint, all over the in-memory lossy network.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { after, describe, test } from 'node:test';
import { Dispatcher } from '../../src/dispatcher/dispatcher.ts';
import { SqliteTaskStore } from '../../src/dispatcher/store/sqlite.ts';
import { Directory } from '../../src/nameservice/directory.ts';
import { Nameservice } from '../../src/nameservice/nameservice.ts';
import { Registration } from '../../src/nameservice/registration.ts';
import type { TaskView } from '../../src/protocol/messages.ts';
import { Endpoint, MemoryNetwork, type Faults } from '../../src/transport/index.ts';
import { TaskWorker } from '../../src/worker/worker.ts';
import { ROOT } from '../support/process.ts';

const FIXTURES = join(ROOT, 'test/fixtures/handlers');
const QUICK = { initialRtoMs: 20, minRtoMs: 5, maxRtoMs: 200 };
/**
 * Workers' nameservice leases, against heartbeats every 100 ms. Every component runs in this one
 * process, so a stall of it (a loaded machine, a GC pause) delays the heartbeats and the lease
 * sweep alike: with a lease of 600 ms a stall of about a second let leases lapse, which requeued
 * running tasks (attempts 2 where tests expect 1). Only a test that needs a lease to lapse asks
 * for a short one.
 */
const LEASE_TTL_MS = 5_000;

interface GridOptions {
  maxQueuedPerType?: number;
  requestTimeoutMs?: number;
  /** Workers' nameservice lease; default {@link LEASE_TTL_MS}. */
  leaseTtlMs?: number;
  keepFinishedMax?: number;
  pruneEveryMs?: number;
  pruneBatch?: number;
  /** The dispatcher's SQLite file; default a store in memory. */
  storePath?: string;
  /** The dispatcher's logger; default silent. */
  logger?: Logger;
}

class MemGrid {
  readonly net: MemoryNetwork;
  readonly ns: Nameservice;
  readonly dispatcher: Dispatcher;
  readonly client: Endpoint;
  readonly #closers: (() => Promise<void> | void)[] = [];
  readonly #workers = new Map<TaskWorker, Endpoint>();
  readonly nsAddr = { host: 'ns', port: 5001 };
  readonly dAddr = { host: 'dispatcher', port: 4000 };
  #n = 0;

  constructor(
    faults: Partial<Faults>,
    { leaseTtlMs = LEASE_TTL_MS, storePath = ':memory:', logger, ...opts }: GridOptions = {},
  ) {
    this.net = new MemoryNetwork(faults);
    const nsT = new Endpoint(this.net.link('ns', 5001), QUICK);
    this.ns = new Nameservice({ transport: nsT, heartbeatMs: 100, leaseTtlMs, sweepMs: 50 });
    const dT = new Endpoint(this.net.link('dispatcher', 4000), QUICK);
    const store = new SqliteTaskStore({ path: storePath, retry: { baseMs: 20, maxMs: 100, jitter: 0 } });
    const directory = new Directory({
      transport: dT,
      nameservers: [this.nsAddr],
      self: this.dAddr,
      ttlMs: 2_000,
    });
    this.dispatcher = new Dispatcher({
      transport: dT,
      store,
      directory,
      types: new Map([
        ['echo', {}],
        ['slow', { timeoutMs: 5_000 }],
        ['throw', { maxAttempts: 3 }],
        ['permanent', {}],
      ]),
      leaseGraceMs: 300,
      ...(logger && { logger }),
      ...opts,
    });
    this.client = new Endpoint(this.net.link('client', 7000), QUICK);
    this.#closers.push(
      () => this.client.close(),
      () => this.dispatcher.close(),
      () => directory.close(),
      () => dT.close(),
      () => store.close(),
      () => this.ns.close(),
      () => nsT.close(),
    );
    this.ready = directory.start().then(() => this.dispatcher.start());
  }

  readonly ready: Promise<void>;

  async worker(types: string[], concurrency = 4): Promise<TaskWorker> {
    const t = new Endpoint(this.net.link(`worker-${++this.#n}`, 6000), QUICK);
    const w = new TaskWorker({
      transport: t,
      nameservers: [this.nsAddr],
      types,
      typesDir: FIXTURES,
      concurrency,
      advertise: t.address,
      heartbeatMs: 100,
      drainTimeoutMs: 2_000,
    });
    await w.start();
    this.#workers.set(w, t);
    return w;
  }

  /** A worker that registers and heartbeats but never acknowledges (nor runs) the tasks it is sent. */
  async mute(types: string[]): Promise<void> {
    const t = new Endpoint(this.net.link(`mute-${++this.#n}`, 6000), QUICK);
    t.handle('task', () => new Promise<never>(() => {}));
    const reg = new Registration({
      transport: t,
      nameservers: [this.nsAddr],
      instance: { role: 'worker', types, address: t.address, capacity: 4 },
      heartbeatMs: 100,
    });
    await reg.start();
    this.#closers.unshift(
      () => reg.stop(),
      () => t.close(),
    );
  }

  /** A worker that vanishes: its network link is cut and it never says goodbye. */
  async crash(w: TaskWorker): Promise<void> {
    const t = this.#workers.get(w)!;
    this.#workers.delete(w);
    await t.close();
    // Its threads are stopped when the grid closes; the test goes on without it.
    const stopped = w.stop().catch(() => {});
    this.#closers.push(() => stopped);
  }

  async submit(tasks: { type: string; payload: string; key?: string; priority?: number }[]) {
    return (await this.client.request(this.dAddr, 'submit', { tasks })).results;
  }

  async ids(tasks: { type: string; payload: string; priority?: number }[]): Promise<number[]> {
    return (await this.submit(tasks)).map((r) => {
      assert.ok('id' in r, JSON.stringify(r));
      return r.id;
    });
  }

  /** Every task's view by `get-result`, asking again for those a reply leaves out (`more`). */
  async views(ids: number[], waitMs?: number): Promise<TaskView[]> {
    const got = new Map<number, TaskView>();
    let ask = ids;
    while (ask.length > 0) {
      const reply = await this.client.request(
        this.dAddr,
        'get-result',
        waitMs === undefined ? { ids: ask } : { ids: ask, waitMs },
        { timeoutMs: 5_000 },
      );
      for (const v of reply.tasks) got.set(v.id, v);
      ask = reply.more ?? [];
    }
    return ids.flatMap((id) => got.get(id) ?? []);
  }

  async waitAll(ids: number[], waitMs = 20_000): Promise<TaskView[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const tasks = await this.views(ids, 2_000);
      if (tasks.every((v) => v.status !== 'queued' && v.status !== 'running') || Date.now() > deadline)
        return tasks;
    }
  }

  async close(): Promise<void> {
    for (const [w, t] of this.#workers) {
      await w.stop().catch(() => {});
      await t.close();
    }
    for (const c of this.#closers) await c();
  }
}

const grids: MemGrid[] = [];
async function grid(faults: Partial<Faults> = {}, opts: GridOptions = {}) {
  const g = new MemGrid(faults, opts);
  grids.push(g);
  await g.ready;
  return g;
}
after(async () => {
  for (const g of grids) await g.close();
});

describe('the dispatcher', () => {
  test('runs submitted tasks on a worker and records their results, under 20% loss', async () => {
    const g = await grid({ loss: 0.2, duplicate: 0.05, reorder: 0.1 });
    await g.worker(['echo']);
    const ids = await g.ids(Array.from({ length: 200 }, (_, i) => ({ type: 'echo', payload: `p${i}` })));
    const views = await g.waitAll(ids);
    views.forEach((v, i) => {
      assert.equal(v.status, 'succeeded');
      assert.equal(v.result, `p${i}`);
      assert.equal(v.attempts, 1);
    });
  });

  test('one prune round removes every task over the retention limits, in batches, not one batch per round', async () => {
    // A round every second used to remove at most one batch (10,000 tasks): a grid that ends
    // more tasks than that a minute could never get back under TASKGRID_KEEP_FINISHED_MAX.
    const g = await grid({}, { keepFinishedMax: 5, pruneEveryMs: 1_000, pruneBatch: 10 });
    await g.worker(['echo']);
    const ids = await g.ids(Array.from({ length: 45 }, (_, i) => ({ type: 'echo', payload: `p${i}` })));
    await g.waitAll(ids);
    const finished = async () => {
      const { types } = await g.client.request(g.dAddr, 'stats', {});
      return types.echo!.succeeded;
    };
    // Within one round (and a little) of the tasks' end, not four or more rounds later.
    const deadline = Date.now() + 1_300;
    while ((await finished()) > 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await finished(), 5);
    // stats says what was pruned, so that monitoring's finished counters miss none.
    const { types } = await g.client.request(g.dAddr, 'stats', {});
    assert.deepEqual(types.echo!.pruned, { succeeded: 40, failed: 0, cancelled: 0 });
  });

  test('answers get-result of long results in replies that stay small, naming the tasks left out', async () => {
    const g = await grid({});
    await g.worker(['echo']);
    const payloads = Array.from({ length: 30 }, (_, i) => `${i}:`.padEnd(20_000, 'r'));
    const ids = await g.ids(payloads.map((payload) => ({ type: 'echo', payload })));
    const views = await g.waitAll(ids);
    assert.deepEqual(
      views.map((v) => v.result),
      payloads,
      'every result, through as many replies as it takes',
    );
    const reply = await g.client.request(g.dAddr, 'get-result', { ids });
    assert.ok(
      reply.tasks.length >= 1 && reply.tasks.length < ids.length,
      `${reply.tasks.length} views in one reply`,
    );
    assert.deepEqual(
      [...reply.tasks.map((v) => v.id), ...(reply.more ?? [])].sort((a, b) => a - b),
      ids,
      'each id either answered or named in more',
    );
    assert.ok(JSON.stringify(reply).length < 64 * 1024, 'the reply fits the smallest maximum message size');
    assert.deepEqual(reply.missing, []);
  });

  test('tasks a worker never acknowledges go back to their queue at the request deadline, not the lease', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const g = await grid({}, { requestTimeoutMs: 300, logger });
    await g.mute(['echo']);
    const [id] = await g.ids([{ type: 'echo', payload: 'x' }]);
    const started = Date.now();
    // echo's lease is its 30 s timeout and more; each of its 3 attempts ends after 300 ms instead.
    const [view] = await g.waitAll([id!], 15_000);
    assert.equal(view!.status, 'failed');
    assert.equal(view!.attempts, 3);
    assert.equal(view!.error?.code, 'TG_ERR_WORKER_LOST');
    assert.match(view!.error?.message ?? '', /did not acknowledge the task within 300 ms/);
    assert.ok(Date.now() - started < 15_000);
    // Three batches timed out at the same worker: one warning (a minute), with the code, no stack.
    const warned = lines.filter((l) => l.msg === 'a worker did not take tasks; they go back to their queues');
    assert.equal(warned.length, 1, JSON.stringify(warned));
    assert.equal(warned[0]!.code, 'TG_ERR_TIMEOUT');
    assert.equal(warned[0]!.err, undefined);
  });

  test('shows a running task’s progress, its fraction and its message, in the task’s view', async () => {
    const g = await grid({});
    await g.mute(['echo']);
    const [id] = await g.ids([{ type: 'echo', payload: 'x' }]);
    for (let i = 0; i < 100 && (await g.views([id!]))[0]!.status !== 'running'; i++)
      await new Promise((r) => setTimeout(r, 20));
    g.client.notify(g.dAddr, 'progress', { id: id!, attempt: 1, progress: 0.5, message: 'halfway' });
    await new Promise((r) => setTimeout(r, 100));
    let [view] = await g.views([id!]);
    assert.equal(view!.progress, 0.5);
    assert.equal(view!.progressMessage, 'halfway');
    // A message alone keeps the fraction; a fraction alone keeps the message.
    g.client.notify(g.dAddr, 'progress', { id: id!, attempt: 1, message: 'uploading' });
    g.client.notify(g.dAddr, 'progress', { id: id!, attempt: 1, progress: 0.75 });
    await new Promise((r) => setTimeout(r, 100));
    [view] = await g.views([id!]);
    assert.equal(view!.progress, 0.75);
    assert.equal(view!.progressMessage, 'uploading');
  });

  test('refuses a type nobody serves with TG_ERR_UNKNOWN_TYPE, per task', async () => {
    const g = await grid();
    const [good, bad] = await g.submit([
      { type: 'echo', payload: 'x' },
      { type: 'nosuch', payload: 'x' },
    ]);
    assert.ok(good && 'id' in good);
    assert.ok(bad && 'error' in bad);
    assert.equal(bad.error.code, 'TG_ERR_UNKNOWN_TYPE');
    assert.match(bad.error.message, /nosuch/);
  });

  test('refuses a type only its store still holds (removed from workers.json, no worker), keeping its queued tasks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskgrid-removed-type-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'tasks.db');
    // The store of a grid whose workers.json listed `default-export`: two of its tasks still queued.
    const before = new SqliteTaskStore({ path });
    const ids = (
      await before.submit(
        [
          { type: 'default-export', payload: 'a' },
          { type: 'default-export', payload: 'b' },
        ],
        Date.now(),
        { timeoutMs: 5_000, maxAttempts: 1 },
      )
    ).map((r) => {
      assert.ok('id' in r, JSON.stringify(r));
      return r.id;
    });
    await before.close();

    const g = await grid({}, { storePath: path });
    const [refused] = await g.submit([{ type: 'default-export', payload: 'c' }]);
    assert.ok(refused && 'error' in refused, JSON.stringify(refused));
    assert.equal(refused.error.code, 'TG_ERR_UNKNOWN_TYPE');
    const stats = await g.client.request(g.dAddr, 'stats', {});
    assert.equal(stats.types['default-export']?.queued, 2, 'its queued tasks are kept, and shown');
    // A worker that serves it again: its tasks run, and new ones are accepted.
    await g.worker(['default-export']);
    const [accepted] = await g.ids([{ type: 'default-export', payload: 'd' }]);
    const views = await g.waitAll([...ids, accepted!]);
    assert.deepEqual(
      views.map((v) => [v.status, v.result]),
      [
        ['succeeded', 'default:a'],
        ['succeeded', 'default:b'],
        ['succeeded', 'default:d'],
      ],
    );
  });

  test('makes a resubmitted task with the same idempotency key the same task', async () => {
    const g = await grid();
    const [a] = await g.submit([{ type: 'echo', payload: 'x', key: 'order-17' }]);
    const [b] = await g.submit([{ type: 'echo', payload: 'x', key: 'order-17' }]);
    assert.ok(a && 'id' in a && b && 'id' in b);
    assert.equal(b.id, a.id);
    assert.equal(b.duplicate, true);
  });

  test('runs higher priority first, then older first', async () => {
    const g = await grid();
    const ids = await g.ids([
      { type: 'slow', payload: '20', priority: 0 },
      { type: 'slow', payload: '20', priority: 5 },
      { type: 'slow', payload: '20', priority: 0 },
      { type: 'slow', payload: '20', priority: 9 },
    ]);
    await g.worker(['slow'], 1);
    const views = await g.waitAll(ids);
    const order = [...views].sort((x, y) => x.startedAt! - y.startedAt!).map((v) => ids.indexOf(v.id));
    assert.deepEqual(order, [3, 1, 0, 2]);
  });

  test('puts the tasks of a worker that vanishes back in the queue, and another worker completes them', async () => {
    // The vanished worker's lease must lapse for its tasks to go back: a short one.
    const g = await grid({}, { leaseTtlMs: 600 });
    const a = await g.worker(['slow'], 10);
    const ids = await g.ids(Array.from({ length: 10 }, () => ({ type: 'slow', payload: '300' })));
    await new Promise((r) => setTimeout(r, 100));
    await g.crash(a);
    await g.worker(['slow'], 10);
    const views = await g.waitAll(ids);
    assert.ok(
      views.every((v) => v.status === 'succeeded'),
      JSON.stringify(views.map((v) => v.status)),
    );
    assert.ok(
      views.some((v) => v.attempts === 2),
      'the lost attempts ran again',
    );
  });

  test('retries a throwing handler up to its attempts, then fails it; a permanent failure is not retried', async () => {
    const g = await grid();
    await g.worker(['throw', 'permanent']);
    const [thrown, permanent] = await g.ids([
      { type: 'throw', payload: 'boom' },
      { type: 'permanent', payload: 'bad' },
    ]);
    const [t, p] = await g.waitAll([thrown!, permanent!]);
    assert.equal(t!.status, 'failed');
    assert.equal(t!.attempts, 3);
    assert.equal(t!.error?.code, 'TG_ERR_HANDLER_FAILED');
    assert.equal(p!.status, 'failed');
    assert.equal(p!.attempts, 1);
  });

  test('cancels a queued task, and a running one through its handler’s signal', async () => {
    const g = await grid();
    const [queued] = await g.ids([{ type: 'echo', payload: 'never runs' }]);
    const c1 = await g.client.request(g.dAddr, 'cancel', { id: queued! });
    assert.equal(c1.task.status, 'cancelled');
    assert.equal(c1.changed, true);
    // Cancelled already: the same answer, and it says this request changed nothing.
    const again = await g.client.request(g.dAddr, 'cancel', { id: queued! });
    assert.deepEqual([again.task.status, again.changed], ['cancelled', false]);
    // A queued task cannot be retried: nothing changes, and the reply says so.
    const [waiting] = await g.ids([{ type: 'echo', payload: 'queued' }]);
    const r = await g.client.request(g.dAddr, 'retry', { id: waiting! });
    assert.deepEqual([r.task.status, r.changed], ['queued', false]);
    const back = await g.client.request(g.dAddr, 'retry', { id: queued! });
    assert.deepEqual([back.task.status, back.changed], ['queued', true]);
    await g.client.request(g.dAddr, 'cancel', { id: queued! });
    await g.client.request(g.dAddr, 'cancel', { id: waiting! });
    await g.worker(['slow'], 2);
    const [running] = await g.ids([{ type: 'slow', payload: '60000' }]);
    for (let i = 0; i < 100; i++) {
      const { tasks } = await g.client.request(g.dAddr, 'get-result', { ids: [running!] });
      if (tasks[0]?.status === 'running') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const c2 = await g.client.request(g.dAddr, 'cancel', { id: running! });
    assert.equal(c2.task.status, 'cancelled');
    await assert.rejects(g.client.request(g.dAddr, 'cancel', { id: 999_999 }), { code: 'TG_ERR_NOT_FOUND' });
    // The worker is free again: a new task runs at once.
    const [next] = await g.ids([{ type: 'slow', payload: '1' }]);
    const [v] = await g.waitAll([next!]);
    assert.equal(v!.status, 'succeeded');
  });

  test("a worker's heartbeats tell the nameservice how many tasks it is running", async () => {
    const g = await grid();
    const w = await g.worker(['slow'], 4);
    const listed = async () =>
      (await g.client.request(g.nsAddr, 'list', {})).instances.find((i) => i.id === w.id)?.inFlight;
    const until = async (want: number) => {
      const deadline = Date.now() + 5_000;
      let got = await listed();
      while (got !== want && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        got = await listed();
      }
      return got;
    };
    const ids = await g.ids([
      { type: 'slow', payload: '60000' },
      { type: 'slow', payload: '60000' },
    ]);
    assert.equal(await until(2), 2, 'two running tasks listed');
    for (const id of ids) await g.client.request(g.dAddr, 'cancel', { id });
    assert.equal(await until(0), 0, 'none once they are cancelled');
  });

  test('answers BUSY with a retry-after when a queue is full', async () => {
    const g = await grid({}, { maxQueuedPerType: 5 });
    await g.ids(Array.from({ length: 5 }, () => ({ type: 'echo', payload: 'x' })));
    const err = await g.submit([{ type: 'echo', payload: 'one too many' }]).catch((e: unknown) => e);
    assert.equal((err as { code: string }).code, 'TG_ERR_BUSY');
    assert.ok((err as { retryAfterMs: number }).retryAfterMs > 0);
  });

  test('tells a client that asked to be notified when its tasks end', async () => {
    const g = await grid({ loss: 0.2 });
    const done: TaskView[] = [];
    g.client.handle('done', ({ tasks }) => {
      done.push(...tasks);
      return {};
    });
    await g.worker(['echo']);
    const reply = await g.client.request(g.dAddr, 'submit', {
      tasks: Array.from({ length: 50 }, (_, i) => ({ type: 'echo', payload: `n${i}` })),
      notify: true,
    });
    for (let i = 0; i < 200 && done.length < 50; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(done.length, 50);
    assert.deepEqual(
      new Set(done.map((v) => v.id)),
      new Set(reply.results.map((r) => ('id' in r ? r.id : 0))),
    );
  });

  test('a watch of ended tasks with long results answers what fits one message and pushes the rest', async () => {
    const g = await grid();
    await g.worker(['echo'], 64);
    // 600 results of 2,000 characters: 1.2 MB of views, more than one message may carry.
    const ids: number[] = [];
    for (let b = 0; b < 4; b++) {
      ids.push(
        ...(await g.ids(
          Array.from({ length: 150 }, (_, i) => ({ type: 'echo', payload: `${b}-${i}-`.padEnd(2_000, 'x') })),
        )),
      );
    }
    for (let i = 0; i < ids.length; i += 100) {
      const views = await g.waitAll(ids.slice(i, i + 100));
      assert.ok(views.every((v) => v.status === 'succeeded'));
    }
    const watcher = new Endpoint(g.net.link('watcher', 7001), QUICK);
    const pushed: TaskView[] = [];
    watcher.handle('done', ({ tasks }) => {
      pushed.push(...tasks);
      return {};
    });
    try {
      const reply = await watcher.request(g.dAddr, 'watch', { ids }, { timeoutMs: 10_000 });
      assert.deepEqual(reply.missing, []);
      assert.ok(
        reply.finished.length > 0 && reply.finished.length < ids.length,
        `${reply.finished.length} in the reply`,
      );
      for (let i = 0; i < 400 && reply.finished.length + pushed.length < ids.length; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      const all = [...reply.finished, ...pushed];
      assert.equal(all.length, ids.length, 'every watched task exactly once');
      assert.deepEqual(new Set(all.map((v) => v.id)), new Set(ids));
      for (const v of all) assert.equal(v.result?.length, 2_000);
    } finally {
      await watcher.close();
    }
  });

  test('reports per-type counts, timings and per-worker figures in stats', async () => {
    const g = await grid();
    await g.worker(['echo']);
    await g.waitAll(await g.ids(Array.from({ length: 20 }, () => ({ type: 'echo', payload: 'x' }))));
    const stats = await g.client.request(g.dAddr, 'stats', {});
    assert.equal(stats.types.echo?.succeeded, 20);
    assert.ok(stats.types.echo.throughput > 0);
    assert.equal(stats.workers.length, 1);
    assert.equal(stats.workers[0]!.completed, 20);
    assert.equal(stats.totals.succeeded, 20);
  });
});
