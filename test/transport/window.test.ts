/**
 * The per-peer request window and the flush policy, over the in-memory network: requests
 * beyond the window wait locally and keep their deadlines, a slow request gives its slot back,
 * the window adapts, and a lone request leaves without waiting for the end of the turn.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint, MemoryNetwork, type EndpointOptions } from '../../src/transport/index.ts';

function pair(client: EndpointOptions = {}) {
  const net = new MemoryNetwork({});
  const server = new Endpoint(net.link('server'), {});
  const c = new Endpoint(net.link('client'), client);
  return {
    net,
    server,
    client: c,
    close: async () => {
      await c.close();
      await server.close();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('requests beyond the window wait in a local queue, never more in flight than the window, and all complete', async () => {
  const { server, client, close } = pair({
    initialWindow: 4,
    minWindow: 4,
    maxWindow: 4,
    // Timeouts far above any stall of a loaded machine: this test is about the queue, not loss.
    initialRtoMs: 5_000,
    minRtoMs: 2_000,
  });
  try {
    let running = 0;
    let most = 0;
    server.handle('get-result', async ({ ids }) => {
      running++;
      most = Math.max(most, running);
      await sleep(2);
      running--;
      return { tasks: [], missing: ids };
    });
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, i) => client.request(server.address, 'get-result', { ids: [i + 1] })),
    );
    assert.deepEqual(
      replies.map((r) => r.missing[0]),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    assert.equal(most, 4, 'the server never saw more requests at once than the window');
    assert.equal(client.counters().retransmits, 0);
    assert.deepEqual(client.windowFor(server.address), { window: 4, inFlight: 0, queued: 0 });
  } finally {
    await close();
  }
});

test('a request waiting for a window slot still fails at its deadline, without ever being sent', async () => {
  const { server, client, close } = pair({
    initialWindow: 1,
    minWindow: 1,
    maxWindow: 1,
    initialRtoMs: 5_000,
  });
  try {
    let seen = 0;
    server.handle('ping', () => {
      seen++;
      return new Promise(() => {});
    });
    const first = client.request(server.address, 'ping', {}, { timeoutMs: 2_000 });
    const started = Date.now();
    await assert.rejects(client.request(server.address, 'ping', {}, { timeoutMs: 100 }), {
      code: 'TG_ERR_TIMEOUT',
    });
    assert.ok(Date.now() - started >= 95, 'not before its deadline');
    assert.equal(client.counters().messagesOut, 1, 'only the first request was sent');
    assert.equal(seen, 1);
    await client.close();
    await assert.rejects(first, { code: 'TG_ERR_CLOSED' });
  } finally {
    await close();
  }
});

test('a request slow to be answered, like a long poll, gives its slot back at its first retransmission timeout', async () => {
  const { server, client, close } = pair({
    initialWindow: 1,
    minWindow: 1,
    maxWindow: 1,
    initialRtoMs: 20,
    minRtoMs: 20,
  });
  try {
    server.handle('get-result', async ({ ids, waitMs }) => {
      if (waitMs) await sleep(waitMs);
      return { tasks: [], missing: ids };
    });
    const order: string[] = [];
    const slow = client
      .request(server.address, 'get-result', { ids: [1], waitMs: 400 })
      .then(() => order.push('slow'));
    await sleep(5);
    const fast = client.request(server.address, 'get-result', { ids: [2] }).then(() => order.push('fast'));
    await Promise.all([slow, fast]);
    assert.deepEqual(order, ['fast', 'slow'], 'the quick request did not wait for the slow one');
    assert.equal(server.counters().requestsHandled, 2, 'each handler ran once');
  } finally {
    await close();
  }
});

test('a retransmission timeout halves the window and replies grow it back, within its bounds', async () => {
  const { server, client, close } = pair({
    initialWindow: 64,
    minWindow: 16,
    maxWindow: 128,
    // One retransmission timeout at 250 ms for the slow request below (answered at 400 ms,
    // before the second at 750 ms); the fast rounds after it stay far from any timeout even
    // when a loaded machine stalls the event loop for tens of milliseconds.
    initialRtoMs: 250,
    minRtoMs: 250,
  });
  try {
    server.handle('get-result', async ({ ids, waitMs }) => {
      if (waitMs) await sleep(waitMs);
      return { tasks: [], missing: ids };
    });
    await client.request(server.address, 'get-result', { ids: [1], waitMs: 400 });
    const cut = client.windowFor(server.address).window;
    assert.equal(cut, 32, 'one timeout, one cut: 64 -> 32');
    for (let round = 0; round < 40; round++) {
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => client.request(server.address, 'get-result', { ids: [i + 1] })),
      );
    }
    const grown = client.windowFor(server.address).window;
    assert.ok(grown > cut && grown <= 128, `window grew back from ${cut} to ${grown}, at most 128`);
  } finally {
    await close();
  }
});

test('repeated timeouts cut the window once each, down to its floor and no further', async () => {
  const { server, client, close } = pair({
    initialWindow: 64,
    minWindow: 16,
    maxWindow: 128,
    initialRtoMs: 5,
    minRtoMs: 5,
    maxRtoMs: 10,
  });
  try {
    server.handle('ping', () => new Promise(() => {}));
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      await assert.rejects(client.request(server.address, 'ping', {}, { timeoutMs: 60 }), {
        code: 'TG_ERR_TIMEOUT',
      });
      seen.push(client.windowFor(server.address).window);
    }
    assert.deepEqual(seen, [32, 16, 16, 16, 16, 16]);
  } finally {
    await close();
  }
});

test('a queued request that is aborted is rejected and never sent', async () => {
  const { server, client, close } = pair({
    initialWindow: 1,
    minWindow: 1,
    maxWindow: 1,
    initialRtoMs: 5_000,
  });
  try {
    server.handle('ping', () => new Promise(() => {}));
    void client.request(server.address, 'ping', {}).catch(() => {});
    const ac = new AbortController();
    const queued = client.request(server.address, 'ping', {}, { signal: ac.signal });
    ac.abort();
    await assert.rejects(queued, { name: 'AbortError' });
    await sleep(10);
    assert.equal(client.counters().messagesOut, 1);
  } finally {
    await close();
  }
});

test('a lone request leaves at the end of the current task, not at the end of the event loop turn', async () => {
  const { net, server, client, close } = pair();
  try {
    server.handle('ping', () => ({ component: 'test', version: '1', uptimeMs: 1, pid: 1 }));
    const sentBy = (): Promise<number> => new Promise((r) => setImmediate(() => r(net.stats.sent)));
    const before = net.stats.sent;
    const reply = client.request(server.address, 'ping', {});
    assert.equal(await sentBy(), before + 1, 'sent before any I/O or immediate ran');
    await reply;
    // Under load (many in flight) messages wait for the turn's end and share datagrams.
    const many = Array.from({ length: 50 }, () => client.request(server.address, 'ping', {}));
    const sentEarly = await sentBy();
    await Promise.all(many);
    assert.ok(
      client.counters().datagramsOut - 1 <= 5,
      `50 requests took ${client.counters().datagramsOut - 1} datagrams`,
    );
    assert.ok(sentEarly >= before + 2, 'the first of them left before any I/O or immediate ran');
  } finally {
    await close();
  }
});

test('a reply and the request its promise continuation makes leave in one datagram (a client acknowledging a push, then submitting)', async () => {
  const { net, server, client, close } = pair();
  try {
    const pong = { component: 'test', version: '1', uptimeMs: 1, pid: 1 };
    server.handle('ping', () => pong);
    let pushed!: () => void;
    const push = new Promise<void>((r) => (pushed = r));
    client.handle('ping', () => {
      pushed();
      return pong;
    });
    // The continuation runs a few promise steps after the handler, as user code awaiting a result would.
    const next = (async () => {
      await push;
      await Promise.resolve();
      return client.request(server.address, 'ping', {});
    })();
    const before = client.counters().datagramsOut;
    const messagesBefore = client.counters().messagesOut;
    const received = net.stats.sent;
    await server.request(client.address, 'ping', {});
    await next;
    assert.equal(client.counters().messagesOut - messagesBefore, 2, 'a reply and a request');
    assert.equal(
      client.counters().datagramsOut - before,
      1,
      `the reply and the request shared one datagram (${net.stats.sent - received} datagrams in all)`,
    );
  } finally {
    await close();
  }
});
