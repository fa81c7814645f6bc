import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TaskGridError } from '../../src/errors.ts';
import { Nameservice, NAMESERVICE_DEFAULTS } from '../../src/nameservice/index.ts';
import type { ParsedRequest, RequestBody } from '../../src/protocol/messages.ts';
import { FAST_NS, sleep, waitFor, withGrid, workerAt } from './helpers.ts';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    assert.ok(err instanceof TaskGridError, `expected a TaskGridError, got ${String(err)}`);
    return err.code;
  }
}

describe('nameservice registrations', () => {
  test(
    'a registered worker is found by lookup of its type and listed with its times',
    withGrid(async (g) => {
      const { address: ns } = g.nameservice();
      const w = g.endpoint('w1');
      const before = Date.now();
      const reply = await w.request(
        ns,
        'register',
        workerAt(w.address, ['reverse', 'upper'], { meta: { zone: 'a' } }),
      );
      assert.equal(reply.ttlMs, FAST_NS.leaseTtlMs);
      assert.equal(reply.heartbeatMs, FAST_NS.heartbeatMs);
      assert.match(reply.id, /^worker-/);
      assert.ok(reply.leaseId.length >= 16);

      const { instances } = await w.request(ns, 'lookup', { type: 'upper' });
      assert.equal(instances.length, 1);
      const [i] = instances;
      assert.equal(i?.id, reply.id);
      assert.deepEqual(i?.address, w.address);
      assert.deepEqual(i?.types, ['reverse', 'upper']);
      assert.deepEqual(i?.meta, { zone: 'a' });
      assert.equal(i?.capacity, 4);

      assert.deepEqual((await w.request(ns, 'lookup', { type: 'other' })).instances, []);
      const listed = (await w.request(ns, 'list', {})).instances;
      assert.equal(listed.length, 1);
      assert.ok(listed[0]!.registeredAt >= before && listed[0]!.lastSeen >= listed[0]!.registeredAt);
    }),
  );

  test(
    'many instances of one type are all returned, and lookup filters by role and type together',
    withGrid(async (g) => {
      const { address: ns } = g.nameservice();
      const c = g.endpoint('client');
      for (let i = 0; i < 20; i++) {
        await c.request(ns, 'register', workerAt({ host: `w${i}`, port: 6000 }, ['reverse']));
      }
      await c.request(ns, 'register', {
        role: 'dispatcher',
        types: [],
        address: { host: 'dispatcher', port: 4000 },
        capacity: 0,
      });
      assert.equal((await c.request(ns, 'lookup', { type: 'reverse' })).instances.length, 20);
      const d = (await c.request(ns, 'lookup', { role: 'dispatcher' })).instances;
      assert.deepEqual(
        d.map((i) => i.address),
        [{ host: 'dispatcher', port: 4000 }],
      );
      assert.equal(
        (await c.request(ns, 'lookup', { role: 'dispatcher', type: 'reverse' })).instances.length,
        0,
      );
      assert.equal((await c.request(ns, 'list', {})).instances.length, 21);
    }),
  );

  test(
    'heartbeats keep a lease alive well past its TTL, and their absence removes the entry',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const w = g.endpoint('w1');
      const { leaseId, id } = await w.request(address, 'register', workerAt(w.address, ['reverse']));
      const until = Date.now() + FAST_NS.leaseTtlMs * 3;
      while (Date.now() < until) {
        await w.request(address, 'heartbeat', { leaseId, inFlight: 2 });
        await sleep(FAST_NS.heartbeatMs);
      }
      const alive = (await w.request(address, 'list', {})).instances;
      assert.deepEqual(
        alive.map((i) => [i.id, i.inFlight]),
        [[id, 2]],
      );
      // Silence: the sweep removes it by itself, without anyone asking.
      await waitFor(() => ns.stats().instances === 0, 'the lapsed entry to be swept', FAST_NS.leaseTtlMs * 4);
      assert.equal(ns.stats().expired, 1);
      assert.deepEqual((await w.request(address, 'list', {})).instances, []);
      assert.equal(await codeOf(w.request(address, 'heartbeat', { leaseId })), 'TG_ERR_UNKNOWN_LEASE');
    }),
  );

  test(
    'deregister ends the lease at once, and a second deregister answers TG_ERR_UNKNOWN_LEASE',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const w = g.endpoint('w1');
      const { leaseId } = await w.request(address, 'register', workerAt(w.address, ['reverse']));
      assert.deepEqual(await w.request(address, 'deregister', { leaseId }), {});
      assert.equal(ns.stats().instances, 0);
      assert.deepEqual((await w.request(address, 'lookup', { type: 'reverse' })).instances, []);
      assert.equal(await codeOf(w.request(address, 'deregister', { leaseId })), 'TG_ERR_UNKNOWN_LEASE');
    }),
  );

  test(
    'a heartbeat with a lease the nameservice never granted answers TG_ERR_UNKNOWN_LEASE',
    withGrid(async (g) => {
      const { address } = g.nameservice();
      const w = g.endpoint('w1');
      assert.equal(
        await codeOf(w.request(address, 'heartbeat', { leaseId: 'no-such-lease' })),
        'TG_ERR_UNKNOWN_LEASE',
      );
    }),
  );

  test(
    're-registering an id replaces the entry and its lease',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const w = g.endpoint('w1');
      const first = await w.request(
        address,
        'register',
        workerAt(w.address, ['reverse'], { id: 'worker-7' }),
      );
      const second = await w.request(
        address,
        'register',
        workerAt(w.address, ['reverse', 'upper'], { id: 'worker-7', capacity: 8 }),
      );
      assert.equal(first.id, 'worker-7');
      assert.equal(second.id, 'worker-7');
      assert.notEqual(first.leaseId, second.leaseId);
      const listed = (await w.request(address, 'list', {})).instances;
      assert.equal(listed.length, 1);
      assert.equal(listed[0]?.capacity, 8);
      assert.equal(
        await codeOf(w.request(address, 'heartbeat', { leaseId: first.leaseId })),
        'TG_ERR_UNKNOWN_LEASE',
      );
      await w.request(address, 'heartbeat', { leaseId: second.leaseId });
      assert.equal(ns.stats().replaced, 1);
    }),
  );

  test(
    'ping names the nameservice, its version and its incarnation',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      const reply = await c.request(address, 'ping', {});
      assert.equal(reply.component, 'nameservice');
      assert.match(reply.version, /^\d+\.\d+\.\d+/);
      assert.equal(reply.pid, process.pid);
      assert.equal(reply.id, ns.epoch);
      assert.ok(reply.uptimeMs >= 0);
    }),
  );
});

