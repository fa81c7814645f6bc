import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  Directory,
  Registration,
  type DirectoryChange,
  type DirectoryOptions,
} from '../../src/nameservice/index.ts';
import type { Instance, ReplyBody } from '../../src/protocol/messages.ts';
import type { PeerAddress } from '../../src/transport/index.ts';
import { FAST_NS, sleep, waitFor, withGrid, type Grid } from './helpers.ts';

/** A Directory on a `dispatcher` endpoint, closed when the grid closes. */
function directory(g: Grid, nameservers: PeerAddress[], extra: Partial<DirectoryOptions> = {}) {
  const transport = g.endpoint('dispatcher', 4000);
  const dir = new Directory({
    transport,
    nameservers,
    self: transport.address,
    ttlMs: 1_000,
    requestTimeoutMs: 200,
    startTimeoutMs: 1_000,
    retryMs: 20,
    maxRetryMs: 100,
    ...extra,
  });
  g.defer(() => dir.close());
  const events: DirectoryChange[] = [];
  dir.onChange((ev) => events.push(ev));
  return { dir, transport, events };
}

/** A worker Registration on its own endpoint, stopped when the grid closes. */
function worker(g: Grid, host: string, nameservers: PeerAddress[], types = ['reverse']) {
  const transport = g.endpoint(host);
  const reg = new Registration({
    transport,
    nameservers,
    instance: { role: 'worker', types, address: transport.address, capacity: 2 },
    requestTimeoutMs: 200,
    startTimeoutMs: 2_000,
    retryMs: 20,
    maxRetryMs: 100,
    stopTimeoutMs: 300,
  });
  g.defer(() => reg.stop());
  return { reg, transport };
}

const ids = (list: readonly Instance[]) => list.map((i) => i.id).sort();

