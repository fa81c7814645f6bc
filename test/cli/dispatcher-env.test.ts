import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dispatcherEnv } from '../../src/cli/components.ts';

test('the dispatcher reads its retention and queue bound from the environment', () => {
  assert.deepEqual(dispatcherEnv({}), {});
  assert.deepEqual(
    dispatcherEnv({ TASKGRID_KEEP_FINISHED_MS: '60000', TASKGRID_KEEP_FINISHED_MAX: '500', TASKGRID_MAX_QUEUED: '10' }),
    { keepFinishedMs: 60_000, keepFinishedMax: 500, maxQueuedPerType: 10 },
  );
});

test('a bad retention or queue bound is refused naming the variable', () => {
  assert.throws(() => dispatcherEnv({ TASKGRID_MAX_QUEUED: 'lots' }), {
    code: 'TG_ERR_CONFIG',
    message: /TASKGRID_MAX_QUEUED="lots" is not an integer/,
  });
  assert.throws(() => dispatcherEnv({ TASKGRID_KEEP_FINISHED_MS: '5' }), /TASKGRID_KEEP_FINISHED_MS/);
});
