/**
 * The transport conformance suite: one set of expectations, run over every link (the in-memory
 * lossy network and real UDP on loopback through a lossy relay process).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { BusyError, ErrorCode, TaskGridError } from '../../src/errors.ts';
import type { Endpoint, EndpointOptions, PeerAddress } from '../../src/transport/index.ts';

export interface LinkFaults {
  loss?: number;
  duplicate?: number;
  reorder?: number;
  delayMs?: number;
  reorderMs?: number;
}

export interface Pair {
  client: Endpoint;
  server: Endpoint;
  /** Where the client sends to reach the server (the server itself, or a relay before it). */
  serverAddr: PeerAddress;
  close(): Promise<void>;
}

export type PairFactory = (o: {
  faults?: LinkFaults;
  client?: EndpointOptions;
  server?: EndpointOptions;
}) => Promise<Pair>;

/** Options the suite uses to keep retransmission quick under heavy loss. */
const QUICK: EndpointOptions = { initialRtoMs: 20, minRtoMs: 5, maxRtoMs: 200, requestTimeoutMs: 60_000 };

function withPair(make: PairFactory, o: Parameters<PairFactory>[0], fn: (p: Pair) => Promise<void>) {
  return async () => {
    const p = await make(o);
    try {
      await fn(p);
    } finally {
      await p.close();
    }
  };
}

/** An echo over a real request kind: `get-result` answers with the ids it was given. */
function echo(server: Endpoint, calls?: Map<number, number>) {
  server.handle('get-result', ({ ids }) => {
    for (const id of ids) calls?.set(id, (calls.get(id) ?? 0) + 1);
    return { tasks: [], missing: ids };
  });
}

