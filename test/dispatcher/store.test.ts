/** The store contract's pure helpers: backoff, cursors, ids. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../src/errors.ts';
import {
  STORE_DEFAULTS,
  backoffMs,
  busyError,
  decodeCursor,
  encodeCursor,
  isTaskId,
} from '../../src/dispatcher/store/store.ts';

describe('task store helpers', () => {
  test('backoff doubles from its base up to its cap', () => {
    const policy = { baseMs: 1_000, factor: 2, maxMs: 60_000, jitter: 0 };
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffMs(policy, a, Math.random));
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
    assert.equal(backoffMs(policy, 10_000, Math.random), 60_000, 'no overflow to Infinity');
    assert.equal(backoffMs(policy, 0, Math.random), 1_000);
  });

  test('jitter only ever shortens the delay, by at most its fraction', () => {
    const policy = STORE_DEFAULTS.retry;
    assert.equal(
      backoffMs(policy, 1, () => 0),
      policy.baseMs,
    );
    assert.equal(
      backoffMs(policy, 1, () => 0.999_999),
      Math.round(policy.baseMs * (1 - policy.jitter * 0.999_999)),
    );
    for (let i = 0; i < 1_000; i++) {
      const d = backoffMs(policy, 3, Math.random);
      assert.ok(d <= 4_000 && d >= 4_000 * (1 - policy.jitter));
    }
  });

  test('a cursor round-trips and anything else is not a cursor', () => {
    assert.equal(decodeCursor(encodeCursor(12_345)), 12_345);
    for (const bad of ['', '0', '-1', '01', '1.5', 'abc', '1e9', ' 1', '99999999999999999'])
      assert.equal(decodeCursor(bad), undefined, JSON.stringify(bad));
  });

  test('task ids are positive safe integers', () => {
    for (const id of [1, 42, Number.MAX_SAFE_INTEGER]) assert.ok(isTaskId(id));
    for (const id of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53, '1', null]) assert.ok(!isTaskId(id));
  });

  test('a full queue is reported as TG_ERR_BUSY naming the type', () => {
    const err = busyError('resize', 10);
    assert.equal(err.code, ErrorCode.BUSY);
    assert.match(err.message, /resize/);
  });
});
