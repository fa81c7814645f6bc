/**
 * TaskGrid+ messages on the nameservice's port, over the in-memory network. Lease times are
 * driven by a clock the test moves (sweeps still run on real timers), so lapses are exact.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { LegacyGrid, StepClock, type LegacyGridOptions } from './support.ts';

const grids: LegacyGrid[] = [];
async function grid(options: LegacyGridOptions = {}): Promise<LegacyGrid> {
  const g = new LegacyGrid(options);
  grids.push(g);
  await g.ready;
  return g;
}
after(async () => {
  for (const g of grids) await g.close();
});

describe('TaskGrid+ workers on the nameservice port', () => {
  test('REGISTER_WORKER registers the sender IP with port 6000, as an instance v1 lookups list', async () => {
    const g = await grid();
    const w = g.program('10.1.2.3');
    const r = await w.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse', address: 'worker-reverse:6000' });
    assert.deepEqual(r, {
      type: 'RESPONSE',
      data: { message: 'Registered reverse at 10.1.2.3:6000' },
      bytes: r.bytes,
    });
    const { instances } = await g.client.request(g.nsAddr, 'lookup', { type: 'reverse' });
    assert.equal(instances.length, 1);
    const i = instances[0]!;
    assert.equal(i.role, 'worker');
    assert.deepEqual(i.types, ['reverse']);
    assert.deepEqual(i.address, { host: '10.1.2.3', port: 6000 });
    assert.equal(i.capacity, 1);
    assert.deepEqual(i.meta, { protocol: 'taskgrid+', address: 'worker-reverse:6000' });
    // Registering again replaces the registration instead of adding one.
    await w.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse' });
    assert.equal((await g.client.request(g.nsAddr, 'lookup', { type: 'reverse' })).instances.length, 1);
  });

  test('LOOKUP_WORKER answers a TaskGrid+ worker and never a v1 one; LIST_WORKERS lists both', async () => {
    const g = await grid();
    await g.v1Worker(['echo']);
    const w = g.program('10.0.0.7');
    await w.must(g.nsAddr, 'REGISTER_WORKER', { type: 'plus' });
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'plus' })).data, {
      address: '10.0.0.7:6000',
    });
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'echo' })).data, {
      error: "No active worker found for type 'echo'",
    });
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'nope' })).data, {
      error: "No active worker found for type 'nope'",
    });
    const listed = (await w.must(g.nsAddr, 'LIST_WORKERS', {})).data.workers as {
      type: string;
      address: string;
    }[];
    assert.deepEqual(listed[0], { type: 'plus', address: '10.0.0.7:6000' }, 'TaskGrid+ workers first');
    assert.ok(listed.some((x) => x.type === 'echo' && x.address.startsWith('v1-worker-')));
  });

  test('LIST_WORKERS lists as many workers as fit in 4096 bytes', async () => {
    const g = await grid();
    const types = Array.from({ length: 120 }, (_, i) => `type_with_a_rather_long_name_${i}`);
    for (const [i, type] of types.entries())
      await g.program(`10.9.${i >> 8}.${i & 255}`).must(g.nsAddr, 'REGISTER_WORKER', { type });
    const r = await g.program('dashboard').must(g.nsAddr, 'LIST_WORKERS');
    assert.ok(r.bytes <= 4096, `${r.bytes} bytes`);
    const listed = r.data.workers as unknown[];
    assert.ok(listed.length > 10 && listed.length < types.length, `${listed.length} listed`);
  });

  test('HEARTBEAT renews every registration from its IP and only those; DEREGISTER_WORKER removes them', async () => {
    const clock = new StepClock();
    const g = await grid({ nsClock: clock });
    const a = g.program('10.0.0.1');
    const b = g.program('10.0.0.2');
    await a.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse' });
    await a.must(g.nsAddr, 'REGISTER_WORKER', { type: 'upper' });
    await b.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse' });
    // A v1 instance on the same host has its own lease: a TaskGrid+ heartbeat is not for it.
    await g.client.request(g.nsAddr, 'register', {
      id: 'v1-on-a',
      role: 'worker',
      types: ['echo'],
      address: { host: '10.0.0.1', port: 7777 },
      capacity: 4,
    });
    clock.t += 20_000;
    assert.deepEqual((await a.must(g.nsAddr, 'HEARTBEAT', {})).data, {
      message: 'Heartbeat received, updated 2 entries',
    });
    clock.t += 15_000;
    const hosts = async (type: string) =>
      (await g.client.request(g.nsAddr, 'lookup', { type })).instances.map((i) => i.address.host).sort();
    assert.deepEqual(
      await hosts('reverse'),
      ['10.0.0.1'],
      "10.0.0.2's registration lapsed; 10.0.0.1's was renewed",
    );
    assert.deepEqual(await hosts('upper'), ['10.0.0.1']);
    assert.deepEqual(await hosts('echo'), [], 'the v1 instance was not renewed by it');

    assert.deepEqual(
      (await a.must(g.nsAddr, 'DEREGISTER_WORKER', { type: 'reverse', address: 'x:6000' })).data,
      {
        message: 'Deregistered 2 entries',
      },
    );
    assert.deepEqual(await hosts('reverse'), []);
    assert.deepEqual((await b.must(g.nsAddr, 'DEREGISTER_WORKER')).data, {
      message: 'Deregistered 0 entries',
    });
  });

  test('a TaskGrid+ registration lapses 30 s after its last heartbeat', async () => {
    const clock = new StepClock();
    const g = await grid({ nsClock: clock });
    const w = g.program('10.0.0.1');
    await w.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse' });
    clock.t += 29_999;
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'reverse' })).data, {
      address: '10.0.0.1:6000',
    });
    clock.t += 1;
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'reverse' })).data, {
      error: "No active worker found for type 'reverse'",
    });
    assert.deepEqual((await w.must(g.nsAddr, 'LIST_WORKERS', {})).data, { workers: [] });
  });

  test('a HEARTBEAT naming its type registers a worker the nameservice no longer holds', async () => {
    const clock = new StepClock();
    const g = await grid({ nsClock: clock });
    const w = g.program('10.0.0.1');
    await w.must(g.nsAddr, 'REGISTER_WORKER', { type: 'reverse' });
    clock.t += 31_000;
    // TaskGrid+ workers register once, at start, then only send heartbeats with their type.
    assert.deepEqual(
      (await w.must(g.nsAddr, 'HEARTBEAT', { type: 'reverse', address: 'worker:6000' })).data,
      {
        message: 'Heartbeat received, updated 1 entries',
      },
    );
    assert.deepEqual((await w.must(g.nsAddr, 'LOOKUP_WORKER', { type: 'reverse' })).data, {
      address: '10.0.0.1:6000',
    });
    // Without a type there is nothing to register again.
    clock.t += 31_000;
    assert.deepEqual((await w.must(g.nsAddr, 'HEARTBEAT', {})).data, {
      message: 'Heartbeat received, updated 0 entries',
    });
  });

  test('bad TaskGrid+ input is refused, counted and answered with the nameservice texts', async () => {
    const g = await grid();
    const p = g.program('10.0.0.1');
    const before = g.nsT.counters().malformed;
    assert.deepEqual((await p.must(g.nsAddr, 'GET_STATS', {})).data, { error: 'Unknown message type' });
    const bad = await p.must(g.nsAddr, 'REGISTER_WORKER', { type: 'no spaces allowed' });
    assert.match(String(bad.data.error), /^Invalid REGISTER_WORKER: type: /);
    assert.equal(await p.ask(g.nsAddr, Buffer.from('\u0000\u0001'), undefined, 300), undefined);
    assert.equal(g.nsT.counters().malformed - before, 3);
    assert.equal(g.legacyNs.counters().malformed, 3);
    assert.equal((await g.client.request(g.nsAddr, 'list', {})).instances.length, 0);
  });
});