describe('Directory', () => {
  test(
    'a Directory learns of an instance joining and leaving without polling',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const { dir, events } = directory(g, [address]);
      await dir.start();
      assert.deepEqual(dir.instances(), []);

      const { reg } = worker(g, 'w1', [address], ['reverse', 'upper']);
      await reg.start();
      await waitFor(() => dir.instances({ type: 'upper' }).length === 1, 'the join');
      assert.equal(dir.get(reg.id)?.capacity, 2);
      assert.deepEqual(dir.instances({ role: 'dispatcher' }), []);
      assert.deepEqual(ids(dir.instances({ role: 'worker', type: 'reverse' })), [reg.id]);
      assert.ok(Object.isFrozen(dir.instances()[0]), 'cached instances cannot be mutated by callers');

      await sleep(FAST_NS.leaseTtlMs * 2); // heartbeats flow, and are not pushed
      assert.equal(events.length, 1);
      assert.deepEqual(ids(events[0]!.upserted), [reg.id]);

      await reg.stop();
      await waitFor(() => dir.instances().length === 0, 'the leave');
      assert.deepEqual(ids(events[1]!.removed), [reg.id]);
      assert.equal(dir.instances({ type: 'upper' }).length, 0, 'the type index forgets it too');
      assert.equal(ns.stats().requests.lookup ?? 0, 0, 'no lookups');
      assert.equal(ns.stats().requests.list ?? 0, 0, 'no lists');
    }),
  );

  test(
    'a worker that dies without deregistering leaves the view when its lease lapses',
    withGrid(async (g) => {
      const { address } = g.nameservice();
      const { dir } = directory(g, [address]);
      await dir.start();
      const { reg, transport } = worker(g, 'w1', [address]);
      await reg.start();
      await waitFor(() => dir.instances().length === 1, 'the join');
      await transport.close(); // a crash: heartbeats stop, nothing is deregistered
      await waitFor(() => dir.instances().length === 0, 'the lapse', FAST_NS.leaseTtlMs * 5);
    }),
  );

  test(
    'an update of capacity reaches the Directory as an upsert of the same instance',
    withGrid(async (g) => {
      const { address } = g.nameservice();
      const { dir, events } = directory(g, [address]);
      await dir.start();
      const { reg } = worker(g, 'w1', [address]);
      await reg.start();
      await waitFor(() => dir.instances().length === 1, 'the join');
      await reg.update({ capacity: 16 });
      await waitFor(() => dir.get(reg.id)?.capacity === 16, 'the new capacity');
      assert.equal(events.length, 2);
      assert.deepEqual(events[1], { upserted: [dir.get(reg.id)], removed: [] });
    }),
  );

  test(
    'a Directory merges two nameservices, and an instance leaves once no live one lists it',
    withGrid(async (g) => {
      const a = g.nameservice('ns-a');
      const b = g.nameservice('ns-b');
      const { dir, events } = directory(g, [a.address, b.address]);
      await dir.start();
      const { reg } = worker(g, 'w1', [a.address, b.address]);
      await reg.start();
      await waitFor(() => dir.status().every((s) => s.instances === 1), 'both views');
      assert.equal(dir.instances().length, 1);
      assert.equal(events.length, 1, 'one event although two nameservices told it');

      await a.stop();
      await sleep(200);
      assert.equal(dir.instances().length, 1, 'the other nameservice still lists it');

      await reg.stop(); // reaches ns-b only
      await waitFor(() => dir.instances().length === 0, 'the leave', 3_000);
      const [sa, sb] = dir.status();
      assert.equal(sa?.synced, false);
      assert.equal(sb?.synced, true);
    }),
  );

  test(
    "after a nameservice restart a Directory's view recovers and takes new pushes",
    withGrid(async (g) => {
      const options = { ...FAST_NS, heartbeatMs: 100, leaseTtlMs: 500 };
      const first = g.nameservice('ns', 5001, options);
      const { dir, events } = directory(g, [first.address], { renewMs: 100 });
      await dir.start();
      const { reg } = worker(g, 'w1', [first.address]);
      await reg.start();
      await waitFor(() => dir.instances().length === 1, 'the join');

      await first.stop();
      const second = g.nameservice('ns', 5001, options);
      await waitFor(
        () => dir.status()[0]?.epoch === second.ns.epoch && dir.instances().length === 1,
        'the re-sync with the new incarnation',
      );
      assert.deepEqual(ids(dir.instances()), [reg.id]);

      assert.ok(
        events.every((ev) => ev.removed.length === 0),
        'the restart did not look like the worker leaving',
      );
      const late = worker(g, 'w2', [second.address]);
      await late.reg.start();
      await waitFor(() => dir.instances().length === 2, 'a push from the new nameservice');
      assert.equal(second.ns.stats().requests.lookup ?? 0, 0);
    }),
  );

  test(
    'when every nameservice is unreachable the Directory keeps its last view',
    withGrid(async (g) => {
      const { address, stop } = g.nameservice();
      const { dir } = directory(g, [address]);
      await dir.start();
      const { reg } = worker(g, 'w1', [address]);
      await reg.start();
      await waitFor(() => dir.instances().length === 1, 'the join');
      await stop();
      await sleep(1_500); // longer than the subscription TTL
      assert.deepEqual(ids(dir.instances()), [reg.id]);
      assert.equal(dir.status()[0]?.synced, false);
    }),
  );

  test(
    "a Directory's view stays true under 30% loss with duplication and reordering",
    withGrid(
      async (g) => {
        const { ns, address, transport } = g.nameservice('ns', 5001, {
          ...FAST_NS,
          heartbeatMs: 100,
          leaseTtlMs: 2_000,
          changesTimeoutMs: 10_000,
        });
        const { dir, events } = directory(g, [address], {
          ttlMs: 5_000,
          requestTimeoutMs: 2_000,
          startTimeoutMs: 5_000,
        });
        await dir.start();
        const workers = Array.from({ length: 8 }, (_, i) => worker(g, `w${i}`, [address]));
        await Promise.all(workers.map((w) => w.reg.start()));
        await Promise.all(workers.slice(0, 3).map((w) => w.reg.stop()));
        await workers[4]!.reg.update({ capacity: 7 });
        const truth = async () => ids((await transport.request(address, 'list', {})).instances);
        const expected = await truth();
        assert.equal(expected.length, 5);
        // The update is acknowledged by the nameservice before its push reaches the Directory:
        // the view converges on the truth, capacity included.
        await waitFor(
          () =>
            ids(dir.instances()).join() === expected.join() && dir.get(workers[4]!.reg.id)?.capacity === 7,
          'the view to match',
          10_000,
        );
        // The events, replayed in order, give the same view.
        const replay = new Map<string, Instance>();
        for (const ev of events) {
          for (const i of ev.removed) replay.delete(i.id);
          for (const i of ev.upserted) replay.set(i.id, i);
        }
        assert.deepEqual([...replay.keys()].sort(), expected);
        assert.equal(ns.stats().subscribersDropped, 0);
        assert.ok(g.net.stats.dropped > 0 && g.net.stats.duplicated > 0);
      },
      { loss: 0.3, duplicate: 0.2, reorder: 0.2, reorderMs: 10 },
    ),
  );

  test(
    'start rejects with TG_ERR_UNREACHABLE when no nameservice answers, and the view fills once one does',
    withGrid(async (g) => {
      const address = { host: 'ns', port: 5001 };
      const { dir } = directory(g, [address], { startTimeoutMs: 200 });
      await assert.rejects(dir.start(), { code: 'TG_ERR_UNREACHABLE', message: /still trying/ });
      const { ns } = g.nameservice('ns', 5001);
      const { reg } = worker(g, 'w1', [address]);
      await reg.start();
      await waitFor(() => dir.instances().length === 1, 'the view');
      assert.equal(ns.stats().subscribers, 1);
    }),
  );

  test(
    'a closed Directory refuses its changes, so that the nameservice drops it at once',
    withGrid(async (g) => {
      const { ns, address } = g.nameservice();
      const { dir } = directory(g, [address], { ttlMs: 60_000 });
      await dir.start();
      dir.close();
      const { reg } = worker(g, 'w1', [address]);
      await reg.start();
      await waitFor(() => ns.stats().subscribersDropped === 1, 'the drop');
      assert.deepEqual(dir.instances(), []);
    }),
  );

  test('options that cannot work are refused at construction', () => {
    const transport = {} as DirectoryOptions['transport'];
    const self = { host: 'dispatcher', port: 4000 };
    const ns = [{ host: 'ns', port: 5001 }];
    assert.throws(() => new Directory({ transport, nameservers: [], self }), { code: 'TG_ERR_CONFIG' });
    assert.throws(() => new Directory({ transport, nameservers: ns, self, ttlMs: 500 }), {
      code: 'TG_ERR_CONFIG',
    });
    assert.throws(() => new Directory({ transport, nameservers: ns, self, ttlMs: 3_000, renewMs: 3_000 }), {
      code: 'TG_ERR_CONFIG',
    });
    assert.throws(
      () => new Directory({ transport, nameservers: ns, self: { host: '0.0.0.0', port: 4000 } }),
      {
        code: 'TG_ERR_BAD_REQUEST',
      },
    );
  });
});

