/**
 * Chaos scenario B (`netns-partition`): every component on a host of its own (a network
 * namespace with its own address on a bridge, all made and removed by this test), so tasks
 * cross real network interfaces between hosts. One worker host is cut off the network for
 * longer than its nameservice lease while it runs tasks: those tasks must be finished by the
 * worker on the other host, each recorded once (the cut-off worker's late results are refused);
 * healed, the worker registers again and takes work.
 *
 * Needs root and iproute2; skipped (saying so) without them. `npm test` runs 200 tasks across
 * the hosts, `npm run test:chaos` 2,000; the partition is the same.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { StatsReply } from '../../src/client/index.ts';
import type { Instance, TaskSpec, TaskView } from '../../src/protocol/messages.ts';
import { report, scale } from '../support/chaos.ts';
import { Hosts, netnsUnavailable } from '../support/chaos-netns.ts';
import { rssMb, startTs, type Child } from '../support/process.ts';

const SPREAD = scale(200, 2_000);
/** Long enough that the cut worker is still running them when it is cut off. */
const LONG_WAIT_S = 4;
const LONG_TASKS = 8;
/** The nameservice's lease TTL (its default); the cut lasts well beyond it. */
const LEASE_TTL_MS = 5_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The client, run on its own host, driven over its stdin (test/support/chaos-client-process.ts). */
class RemoteClient {
  #seq = 0;
  constructor(readonly child: Child) {}

  async call<T>(op: string, ...args: unknown[]): Promise<T> {
    const seq = ++this.#seq;
    const answer = this.child.nextJson<{
      seq: number;
      ok: boolean;
      value?: T;
      error?: { code: string; message: string };
    }>((v) => v.seq === seq, 180_000);
    this.child.proc.stdin!.write(`${JSON.stringify({ seq, op, args })}\n`);
    const a = await answer;
    if (!a.ok) throw new Error(`${op}: ${a.error?.code}: ${a.error?.message}`);
    return a.value as T;
  }

  /** Submits with keys until every task is acknowledged; returns the ids in order. */
  async submitAll(specs: (TaskSpec & { key: string })[]): Promise<number[]> {
    const ids: (number | undefined)[] = specs.map(() => undefined);
    for (let round = 0; round < 20 && ids.includes(undefined); round++) {
      if (round > 0) await sleep(500);
      const open = specs.flatMap((s, i) => (ids[i] === undefined ? [i] : []));
      const outcomes = await this.call<({ ok: true; id: number } | { ok: false })[]>(
        'submitMany',
        open.map((i) => specs[i]),
      );
      outcomes.forEach((o, k) => {
        if (o.ok) ids[open[k]!] = o.id;
      });
    }
    assert.ok(!ids.includes(undefined), 'every task acknowledged');
    return ids as number[];
  }
}

const unavailable = netnsUnavailable();

