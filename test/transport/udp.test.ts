import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { test } from 'node:test';
import { LIMITS } from '../../src/protocol/limits.ts';
import { createUdpTransport } from '../../src/transport/index.ts';
import { bindUdpLink } from '../../src/transport/udp-link.ts';
import { startTs } from '../support/process.ts';
import { transportConformance } from './transport.case.ts';

// The internet-sized budget, so that the fragment machinery is what crosses the lossy relay
// (loopback-bound endpoints otherwise send datagrams of up to 60,000 bytes; see below).
const BUDGET = { datagramBudget: LIMITS.datagramBudget };

transportConformance(
  'real UDP on loopback through a lossy relay process',
  async ({ faults, client, server }) => {
    const s = await createUdpTransport({ host: '127.0.0.1', port: 0, ...BUDGET, ...server });
    const c = await createUdpTransport({ host: '127.0.0.1', port: 0, ...BUDGET, ...client });
    let serverAddr = s.address;
    let stopRelay = async () => {};
    if (faults) {
      const relay = startTs('test/support/relay-process.ts', [
        `127.0.0.1:${s.address.port}`,
        JSON.stringify(faults),
      ]);
      const { port } = await relay.nextJson<{ port: number }>((v) => 'port' in v);
      serverAddr = { host: '127.0.0.1', port };
      stopRelay = () => relay.stop();
    }
    return {
      client: c,
      server: s,
      serverAddr,
      close: async () => {
        await c.close();
        await s.close();
        await stopRelay();
      },
    };
  },
  { stress: 10_000 },
);

test('an endpoint bound to loopback sends a 30 kB message in one datagram; one bound to every interface fragments it', async () => {
  const server = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const local = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const wide = await createUdpTransport({ host: '0.0.0.0', port: 0 });
  try {
    const payload = 'p'.repeat(30_000);
    server.handle('submit', ({ tasks }) => ({ results: tasks.map((_, i) => ({ id: i + 1 })) }));
    for (const client of [local, wide]) {
      const reply = await client.request(server.address, 'submit', { tasks: [{ type: 'reverse', payload }] });
      assert.deepEqual(reply.results, [{ id: 1 }]);
    }
    assert.equal(local.counters().fragmentsOut, 0, 'loopback: no fragments');
    assert.equal(local.counters().datagramsOut, 1, 'loopback: the request is one datagram');
    assert.ok(
      wide.counters().fragmentsOut >= Math.ceil(30_000 / LIMITS.datagramBudget),
      `every interface: fragments of at most ${LIMITS.datagramBudget} bytes (${wide.counters().fragmentsOut})`,
    );
  } finally {
    await local.close();
    await wide.close();
    await server.close();
  }
});

/** A plain node:dgram socket on `host` that records what it receives. */
async function receiver(host: string): Promise<{ port: number; got: Promise<Buffer>; close(): void }> {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const got = new Promise<Buffer>((resolve) => sock.once('message', (msg) => resolve(msg)));
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return { port: sock.address().port, got, close: () => sock.close() };
}

test('a datagram to an IP address leaves within the send call: closing the link right after it still delivers it (IPv4 and IPv6)', async () => {
  for (const host of ['127.0.0.1', '::1']) {
    const rx = await receiver(host);
    const link = await bindUdpLink({ host, port: 0 });
    try {
      link.send(Buffer.from(`sent before close on ${host}`), { host, port: rx.port });
      await link.close();
      const msg = await Promise.race([
        rx.got,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`nothing arrived on ${host}`)), 2_000),
        ),
      ]);
      assert.equal(msg.toString(), `sent before close on ${host}`);
    } finally {
      rx.close();
    }
  }
});

test('a peer given by host name is still looked up: a datagram to localhost arrives', async () => {
  const rx = await receiver('127.0.0.1');
  const link = await bindUdpLink({ host: '127.0.0.1', port: 0 });
  const errors: Error[] = [];
  link.onError((err) => errors.push(err));
  try {
    link.send(Buffer.from('by name'), { host: 'localhost', port: rx.port });
    const msg = await Promise.race([
      rx.got,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`nothing arrived: ${errors.map(String).join('; ')}`)), 5_000),
      ),
    ]);
    assert.equal(msg.toString(), 'by name');
  } finally {
    await link.close();
    rx.close();
  }
});