describe('nameservice refusals', () => {
  test(
    'bad registrations are refused with clear codes and never stored',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      const refusals: [RequestBody<'register'>, string, RegExp][] = [
        [workerAt({ host: '0.0.0.0', port: 6000 }, ['reverse']), 'TG_ERR_BAD_REQUEST', /wildcard/],
        [workerAt({ host: '::', port: 6000 }, ['reverse']), 'TG_ERR_BAD_REQUEST', /wildcard/],
        [workerAt({ host: '[::1]', port: 6000 }, ['reverse']), 'TG_ERR_BAD_REQUEST', /brackets/],
        [workerAt({ host: 'bad host!', port: 6000 }, ['reverse']), 'TG_ERR_BAD_REQUEST', /host name/],
        [workerAt({ host: 'w1', port: 6000 }, []), 'TG_ERR_BAD_REQUEST', /at least one task type/],
        [workerAt({ host: 'w1', port: 0 }, ['reverse']), 'TG_ERR_BAD_MESSAGE', /port/],
        [workerAt({ host: 'w1', port: 6000 }, ['../etc']), 'TG_ERR_BAD_MESSAGE', /types/],
        [
          workerAt({ host: 'w1', port: 6000 }, ['reverse'], { capacity: -1 }),
          'TG_ERR_BAD_MESSAGE',
          /capacity/,
        ],
      ];
      for (const [body, code, message] of refusals) {
        await assert.rejects(c.request(address, 'register', body), { code, message }, JSON.stringify(body));
      }
      const unknownRole = {
        ...workerAt({ host: 'w1', port: 6000 }, ['x']),
        role: 'boss',
      } as unknown as RequestBody<'register'>;
      await assert.rejects(c.request(address, 'register', unknownRole), { code: 'TG_ERR_BAD_MESSAGE' });
      assert.equal(ns.stats().instances, 0);
      assert.equal(ns.stats().registered, 0);
    }),
  );

  test(
    'a subscription to a wildcard address and a lookup of an invalid type are refused',
    withGrid(async (g) => {
      const { address } = g.nameservice();
      const c = g.endpoint('client');
      await assert.rejects(c.request(address, 'subscribe', { address: { host: '0.0.0.0', port: 4000 } }), {
        code: 'TG_ERR_BAD_REQUEST',
      });
      await assert.rejects(c.request(address, 'subscribe', { address: c.address, ttlMs: 10 }), {
        code: 'TG_ERR_BAD_MESSAGE',
      });
      await assert.rejects(c.request(address, 'lookup', { type: '../../etc/passwd' }), {
        code: 'TG_ERR_BAD_MESSAGE',
      });
    }),
  );

  test(
    'a full nameservice answers BUSY with a retry-after instead of growing',
    withGrid(async (g) => {
      const { address } = g.nameservice('ns', 5001, { ...FAST_NS, maxInstances: 2 });
      const c = g.endpoint('client');
      await c.request(address, 'register', workerAt({ host: 'w1', port: 1 }, ['a']));
      const { id } = await c.request(address, 'register', workerAt({ host: 'w2', port: 1 }, ['a']));
      await assert.rejects(c.request(address, 'register', workerAt({ host: 'w3', port: 1 }, ['a'])), {
        code: 'TG_ERR_BUSY',
        retryAfterMs: FAST_NS.leaseTtlMs,
      });
      // Replacing a held id takes no extra room.
      await c.request(address, 'register', workerAt({ host: 'w2', port: 2 }, ['a'], { id }));
    }),
  );

  test(
    'a closed nameservice refuses requests with TG_ERR_CLOSED',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      ns.close();
      await assert.rejects(c.request(address, 'lookup', {}), { code: 'TG_ERR_CLOSED' });
    }),
  );

  test('options that cannot work are refused at construction', () => {
    const transport = { handle: () => {} } as unknown as ConstructorParameters<
      typeof Nameservice
    >[0]['transport'];
    assert.throws(() => new Nameservice({ transport, heartbeatMs: 5_000, leaseTtlMs: 5_000 }), {
      code: 'TG_ERR_CONFIG',
      message: /shorter than the lease TTL/,
    });
    assert.throws(() => new Nameservice({ transport, sweepMs: 0 }), {
      code: 'TG_ERR_CONFIG',
      message: /sweepMs/,
    });
    assert.ok(NAMESERVICE_DEFAULTS.heartbeatMs < NAMESERVICE_DEFAULTS.leaseTtlMs);
  });
});

