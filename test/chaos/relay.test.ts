/**
 * Chaos scenario A (`relay-10k`): the grid as separate processes over real UDP, with a lossy
 * relay in front of every component (client, dispatcher, workers and nameservice reach each
 * other only through relays that drop 20 %, duplicate 5 % and reorder 5 % of the datagrams, both
 * ways), while a worker, the dispatcher and the nameservice are SIGKILLed and the latter two
 * restarted. Every acknowledged task must end once with the right result, computed here
 * independently of the handlers; the dispatcher's counters and its SQLite file must hold each
 * task once.
 *
 * `npm test` runs it with 600 tasks; `npm run test:chaos` with 10,000. Same faults either way.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { TaskGridClient } from '../../src/client/index.ts';
import type { TaskSpec, TaskView } from '../../src/protocol/messages.ts';
import { report, scale } from '../support/chaos.ts';
import { RelayedGrid, type ChaosFaults } from '../support/chaos-grid.ts';

const TASKS = scale(600, 10_000);
const FAULTS: ChaosFaults = { loss: 0.2, duplicate: 0.05, reorder: 0.05, delayMs: 0, reorderMs: 20 };
const TYPES = ['reverse', 'sum', 'hash', 'upper', 'wait'];
const CHUNKS = 10;
/** Worker processes, each behind its own relay; the first is SIGKILLed. */
const WORKERS = scale(2, 3);
/**
 * Every task's per-attempt timeout. A task stranded by a fault that nobody reports (claimed by a
 * dispatcher that died before sending it, a TASK request its live worker never acknowledged) is
 * run again only when its lease (timeout + 5 s) lapses; with the types' own timeouts that is up
 * to 10 minutes (`wait`), longer than this test waits. 20 s is ample for handlers that take
 * milliseconds.
 */
const TIMEOUT_MS = 20_000;

interface Planned {
  spec: TaskSpec & { key: string };
  expected: string;
}

/** Task `i` and its expected result, computed without the handlers' code. */
function plan(i: number): Planned {
  const p = planTask(i);
  return { spec: { ...p.spec, timeoutMs: TIMEOUT_MS }, expected: p.expected };
}

function planTask(i: number): Planned {
  const key = `relay-${i}`;
  const type = TYPES[i % TYPES.length]!;
  switch (type) {
    case 'reverse': {
      const payload = `task ${i}: abc-${(i * 7919) % 10007}!`;
      return { spec: { type, payload, key }, expected: [...payload].reverse().join('') };
    }
    case 'sum': {
      const payload = `${i},${-3 * i},9007199254740993,0.25`;
      return { spec: { type, payload, key }, expected: sumExact(i) };
    }
    case 'hash': {
      const payload = `hash me ${i} ${'x'.repeat(i % 50)}`;
      return {
        spec: { type, payload, key },
        expected: createHash('sha256').update(payload, 'utf8').digest('hex'),
      };
    }
    case 'upper': {
      const payload = `lower case ${i} abc`;
      return {
        spec: { type, payload, key },
        expected: payload.replace(/[a-z]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 32)),
      };
    }
    default: {
      const ms = 10 + (i % 5) * 10;
      const seconds = String(ms / 1000);
      return { spec: { type: 'wait', payload: seconds, key }, expected: `waited ${seconds}s` };
    }
  }
}