test(
  'chaos netns-partition: components on hosts of their own; a worker host cut off past its lease',
  { timeout: scale(180_000, 600_000), ...(unavailable ? { skip: unavailable } : {}) },
  async (t) => {
    const started = Date.now();
    const home = mkdtempSync(join(tmpdir(), 'taskgrid-netns-'));
    const hosts = Hosts.create(['ns', 'dispatcher', 'w1', 'w2', 'client']);
    const children: Child[] = [];
    t.after(async () => {
      await Promise.all(children.map((c) => c.stop(5_000)));
      hosts.destroy();
      rmSync(home, { recursive: true, force: true });
    });
    const ns = hosts.get('ns').address;
    const env = { TASKGRID_HOME: home, TASKGRID_LOG_LEVEL: 'error', TASKGRID_NAMESERVICE: `${ns}:5001` };
    const run = async (host: string, args: string[]): Promise<{ child: Child; id?: string }> => {
      const address = hosts.get(host).address;
      const child = startTs(
        'src/cli/main.ts',
        [...args, '--bind', address, '--advertise', address],
        env,
        hosts.exec(host),
      );
      children.push(child);
      const ready = await child.nextJson<{ msg: string; id?: string }>((v) => v.msg === 'ready', 60_000);
      return { child, ...(ready.id !== undefined ? { id: ready.id } : {}) };
    };

    // The nameservice registers nobody's address but its own clients'; it takes no --advertise.
    const nsChild = startTs(
      'src/cli/main.ts',
      ['nameservice', '--port', '5001', '--bind', ns],
      env,
      hosts.exec('ns'),
    );
    children.push(nsChild);
    await nsChild.nextJson<{ msg: string }>((v) => v.msg === 'ready', 60_000);
    const dispatcher = await run('dispatcher', ['dispatcher', '--port', '4000']);
    const [w1, w2] = await Promise.all([
      run('w1', ['worker', 'hash', 'wait', '--port', '6000', '--concurrency', '4']),
      run('w2', ['worker', 'hash', 'wait', '--port', '6000', '--concurrency', '4']),
    ]);
    const clientChild = startTs(
      'test/support/chaos-client-process.ts',
      [`${ns}:5001`],
      env,
      hosts.exec('client'),
    );
    children.push(clientChild);
    await clientChild.nextJson((v) => v.ready === true, 60_000);
    const client = new RemoteClient(clientChild);
    const rssBeforeMb = await rssMb(dispatcher.child.pid);
    const expected = new Map<number, string>();
    let wrong = 0;
    const wrongSamples: string[] = [];
    const check = (views: TaskView[]) => {
      for (const v of views) {
        if (v.status === 'succeeded' && v.result === expected.get(v.id)) continue;
        wrong++;
        if (wrongSamples.length < 5)
          wrongSamples.push(`${v.id}: ${v.status} ${JSON.stringify(v.result ?? v.error)}`);
      }
    };

    // 1. Tasks flow across hosts: client -> dispatcher -> both workers, results back.
    const spread = Array.from({ length: SPREAD }, (_, i) => ({
      type: 'hash',
      payload: `across hosts ${i}`,
      key: `spread-${i}`,
    }));
    const spreadIds = await client.submitAll(spread);
    spreadIds.forEach((id, i) =>
      expected.set(id, createHash('sha256').update(spread[i]!.payload, 'utf8').digest('hex')),
    );
    const spreadViews = await client.call<TaskView[]>('wait', spreadIds, { timeoutMs: 120_000 });
    check(spreadViews);
    const spreadBy = new Set(spreadViews.map((v) => v.worker));
    assert.ok(
      spreadBy.has(w1.id) && spreadBy.has(w2.id),
      `both worker hosts ran tasks: ${[...spreadBy].join(', ')}`,
    );

    // 2. Long tasks on both workers; once they run, w1's host is cut off.
    const long = Array.from({ length: LONG_TASKS }, (_, i) => ({
      type: 'wait',
      payload: String(LONG_WAIT_S),
      key: `long-${i}`,
    }));
    const longIds = await client.submitAll(long);
    for (const id of longIds) expected.set(id, `waited ${LONG_WAIT_S}s`);
    let onW1: number[] = [];
    for (const until = Date.now() + 30_000; Date.now() < until; await sleep(100)) {
      const page = await client.call<{ tasks: TaskView[] }>('tasks', {
        status: 'running',
        type: 'wait',
        limit: 100,
      });
      onW1 = page.tasks.filter((v) => v.worker === w1.id).map((v) => v.id);
      if (page.tasks.length === LONG_TASKS) break;
    }
    assert.ok(onW1.length > 0, 'w1 was running some of the long tasks when it was cut off');
    hosts.cut('w1');
    const cutAt = Date.now();
    const longViews = await client.call<TaskView[]>('wait', longIds, { timeoutMs: 120_000 });
    const finishedWhileCut = Date.now() - cutAt;
    check(longViews);
    for (const v of longViews.filter((x) => onW1.includes(x.id))) {
      assert.equal(v.worker, w2.id, `task ${v.id}, cut off on w1, finished on w2`);
      assert.ok(v.attempts >= 2, `task ${v.id} ran again (attempts ${v.attempts})`);
    }
    assert.ok(finishedWhileCut > LEASE_TTL_MS, `w1's tasks waited out its lease (${finishedWhileCut} ms)`);
    // Keep w1 cut a little longer so that its results are surely late, then heal it.
    await sleep(2_000);
    hosts.heal('w1');
    const healedAt = Date.now();

    // 3. Healed, w1 registers again and takes work.
    let back = false;
    for (const until = Date.now() + 60_000; !back && Date.now() < until; await sleep(200)) {
      const instances = await client.call<Instance[]>('workers');
      back = instances.some((i) => i.id === w1.id);
    }
    assert.ok(back, 'w1 registered again after the heal');
    const rejoinedAfterMs = Date.now() - healedAt;
    let tookWork = false;
    let rounds = 0;
    for (; !tookWork && rounds < 5; rounds++) {
      const after = Array.from({ length: 40 }, (_, i) => ({
        type: 'wait',
        payload: '0.2',
        key: `after-${rounds}-${i}`,
      }));
      const ids = await client.submitAll(after);
      for (const id of ids) expected.set(id, 'waited 0.2s');
      const views = await client.call<TaskView[]>('wait', ids, { timeoutMs: 60_000 });
      check(views);
      tookWork = views.some((v) => v.worker === w1.id);
    }
    assert.ok(tookWork, 'w1 ran tasks again after the heal');

    // Give w1's late results for the cut attempts time to arrive, then count every task once.
    await sleep(2_000);
    const stats = await client.call<StatsReply>('stats');
    const succeededCounted = Object.values(stats.types).reduce((n, s) => n + s.succeeded, 0);
    const rssAfterMb = await rssMb(dispatcher.child.pid);
    await dispatcher.child.stop(10_000);
    const db = new Database(join(home, 'data', 'dispatcher.db'), { readonly: true });
    const rows = db
      .prepare('SELECT COUNT(*) AS n, COUNT(DISTINCT key) AS keys, SUM(state = 2) AS succeeded FROM tasks')
      .get() as { n: number; keys: number; succeeded: number };
    db.close();
    const acknowledged = expected.size;
    const duplicated =
      Math.max(0, rows.n - rows.keys) +
      Math.max(0, rows.n - acknowledged) +
      Math.max(0, succeededCounted - rows.succeeded);
    const completed = rows.succeeded - wrong;
    report({
      scenario: 'netns-partition',
      submitted: acknowledged,
      acknowledged,
      completed,
      lost: acknowledged - rows.succeeded,
      wrong,
      duplicated,
      faults: {
        hosts: 5,
        partitions: 1,
        cutOffWorkerTasks: onW1.length,
        cutMs: healedAt - cutAt,
        leaseTtlMs: LEASE_TTL_MS,
      },
      rssBeforeMb: Math.round(rssBeforeMb),
      rssAfterMb: Math.round(rssAfterMb),
      durationMs: Date.now() - started,
      notes: `w1's tasks ended on w2 ${finishedWhileCut} ms after the cut; w1 listed again ${rejoinedAfterMs} ms after the heal, took work in round ${rounds}`,
    });

    assert.equal(wrong, 0, `no wrong result: ${wrongSamples.join('; ')}`);
    assert.equal(duplicated, 0, 'no task recorded twice');
    assert.deepEqual(
      rows,
      { n: acknowledged, keys: acknowledged, succeeded: acknowledged },
      'each task once, succeeded',
    );
    assert.equal(succeededCounted, acknowledged, 'each success counted once');
    await Promise.all(children.map((c) => c.stop(5_000)));
    hosts.destroy();
    assert.deepEqual(hosts.leftovers(), [], 'every namespace removed');
  },
);