describe('nameservice subscriptions', () => {
  /** A subscriber endpoint that records the changes it is sent. */
  function recorder(g: Parameters<Parameters<typeof withGrid>[0]>[0], host = 'sub') {
    const e = g.endpoint(host);
    const got: ParsedRequest<'changes'>[] = [];
    e.handle('changes', (body) => {
      got.push(body);
      return {};
    });
    return { e, got };
  }

  test(
    'a subscriber gets a snapshot, then one changes request per burst, and none for heartbeats',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      const first = await c.request(address, 'register', workerAt({ host: 'w0', port: 1 }, ['a']));
      const { e, got } = recorder(g);
      const snap = await e.request(address, 'subscribe', { address: e.address, ttlMs: 5_000 });
      assert.equal(snap.epoch, ns.epoch);
      assert.equal(snap.ttlMs, 5_000);
      assert.deepEqual(
        snap.instances.map((i) => i.id),
        [first.id],
      );

      // Five registrations sent in one turn travel in one datagram and are announced together.
      const regs = await Promise.all(
        [1, 2, 3, 4, 5].map((n) =>
          c.request(address, 'register', workerAt({ host: `w${n}`, port: 1 }, ['a'])),
        ),
      );
      await waitFor(() => got.reduce((n, b) => n + b.upserted.length, 0) === 5, 'five upserts');
      assert.equal(got.length, 1, 'one request for the burst');
      assert.equal(got[0]?.seq, snap.seq + 1);
      assert.equal(got[0]?.epoch, ns.epoch);

      for (let i = 0; i < 5; i++)
        await c.request(address, 'heartbeat', { leaseId: first.leaseId, inFlight: i });
      await sleep(30);
      assert.equal(got.length, 1, 'heartbeats are not pushed');

      await c.request(address, 'deregister', { leaseId: regs[0]!.leaseId });
      await waitFor(() => got.length === 2, 'the removal');
      assert.deepEqual(got[1]?.removed, [regs[0]!.id]);
      assert.equal(got[1]?.seq, snap.seq + 2);
    }),
  );

  test(
    'registrations that lapse together are removed together, not one request each',
    withGrid(async (g) => {
      const { address } = g.nameservice();
      const c = g.endpoint('client');
      const { e, got } = recorder(g);
      await e.request(address, 'subscribe', { address: e.address });
      await Promise.all(
        [1, 2, 3].map((n) => c.request(address, 'register', workerAt({ host: `w${n}`, port: 1 }, ['a']))),
      );
      const removed = () => got.flatMap((b) => b.removed);
      await waitFor(() => removed().length === 3, 'the lapse', FAST_NS.leaseTtlMs * 5);
      // Lapses found by one sweep travel in one request. On a loaded machine the three
      // registrations may land on either side of a sweep, so allow two, never three.
      const requests = got.filter((b) => b.removed.length > 0).length;
      assert.ok(requests <= 2, `${requests} changes requests carried the 3 removals`);
    }),
  );

  test(
    're-subscribing renews the subscription and returns a fresh snapshot at the current seq',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      const { e, got } = recorder(g);
      const a = await e.request(address, 'subscribe', { address: e.address });
      await c.request(address, 'register', workerAt({ host: 'w1', port: 1 }, ['a']));
      await waitFor(() => got.length === 1, 'the upsert');
      const b = await e.request(address, 'subscribe', { address: e.address });
      assert.equal(b.instances.length, 1);
      assert.equal(b.seq, a.seq + 1);
      assert.equal(ns.stats().subscribers, 1);
    }),
  );

  test(
    'a subscriber that vanishes is dropped once a changes request goes unanswered',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice('ns', 5001, { ...FAST_NS, changesTimeoutMs: 200 });
      const c = g.endpoint('client');
      const { e } = recorder(g);
      await e.request(address, 'subscribe', { address: e.address, ttlMs: 60_000 });
      await e.close();
      await c.request(address, 'register', workerAt({ host: 'w1', port: 1 }, ['a']));
      await waitFor(() => ns.stats().subscribersDropped === 1, 'the drop');
      assert.equal(ns.stats().subscribers, 0);
    }),
  );

  test(
    'a subscriber that refuses its changes is dropped too',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const c = g.endpoint('client');
      const e = g.endpoint('sub'); // no changes handler: answers TG_ERR_UNKNOWN_KIND
      await e.request(address, 'subscribe', { address: e.address });
      await c.request(address, 'register', workerAt({ host: 'w1', port: 1 }, ['a']));
      await waitFor(() => ns.stats().subscribersDropped === 1, 'the drop');
    }),
  );

  test(
    'a subscription that is not renewed lapses',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const { e } = recorder(g);
      await e.request(address, 'subscribe', { address: e.address, ttlMs: 1_000 });
      assert.equal(ns.stats().subscribers, 1);
      await waitFor(() => ns.stats().subscriptionsExpired === 1, 'the lapse', 2_000);
      assert.equal(ns.stats().subscribers, 0);
    }),
  );

  test(
    'changes arrive in order, each once, under 30% loss with duplication and reordering',
    withGrid(
      async (g) => {
        const { ns, address } = g.nameservice('ns', 5001, {
          ...FAST_NS,
          leaseTtlMs: 60_000,
          changesTimeoutMs: 10_000,
        });
        const c = g.endpoint('client');
        const { e, got } = recorder(g);
        const snap = await e.request(address, 'subscribe', { address: e.address, ttlMs: 60_000 });
        const leases: string[] = [];
        for (let i = 0; i < 30; i++) {
          const r = await c.request(address, 'register', workerAt({ host: `w${i}`, port: 1 }, ['a']));
          leases.push(r.leaseId);
          if (i % 3 === 2) await c.request(address, 'deregister', { leaseId: leases[i - 1]! });
        }
        await waitFor(
          () => ns.stats().changesAcknowledged === ns.stats().changesSent,
          'every change acknowledged',
          15_000,
        );
        const seqs = got.map((b) => b.seq);
        assert.deepEqual(
          seqs,
          seqs.map((_, i) => snap.seq + 1 + i),
          'contiguous and in order, no duplicates',
        );
        // Replaying the changes onto the snapshot gives what the nameservice holds.
        const view = new Set(snap.instances.map((i) => i.id));
        for (const b of got) {
          for (const id of b.removed) view.delete(id);
          for (const i of b.upserted) view.add(i.id);
        }
        const truth = (await c.request(address, 'list', {})).instances.map((i) => i.id);
        assert.deepEqual([...view].sort(), truth.sort());
        assert.equal(truth.length, 20);
        assert.ok(g.net.stats.dropped > 0 && g.net.stats.duplicated > 0, 'the network really was lossy');
      },
      { loss: 0.3, duplicate: 0.2, reorder: 0.2, reorderMs: 10 },
    ),
  );
});