/** i + -3i + 9007199254740993 + 0.25, exactly: 9007199254740993 - 2i + 0.25. */
function sumExact(i: number): string {
  const whole = 9_007_199_254_740_993n - 2n * BigInt(i);
  // whole + 0.25: whole is positive here, so the fraction is simply appended.
  return `${whole}.25`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  `chaos relay-10k: ${TASKS} tasks over lossy relays on every link, with SIGKILLs`,
  { timeout: scale(240_000, 900_000) },
  async () => {
    const started = Date.now();
    const grid = await RelayedGrid.start(
      FAULTS,
      Array.from({ length: WORKERS }, () => ({ types: TYPES, concurrency: 8 })),
    );
    const gridReadyAt = Date.now();
    const client = await TaskGridClient.connect({ nameservers: [grid.nameserviceAddress] });
    try {
      const planned = Array.from({ length: TASKS }, (_, i) => plan(i));
      const byKey = new Map(planned.map((p) => [p.spec.key, p]));
      const idOf = new Map<string, number>();
      let duplicated = 0;
      let submitAttempts = 0;
      const rssBeforeMb = await grid.rss(grid.dispatcher);

      /** Submits until every task of `batch` is acknowledged; keys make re-sending safe. */
      const submitAll = async (batch: Planned[]): Promise<void> => {
        let pending = batch;
        for (let round = 0; pending.length > 0 && round < 30; round++) {
          if (round > 0) await sleep(500);
          submitAttempts += pending.length;
          const outcomes = await client.submitMany(pending.map((p) => p.spec));
          const again: Planned[] = [];
          outcomes.forEach((o, k) => {
            const p = pending[k]!;
            if (!o.ok) {
              again.push(p);
              return;
            }
            const known = idOf.get(p.spec.key);
            if (known !== undefined && known !== o.id) duplicated++; // one key, two tasks
            idOf.set(p.spec.key, o.id);
          });
          pending = again;
        }
      };

      const chunk = Math.ceil(TASKS / CHUNKS);
      for (let c = 0; c < CHUNKS; c++) {
        const batch = planned.slice(c * chunk, (c + 1) * chunk);
        const submitting = submitAll(batch);
        if (c === 3) {
          await sleep(300);
          await grid.kill(grid.workers[0]!);
        } else if (c === 5) {
          await sleep(300);
          await grid.kill(grid.dispatcher);
          await grid.startDispatcher();
        } else if (c === 7) {
          await grid.kill(grid.nameservice);
          await grid.startNameservice();
        }
        await submitting;
      }
      const acknowledged = idOf.size;
      const submittedAt = Date.now();

      // Every acknowledged task must end. Waited for in slices, each collected as it ends, and a
      // wait that fails (a watch request lost in the relays past its deadline) is simply waited
      // again for what is still open, until one overall deadline: a task still open then is lost.
      const views = new Map<number, TaskView>();
      const deadline = Date.now() + scale(120_000, 600_000);
      const waitErrors: string[] = [];
      let waitFailures = 0;
      for (let open = [...idOf.values()]; open.length > 0 && Date.now() < deadline;) {
        const slices = Array.from({ length: Math.ceil(open.length / 1000) }, (_, k) =>
          open.slice(k * 1000, (k + 1) * 1000),
        );
        await Promise.all(
          slices.map((slice) =>
            client
              .wait(slice, {
                timeoutMs: Math.max(1, deadline - Date.now()),
                onTask: (v) => views.set(v.id, v),
              })
              .catch((err: unknown) => {
                waitFailures++;
                if (waitErrors.length < 5) waitErrors.push(String(err));
              }),
          ),
        );
        open = open.filter((id) => !views.has(id));
        if (open.length > 0) await sleep(500);
      }
      const endedAt = Date.now();
      let completed = 0;
      let wrong = 0;
      const wrongSamples: string[] = [];
      let retried = 0;
      for (const [key, id] of idOf) {
        const v = views.get(id);
        if (!v) continue;
        if (v.attempts > 1) retried++;
        const expected = byKey.get(key)!.expected;
        if (v.status === 'succeeded' && v.result === expected) completed++;
        else {
          wrong++;
          if (wrongSamples.length < 5)
            wrongSamples.push(`${key}: ${v.status} ${JSON.stringify(v.result ?? v.error)}`);
        }
      }
      const lost = acknowledged - views.size;

      // Counted once: the dispatcher's counters, and its store read from the SQLite file once the
      // dispatcher has stopped.
      const stats = await client.stats();
      const succeededCounted = Object.values(stats.types).reduce((n, t) => n + t.succeeded, 0);
      const rssAfterMb = await grid.rss(grid.dispatcher);
      await client.close();
      await grid.dispatcher.proc!.stop(10_000);
      const db = new Database(join(grid.home, 'data', 'dispatcher.db'), { readonly: true });
      const rows = db
        .prepare('SELECT COUNT(*) AS n, COUNT(DISTINCT key) AS keys, SUM(state = 2) AS succeeded FROM tasks')
        .get() as { n: number; keys: number; succeeded: number };
      const stillOpen = db
        .prepare(
          `SELECT t.id, y.name AS type, t.state, t.attempts, t.worker, t.started_at AS startedAt, t.lease_until AS leaseUntil
           FROM tasks t JOIN types y ON y.id = t.type_id WHERE t.state NOT IN (2, 3, 4) LIMIT 5`,
        )
        .all();
      db.close();
      duplicated +=
        Math.max(0, rows.n - rows.keys) + // two rows for one key
        Math.max(0, rows.n - acknowledged) + // rows nobody was given an id for
        Math.max(0, succeededCounted - rows.succeeded); // a success counted twice
      const relays = await grid.stopRelays();

      report({
        scenario: 'relay-10k',
        submitted: TASKS,
        acknowledged,
        completed,
        lost,
        wrong,
        duplicated,
        faults: {
          loss: FAULTS.loss,
          duplicate: FAULTS.duplicate,
          reorder: FAULTS.reorder,
          links: 'every link, both ways',
          sigkills: grid.kills.join(', '),
          restarts: 'dispatcher, nameservice',
          datagramsForwarded: relays.forwarded,
          datagramsDropped: relays.dropped,
          datagramsDuplicated: relays.duplicated,
          datagramsReordered: relays.reordered,
        },
        rssBeforeMb: Math.round(rssBeforeMb),
        rssAfterMb: Math.round(rssAfterMb),
        durationMs: Date.now() - started,
        notes: `start ${gridReadyAt - started} ms, submit ${submittedAt - gridReadyAt} ms, drain ${endedAt - submittedAt} ms; dispatcher RSS: the restarted dispatcher at the end; ${retried} tasks ran more than once (lease or lost worker); ${submitAttempts - TASKS} submits re-sent with their keys; ${waitFailures} failed waits waited again`,
      });

      assert.equal(acknowledged, TASKS, 'every task was acknowledged (re-sent with its key until it was)');
      assert.equal(
        lost,
        0,
        `no acknowledged task lost; still open in the store at ${Date.now()}: ${JSON.stringify(stillOpen)}; killed worker ${grid.workers[0]?.id} (waits that failed: ${waitErrors.join('; ')})`,
      );
      assert.equal(wrong, 0, `no wrong result: ${wrongSamples.join('; ')}`);
      assert.equal(duplicated, 0, 'no task recorded twice');
      assert.equal(succeededCounted, TASKS, 'the dispatcher counted each success once');
      assert.deepEqual(
        rows,
        { n: TASKS, keys: TASKS, succeeded: TASKS },
        'the store holds each task once, succeeded',
      );
      assert.ok(
        relays.dropped > 0 && relays.duplicated > 0 && relays.reordered > 0,
        `the relays did their damage: ${JSON.stringify(relays)}`,
      );
      assert.deepEqual(grid.kills, ['worker-1', 'dispatcher', 'nameservice']);
    } finally {
      await client.close().catch(() => {});
      await grid.stop();
    }
  },
);
