/**
 * Outgoing MSG frames take a small share of the endpoint's slab at first and grow to the
 * datagram budget when a message needs it: in place when the frame is the last one cut, else
 * by moving. Both paths, signed and not, over real UDP on loopback (60,000-byte datagrams).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUdpTransport } from '../../src/transport/index.ts';
import type { NotificationBody } from '../../src/protocol/messages.ts';

for (const secret of [undefined, 'frames-test-secret']) {
  test(`a frame grows in place, or moves when another peer's frame was cut after it${secret ? ' (signed)' : ''}`, async () => {
    const server = await createUdpTransport({ host: '127.0.0.1', port: 0, secret });
    const client = await createUdpTransport({ host: '127.0.0.1', port: 0, secret });
    const other = await createUdpTransport({ host: '127.0.0.1', port: 0, secret });
    try {
      const pushed: NotificationBody<'progress'>[] = [];
      const got = new Promise<void>((resolve) => {
        other.onNotification('progress', (body) => {
          pushed.push(body);
          if (pushed.length === 2) resolve();
        });
      });
      server.handle('submit', ({ tasks }) => {
        // The second request of the datagram: the reply to the client (whose frame holds the
        // first reply) follows a message to another peer, and needs far more than the frame's
        // first share of the slab.
        if (tasks.length > 1)
          server.notify(other.address, 'progress', { id: 7, attempt: 1, message: 'm'.repeat(900) });
        return { results: tasks.map((_, i) => ({ id: i + 1 })) };
      });
      const many = Array.from({ length: 1_000 }, (_, i) => ({ type: 'reverse', payload: `t${i}` }));
      // Sent in one datagram: the client's frame grows in place for the second request; a
      // frame to another peer is cut after it in the same turn.
      const replies = Promise.all([
        client.request(server.address, 'submit', { tasks: [{ type: 'reverse', payload: 'x' }] }),
        client.request(server.address, 'submit', { tasks: many }),
      ]);
      client.notify(other.address, 'progress', { id: 8, attempt: 2, progress: 0.5 });
      const [one, all] = await replies;
      assert.deepEqual(one.results, [{ id: 1 }]);
      assert.deepEqual(
        all.results,
        many.map((_, i) => ({ id: i + 1 })),
      );
      await got;
      assert.deepEqual(
        pushed.sort((x, y) => x.id - y.id),
        [
          { id: 7, attempt: 1, message: 'm'.repeat(900) },
          { id: 8, attempt: 2, progress: 0.5 },
        ],
      );
      assert.equal(client.counters().datagramsOut, 2, 'both requests in one datagram, and the notification');
      assert.equal(server.counters().fragmentsOut, 0, 'no fragments on loopback');
      assert.equal(client.counters().malformed + server.counters().malformed + other.counters().malformed, 0);
      assert.equal(client.counters().authFailures + server.counters().authFailures, 0);
    } finally {
      await client.close();
      await other.close();
      await server.close();
    }
  });
}
