import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, TaskGridError } from '../../src/errors.ts';
import { lookupOnce, Registration, type RegistrationOptions } from '../../src/nameservice/index.ts';
import type { Endpoint, PeerAddress } from '../../src/transport/index.ts';
import { FAST_NS, sleep, waitFor, withGrid, type Grid } from './helpers.ts';

/** A worker-side Registration on its own endpoint, stopped when the grid closes. */
function worker(
  g: Grid,
  host: string,
  nameservers: PeerAddress[],
  extra: Partial<RegistrationOptions> = {},
): { reg: Registration; transport: Endpoint } {
  const transport = g.endpoint(host);
  const reg = new Registration({
    transport,
    nameservers,
    instance: { role: 'worker', types: ['reverse'], address: transport.address, capacity: 2 },
    requestTimeoutMs: 200,
    startTimeoutMs: 1_000,
    retryMs: 20,
    maxRetryMs: 100,
    stopTimeoutMs: 300,
    ...extra,
  });
  g.defer(() => reg.stop());
  return { reg, transport };
}

describe('Registration', () => {
  test(
    'start registers with every nameservice under one stable id and keeps the leases alive',
    withGrid(async (g) => {
      const a = g.nameservice('ns-a');
      const b = g.nameservice('ns-b');
      const { reg, transport } = worker(g, 'w1', [a.address, b.address]);
      await reg.start();
      await waitFor(() => a.ns.stats().instances === 1 && b.ns.stats().instances === 1, 'both registrations');
      await sleep(FAST_NS.leaseTtlMs * 3);
      for (const { address } of [a, b]) {
        const { instances } = await transport.request(address, 'list', {});
        assert.deepEqual(
          instances.map((i) => i.id),
          [reg.id],
        );
      }
      assert.equal(a.ns.stats().expired + b.ns.stats().expired, 0, 'heartbeats kept both leases');
      assert.ok((a.ns.stats().requests.heartbeat ?? 0) >= 3);
      assert.deepEqual(
        reg.status().map((s) => s.registered),
        [true, true],
      );
    }),
  );

  test(
    'stop deregisters everywhere, at once rather than at lease expiry',
    withGrid(async (g) => {
      const a = g.nameservice('ns-a');
      const b = g.nameservice('ns-b');
      const { reg } = worker(g, 'w1', [a.address, b.address]);
      await reg.start();
      await waitFor(() => a.ns.stats().instances === 1 && b.ns.stats().instances === 1, 'both registrations');
      await reg.stop();
      assert.equal(a.ns.stats().deregistered, 1);
      assert.equal(b.ns.stats().deregistered, 1);
      assert.equal(a.ns.stats().instances + b.ns.stats().instances, 0);
    }),
  );

  test(
    'after a nameservice restart the instance is back within one heartbeat interval',
    withGrid(async (g) => {
      const heartbeatMs = 200;
      const options = { ...FAST_NS, heartbeatMs, leaseTtlMs: 1_000 };
      const first = g.nameservice('ns', 5001, options);
      const { reg } = worker(g, 'w1', [first.address]);
      await reg.start();
      await first.stop();
      await sleep(50);
      const second = g.nameservice('ns', 5001, options);
      const elapsed = await waitFor(() => second.ns.stats().instances === 1, 'the re-registration', 2_000);
      assert.ok(elapsed <= heartbeatMs + 100, `back after ${elapsed} ms`);
      const c = g.endpoint('client');
      const { instances } = await c.request(second.address, 'lookup', { type: 'reverse' });
      assert.deepEqual(
        instances.map((i) => i.id),
        [reg.id],
        'the same instance id',
      );
    }),
  );

  test(
    'with two nameservices, lookups still find the instance when one of them dies',
    withGrid(async (g) => {
      const a = g.nameservice('ns-a');
      const b = g.nameservice('ns-b');
      const { reg } = worker(g, 'w1', [a.address, b.address]);
      await reg.start();
      await waitFor(() => b.ns.stats().instances === 1, 'the second registration');
      await a.stop();
      await sleep(FAST_NS.leaseTtlMs * 2);
      const client = g.endpoint('client');
      const found = await lookupOnce(client, [a.address, b.address], { type: 'reverse' }, 1_000);
      assert.deepEqual(
        found.map((i) => i.id),
        [reg.id],
      );
      assert.equal(b.ns.stats().expired, 0, 'the live nameservice kept the lease');
    }),
  );

  test(
    'start resolves once one nameservice accepted and registers with a late one in the background',
    withGrid(async (g) => {
      const a = g.nameservice('ns-a');
      const lateAddress = { host: 'ns-b', port: 5001 };
      const { reg } = worker(g, 'w1', [lateAddress, a.address]);
      await reg.start();
      assert.deepEqual(
        reg.status().map((s) => s.registered),
        [false, true],
      );
      const b = g.nameservice('ns-b', 5001);
      await waitFor(() => b.ns.stats().instances === 1, 'the late registration');
    }),
  );

  test(
    'start rejects with TG_ERR_UNREACHABLE when no nameservice answers in time, and then stops',
    withGrid(async (g) => {
      const nowhere = { host: 'ns-nowhere', port: 5001 };
      const { reg, transport } = worker(g, 'w1', [nowhere], { startTimeoutMs: 300 });
      const started = Date.now();
      await assert.rejects(reg.start(), { code: 'TG_ERR_UNREACHABLE', message: /ns-nowhere:5001/ });
      assert.ok(Date.now() - started < 1_000);
      const sent = transport.counters().requestsSent;
      await sleep(300);
      assert.equal(transport.counters().requestsSent, sent, 'no more attempts');
    }),
  );

  test(
    'a registration asked to keep trying registers when a nameservice appears after start gave up',
    withGrid(async (g) => {
      const address = { host: 'ns', port: 5001 };
      const { reg } = worker(g, 'w1', [address], { startTimeoutMs: 200, keepTrying: true });
      await assert.rejects(reg.start(), { code: 'TG_ERR_UNREACHABLE' });
      const { ns } = g.nameservice('ns', 5001);
      await waitFor(() => ns.stats().instances === 1, 'the registration');
    }),
  );

  test(
    'an instance the nameservice refuses makes start reject at once with the refusal',
    withGrid(async (g) => {
      const { address } = g.nameservice('ns', 5001, { ...FAST_NS, maxInstances: 10 });
      const transport = g.endpoint('w1');
      assert.throws(
        () =>
          new Registration({
            transport,
            nameservers: [address],
            instance: { role: 'worker', types: [], address: transport.address, capacity: 1 },
          }),
        { code: 'TG_ERR_BAD_REQUEST', message: /at least one task type/ },
      );
      assert.throws(
        () =>
          new Registration({
            transport,
            nameservers: [address],
            instance: { role: 'worker', types: ['a'], address: { host: '0.0.0.0', port: 1 }, capacity: 1 },
          }),
        { code: 'TG_ERR_BAD_REQUEST', message: /wildcard/ },
      );
      // A refusal the client cannot foresee (a stricter nameservice): no waiting for the timeout.
      const strict = g.endpoint('ns-strict', 5001);
      strict.handle('register', () => {
        throw new TaskGridError(ErrorCode.BAD_REQUEST, 'no workers from this network');
      });
      const { reg } = worker(g, 'w2', [strict.address], { startTimeoutMs: 5_000 });
      const started = Date.now();
      await assert.rejects(reg.start(), {
        code: 'TG_ERR_BAD_REQUEST',
        message: 'no workers from this network',
      });
      assert.ok(Date.now() - started < 1_000);
    }),
  );

  test(
    'update of capacity re-registers the same id; inFlight rides on the next heartbeat',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const { reg, transport } = worker(g, 'w1', [address]);
      await reg.start();
      await reg.update({ capacity: 9, types: ['reverse', 'upper'] });
      let listed = (await transport.request(address, 'list', {})).instances;
      assert.equal(listed.length, 1);
      assert.equal(listed[0]?.id, reg.id);
      assert.equal(listed[0]?.capacity, 9);
      assert.deepEqual(listed[0]?.types, ['reverse', 'upper']);
      assert.equal(ns.stats().replaced, 1);

      await reg.update({ inFlight: 5 });
      await sleep(FAST_NS.heartbeatMs * 3);
      listed = (await transport.request(address, 'list', {})).instances;
      assert.equal(listed[0]?.inFlight, 5);
      assert.equal(ns.stats().replaced, 1, 'no re-registration for load');
      await assert.rejects(reg.update({ types: [] }), { code: 'TG_ERR_BAD_REQUEST' });
      await assert.rejects(reg.update({ inFlight: -1 }), { code: 'TG_ERR_BAD_REQUEST' });
    }),
  );

  test(
    'registrations survive 30% loss with duplication without lapsing',
    withGrid(
      async (g) => {
        // Twenty heartbeats per lease: loss alone would almost never lapse one, and a lease of a
        // second outlasts the event-loop stalls of a loaded machine (this process runs both
        // sides: a stall longer than the lease once let the sweep run before the next heartbeat).
        const { ns, address } = g.nameservice('ns', 5001, { ...FAST_NS, heartbeatMs: 50, leaseTtlMs: 1_000 });
        const { reg } = worker(g, 'w1', [address], { startTimeoutMs: 3_000, requestTimeoutMs: 1_000 });
        await reg.start();
        await sleep(2_500);
        assert.equal(ns.stats().expired, 0);
        assert.equal(ns.stats().instances, 1);
      },
      { loss: 0.3, duplicate: 0.2 },
    ),
  );
});

