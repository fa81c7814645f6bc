/**
 * HandlerPool: outcomes of handlers that return, throw or report progress; cancellation,
 * timeouts of well-behaved handlers, concurrency, start-up failures and closing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConfigError, ErrorCode } from '../../src/errors.ts';
import type { TaskOutcome } from '../../src/protocol/messages.ts';
import { HandlerPool, type TaskSink } from '../../src/worker/pool.ts';
import { builtinsDir, failureOf, fixturesDir, resultOf, startPool, task } from './helpers.ts';

describe('HandlerPool running handlers', () => {
  // One pool for the handlers that leave their thread healthy: thread start-up dominates
  // these tests' time.
  let pool: HandlerPool;
  before(async () => {
    pool = new HandlerPool({
      typesDir: fixturesDir,
      types: ['echo', 'throw', 'permanent', 'non-string-result', 'default-export', 'slow', 'progress'],
      threads: 1,
      concurrency: 16,
    });
    await pool.start();
  });
  after(() => pool.close());

  test('runs the built-in task types', async (t) => {
    const builtins = await startPool(t, {
      typesDir: builtinsDir,
      types: ['reverse', 'upper', 'hash', 'sum', 'wait'],
    });
    const [reversed, upper, hash, sum, waited, bad] = await Promise.all([
      builtins.run(task('reverse', 'Hello 👍🏽e\u0301')),
      builtins.run(task('upper', 'openai')),
      builtins.run(task('hash', 'abc')),
      builtins.run(task('sum', '9007199254740993, 1, 0.1, 0.2')),
      builtins.run(task('wait', '0.05')),
      builtins.run(task('sum', '1,abc')),
    ]);
    assert.equal(resultOf(reversed), 'e\u0301👍🏽 olleH');
    assert.equal(resultOf(upper), 'OPENAI');
    assert.equal(resultOf(hash), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(resultOf(sum), '9007199254740994.3');
    assert.equal(resultOf(waited), 'waited 0.05s');
    const failed = failureOf(bad);
    assert.deepEqual(failed.error, { code: ErrorCode.BAD_PAYLOAD, message: 'sum: "abc" is not a number' });
    assert.equal(failed.permanent, true);
  });

  test('returns the task id, attempt and run time with each outcome', async () => {
    const outcome = await pool.run({ id: 77, type: 'echo', payload: 'hi', attempt: 3, timeoutMs: 5000 });
    assert.deepEqual({ ...outcome, runMs: 0 }, { id: 77, attempt: 3, ok: true, result: 'hi', runMs: 0 });
    assert.ok(outcome.runMs >= 0);
  });

  test('reports a handler that throws as a failed attempt that may be retried', async () => {
    const failed = failureOf(await pool.run(task('throw', 'x')));
    assert.deepEqual(failed.error, { code: ErrorCode.HANDLER_FAILED, message: 'boom: x' });
    assert.equal(failed.permanent, false);
  });

  test('reports a PermanentTaskError as a permanent failure with its code', async () => {
    const failed = failureOf(await pool.run(task('permanent', 'x')));
    assert.deepEqual(failed.error, { code: ErrorCode.BAD_PAYLOAD, message: 'permanent: cannot handle "x"' });
    assert.equal(failed.permanent, true);
  });

  test('fails a handler that returns something other than a string, saying what it returned', async () => {
    const failed = failureOf(await pool.run(task('non-string-result')));
    assert.deepEqual(failed.error, {
      code: ErrorCode.HANDLER_FAILED,
      message: 'handler of task type "non-string-result" returned a number, not a string',
    });
    assert.equal(failed.permanent, false);
    for (const [payload, what] of [
      ['object', 'an object'],
      ['undefined', 'undefined'],
    ]) {
      assert.equal(
        failureOf(await pool.run(task('non-string-result', payload))).error.message,
        `handler of task type "non-string-result" returned ${what}, not a string`,
      );
    }
  });

  test('runs a default-export handler with its object as this', async () => {
    assert.equal(resultOf(await pool.run(task('default-export', 'x'))), 'default:x');
  });

  test('runs a slow task to its end', async () => {
    const outcome = await pool.run(task('slow', '200'));
    const { start, end } = JSON.parse(resultOf(outcome)) as { start: number; end: number };
    assert.ok(end - start >= 190, `ran ${end - start} ms`);
    assert.ok(outcome.runMs >= 190, `runMs ${outcome.runMs}`);
  });

  test('passes the handler progress reports to onProgress', async () => {
    const reports: [number | undefined, string | undefined][] = [];
    const outcome = await pool.run(task('progress'), { onProgress: (f, m) => reports.push([f, m]) });
    assert.equal(resultOf(outcome), 'done');
    assert.deepEqual(reports, [
      [0.25, 'a quarter'],
      [0.5, undefined],
      [1, 'clamped'],
    ]);
  });

  test('refuses a task type it was not started with', async () => {
    const failed = failureOf(await pool.run(task('reverse', 'x')));
    assert.equal(failed.error.code, ErrorCode.UNKNOWN_TYPE);
    assert.equal(failed.permanent, false);
  });

  test('returns every result of a large burst of small tasks', async () => {
    const tasks = Array.from({ length: 3000 }, (_, i) => task('echo', `payload ${i}`));
    const outcomes = await Promise.all(tasks.map((one) => pool.run(one)));
    outcomes.forEach((outcome, i) => {
      assert.equal(outcome.id, tasks[i]!.id);
      assert.equal(resultOf(outcome), `payload ${i}`);
    });
    assert.equal(pool.inFlight, 0);
  });
});

describe('HandlerPool concurrency', () => {
  /** Most intervals that overlap at any instant; an end and a start at the same ms do not overlap. */
  function maxOverlap(results: string[]): number {
    const events = results.flatMap((r) => {
      const { start, end } = JSON.parse(r) as { start: number; end: number };
      return [
        [start, 1],
        [end, -1],
      ] as const;
    });
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0;
    let max = 0;
    for (const [, delta] of events) max = Math.max(max, (now += delta));
    return max;
  }

  test('never runs more tasks at once than its concurrency across threads', async (t) => {
    const pool = await startPool(t, { types: ['slow'], threads: 2, concurrency: 2 });
    assert.equal(pool.capacity, 2);
    const runs = Array.from({ length: 6 }, () => pool.run(task('slow', '100')));
    assert.equal(pool.running, 2);
    assert.equal(pool.queued, 4);
    assert.equal(pool.inFlight, 6);
    const results = (await Promise.all(runs)).map(resultOf);
    assert.ok(maxOverlap(results) <= 2, `overlap ${maxOverlap(results)}`);
  });

  test('runs several asynchronous tasks at once in one thread, up to its concurrency', async (t) => {
    const pool = await startPool(t, { types: ['slow'], threads: 1, concurrency: 3 });
    const results = (await Promise.all(Array.from({ length: 7 }, () => pool.run(task('slow', '100'))))).map(
      resultOf,
    );
    assert.equal(maxOverlap(results), 3);
    const threads = new Set(results.map((r) => (JSON.parse(r) as { threadId: number }).threadId));
    assert.equal(threads.size, 1);
  });
});

