import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Directory, lookupOnce, Nameservice, Registration } from '../../src/nameservice/index.ts';
import { createUdpTransport, type Endpoint } from '../../src/transport/index.ts';
import { waitFor } from './helpers.ts';

test('a worker registers, is pushed to a Directory and leaves, over real UDP on loopback', async () => {
  const opened: Endpoint[] = [];
  const udp = async () => {
    const t = await createUdpTransport({ host: '127.0.0.1', port: 0 });
    opened.push(t);
    return t;
  };
  const closers: (() => unknown)[] = [];
  try {
    const nsTransport = await udp();
    const ns = new Nameservice({ transport: nsTransport, heartbeatMs: 50, leaseTtlMs: 300, sweepMs: 20 });
    closers.push(() => ns.close());
    const nameservers = [nsTransport.address];

    const dispatcherTransport = await udp();
    const dispatcher = new Registration({
      transport: dispatcherTransport,
      nameservers,
      instance: { role: 'dispatcher', types: [], address: dispatcherTransport.address, capacity: 0 },
    });
    closers.push(() => dispatcher.stop());
    const dir = new Directory({
      transport: dispatcherTransport,
      nameservers,
      self: dispatcherTransport.address,
      ttlMs: 1_000,
    });
    closers.push(() => dir.close());
    await Promise.all([dispatcher.start(), dir.start()]);

    const workerTransport = await udp();
    const worker = new Registration({
      transport: workerTransport,
      nameservers,
      instance: { role: 'worker', types: ['reverse'], address: workerTransport.address, capacity: 3 },
    });
    closers.push(() => worker.stop());
    await worker.start();
    await waitFor(() => dir.instances({ type: 'reverse' }).length === 1, 'the worker in the view');
    assert.deepEqual(dir.instances({ type: 'reverse' })[0]?.address, workerTransport.address);

    // A client finds the dispatcher through the nameservice.
    const client = await udp();
    const [found] = await lookupOnce(client, nameservers, { role: 'dispatcher' }, 2_000);
    assert.deepEqual(found?.address, dispatcherTransport.address);

    await worker.stop();
    await waitFor(() => dir.instances({ type: 'reverse' }).length === 0, 'the worker to leave the view');
    assert.equal(ns.stats().requests.list ?? 0, 0);
    assert.equal(ns.stats().requests.lookup, 1, "only the client's lookup");
  } finally {
    for (const c of closers.reverse()) await c();
    for (const t of opened) await t.close();
  }
});
