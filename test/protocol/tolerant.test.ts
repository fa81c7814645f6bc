/**
 * A reply from a newer peer: fields this version's strict schemas do not know are dropped when
 * they are all that is wrong (src/protocol/tolerant.ts), so that a client older than its
 * dispatcher still reads the replies; requests stay strict.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { requests } from '../../src/protocol/messages.ts';
import { parseIgnoringUnknownKeys } from '../../src/protocol/tolerant.ts';
import { Endpoint, MemoryNetwork } from '../../src/transport/index.ts';

const view = {
  id: 7,
  type: 'reverse',
  status: 'running',
  priority: 0,
  attempts: 1,
  maxAttempts: 3,
  timeoutMs: 30_000,
  createdAt: 1,
  payload: 'abc',
};

describe('replies from a newer peer', () => {
  test('unknown fields are dropped, at any depth, and named', () => {
    const reply = { tasks: [{ ...view, progressHue: 'green' }], missing: [], fromTheFuture: { x: 1 } };
    const { result, dropped } = parseIgnoringUnknownKeys(requests['get-result'].res, reply);
    assert.ok(result.success, JSON.stringify(result.error?.issues));
    assert.deepEqual(result.data, { tasks: [view], missing: [] });
    assert.deepEqual(dropped.sort(), ['fromTheFuture', 'tasks.0.progressHue']);
    assert.ok('progressHue' in reply.tasks[0]!, 'the value given is not changed');
  });

  test('anything else wrong still fails, naming the field', () => {
    const { result } = parseIgnoringUnknownKeys(requests['get-result'].res, {
      tasks: [{ ...view, status: 'sleeping', progressHue: 'green' }],
      missing: [],
    });
    assert.equal(result.success, false);
    assert.ok(result.error.issues.some((i) => i.path.join('.') === 'tasks.0.status'));
    // A valid reply is answered as the strict parse answers it, dropping nothing.
    const plain = parseIgnoringUnknownKeys(requests['get-result'].res, { tasks: [view], missing: [] });
    assert.ok(plain.result.success);
    assert.deepEqual(plain.dropped, []);
  });

  test('a client reads the reply of a peer that adds fields; a request with an unknown field is refused', async () => {
    const net = new MemoryNetwork({});
    const newer = new Endpoint(net.link('dispatcher'));
    const older = new Endpoint(net.link('client'));
    try {
      // The newer dispatcher's reply, with a field this version does not know.
      newer.handle(
        'get-result',
        () => ({ tasks: [{ ...view, progressHue: 'green' }], missing: [] }) as never,
      );
      const reply = await older.request(newer.address, 'get-result', { ids: [7] }, { timeoutMs: 2_000 });
      assert.deepEqual(reply.tasks, [view]);
      // The other way round: a request's unknown field is still a validation error (a typo).
      await assert.rejects(
        older.request(newer.address, 'get-result', { ids: [7], waitMS: 10 } as never, { timeoutMs: 2_000 }),
        { code: 'TG_ERR_BAD_MESSAGE' },
      );
    } finally {
      await older.close();
      await newer.close();
    }
  });
});