describe('HandlerPool cancellation and timeouts', () => {
  // One task at a time, and a grace period long enough that a test would notice (by taking
  // 20 s) if a cooperative handler's thread were terminated instead of being let finish.
  let pool: HandlerPool;
  before(async () => {
    pool = new HandlerPool({
      typesDir: fixturesDir,
      types: ['slow', 'echo'],
      threads: 1,
      concurrency: 1,
      abortGraceMs: 20_000,
      defaultTimeoutMs: 200,
    });
    await pool.start();
  });
  after(() => pool.close());

  test('cancels a running task whose handler honours its signal, without waiting for the grace period', async () => {
    const started = performance.now();
    const one = task('slow', '30000');
    const running = pool.run(one);
    assert.equal(pool.abort(one.id), true);
    const failed = failureOf(await running);
    assert.deepEqual(failed.error, { code: ErrorCode.CANCELLED, message: `task ${one.id} was cancelled` });
    assert.equal(failed.permanent, true);
    assert.ok(performance.now() - started < 10_000, 'ended before the 20 s grace period');
    assert.equal(resultOf(await pool.run(task('echo', 'after'))), 'after');
  });

  test('cancels a queued task at once', async () => {
    const first = task('slow', '30000');
    const second = task('echo', 'never');
    const running = pool.run(first);
    const queued = pool.run(second);
    assert.equal(pool.queued, 1);
    assert.equal(pool.abort(second.id), true);
    const failed = failureOf(await queued);
    assert.equal(failed.error.code, ErrorCode.CANCELLED);
    assert.equal(failed.runMs, 0);
    assert.equal(pool.queued, 0);
    pool.abort(first.id);
    assert.equal(failureOf(await running).error.code, ErrorCode.CANCELLED);
  });

  test('says when there is nothing to abort', () => {
    assert.equal(pool.abort(123_456_789), false);
  });

  test('times out a handler that honours its signal, as a timeout that may be retried', async () => {
    const one = task('slow', '30000', { timeoutMs: 200 });
    const failed = failureOf(await pool.run(one));
    assert.deepEqual(failed.error, {
      code: ErrorCode.TASK_TIMEOUT,
      message: `task ${one.id} timed out after 200 ms`,
    });
    assert.equal(failed.permanent, false);
    assert.ok(failed.runMs >= 190 && failed.runMs < 10_000, `runMs ${failed.runMs}`);
  });

  test('uses the default timeout for a task without one', async () => {
    const one = { id: 9_000_001, type: 'slow', payload: '30000', attempt: 1 };
    assert.equal(failureOf(await pool.run(one)).error.code, ErrorCode.TASK_TIMEOUT);
  });
});