describe('lookupOnce', () => {
  test(
    'asks the next nameservice when one is dead or knows nobody, and fails only when none answers',
    withGrid(async (g) => {
      const patient = { ...FAST_NS, leaseTtlMs: 60_000 };
      const empty = g.nameservice('ns-empty', 5001, patient);
      const full = g.nameservice('ns-full', 5001, patient);
      const c = g.endpoint('client');
      await c.request(full.address, 'register', {
        role: 'dispatcher',
        types: [],
        address: { host: 'dispatcher', port: 4000 },
        capacity: 0,
      });
      const dead = { host: 'ns-dead', port: 5001 };
      const found = await lookupOnce(c, [dead, empty.address, full.address], { role: 'dispatcher' }, 1_000);
      assert.deepEqual(
        found.map((i) => i.address),
        [{ host: 'dispatcher', port: 4000 }],
      );
      assert.deepEqual(await lookupOnce(c, [empty.address], { type: 'nothing' }, 500), []);
      await assert.rejects(lookupOnce(c, [dead], {}, 200), {
        code: 'TG_ERR_UNREACHABLE',
        message: /ns-dead:5001/,
      });
      await assert.rejects(lookupOnce(c, [full.address], { type: '../x' }, 500), {
        code: 'TG_ERR_BAD_MESSAGE',
      });
    }),
  );
});
