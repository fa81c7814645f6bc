/**
 * HandlerPool against handlers that take their thread down: process.exit(), an uncaught
 * exception, an endless synchronous loop, endless allocation, a signal ignored. Each time the
 * thread is replaced and the pool goes on serving.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../src/errors.ts';
import { totalmem } from 'node:os';
import { POOL_DEFAULTS, availableMemoryMb, defaultRssLimitMb } from '../../src/worker/pool.ts';
import { failureOf, resultOf, startPool, task } from './helpers.ts';

describe('HandlerPool with handlers that break their thread', () => {
  test('replaces a thread whose handler calls process.exit, and keeps serving', async (t) => {
    const pool = await startPool(t, { types: ['exit', 'echo'] });
    const failed = failureOf(await pool.run(task('exit')));
    assert.equal(failed.error.code, ErrorCode.INTERNAL);
    assert.match(failed.error.message, /^handler thread exited with code 3 .*while running the task$/);
    assert.equal(failed.permanent, false);
    assert.equal(resultOf(await pool.run(task('echo', 'still here'))), 'still here');
  });

  test('replaces a thread that dies of an uncaught exception, and keeps serving', async (t) => {
    const pool = await startPool(t, { types: ['crash', 'echo'] });
    const failed = failureOf(await pool.run(task('crash')));
    assert.equal(failed.error.code, ErrorCode.INTERNAL);
    assert.match(failed.error.message, /^handler thread crashed \(Error: crash fixture: uncaught\)/);
    assert.equal(failed.permanent, false);
    assert.equal(resultOf(await pool.run(task('echo', 'still here'))), 'still here');
  });

  test('stops an endless synchronous loop at its timeout, and then serves the next task', async (t) => {
    const pool = await startPool(t, { types: ['hang', 'echo'], abortGraceMs: 100 });
    const hung = task('hang', '', { timeoutMs: 300 });
    const failed = failureOf(await pool.run(hung));
    assert.deepEqual(failed.error, {
      code: ErrorCode.TASK_TIMEOUT,
      message: `task ${hung.id} timed out after 300 ms`,
    });
    assert.equal(failed.permanent, false);
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
  });

  test('stops a handler that allocates without end at the thread memory limit, and keeps serving', async (t) => {
    const pool = await startPool(t, { types: ['alloc', 'echo'], memoryLimitMb: 32 });
    const failed = failureOf(await pool.run(task('alloc', '', { timeoutMs: 30_000 })));
    assert.equal(failed.error.code, ErrorCode.INTERNAL);
    assert.match(failed.error.message, /^handler thread ran out of memory \(limit 32 MB\)/);
    assert.equal(failed.permanent, false);
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
  });

  test('stops a handler that hoards Buffers (outside its heap limit) at the process memory limit, and keeps serving', async (t) => {
    const before = process.memoryUsage.rss();
    const rssLimitMb = Math.round(before / 2 ** 20) + 300;
    const pool = await startPool(t, { types: ['hoard', 'echo'], threads: 2, rssLimitMb });
    assert.equal(pool.rssLimitMb, rssLimitMb);
    const failed = failureOf(await pool.run(task('hoard', '', { timeoutMs: 60_000 })));
    assert.equal(failed.error.code, ErrorCode.INTERNAL);
    assert.match(
      failed.error.message,
      new RegExp(
        `^the worker process used \\d+ MB, above its limit of ${rssLimitMb} MB \\(memory outside the V8 heap, such as Buffers, counts\\)`,
      ),
    );
    assert.equal(failed.permanent, false, 'it runs again elsewhere');
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
    assert.equal(pool.threads, 2, 'the stopped thread was replaced');
    // Terminating the thread gave its Buffers back.
    for (
      const until = Date.now() + 10_000;
      process.memoryUsage.rss() > rssLimitMb * 2 ** 20 && Date.now() < until;
    )
      await new Promise((r) => setTimeout(r, 100));
    assert.ok(
      process.memoryUsage.rss() <= rssLimitMb * 2 ** 20,
      `RSS ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MB back under ${rssLimitMb} MB`,
    );
  });

  test("the default process memory limit is the threads' heap limits plus the headroom, within the memory the process may have", async (t) => {
    const pool = await startPool(t, { types: ['echo'], threads: 3, memoryLimitMb: 64 });
    assert.equal(pool.rssLimitMb, defaultRssLimitMb(3, 64, availableMemoryMb()));
    // On a machine (or in a container) with plenty of memory: the heap limits plus 1 GiB.
    assert.equal(defaultRssLimitMb(3, 64, 16_384), 3 * 64 + POOL_DEFAULTS.rssHeadroomMb);
    // In a container limited to 1 GiB: 90% of it, so that the pool acts before the kernel does.
    assert.equal(defaultRssLimitMb(2, 512, 1_024), 921);
    // Never below 256 MiB.
    assert.equal(defaultRssLimitMb(1, 16, 200), 256);
    // What this machine offers is no more than its memory.
    assert.ok(availableMemoryMb() > 0 && availableMemoryMb() <= totalmem() / 2 ** 20);
  });

  test('cancels a handler that ignores its signal by terminating its thread after the grace period', async (t) => {
    const pool = await startPool(t, { types: ['hang', 'echo'], abortGraceMs: 100 });
    const hung = task('hang');
    const running = pool.run(hung);
    // Let it start spinning, so that the abort message cannot be read any more.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(pool.abort(hung.id), true);
    const failed = failureOf(await running);
    assert.deepEqual(failed.error, { code: ErrorCode.CANCELLED, message: `task ${hung.id} was cancelled` });
    assert.equal(failed.permanent, true);
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
  });

  test('reports the other tasks of a terminated thread as lost, so they can run again', async (t) => {
    const pool = await startPool(t, {
      types: ['hang', 'slow', 'echo'],
      threads: 1,
      concurrency: 2,
      abortGraceMs: 100,
    });
    const hung = task('hang', '', { timeoutMs: 300 });
    const bystander = task('slow', '20000');
    const [hungOutcome, bystanderOutcome] = await Promise.all([pool.run(hung), pool.run(bystander)]);
    assert.equal(failureOf(hungOutcome).error.code, ErrorCode.TASK_TIMEOUT);
    const lost = failureOf(bystanderOutcome);
    assert.deepEqual(lost.error, {
      code: ErrorCode.WORKER_LOST,
      message: `task ${bystander.id} was lost: its handler thread was terminated to stop task ${hung.id}, which ignored its timeout`,
    });
    assert.equal(lost.permanent, false);
    assert.equal(pool.inFlight, 0);
    assert.equal(resultOf(await pool.run(task('echo', 'next'))), 'next');
  });

  test('keeps its number of threads through repeated failures', async (t) => {
    const pool = await startPool(t, { types: ['exit', 'echo'], threads: 2, concurrency: 2 });
    assert.equal(pool.threads, 2);
    for (let i = 0; i < 3; i++) {
      assert.equal(failureOf(await pool.run(task('exit'))).error.code, ErrorCode.INTERNAL);
      assert.equal(pool.threads, 2);
    }
    const echoes = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(task('echo', String(i)))));
    assert.deepEqual(
      echoes.map(resultOf),
      Array.from({ length: 20 }, (_, i) => String(i)),
    );
  });
});