describe('Directory against a scripted nameservice', () => {
  function instance(id: string): Instance {
    return {
      id,
      role: 'worker',
      types: ['a'],
      address: { host: id, port: 1 },
      capacity: 1,
      meta: {},
      registeredAt: 1,
      lastSeen: 1,
    };
  }

  /** A fake nameservice whose subscribe replies are given by the test, one per call. */
  function scripted(g: Grid, replies: ReplyBody<'subscribe'>[]) {
    const e = g.endpoint('ns', 5001);
    let calls = 0;
    e.handle('subscribe', () => {
      const reply = replies[Math.min(calls, replies.length - 1)]!;
      calls++;
      return reply;
    });
    return { e, calls: () => calls };
  }

  test(
    'a gap in seq makes the Directory subscribe again and take the fresh snapshot as the truth',
    withGrid(async (g) => {
      const fake = scripted(g, [
        { instances: [instance('x')], ttlMs: 60_000, epoch: 'E1', seq: 10 },
        { instances: [instance('z')], ttlMs: 60_000, epoch: 'E1', seq: 13 },
      ]);
      const { dir, transport } = directory(g, [fake.e.address], { ttlMs: 60_000 });
      await dir.start();
      assert.deepEqual(ids(dir.instances()), ['x']);
      const to = transport.address;
      await fake.e.request(to, 'changes', { epoch: 'E1', seq: 11, upserted: [instance('y')], removed: [] });
      assert.deepEqual(ids(dir.instances()), ['x', 'y']);
      // Old and repeated numbers are acknowledged and ignored.
      await fake.e.request(to, 'changes', { epoch: 'E1', seq: 11, upserted: [], removed: ['y'] });
      await fake.e.request(to, 'changes', { epoch: 'E1', seq: 9, upserted: [], removed: ['x'] });
      assert.deepEqual(ids(dir.instances()), ['x', 'y']);
      // Seq 12 never came.
      await fake.e.request(to, 'changes', { epoch: 'E1', seq: 13, upserted: [instance('w')], removed: [] });
      await waitFor(() => fake.calls() === 2, 'the second subscribe');
      await waitFor(() => ids(dir.instances()).join() === 'z', 'the fresh snapshot');
      await fake.e.request(to, 'changes', { epoch: 'E1', seq: 14, upserted: [], removed: ['z'] });
      assert.deepEqual(dir.instances(), []);
    }),
  );

  test(
    'changes that overtake the subscribe reply are held and applied after its snapshot',
    withGrid(async (g) => {
      const e = g.endpoint('ns', 5001);
      const { dir, transport } = directory(g, [e.address], { ttlMs: 60_000 });
      let answer: (r: ReplyBody<'subscribe'>) => void = () => {};
      e.handle('subscribe', () => new Promise<ReplyBody<'subscribe'>>((resolve) => (answer = resolve)));
      const started = dir.start();
      await sleep(20);
      const to = transport.address;
      await e.request(to, 'changes', { epoch: 'E2', seq: 5, upserted: [instance('old')], removed: [] });
      await e.request(to, 'changes', { epoch: 'E2', seq: 6, upserted: [instance('new')], removed: [] });
      answer({ instances: [instance('a')], ttlMs: 60_000, epoch: 'E2', seq: 5 });
      await started;
      assert.deepEqual(ids(dir.instances()), ['a', 'new'], 'seq 5 was in the snapshot, seq 6 after it');
    }),
  );

  test(
    'instances a restarted nameservice forgot stay for the restart grace, then leave',
    withGrid(async (g) => {
      const fake = scripted(g, [
        { instances: [instance('x'), instance('y')], ttlMs: 1_000, epoch: 'E1', seq: 0 },
        { instances: [instance('x')], ttlMs: 1_000, epoch: 'E2', seq: 0 },
      ]);
      const { dir, events } = directory(g, [fake.e.address], { renewMs: 30, restartGraceMs: 300 });
      await dir.start();
      await waitFor(() => fake.calls() >= 4, 'renewals with the new incarnation');
      assert.equal(dir.status()[0]?.epoch, 'E2');
      assert.deepEqual(ids(dir.instances()), ['x', 'y'], 'y is still within its grace');
      const waited = await waitFor(() => dir.instances().length === 1, 'the grace to end', 1_000);
      assert.ok(waited > 100, `y left after ${waited} ms more`);
      assert.deepEqual(ids(dir.instances()), ['x']);
      assert.deepEqual(ids(events.at(-1)!.removed), ['y']);
    }),
  );

  test(
    'changes from a nameservice incarnation the Directory is not subscribed to are refused',
    withGrid(async (g) => {
      const fake = scripted(g, [{ instances: [], ttlMs: 60_000, epoch: 'E1', seq: 0 }]);
      const { dir, transport } = directory(g, [fake.e.address], { ttlMs: 60_000 });
      await dir.start();
      await assert.rejects(
        fake.e.request(transport.address, 'changes', {
          epoch: 'E0',
          seq: 1,
          upserted: [instance('q')],
          removed: [],
        }),
        { code: 'TG_ERR_NOT_FOUND' },
      );
      assert.deepEqual(dir.instances(), []);
    }),
  );
});
