/**
 * The TaskStore conformance suite: the contract of `src/dispatcher/store/store.ts`, run over
 * every implementation (see store-sqlite.test.ts). Time is a number passed in; nothing sleeps.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, TaskGridError } from '../../src/errors.ts';
import { TaskAssignment, TaskView } from '../../src/protocol/messages.ts';
import type { TaskOutcome, TaskSpec } from '../../src/protocol/messages.ts';
import type { RetryPolicy, StatusCounts, SubmitResult, TaskStore } from '../../src/dispatcher/store/store.ts';

/** What every implementation under test must accept: a deterministic backoff. */
export interface StoreTestOptions {
  readonly retry: RetryPolicy;
  readonly random: () => number;
}

export type StoreFactory = (options: StoreTestOptions) => TaskStore | Promise<TaskStore>;

const T0 = 1_700_000_000_000;
const DEFAULTS = { timeoutMs: 1_000, maxAttempts: 3 } as const;
/** Backoffs of 100, 200, 400, then 500 ms, less 5% of jitter (random() is 0.5). */
const RETRY: RetryPolicy = { baseMs: 100, factor: 2, maxMs: 500, jitter: 0.1 };
const after = (backoff: number): number => Math.round(backoff * 0.95);

const ok = (id: number, attempt: number, result = `r${id}`): TaskOutcome => ({
  id,
  attempt,
  ok: true,
  result,
  runMs: 1,
});
const fail = (id: number, attempt: number, permanent = false): TaskOutcome => ({
  id,
  attempt,
  ok: false,
  error: { code: ErrorCode.HANDLER_FAILED, message: `attempt ${attempt} failed` },
  permanent,
  runMs: 1,
});

function idOf(result: SubmitResult | undefined): number {
  assert.ok(result !== undefined && 'id' in result, `expected an id, got ${JSON.stringify(result)}`);
  return result.id;
}

async function submitIds(store: TaskStore, specs: TaskSpec[], now = T0): Promise<number[]> {
  return (await store.submit(specs, now, DEFAULTS)).map(idOf);
}

const tasksOf = (type: string, n: number, extra: Partial<TaskSpec> = {}): TaskSpec[] =>
  Array.from({ length: n }, (_, i) => ({ type, payload: `${type}-${i}`, ...extra }));

async function view(store: TaskStore, id: number): Promise<TaskView> {
  const { tasks } = await store.get([id]);
  const task = tasks[0];
  assert.ok(task !== undefined, `task ${id} not found`);
  return task;
}

/** Every task, by following list cursors with small pages. */
async function everything(store: TaskStore, query: { status?: TaskView['status']; type?: string } = {}) {
  const out: TaskView[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...query, limit: 7, ...(cursor === undefined ? {} : { cursor }) });
    // Views go on the wire as they are: they must pass the protocol's own schema.
    for (const t of page.tasks) TaskView.parse(t);
    out.push(...page.tasks);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return out;
}

const zero = (): StatusCounts => ({ queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });

/** The counters agree with the tasks themselves. */
async function assertCountsTrue(store: TaskStore): Promise<void> {
  const expected = new Map<string, StatusCounts>();
  for (const t of await everything(store)) {
    const c = expected.get(t.type) ?? zero();
    c[t.status]++;
    expected.set(t.type, c);
  }
  const actual = await store.counts();
  for (const [type, c] of actual) {
    assert.deepEqual(c, expected.get(type) ?? zero(), `counts of type ${type}`);
    assert.equal(await store.queueDepth(type), c.queued, `queue depth of ${type}`);
  }
  for (const type of expected.keys()) assert.ok(actual.has(type), `counts miss type ${type}`);
}