export function transportConformance(name: string, make: PairFactory, scale: { stress: number }): void {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  describe(`transport conformance over ${name}`, () => {
    test(
      'a request is answered with the reply its handler returned',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        server.handle('ping', () => ({ component: 'test', version: '1', uptimeMs: 5, pid: process.pid }));
        const reply = await client.request(serverAddr, 'ping', {});
        assert.equal(reply.component, 'test');
        assert.equal(reply.pid, process.pid);
      }),
    );

    test(
      "a handler's TaskGridError reaches the caller with its code and message",
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        server.handle('cancel', ({ id }) => {
          throw new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} not found`);
        });
        await assert.rejects(client.request(serverAddr, 'cancel', { id: 42 }), {
          code: 'TG_ERR_NOT_FOUND',
          message: 'task 42 not found',
        });
      }),
    );

    test(
      'a busy reply reaches the caller as BusyError with its retry-after',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        server.handle('submit', () => {
          throw new BusyError('queue full', 250);
        });
        const err = await client.request(serverAddr, 'submit', { tasks: [{ type: 'reverse', payload: 'x' }] }).then(
          () => assert.fail('expected busy'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof BusyError);
        assert.equal(err.code, 'TG_ERR_BUSY');
        assert.equal(err.retryAfterMs, 250);
      }),
    );

    test(
      'a handler that throws a plain error yields TG_ERR_INTERNAL without leaking its message',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        server.handle('retry', () => {
          throw new Error('secret internals');
        });
        const err = (await client.request(serverAddr, 'retry', { id: 1 }).catch((e: unknown) => e)) as TaskGridError;
        assert.equal(err.code, 'TG_ERR_INTERNAL');
        assert.doesNotMatch(err.message, /secret internals/);
        assert.equal(server.counters().handlerErrors, 1);
      }),
    );

    test(
      'a kind the peer does not serve is refused with TG_ERR_UNKNOWN_KIND',
      withPair(make, {}, async ({ client, serverAddr }) => {
        await assert.rejects(client.request(serverAddr, 'stats', {}), { code: 'TG_ERR_UNKNOWN_KIND' });
      }),
    );

    test(
      'an invalid body never reaches the handler and is answered with TG_ERR_BAD_MESSAGE',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        let called = 0;
        server.handle('cancel', () => {
          called++;
          return { task: undefined as never };
        });
        const bad = { id: 'not-a-number' } as unknown as { id: number };
        const err = (await client.request(serverAddr, 'cancel', bad).catch((e: unknown) => e)) as TaskGridError;
        assert.equal(err.code, 'TG_ERR_BAD_MESSAGE');
        assert.match(err.message, /id/);
        assert.equal(called, 0);
        assert.ok(server.counters().malformed >= 1);
      }),
    );

    test(
      'a request nobody answers fails with TG_ERR_TIMEOUT at its deadline',
      withPair(make, { client: QUICK }, async ({ client, server, serverAddr }) => {
        server.handle('ping', () => new Promise(() => {}));
        const started = Date.now();
        await assert.rejects(client.request(serverAddr, 'ping', {}, { timeoutMs: 300 }), {
          code: 'TG_ERR_TIMEOUT',
        });
        assert.ok(Date.now() - started >= 290, 'not before the deadline');
        assert.ok(client.counters().retransmits >= 1, 'it retransmitted before giving up');
        assert.equal(client.counters().timeouts, 1);
      }),
    );

    test(
      'an oversized message is refused before sending, naming both sizes',
      withPair(make, { client: { maxMessageBytes: 64 * 1024 } }, async ({ client, serverAddr }) => {
        const before = client.counters().datagramsOut;
        const payload = 'x'.repeat(70 * 1024);
        const err = (await client
          .request(serverAddr, 'submit', { tasks: [{ type: 'reverse', payload }] })
          .catch((e: unknown) => e)) as TaskGridError;
        assert.equal(err.code, 'TG_ERR_TOO_LARGE');
        assert.match(err.message, /of \d+ bytes exceeds the maximum message size of 65536 bytes/);
        assert.equal(client.counters().datagramsOut, before, 'nothing was sent');
      }),
    );

    test(
      'a message many datagrams long and its long reply cross intact',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        const payload = randomBytes(150 * 1024).toString('base64');
        server.handle('submit', ({ tasks }) => ({
          results: tasks.map((t) => ({ error: { code: 'TG_ERR_BAD_PAYLOAD' as const, message: t.payload.slice(0, 4000) } })),
        }));
        server.handle('done', ({ tasks }) => {
          assert.equal(tasks[0]!.result, payload);
          return {};
        });
        const reply = await client.request(serverAddr, 'submit', {
          tasks: Array.from({ length: 60 }, (_, i) => ({ type: 'reverse', payload: payload.slice(i * 4000, (i + 1) * 4000) })),
        });
        assert.equal(reply.results.length, 60);
        const rebuilt = reply.results.map((r) => ('error' in r ? r.error.message : '')).join('');
        assert.equal(rebuilt, payload.slice(0, 240_000));
        assert.ok(client.counters().fragmentsOut > 100);
        assert.ok(server.counters().reassemblies >= 1);
        assert.ok(client.counters().reassemblies >= 1);
      }),
    );

    test(
      'a notification is delivered to its handler once',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        const got: number[] = [];
        const done = new Promise<void>((resolve) => {
          server.onNotification('progress', (b) => {
            got.push(b.id);
            if (got.length === 3) resolve();
          });
        });
        for (const id of [1, 2, 3]) client.notify(serverAddr, 'progress', { id, attempt: 1, progress: 0.5 });
        await done;
        assert.deepEqual(got.sort(), [1, 2, 3]);
      }),
    );

    test(
      'closing rejects pending requests with TG_ERR_CLOSED',
      withPair(make, {}, async ({ client, server, serverAddr }) => {
        server.handle('ping', () => new Promise(() => {}));
        const pending = client.request(serverAddr, 'ping', {});
        await new Promise((r) => setTimeout(r, 20));
        await client.close();
        await assert.rejects(pending, { code: 'TG_ERR_CLOSED' });
      }),
    );

    test(
      'small requests issued together share datagrams',
      // A long first timeout: on a loaded machine a retransmission would blur the count.
      withPair(make, { client: { initialRtoMs: 5_000 } }, async ({ client, server, serverAddr }) => {
        echo(server);
        await Promise.all(Array.from({ length: 200 }, (_, i) => client.request(serverAddr, 'get-result', { ids: [i + 1] })));
        const c = client.counters();
        assert.equal(c.messagesOut, 200);
        assert.ok(c.datagramsOut < 50, `200 requests took ${c.datagramsOut} datagrams`);
      }),
    );

    test(
      `with 30% loss, 10% duplication and reordering, ${scale.stress} requests with many in flight each complete once with their own reply`,
      { timeout: 240_000 },
      withPair(
        make,
        { faults: { loss: 0.3, duplicate: 0.1, reorder: 0.1, reorderMs: 5 }, client: QUICK, server: QUICK },
        async ({ client, server, serverAddr }) => {
          const calls = new Map<number, number>();
          echo(server, calls);
          const inFlight = 500;
          let next = 1;
          const wrong: number[] = [];
          const worker = async () => {
            while (next <= scale.stress) {
              const id = next++;
              const reply = await client.request(serverAddr, 'get-result', { ids: [id] });
              if (reply.missing.length !== 1 || reply.missing[0] !== id) wrong.push(id);
            }
          };
          await Promise.all(Array.from({ length: inFlight }, worker));
          assert.deepEqual(wrong, [], 'every caller got its own reply');
          assert.equal(calls.size, scale.stress, 'every request reached its handler');
          const twice = [...calls].filter(([, n]) => n !== 1);
          assert.deepEqual(twice, [], 'no handler ran twice');
          const c = client.counters();
          assert.ok(c.retransmits > 0, 'loss was recovered by retransmission');
          assert.ok(server.counters().duplicates > 0, 'duplicates were suppressed');
        },
      ),
    );

    test(
      'a 1 MiB message crosses 10% loss intact, re-sending only lost fragments',
      { timeout: 120_000 },
      withPair(make, { faults: { loss: 0.1 }, client: QUICK, server: QUICK }, async ({ client, server, serverAddr }) => {
        const blob = randomBytes(760 * 1024).toString('base64'); // 1,013,336 bytes of payload
        const digest = createHash('sha256').update(blob).digest('hex');
        let seen = '';
        server.handle('submit', ({ tasks }) => {
          seen = createHash('sha256').update(tasks[0]!.payload).digest('hex');
          return { results: [{ id: 1 }] };
        });
        const reply = await client.request(serverAddr, 'submit', { tasks: [{ type: 'hash', payload: blob }] });
        assert.deepEqual(reply.results, [{ id: 1 }]);
        assert.equal(seen, digest);
        const c = client.counters();
        const fragments = Math.ceil(blob.length / 1000);
        assert.ok(c.fragmentsResent > 0, 'lost fragments were re-sent');
        // 10% loss costs about a tenth of the fragments again (plus re-sent ones lost again).
        assert.ok(
          c.fragmentsResent < fragments * 0.4,
          `re-sent ${c.fragmentsResent} fragments of about ${fragments}: only lost ones, not the whole message`,
        );
      }),
    );
  });
}
