/**
 * A worker's replies to TASK requests, seen from a dispatcher's endpoint over the in-memory
 * network: a task its inline handler finishes at once comes back in the same datagram as its
 * acceptance; a task that takes longer is accepted at once all the same.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Nameservice } from '../../src/nameservice/nameservice.ts';
import type { TaskOutcome } from '../../src/protocol/messages.ts';
import { Endpoint, MemoryNetwork } from '../../src/transport/index.ts';
import { TaskWorker } from '../../src/worker/worker.ts';
import { ROOT } from '../support/process.ts';

const FIXTURES = join(ROOT, 'test/fixtures/handlers');

describe('a worker accepting tasks', () => {
  const net = new MemoryNetwork({});
  const nsT = new Endpoint(net.link('ns', 5001));
  const ns = new Nameservice({ transport: nsT });
  const dispatcher = new Endpoint(net.link('dispatcher', 4000));
  const results: TaskOutcome[] = [];
  let resultArrived: (() => void) | undefined;
  dispatcher.handle('result', ({ results: batch }) => {
    results.push(...batch);
    resultArrived?.();
    return { recorded: batch.length };
  });
  const workerT = new Endpoint(net.link('worker', 6000));
  const worker = new TaskWorker({
    transport: workerT,
    nameservers: [{ host: 'ns', port: 5001 }],
    types: ['echo', 'slow'],
    inline: ['echo', 'slow'],
    typesDir: FIXTURES,
    advertise: workerT.address,
  });
  before(() => worker.start());
  after(async () => {
    await worker.stop();
    await workerT.close();
    await dispatcher.close();
    ns.close();
    await nsT.close();
  });

  const nextResult = () => new Promise<void>((resolve) => (resultArrived = resolve));

  test('an inline task finished at once comes back in the same datagram as its acceptance', async () => {
    const before = dispatcher.counters();
    const arrived = nextResult();
    const reply = await dispatcher.request(workerT.address, 'task', {
      tasks: [{ id: 1, type: 'echo', payload: 'hi', attempt: 1, timeoutMs: 5_000 }],
    });
    assert.deepEqual(reply, { accepted: [1], rejected: [] });
    await arrived;
    assert.deepEqual(
      results.map((r) => (r.ok ? [r.id, r.result] : [r.id, r.error.code])),
      [[1, 'hi']],
    );
    const now = dispatcher.counters();
    assert.equal(now.messagesIn - before.messagesIn, 2, 'the acceptance and the result');
    assert.equal(now.datagramsIn - before.datagramsIn, 1, 'in one datagram');
  });

  test('a task that takes longer is accepted at once, not when it ends', async () => {
    const arrived = nextResult();
    const started = performance.now();
    const reply = await dispatcher.request(workerT.address, 'task', {
      tasks: [{ id: 2, type: 'slow', payload: '400', attempt: 1, timeoutMs: 5_000 }],
    });
    const acceptedAfter = performance.now() - started;
    assert.deepEqual(reply, { accepted: [2], rejected: [] });
    assert.ok(acceptedAfter < 300, `accepted after ${acceptedAfter.toFixed(0)} ms`);
    await arrived;
    assert.ok(performance.now() - started >= 390, 'its result came when it ended');
  });
});
