/**
 * HandlerPool with inline types: handlers that run on the pool's own thread, beside or instead
 * of handler threads, with the same outcomes, progress, timeouts and cancellation as in a
 * thread, and what happens to a handler that ignores its signal there.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { threadId } from 'node:worker_threads';
import { ConfigError, ErrorCode } from '../../src/errors.ts';
import { HandlerPool } from '../../src/worker/pool.ts';
import { failureOf, fixturesDir, resultOf, startPool, task } from './helpers.ts';

/** The thread a `slow` task ran in, from its result. */
const ranIn = (result: string): number => (JSON.parse(result) as { threadId: number }).threadId;

describe('HandlerPool inline types', () => {
  test('runs inline types on its own thread and the others in handler threads', async (t) => {
    const pool = await startPool(t, { types: ['slow', 'echo'], inline: ['slow'] });
    assert.deepEqual(pool.inline, ['slow']);
    assert.equal(pool.threads, 1);
    assert.equal(ranIn(resultOf(await pool.run(task('slow', '1')))), threadId);
    assert.equal(resultOf(await pool.run(task('echo', 'in a thread'))), 'in a thread');
  });

  test("an inline task's outcome comes back in the task that started it, before any immediate (so a worker's result can share its acknowledgement's datagram)", async (t) => {
    const pool = await startPool(t, { types: ['echo'], inline: ['echo'] });
    await pool.run(task('echo', 'warm'));
    const order: string[] = [];
    const ran = pool.run(task('echo', 'x')).then((o) => order.push(`outcome ${resultOf(o)}`));
    const immediate = new Promise<void>((r) => setImmediate(() => r(void order.push('immediate'))));
    await Promise.all([ran, immediate]);
    assert.deepEqual(order, ['outcome x', 'immediate']);
  });

  test('its threads load only the types they run, not the inline ones', async (t) => {
    const pool = await startPool(t, { types: ['main-only', 'echo'], inline: ['main-only'] });
    assert.equal(pool.threads, 1);
    assert.equal(resultOf(await pool.run(task('main-only', 'x'))), 'main: x');
    assert.equal(resultOf(await pool.run(task('echo', 'y'))), 'y');
  });

  test('starts no thread when every type is inline', async (t) => {
    const pool = await startPool(t, { types: ['slow', 'echo'], inline: ['slow', 'echo'], threads: 4 });
    assert.equal(pool.threads, 0);
    const outcomes = await Promise.all([
      pool.run(task('echo', 'a')),
      pool.run(task('slow', '5')),
      pool.run(task('echo', 'b')),
    ]);
    const [a, slow, b] = outcomes;
    assert.equal(resultOf(a), 'a');
    assert.equal(ranIn(resultOf(slow)), threadId);
    assert.equal(resultOf(b), 'b');
  });

  test('reports throws, permanent failures, non-string results and progress as a thread does', async (t) => {
    const types = ['throw', 'permanent', 'non-string-result', 'progress'];
    const pool = await startPool(t, { types, inline: types });
    const thrown = failureOf(await pool.run(task('throw', 'x')));
    assert.deepEqual(thrown.error, { code: ErrorCode.HANDLER_FAILED, message: 'boom: x' });
    assert.equal(thrown.permanent, false);
    const permanent = failureOf(await pool.run(task('permanent', 'x')));
    assert.equal(permanent.error.code, ErrorCode.BAD_PAYLOAD);
    assert.equal(permanent.permanent, true);
    const notString = failureOf(await pool.run(task('non-string-result', 'x')));
    assert.equal(notString.error.code, ErrorCode.HANDLER_FAILED);
    assert.match(notString.error.message, /not a string/);
    const reports: [number | undefined, string | undefined][] = [];
    const done = await pool.run(task('progress'), { onProgress: (f, m) => reports.push([f, m]) });
    assert.equal(resultOf(done), 'done');
    assert.deepEqual(reports.at(-1), [1, 'clamped']);
  });

  test('times out and cancels an inline handler that honours its signal, then keeps serving', async (t) => {
    const pool = await startPool(t, {
      types: ['slow', 'echo'],
      inline: ['slow', 'echo'],
      abortGraceMs: 20_000,
    });
    const started = performance.now();
    const late = task('slow', '30000', { timeoutMs: 200 });
    const timedOut = failureOf(await pool.run(late));
    assert.deepEqual(timedOut.error, {
      code: ErrorCode.TASK_TIMEOUT,
      message: `task ${late.id} timed out after 200 ms`,
    });
    const one = task('slow', '30000');
    const running = pool.run(one);
    assert.equal(pool.abort(one.id), true);
    assert.equal(failureOf(await running).error.code, ErrorCode.CANCELLED);
    assert.ok(performance.now() - started < 10_000, 'ended well before the 20 s grace period');
    assert.equal(resultOf(await pool.run(task('echo', 'after'))), 'after');
  });

  test('gives up on an inline handler that ignores its signal: its timeout stands, its batch-mates are lost, its late result is dropped', async (t) => {
    const pool = await startPool(t, {
      types: ['stubborn', 'slow', 'echo'],
      inline: ['stubborn', 'slow', 'echo'],
      concurrency: 4,
      abortGraceMs: 100,
    });
    // It ends 2 s after it starts: long after its timeout and grace period, even on a machine
    // slow enough to fire both late.
    const started = performance.now();
    const stubborn = task('stubborn', '2000', { timeoutMs: 100 });
    const bystander = task('slow', '20000');
    const [stubbornOutcome, bystanderOutcome] = await Promise.all([pool.run(stubborn), pool.run(bystander)]);
    assert.equal(failureOf(stubbornOutcome).error.code, ErrorCode.TASK_TIMEOUT);
    const lost = failureOf(bystanderOutcome);
    assert.deepEqual(lost.error, {
      code: ErrorCode.WORKER_LOST,
      message: `task ${bystander.id} was lost: it ran inline beside task ${stubborn.id}, which ignored its timeout`,
    });
    assert.equal(pool.inFlight, 0);
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
    // The stubborn handler returns 2 s after it started; nothing may come of it.
    await new Promise((resolve) => setTimeout(resolve, 2_100 - (performance.now() - started)));
    assert.equal(pool.inFlight, 0);
    assert.equal(resultOf(await pool.run(task('echo', 'still serving'))), 'still serving');
  });

  test('close() ends running inline tasks as lost', async () => {
    const pool = new HandlerPool({ typesDir: fixturesDir, types: ['slow'], inline: ['slow'] });
    await pool.start();
    const running = pool.run(task('slow', '30000'));
    await pool.close();
    assert.equal(failureOf(await running).error.code, ErrorCode.WORKER_LOST);
  });

  test('refuses an inline type it does not run, and a broken inline module at start()', async () => {
    assert.throws(
      () => new HandlerPool({ typesDir: fixturesDir, types: ['echo'], inline: ['slow'] }),
      (err: unknown) =>
        err instanceof ConfigError && /inline task type "slow" is not one of/.test(err.message),
    );
    const pool = new HandlerPool({
      typesDir: fixturesDir,
      types: ['not-a-handler'],
      inline: ['not-a-handler'],
    });
    await assert.rejects(pool.start(), (err: unknown) => {
      return err instanceof ConfigError && /does not export a handle/.test(err.message);
    });
  });
});
