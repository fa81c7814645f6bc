/**
 * Shared helpers of the worker tests: pools that close themselves when their test ends.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { TaskOutcome } from '../../src/protocol/messages.ts';
import { HandlerPool, type HandlerPoolOptions, type PoolTask } from '../../src/worker/pool.ts';

export const fixturesDir = fileURLToPath(new URL('../fixtures/handlers/', import.meta.url));
export const builtinsDir = fileURLToPath(new URL('../../worker_types/', import.meta.url));

/** Starts a pool over the fixture handlers (unless `typesDir` says otherwise), closed after the test. */
export async function startPool(
  t: TestContext,
  options: Partial<HandlerPoolOptions> & Pick<HandlerPoolOptions, 'types'>,
): Promise<HandlerPool> {
  const pool = new HandlerPool({ typesDir: fixturesDir, threads: 1, ...options });
  t.after(() => pool.close());
  await pool.start();
  return pool;
}

let nextId = 1;

/** A task with a fresh id. */
export function task(type: string, payload = '', extra: Partial<PoolTask> = {}): PoolTask {
  return { id: nextId++, type, payload, attempt: 1, timeoutMs: 30_000, ...extra };
}

/** Asserts a successful outcome and returns its result. */
export function resultOf(outcome: TaskOutcome): string {
  assert.ok(outcome.ok, `expected success, got ${JSON.stringify(outcome)}`);
  return outcome.result;
}

/** Asserts a failed outcome and returns it, narrowed. */
export function failureOf(outcome: TaskOutcome): Extract<TaskOutcome, { ok: false }> {
  assert.ok(!outcome.ok, `expected failure, got ${JSON.stringify(outcome)}`);
  return outcome;
}