/** Views a call returned are the views the store now holds. */
async function assertCurrent(store: TaskStore, views: readonly TaskView[]): Promise<void> {
  const { tasks } = await store.get(views.map((v) => v.id));
  assert.deepEqual(views, tasks);
  for (const v of views) TaskView.parse(v);
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof TaskGridError, `expected a TaskGridError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** Runs the TaskStore contract over one implementation, each test on a fresh, empty store. */
export function storeConformance(name: string, factory: StoreFactory): void {
  const fresh = (): TaskStore | Promise<TaskStore> => factory({ retry: RETRY, random: () => 0.5 });
  const withStore = (fn: (store: TaskStore) => Promise<void>) => async () => {
    const store = await fresh();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };

  describe(`TaskStore contract: ${name}`, () => {
    test(
      'submit stores tasks as queued and get returns them as submitted',
      withStore(async (store) => {
        const [a, b] = await submitIds(store, [
          { type: 'echo', payload: 'hello' },
          { type: 'echo', payload: 'world', key: 'k1', priority: 7, timeoutMs: 5_000, maxAttempts: 5 },
        ]);
        assert.ok(a !== undefined && b !== undefined && Number.isSafeInteger(a) && a > 0 && b > a);
        const { tasks, missing } = await store.get([b, a]);
        assert.deepEqual(missing, []);
        assert.deepEqual(tasks, [
          {
            id: b,
            type: 'echo',
            status: 'queued',
            key: 'k1',
            priority: 7,
            attempts: 0,
            maxAttempts: 5,
            timeoutMs: 5_000,
            createdAt: T0,
          },
          {
            id: a,
            type: 'echo',
            status: 'queued',
            priority: 0,
            attempts: 0,
            maxAttempts: DEFAULTS.maxAttempts,
            timeoutMs: DEFAULTS.timeoutMs,
            createdAt: T0,
          },
        ]);
        const withPayload = await store.get([a], { payload: true });
        assert.equal(withPayload.tasks[0]?.payload, 'hello');
        assert.deepEqual(await store.submit([], T0, DEFAULTS), []);
        await assertCountsTrue(store);
      }),
    );

    test(
      'get reports unknown and invalid ids as missing, each id once',
      withStore(async (store) => {
        const [a] = await submitIds(store, tasksOf('echo', 1));
        assert.ok(a !== undefined);
        const { tasks, missing } = await store.get([a, 0, -1, 1.5, Number.NaN, a + 1000, a, 2 ** 60]);
        assert.deepEqual(
          tasks.map((t) => t.id),
          [a],
        );
        assert.deepEqual(missing, [0, -1, 1.5, Number.NaN, a + 1000, 2 ** 60]);
        assert.equal(await store.cancel(0, T0), undefined);
        assert.equal(await store.cancel(a + 1000, T0), undefined);
        assert.equal(await store.retry(-3, T0), undefined);
        assert.equal(await store.retry(a + 1000, T0), undefined);
      }),
    );

    test(
      'ended gives the views of ended tasks as get does, leaves out open ones and reports missing ids',
      withStore(async (store) => {
        // queued, running, succeeded, failed, cancelled, backing off
        const ids = await submitIds(store, tasksOf('echo', 6));
        const [queued, running, succeeded, failed, cancelled, backingOff] = ids as [
          number,
          number,
          number,
          number,
          number,
          number,
        ];
        await store.claim({ type: 'echo', limit: 6, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete(
          [ok(succeeded, 1), fail(failed, 1, true), fail(backingOff, 1), fail(queued, 1)],
          T0 + 1,
        );
        await store.cancel(cancelled, T0 + 2);
        await store.retry(queued, T0 + 3); // failed, then queued again with a fresh budget
        const asked = [
          running,
          succeeded,
          0,
          queued,
          failed,
          cancelled,
          backingOff,
          succeeded,
          queued + 1000,
        ];
        const ended = await store.ended(asked);
        const expected = await store.get([succeeded, failed, cancelled]);
        assert.deepEqual(ended.tasks, expected.tasks);
        assert.deepEqual(
          ended.tasks.map((t) => t.status),
          ['succeeded', 'failed', 'cancelled'],
        );
        assert.deepEqual(ended.missing, [0, queued + 1000]);
        assert.equal((await view(store, running)).status, 'running');
        assert.equal((await view(store, backingOff)).status, 'queued');
      }),
    );

    test(
      'an idempotency key makes a resubmitted task the same task, across batches and within one',
      withStore(async (store) => {
        const first = await store.submit(
          [
            { type: 'echo', payload: 'a', key: 'same' },
            { type: 'echo', payload: 'b', key: 'same' },
            { type: 'echo', payload: 'c' },
          ],
          T0,
          DEFAULTS,
        );
        const id = idOf(first[0]);
        assert.deepEqual(first[0], { id, duplicate: false });
        assert.deepEqual(first[1], { id, duplicate: true });
        assert.deepEqual(first[2], { id: idOf(first[2]), duplicate: false });
        const again = await store.submit([{ type: 'echo', payload: 'other', key: 'same' }], T0 + 5, DEFAULTS);
        assert.deepEqual(again, [{ id, duplicate: true }]);
        assert.equal((await store.get([id], { payload: true })).tasks[0]?.payload, 'a');
        assert.equal(await store.queueDepth('echo'), 2);
        await assertCountsTrue(store);
      }),
    );

    test(
      'oldestQueued gives per type the submission time of its oldest queued task, backing off included',
      withStore(async (store) => {
        assert.deepEqual(await store.oldestQueued(), new Map());
        const [a] = await submitIds(store, tasksOf('a', 1), T0);
        await submitIds(store, tasksOf('a', 2), T0 + 10);
        await submitIds(store, tasksOf('b', 1), T0 + 20);
        assert.deepEqual(
          await store.oldestQueued(),
          new Map([
            ['a', T0],
            ['b', T0 + 20],
          ]),
        );
        // The oldest 'a' runs: the next queued one is the oldest; b runs and ends: b has none.
        await store.claim({ type: 'a', limit: 1, worker: 'w', leaseMs: 1_000 }, T0 + 30);
        const [b] = await store.claim({ type: 'b', limit: 1, worker: 'w', leaseMs: 1_000 }, T0 + 30);
        await store.complete([ok(b!.id, b!.attempt)], T0 + 40);
        assert.deepEqual(await store.oldestQueued(), new Map([['a', T0 + 10]]));
        // The first 'a' fails and backs off: queued again, it is the oldest once more.
        await store.complete([fail(a!, 1)], T0 + 50);
        assert.deepEqual(await store.oldestQueued(), new Map([['a', T0]]));
      }),
    );

    test(
      'a spec with invalid values gets its own error and the rest of the batch is stored',
      withStore(async (store) => {
        const results = await store.submit(
          [
            { type: 'echo', payload: 'fine' },
            { type: 'echo', payload: 'bad', priority: 5_000 },
            { type: 'echo', payload: 'bad', maxAttempts: 0 },
            { type: '', payload: 'bad' },
            { type: 'echo', payload: 'fine too' },
          ],
          T0,
          DEFAULTS,
        );
        assert.ok('id' in results[0]! && 'id' in results[4]!);
        for (const r of results.slice(1, 4)) {
          assert.ok(r !== undefined && 'error' in r);
          assert.equal(r.error.code, ErrorCode.BAD_REQUEST);
        }
        assert.equal(await store.queueDepth('echo'), 2);
        await assertCountsTrue(store);
      }),
    );

    test(
      'a type over maxQueued refuses new tasks with TG_ERR_BUSY but still answers duplicates',
      withStore(async (store) => {
        const opts = { ...DEFAULTS, maxQueued: 3 };
        const first = await store.submit(
          [...tasksOf('a', 2), { type: 'a', payload: 'k', key: 'k' }, ...tasksOf('a', 1), ...tasksOf('b', 1)],
          T0,
          opts,
        );
        const keyed = idOf(first[2]);
        assert.ok('error' in first[3]!);
        assert.equal(first[3].error.code, ErrorCode.BUSY);
        idOf(first[4]);
        const again = await store.submit(
          [{ type: 'a', payload: 'k', key: 'k' }, ...tasksOf('a', 1)],
          T0,
          opts,
        );
        assert.deepEqual(again[0], { id: keyed, duplicate: true });
        assert.ok('error' in again[1]! && again[1].error.code === ErrorCode.BUSY);
        // Claiming makes room: the bound is on queued tasks, not on all tasks.
        await store.claim({ type: 'a', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
        idOf((await store.submit(tasksOf('a', 1), T0, opts))[0]);
        assert.equal(await store.queueDepth('a'), 3);
        await assertCountsTrue(store);
      }),
    );

    test(
      'claim hands out the highest priority first, then the oldest',
      withStore(async (store) => {
        const ids = await submitIds(store, [
          { type: 'job', payload: '0', priority: 0 },
          { type: 'job', payload: '1', priority: 5 },
          { type: 'job', payload: '2', priority: 0 },
          { type: 'job', payload: '3', priority: 5 },
          { type: 'job', payload: '4', priority: -1 },
          { type: 'job', payload: '5', priority: 1000 },
        ]);
        const order = [5, 1, 3, 0, 2, 4].map((i) => ids[i]);
        const got: number[] = [];
        for (let i = 0; i < 3; i++) {
          const claimed = await store.claim({ type: 'job', limit: 2, worker: 'w', leaseMs: 1_000 }, T0 + i);
          assert.equal(claimed.length, 2);
          got.push(...claimed.map((t) => t.id));
        }
        assert.deepEqual(got, order);
        assert.deepEqual(await store.claim({ type: 'job', limit: 2, worker: 'w', leaseMs: 1_000 }, T0), []);
      }),
    );

    test(
      'claim marks tasks running with the next attempt, the worker, startedAt and a lease',
      withStore(async (store) => {
        const ids = await submitIds(store, [
          { type: 'echo', payload: 'p0', timeoutMs: 2_000 },
          { type: 'echo', payload: 'p1' },
          { type: 'other', payload: 'x' },
        ]);
        const seen: number[] = [];
        const claimed = await store.claim(
          {
            type: 'echo',
            limit: 10,
            worker: 'w1',
            leaseMs: (timeoutMs) => {
              seen.push(timeoutMs);
              return timeoutMs + 500;
            },
          },
          T0 + 10,
        );
        assert.deepEqual(seen, [2_000, DEFAULTS.timeoutMs]);
        for (const a of claimed) TaskAssignment.parse(a);
        assert.deepEqual(claimed, [
          { id: ids[0], type: 'echo', payload: 'p0', attempt: 1, timeoutMs: 2_000 },
          { id: ids[1], type: 'echo', payload: 'p1', attempt: 1, timeoutMs: DEFAULTS.timeoutMs },
        ]);
        const v = await view(store, ids[0]!);
        assert.equal(v.status, 'running');
        assert.equal(v.attempts, 1);
        assert.equal(v.worker, 'w1');
        assert.equal(v.startedAt, T0 + 10);
        assert.deepEqual(await store.listRunning(), [
          { id: ids[1], type: 'echo', worker: 'w1', attempt: 1, leaseUntil: T0 + 10 + 1_500 },
          { id: ids[0], type: 'echo', worker: 'w1', attempt: 1, leaseUntil: T0 + 10 + 2_500 },
        ]);
        assert.deepEqual(await store.listRunning('nobody'), []);
        assert.equal(await store.nextLeaseExpiry(), T0 + 10 + 1_500);
        assert.deepEqual(await store.claim({ type: 'unknown', limit: 5, worker: 'w1', leaseMs: 1 }, T0), []);
        assert.deepEqual(await store.claim({ type: 'other', limit: 0, worker: 'w1', leaseMs: 1 }, T0), []);
        assert.equal(await store.queueDepth('other'), 1);
        assert.equal(await store.queueDepth('unknown'), 0);
        await assertCountsTrue(store);
      }),
    );

    test(
      'a result is recorded exactly once; duplicates and results for another attempt are ignored',
      withStore(async (store) => {
        const [a, b] = await submitIds(store, tasksOf('echo', 2));
        await store.claim({ type: 'echo', limit: 2, worker: 'w', leaseMs: 1_000 }, T0);
        const first = await store.complete([ok(a!, 1, 'first'), ok(a!, 1, 'again'), ok(b!, 2)], T0 + 5);
        assert.equal(first.recorded, 1);
        assert.deepEqual(first.requeued, []);
        assert.equal(first.finished.length, 1);
        assert.equal(first.finished[0]?.id, a);
        assert.equal(first.finished[0]?.status, 'succeeded');
        assert.equal(first.finished[0]?.result, 'first');
        await assertCurrent(store, first.finished);
        const again = await store.complete([ok(a!, 1, 'late'), fail(a!, 1, true)], T0 + 6);
        assert.equal(again.recorded, 0);
        const v = await view(store, a!);
        assert.equal(v.status, 'succeeded');
        assert.equal(v.result, 'first');
        assert.equal(v.finishedAt, T0 + 5);
        assert.equal(v.error, undefined);
        assert.equal((await view(store, b!)).status, 'running');
        assert.deepEqual(await store.complete([ok(9_999_999, 1)], T0), {
          recorded: 0,
          finished: [],
          requeued: [],
        });
        await assertCountsTrue(store);
      }),
    );

    test(
      'a failed attempt is retried after exponential backoff, then the task fails after maxAttempts',
      withStore(async (store) => {
        const [id] = await submitIds(store, [{ type: 'flaky', payload: 'x', maxAttempts: 3 }]);
        const claim = (now: number) =>
          store.claim({ type: 'flaky', limit: 1, worker: 'w', leaseMs: 10_000 }, now);
        let now = T0;
        for (const [attempt, backoff] of [
          [1, 100],
          [2, 200],
        ] as const) {
          const [task] = await claim(now);
          assert.equal(task?.attempt, attempt);
          const res = await store.complete([fail(id!, attempt)], now);
          assert.equal(res.recorded, 1);
          assert.deepEqual(res.finished, []);
          const due = now + after(backoff);
          assert.deepEqual(res.requeued, [{ id, type: 'flaky', worker: 'w', attempt, availableAt: due }]);
          const v = await view(store, id!);
          assert.equal(v.status, 'queued');
          assert.equal(v.attempts, attempt);
          assert.equal(v.error?.message, `attempt ${attempt} failed`);
          assert.equal(await store.nextAvailableAt('flaky'), due);
          assert.equal(await store.nextAvailableAt(), due);
          assert.equal(await store.nextAvailableAt('other'), undefined);
          assert.deepEqual(await claim(due - 1), [], 'not claimable during its backoff');
          now = due;
        }
        const [third] = await claim(now);
        assert.equal(third?.attempt, 3);
        assert.equal(await store.nextAvailableAt('flaky'), undefined);
        const res = await store.complete([fail(id!, 3)], now + 1);
        assert.equal(res.finished[0]?.status, 'failed');
        assert.deepEqual(res.finished[0]?.error, {
          code: ErrorCode.HANDLER_FAILED,
          message: 'attempt 3 failed',
        });
        assert.equal(res.finished[0]?.finishedAt, now + 1);
        assert.equal(res.finished[0]?.attempts, 3);
        await assertCurrent(store, res.finished);
        assert.deepEqual(await claim(now + 100_000), []);
        await assertCountsTrue(store);
      }),
    );

    test(
      'backoff grows to its cap and claim promotes only tasks whose backoff is over',
      withStore(async (store) => {
        const [id] = await submitIds(store, [{ type: 'f', payload: 'x', maxAttempts: 10 }]);
        const delays: number[] = [];
        let now = T0;
        for (let attempt = 1; attempt <= 6; attempt++) {
          const [task] = await store.claim({ type: 'f', limit: 1, worker: 'w', leaseMs: 1 }, now);
          assert.equal(task?.attempt, attempt);
          const { requeued } = await store.complete([fail(id!, attempt)], now);
          delays.push(requeued[0]!.availableAt - now);
          now = requeued[0]!.availableAt;
        }
        assert.deepEqual(delays, [100, 200, 400, 500, 500, 500].map(after));
      }),
    );

    test(
      'a permanent failure fails the task at once',
      withStore(async (store) => {
        const [id] = await submitIds(store, [{ type: 'p', payload: 'x', maxAttempts: 5 }]);
        await store.claim({ type: 'p', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
        const res = await store.complete([fail(id!, 1, true)], T0 + 1);
        assert.equal(res.recorded, 1);
        assert.equal(res.finished[0]?.status, 'failed');
        assert.equal(res.finished[0]?.attempts, 1);
        await assertCurrent(store, res.finished);
        await assertCountsTrue(store);
      }),
    );

    test(
      'a lapsed lease requeues the task, its late result is ignored, and it fails when out of attempts',
      withStore(async (store) => {
        const [id, other] = await submitIds(store, [
          { type: 'slow', payload: 'x', maxAttempts: 2 },
          { type: 'slow', payload: 'y', timeoutMs: 60_000 },
        ]);
        await store.claim({ type: 'slow', limit: 2, worker: 'w1', leaseMs: (t) => t }, T0);
        assert.deepEqual(await store.expireLeases(T0 + 999), { finished: [], requeued: [] });
        const lapsed = await store.expireLeases(T0 + 1_000);
        assert.deepEqual(lapsed.requeued, [
          { id, type: 'slow', worker: 'w1', attempt: 1, availableAt: T0 + 1_095 },
        ]);
        const v = await view(store, id!);
        assert.equal(v.status, 'queued');
        assert.equal(v.error?.code, ErrorCode.TASK_TIMEOUT);
        assert.equal((await view(store, other!)).status, 'running');
        // The first worker reports after all: too late, the task is no longer its.
        assert.equal((await store.complete([ok(id!, 1)], T0 + 1_001)).recorded, 0);
        const [again] = await store.claim(
          { type: 'slow', limit: 1, worker: 'w2', leaseMs: 1_000 },
          T0 + 1_095,
        );
        assert.equal(again?.attempt, 2);
        assert.equal((await store.complete([ok(id!, 1)], T0 + 1_100)).recorded, 0);
        const out = await store.expireLeases(T0 + 2_095);
        assert.deepEqual(out.requeued, []);
        assert.equal(out.finished[0]?.id, id);
        assert.equal(out.finished[0]?.status, 'failed');
        assert.equal(out.finished[0]?.error?.code, ErrorCode.TASK_TIMEOUT);
        await assertCurrent(store, out.finished);
        assert.equal(await store.nextLeaseExpiry(), T0 + 60_000);
        assert.equal((await store.complete([ok(id!, 2)], T0 + 2_100)).recorded, 0);
        await assertCountsTrue(store);
      }),
    );

    test(
      'expireLeases ends at most limit attempts per call, oldest lease first',
      withStore(async (store) => {
        const ids = await submitIds(store, tasksOf('t', 5));
        for (let i = 0; i < 5; i++)
          await store.claim({ type: 't', limit: 1, worker: 'w', leaseMs: 100 - i }, T0);
        const first = await store.expireLeases(T0 + 1_000, 2);
        assert.deepEqual(
          first.requeued.map((r) => r.id),
          [ids[4], ids[3]],
        );
        const rest = await store.expireLeases(T0 + 1_000);
        assert.equal(rest.requeued.length, 3);
        assert.equal(await store.nextLeaseExpiry(), undefined);
        await assertCountsTrue(store);
      }),
    );

    test(
      'releaseWorker requeues only the vanished worker’s running tasks',
      withStore(async (store) => {
        const ids = await submitIds(store, tasksOf('t', 4, { maxAttempts: 1 }));
        await store.claim({ type: 't', limit: 2, worker: 'gone', leaseMs: 10_000 }, T0);
        await store.claim({ type: 't', limit: 1, worker: 'alive', leaseMs: 10_000 }, T0);
        await store.submit(tasksOf('t', 1, { maxAttempts: 3, priority: 9 }), T0, DEFAULTS);
        const [fourth] = await store.claim({ type: 't', limit: 1, worker: 'gone', leaseMs: 10_000 }, T0);
        const out = await store.releaseWorker('gone', T0 + 5);
        assert.deepEqual(out.requeued, [
          { id: fourth!.id, type: 't', worker: 'gone', attempt: 1, availableAt: T0 + 5 + 95 },
        ]);
        // maxAttempts 1: losing the only attempt fails the task.
        assert.deepEqual(
          out.finished.map((t) => [t.id, t.status, t.error?.code]),
          [
            [ids[0], 'failed', ErrorCode.WORKER_LOST],
            [ids[1], 'failed', ErrorCode.WORKER_LOST],
          ],
        );
        await assertCurrent(store, out.finished);
        assert.equal((await view(store, ids[2]!)).status, 'running');
        assert.deepEqual(await store.releaseWorker('gone', T0 + 6), { finished: [], requeued: [] });
        assert.deepEqual(
          (await store.listRunning()).map((r) => r.worker),
          ['alive'],
        );
        await assertCountsTrue(store);
      }),
    );

    test(
      'cancel stops queued and running tasks and leaves finished ones as they are',
      withStore(async (store) => {
        const [running, done, queued] = await submitIds(store, tasksOf('c', 3));
        await store.claim({ type: 'c', limit: 2, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete([ok(done!, 1)], T0);

        const c1 = await store.cancel(queued!, T0 + 1);
        assert.equal(c1?.changed, true);
        assert.equal(c1?.previous, 'queued');
        assert.equal(c1?.task.status, 'cancelled');
        assert.equal(c1?.task.finishedAt, T0 + 1);
        assert.equal(c1?.task.error?.code, ErrorCode.CANCELLED);
        await assertCurrent(store, [c1.task]);

        const c2 = await store.cancel(running!, T0 + 2);
        assert.equal(c2?.changed, true);
        assert.equal(c2?.previous, 'running');
        assert.equal(c2?.task.status, 'cancelled');
        assert.equal(c2?.task.worker, 'w', 'the caller learns which worker to tell');
        assert.equal(c2?.task.attempts, 1);
        await assertCurrent(store, [c2.task]);
        assert.equal(
          (await store.complete([ok(running!, 1)], T0 + 3)).recorded,
          0,
          'the aborted attempt’s result',
        );
        assert.equal(await store.nextLeaseExpiry(), undefined);
        assert.deepEqual(await store.expireLeases(T0 + 10_000), { finished: [], requeued: [] });

        const c3 = await store.cancel(done!, T0 + 4);
        assert.equal(c3?.changed, false);
        assert.equal(c3?.previous, 'succeeded');
        assert.equal(c3?.task.status, 'succeeded');
        const c4 = await store.cancel(queued!, T0 + 5);
        assert.equal(c4?.changed, false);
        assert.equal(c4?.previous, 'cancelled');
        assert.equal(c4?.task.finishedAt, T0 + 1);
        await assertCountsTrue(store);
      }),
    );

    test(
      'a cancelled task in backoff is not claimed later',
      withStore(async (store) => {
        const [id] = await submitIds(store, tasksOf('c', 1));
        await store.claim({ type: 'c', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete([fail(id!, 1)], T0);
        assert.equal((await store.cancel(id!, T0 + 1))?.previous, 'queued');
        assert.deepEqual(
          await store.claim({ type: 'c', limit: 1, worker: 'w', leaseMs: 1_000 }, T0 + 10_000),
          [],
        );
        assert.equal(await store.nextAvailableAt('c'), undefined);
        await assertCountsTrue(store);
      }),
    );

    test(
      'retry puts a failed or cancelled task back with fresh attempts, and earlier attempts stay fenced off',
      withStore(async (store) => {
        const [id, done, cancelled] = await submitIds(store, tasksOf('r', 3, { maxAttempts: 2 }));
        await store.claim({ type: 'r', limit: 2, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete([fail(id!, 1, true), ok(done!, 1)], T0 + 1);
        assert.equal((await view(store, id!)).status, 'failed');

        const r = await store.retry(id!, T0 + 2);
        assert.equal(r?.changed, true);
        assert.equal(r?.previous, 'failed');
        assert.equal(r?.task.status, 'queued');
        assert.equal(r?.task.attempts, 0);
        assert.equal(r?.task.error, undefined);
        assert.equal(r?.task.finishedAt, undefined);
        assert.equal(r?.task.worker, undefined);
        await assertCurrent(store, [r.task]);

        const [again] = await store.claim({ type: 'r', limit: 1, worker: 'w2', leaseMs: 1_000 }, T0 + 3);
        assert.equal(again?.id, id);
        assert.ok(again !== undefined && again.attempt > 1, 'attempt numbers are never reused');
        assert.equal((await view(store, id!)).attempts, 1);
        assert.equal((await store.complete([ok(id!, 1)], T0 + 4)).recorded, 0);
        // The fresh budget is maxAttempts again: one failure requeues instead of failing.
        const res = await store.complete([fail(id!, again.attempt)], T0 + 5);
        assert.equal(res.requeued.length, 1);

        assert.equal((await store.retry(done!, T0 + 6))?.changed, false);
        assert.equal((await store.retry(id!, T0 + 6))?.changed, false, 'queued: nothing to retry');
        await store.cancel(cancelled!, T0 + 7);
        const rc = await store.retry(cancelled!, T0 + 8);
        assert.equal(rc?.previous, 'cancelled');
        assert.equal(rc?.task.status, 'queued');
        await assertCountsTrue(store);
      }),
    );

    test(
      'list pages newest first through every task, with filters, no duplicates and no gaps',
      withStore(async (store) => {
        const types = ['a', 'b', 'c'];
        const all: number[] = [];
        for (let i = 0; i < 10; i++)
          all.push(
            ...(await submitIds(
              store,
              types.flatMap((t) => tasksOf(t, 5 + i)),
              T0 + i,
            )),
          );
        // Spread the tasks over every status.
        const claimed = await store.claim({ type: 'a', limit: 40, worker: 'w', leaseMs: 1_000 }, T0);
        const b = await store.claim({ type: 'b', limit: 30, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete(
          [
            ...claimed.slice(0, 20).map((t) => ok(t.id, t.attempt)),
            ...b.map((t) => fail(t.id, t.attempt, true)),
          ],
          T0 + 50,
        );
        for (const t of claimed.slice(20, 25)) await store.cancel(t.id, T0 + 60);
        const [bt] = await store.claim({ type: 'b', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete([fail(bt!.id, 1)], T0 + 70); // queued again, backing off

        const listed = await everything(store);
        assert.deepEqual(
          listed.map((t) => t.id),
          [...all].sort((x, y) => y - x),
        );
        for (const status of ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const) {
          for (const type of [undefined, ...types]) {
            const query = { status, ...(type === undefined ? {} : { type }) };
            const expected = listed.filter(
              (t) => t.status === status && (type === undefined || t.type === type),
            );
            assert.deepEqual(
              (await everything(store, query)).map((t) => t.id),
              expected.map((t) => t.id),
              JSON.stringify(query),
            );
          }
        }
        assert.deepEqual(
          (await everything(store, { type: 'c' })).map((t) => t.id),
          listed.filter((t) => t.type === 'c').map((t) => t.id),
        );
        assert.deepEqual(await store.list({ type: 'nope', limit: 10 }), { tasks: [] });

        // A cursor stays valid while tasks are added: the next page goes on below it.
        const page1 = await store.list({ limit: 10 });
        await store.submit(tasksOf('a', 3), T0 + 100, DEFAULTS);
        const page2 = await store.list({ limit: 10, cursor: page1.nextCursor! });
        assert.equal(page2.tasks[0]?.id, page1.tasks[9]!.id - 1);

        const withPayload = await store.list({ limit: 1, payload: true });
        assert.equal(typeof withPayload.tasks[0]?.payload, 'string');
        assert.equal(page1.tasks[0]?.payload, undefined);
        const last = await store.list({ limit: 1000 });
        assert.equal(last.nextCursor, undefined);

        await rejectsWith(store.list({ limit: 10, cursor: 'garbage' }), ErrorCode.BAD_REQUEST);
        await rejectsWith(store.list({ limit: 10, cursor: '-5' }), ErrorCode.BAD_REQUEST);
        await rejectsWith(store.list({ limit: 0 }), ErrorCode.BAD_REQUEST);
        await rejectsWith(store.list({ limit: 100_000 }), ErrorCode.BAD_REQUEST);
        await assertCountsTrue(store);
      }),
    );

    test(
      'prune removes finished tasks by age and beyond the newest keepMax, never queued or running ones',
      withStore(async (store) => {
        const ids = await submitIds(store, tasksOf('p', 10));
        const claimed = await store.claim({ type: 'p', limit: 8, worker: 'w', leaseMs: 100_000 }, T0);
        // Six tasks finish at T0+1..T0+6; two stay running, two queued.
        for (let i = 0; i < 6; i++) await store.complete([ok(claimed[i]!.id, 1)], T0 + 1 + i);
        assert.deepEqual(await store.prune(T0 + 10, { keepMs: 100, keepMax: 100 }), {
          pruned: 0,
          byType: new Map(),
          more: false,
        });

        // Age: finished before T0+3 (two tasks).
        assert.deepEqual(await store.prune(T0 + 103, { keepMs: 100, keepMax: 100 }), {
          pruned: 2,
          byType: new Map([['p', { succeeded: 2, failed: 0, cancelled: 0 }]]),
          more: false,
        });
        // Count: keep the newest 2 of the remaining 4, one per call.
        assert.deepEqual(await store.prune(T0 + 103, { keepMs: 1_000, keepMax: 2, limit: 1 }), {
          pruned: 1,
          byType: new Map([['p', { succeeded: 1, failed: 0, cancelled: 0 }]]),
          more: true,
        });
        assert.deepEqual(await store.prune(T0 + 103, { keepMs: 1_000, keepMax: 2, limit: 1 }), {
          pruned: 1,
          byType: new Map([['p', { succeeded: 1, failed: 0, cancelled: 0 }]]),
          more: false,
        });
        const left = await store.get(ids);
        assert.deepEqual(
          left.missing,
          claimed.slice(0, 4).map((t) => t.id),
        );
        assert.deepEqual(left.tasks.map((t) => t.status).sort(), [
          'queued',
          'queued',
          'running',
          'running',
          'succeeded',
          'succeeded',
        ]);
        assert.deepEqual(await store.prune(T0 + 10_000_000, { keepMs: 0, keepMax: 0 }), {
          pruned: 2,
          byType: new Map([['p', { succeeded: 2, failed: 0, cancelled: 0 }]]),
          more: false,
        });
        await assertCountsTrue(store);
      }),
    );

    test(
      'ids are never reused, not even after the newest task is pruned; a pruned key is free again',
      withStore(async (store) => {
        const [a] = await submitIds(store, [{ type: 'x', payload: '1', key: 'k' }]);
        await store.claim({ type: 'x', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
        await store.complete([ok(a!, 1)], T0);
        assert.equal((await store.prune(T0 + 1, { keepMs: 0, keepMax: 0 })).pruned, 1);
        const [b] = await store.submit([{ type: 'x', payload: '2', key: 'k' }], T0 + 2, DEFAULTS);
        assert.deepEqual(b, { id: idOf(b), duplicate: false });
        assert.ok(idOf(b) > a!);
        await assertCountsTrue(store);
      }),
    );

    test(
      'counts stay right through a mixed workload over several types',
      withStore(async (store) => {
        let now = T0;
        for (let round = 0; round < 5; round++) {
          await store.submit(
            ['x', 'y'].flatMap((t) => tasksOf(t, 20, { maxAttempts: 2 })),
            now,
            DEFAULTS,
          );
          for (const type of ['x', 'y']) {
            const claimed = await store.claim({ type, limit: 15, worker: `w${round % 2}`, leaseMs: 50 }, now);
            await store.complete(
              claimed.map((t, i) => (i % 3 === 0 ? ok(t.id, t.attempt) : fail(t.id, t.attempt, i % 5 === 0))),
              now + 1,
            );
          }
          await store.claim({ type: 'x', limit: 3, worker: 'w9', leaseMs: 50 }, now);
          if (round === 2) await store.releaseWorker('w9', now + 2);
          await store.expireLeases(now + 60);
          const some = (await store.list({ limit: 5 })).tasks;
          for (const t of some) await store.cancel(t.id, now + 3);
          await store.retry(some[0]!.id, now + 4);
          await store.prune(now, { keepMs: 500, keepMax: 40, limit: 7 });
          await assertCountsTrue(store);
          now += 300;
        }
        const totals = [...(await store.counts()).values()].reduce(
          (sum, c) => sum + c.queued + c.running + c.succeeded + c.failed + c.cancelled,
          0,
        );
        assert.equal(totals, (await everything(store)).length);
      }),
    );

    test(
      'batch completes, submits and claims in one go, in that order, and reports exhausted queues',
      withStore(async (store) => {
        const [a, b] = await submitIds(store, tasksOf('echo', 2));
        const first = await store.claim({ type: 'echo', limit: 2, worker: 'w1', leaseMs: 1_000 }, T0);
        assert.deepEqual(
          first.map((t) => t.id),
          [a, b],
        );
        let sawCompleted: readonly number[] = [];
        const res = await store.batch(
          {
            complete: [ok(a!, 1), fail(b!, 1, true), ok(a!, 1, 'again')],
            submit: { specs: [...tasksOf('echo', 3), ...tasksOf('sum', 1)], options: DEFAULTS },
            claims: ({ completed }) => {
              sawCompleted = completed.finished.map((v) => v.id);
              return [
                { types: ['echo', 'sum'], limit: 2, worker: 'w1', leaseMs: 1_000 },
                { types: ['sum', 'echo'], limit: 5, worker: 'w2', leaseMs: (t) => t + 5 },
                { types: ['echo'], limit: 1, worker: 'w3', leaseMs: 1_000 },
              ];
            },
          },
          T0 + 10,
        );
        // The claims were planned after the results were recorded.
        assert.deepEqual(sawCompleted, [a, b]);
        assert.equal(res.completed.recorded, 2, 'the repeated outcome of the same attempt counts once');
        assert.deepEqual(
          res.completed.finished.map((v) => [v.id, v.status]),
          [
            [a, 'succeeded'],
            [b, 'failed'],
          ],
        );
        assert.equal(res.submitted.length, 4);
        const [c, d, e, f] = res.submitted.map(idOf);
        // w1 takes two echo tasks; w2 the sum task, then the last echo task, then nothing more.
        assert.deepEqual(
          res.claimed.map((list) => list.map((t) => [t.id, t.type])),
          [
            [
              [c, 'echo'],
              [d, 'echo'],
            ],
            [
              [f, 'sum'],
              [e, 'echo'],
            ],
            [],
          ],
        );
        assert.deepEqual([...res.exhausted].sort(), ['echo', 'sum']);
        const running = await store.listRunning();
        assert.deepEqual(
          running.map((r) => [r.id, r.worker, r.leaseUntil]).sort((x, y) => Number(x[0]) - Number(y[0])),
          [
            [c, 'w1', T0 + 1_010],
            [d, 'w1', T0 + 1_010],
            [e, 'w2', T0 + 1_015],
            [f, 'w2', T0 + 1_015],
          ],
        );
        // Claimed tasks end like any: the fence holds for them too. An outcome for an attempt
        // that never existed is ignored, and does not stop the real one from counting.
        const end = await store.complete(
          [ok(c!, 2, 'bogus'), ok(c!, 1), ok(e!, 1), ok(e!, 1, 'twice')],
          T0 + 20,
        );
        assert.equal(end.recorded, 2);
        assert.equal((await view(store, c!)).result, `r${c}`);
        assert.equal((await view(store, e!)).result, `r${e}`);
        assert.equal((await view(store, d!)).status, 'running');
        await assertCountsTrue(store);
      }),
    );

    test(
      'a batch whose claims fail changes nothing: no result, no task, no claim',
      withStore(async (store) => {
        const [a] = await submitIds(store, tasksOf('echo', 1));
        await store.claim({ type: 'echo', limit: 1, worker: 'w1', leaseMs: 1_000 }, T0);
        const before = await everything(store);
        await rejectsWith(
          store.batch(
            {
              complete: [ok(a!, 1)],
              submit: { specs: tasksOf('echo', 2), options: DEFAULTS },
              claims: () => {
                throw new Error('planner failed');
              },
            },
            T0 + 1,
          ),
          ErrorCode.STORE,
        );
        assert.deepEqual(await everything(store), before);
        // The attempt is still running and can still end once.
        const res = await store.complete([ok(a!, 1)], T0 + 2);
        assert.equal(res.recorded, 1);
        assert.equal((await view(store, a!)).status, 'succeeded');
        await assertCountsTrue(store);
      }),
    );

    test(
      'a closed store rejects every call with TG_ERR_STORE',
      withStore(async (store) => {
        await store.close();
        await store.close();
        await rejectsWith(store.submit(tasksOf('x', 1), T0, DEFAULTS), ErrorCode.STORE);
        await rejectsWith(store.get([1]), ErrorCode.STORE);
        await rejectsWith(store.counts(), ErrorCode.STORE);
      }),
    );
  });
}