describe('HandlerPool batches and deadlines', () => {
  test('times out each task of one batch at its own deadline, leaving its batch-mates running', async (t) => {
    const pool = await startPool(t, {
      types: ['slow', 'echo'],
      threads: 1,
      concurrency: 16,
      abortGraceMs: 20_000,
    });
    // Handed out in one tick, so they reach the thread in one message.
    const long = task('slow', '30000', { timeoutMs: 900 });
    const short = task('slow', '30000', { timeoutMs: 150 });
    const quick = task('slow', '300', { timeoutMs: 5_000 });
    const echo = task('echo', 'batch-mate');
    const started = performance.now();
    const [longOut, shortOut, quickOut, echoOut] = await Promise.all(
      [long, short, quick, echo].map((one) => pool.run(one)),
    );
    const shortFailed = failureOf(shortOut!);
    assert.equal(shortFailed.error.code, ErrorCode.TASK_TIMEOUT);
    assert.ok(shortFailed.runMs >= 140 && shortFailed.runMs < 800, `short runMs ${shortFailed.runMs}`);
    const longFailed = failureOf(longOut!);
    assert.equal(longFailed.error.code, ErrorCode.TASK_TIMEOUT);
    assert.ok(longFailed.runMs >= 890 && longFailed.runMs < 5_000, `long runMs ${longFailed.runMs}`);
    assert.equal((JSON.parse(resultOf(quickOut!)) as { taskId: number }).taskId, quick.id);
    assert.equal(resultOf(echoOut!), 'batch-mate');
    assert.ok(performance.now() - started < 10_000, 'no thread was terminated (grace 20 s)');
    assert.equal(pool.threads, 1);
  });

  test('a task handed out later with a shorter timeout still times out on time', async (t) => {
    const pool = await startPool(t, { types: ['slow'], threads: 1, concurrency: 4 });
    const first = pool.run(task('slow', '30000', { timeoutMs: 20_000 }));
    await new Promise((r) => setTimeout(r, 50));
    const started = performance.now();
    const second = failureOf(await pool.run(task('slow', '30000', { timeoutMs: 100 })));
    assert.equal(second.error.code, ErrorCode.TASK_TIMEOUT);
    assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`);
    void first;
  });

  test('submit() reports the ends and progress of many tasks to one sink, naming each task', async (t) => {
    const pool = await startPool(t, { types: ['echo', 'progress', 'throw'], threads: 2, concurrency: 64 });
    const tasks = [
      ...Array.from({ length: 200 }, (_, i) => task('echo', `p${i}`)),
      task('progress'),
      task('throw', 'boom'),
    ];
    const outcomes = new Map<number, TaskOutcome>();
    const progress: [number, number | undefined, string | undefined][] = [];
    await new Promise<void>((resolve) => {
      const sink: TaskSink = {
        done(outcome, one) {
          assert.equal(outcome.id, one.id);
          assert.ok(!outcomes.has(one.id), 'one end per task');
          outcomes.set(one.id, outcome);
          if (outcomes.size === tasks.length) resolve();
        },
        progress(one, fraction, message) {
          progress.push([one.id, fraction, message]);
        },
      };
      for (const one of tasks) pool.submit(one, sink);
    });
    tasks.slice(0, 200).forEach((one, i) => assert.equal(resultOf(outcomes.get(one.id)!), `p${i}`));
    const progressTask = tasks[200]!;
    assert.equal(resultOf(outcomes.get(progressTask.id)!), 'done');
    assert.deepEqual(progress, [
      [progressTask.id, 0.25, 'a quarter'],
      [progressTask.id, 0.5, undefined],
      [progressTask.id, 1, 'clamped'],
    ]);
    assert.equal(failureOf(outcomes.get(tasks[201]!.id)!).error.code, ErrorCode.HANDLER_FAILED);
    // An unknown type ends too, never synchronously.
    const ended: TaskOutcome[] = [];
    pool.submit(task('nosuch'), { done: (outcome) => ended.push(outcome) });
    assert.equal(ended.length, 0);
    await new Promise((r) => setImmediate(r));
    assert.equal(failureOf(ended[0]!).error.code, ErrorCode.UNKNOWN_TYPE);
    assert.equal(pool.inFlight, 0);
  });
});

describe('HandlerPool start and close', () => {
  test('start() rejects with a ConfigError when a module does not export handle', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['echo', 'not-a-handler'], threads: 1 });
    await assert.rejects(pool.start(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, ErrorCode.CONFIG);
      assert.match(
        err.message,
        /^task type "not-a-handler": .*not-a-handler\.ts does not export a handle\(payload, ctx\) function/,
      );
      return true;
    });
    const failed = failureOf(await pool.run(task('echo', 'x')));
    assert.equal(failed.error.code, ErrorCode.WORKER_LOST);
    await pool.close();
  });

  test('start() rejects with a ConfigError when a module is missing, before starting any thread', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['missing-type'] });
    await assert.rejects(pool.start(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^no module for task type "missing-type" in /);
      return true;
    });
    await pool.close();
  });

  test('start() rejects with a ConfigError when a module throws while loading', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['broken'], threads: 2 });
    await assert.rejects(pool.start(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(
        err.message,
        /^task type "broken": .*broken\.ts failed to load: broken fixture: top-level failure$/,
      );
      return true;
    });
    await pool.close();
  });

  test('rejects invalid options with a ConfigError', () => {
    assert.throws(
      () => new HandlerPool({ typesDir: fixturesDir, types: ['echo'], concurrency: 0 }),
      ConfigError,
    );
    assert.throws(
      () => new HandlerPool({ typesDir: fixturesDir, types: ['echo'], threads: 1.5 }),
      ConfigError,
    );
    assert.throws(() => new HandlerPool({ typesDir: fixturesDir, types: [] }), ConfigError);
  });

  test('runs tasks submitted before start() once it is ready', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['echo'], threads: 1 });
    try {
      const early = pool.run(task('echo', 'early'));
      await pool.start();
      assert.equal(resultOf(await early), 'early');
    } finally {
      await pool.close();
    }
  });

  test('close({ drain: true }) lets running and queued tasks finish', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['slow'], threads: 1, concurrency: 1 });
    await pool.start();
    const first = pool.run(task('slow', '100'));
    const second = pool.run(task('slow', '100'));
    await pool.close({ drain: true, timeoutMs: 20_000 });
    resultOf(await first);
    resultOf(await second);
    assert.equal(failureOf(await pool.run(task('slow', '1'))).error.code, ErrorCode.WORKER_LOST);
  });

  test('close() ends running and queued tasks as lost, to be retried elsewhere', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['slow'], threads: 1, concurrency: 1 });
    await pool.start();
    const running = pool.run(task('slow', '30000'));
    const queued = pool.run(task('slow', '1'));
    await pool.close();
    for (const outcome of await Promise.all([running, queued])) {
      const failed = failureOf(outcome);
      assert.equal(failed.error.code, ErrorCode.WORKER_LOST);
      assert.equal(failed.permanent, false);
    }
    assert.equal(pool.inFlight, 0);
  });
});
