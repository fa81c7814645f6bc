/**
 * The SQLite store's claim order and its batch hand-off, against references: claims with many
 * different limits take ready tasks in priority then id order, and a batch that claims tasks it
 * submits itself (held, then written once as running) leaves the same rows, counts and answers
 * as the same operations run one by one (submit, then claim).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ErrorCode } from '../../src/errors.ts';
import type { TaskAssignment, TaskOutcome, TaskSpec } from '../../src/protocol/messages.ts';
import { SqliteTaskStore } from '../../src/dispatcher/store/sqlite.ts';
import type { MultiClaim, RetryPolicy, SubmitResult } from '../../src/dispatcher/store/store.ts';

const root = mkdtempSync(join(tmpdir(), 'taskgrid-store-batch-'));
after(() => rmSync(root, { recursive: true, force: true }));

const T0 = 1_700_000_000_000;
const DEFAULTS = { timeoutMs: 1_000, maxAttempts: 3 } as const;
const RETRY: RetryPolicy = { baseMs: 50, factor: 2, maxMs: 400, jitter: 0.1 };

/** A small deterministic generator (mulberry32), so that a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SQLite task store claim order and batch hand-off', () => {
  test('claims with many different limits take ready tasks by priority, then id', async () => {
    const rnd = prng(7);
    const store = new SqliteTaskStore({ path: ':memory:' });
    try {
      /** The ready tasks as the store should order them. */
      const ready: { id: number; priority: number }[] = [];
      let n = 0;
      for (let step = 0; step < 300; step++) {
        if (ready.length < 20 || rnd() < 0.4) {
          const specs: TaskSpec[] = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => ({
            type: 'ord',
            payload: `p${n++}`,
            priority: Math.floor(rnd() * 7) - 3,
          }));
          const res = await store.submit(specs, T0, DEFAULTS);
          res.forEach((r, i) => {
            assert.ok('id' in r);
            ready.push({ id: r.id, priority: specs[i]!.priority! });
          });
        }
        // Every limit from 1 to 40 comes up, in no particular order.
        const limit = 1 + ((step * 13) % 40);
        ready.sort((a, b) => b.priority - a.priority || a.id - b.id);
        const expected = ready.splice(0, limit).map((t) => t.id);
        const got = await store.claim({ type: 'ord', limit, worker: 'w', leaseMs: 60_000 }, T0 + step);
        assert.deepEqual(
          got.map((t) => t.id),
          expected,
          `claim ${step} (limit ${limit})`,
        );
      }
      assert.equal(await store.queueDepth('ord'), ready.length);
    } finally {
      await store.close();
    }
  });

  test('a batch that claims what it submits leaves what submit then claim would, round after round', async () => {
    const rnd = prng(2024);
    const open = (name: string) =>
      new SqliteTaskStore({
        path: join(root, name, 'dispatcher.db'),
        exclusive: false,
        retry: RETRY,
        random: () => 0.5,
      });
    const batched = open('batched');
    const stepwise = open('stepwise');
    const rowsOf = (name: string): Database.Database =>
      new Database(join(root, name, 'dispatcher.db'), { readonly: true });
    const readA = rowsOf('batched');
    const readB = rowsOf('stepwise');
    const all = 'SELECT * FROM tasks ORDER BY id';
    const types = ['a', 'b', 'c'];
    let keys = 0;
    let handedOff = 0;
    try {
      for (let round = 0; round < 250; round++) {
        const now = T0 + round * 23;
        // Outcomes for some running attempts: successes, failures that back off or use up the
        // attempts, permanent failures, and now and then a stale attempt number.
        const running = await stepwise.listRunning();
        const outcomes: TaskOutcome[] = [];
        for (const r of running) {
          if (rnd() < 0.5) continue;
          const attempt = rnd() < 0.05 ? r.attempt + 1 : r.attempt;
          outcomes.push(
            rnd() < 0.6
              ? { id: r.id, attempt, ok: true, result: `r${r.id}`, runMs: 1 }
              : {
                  id: r.id,
                  attempt,
                  ok: false,
                  error: { code: ErrorCode.HANDLER_FAILED, message: 'no' },
                  permanent: rnd() < 0.2,
                  runMs: 1,
                },
          );
        }
        const specs: TaskSpec[] = [];
        const nSpecs = rnd() < 0.2 ? 0 : 1 + Math.floor(rnd() * 6);
        for (let i = 0; i < nSpecs; i++) {
          const spec: TaskSpec = {
            type: types[Math.floor(rnd() * types.length)]!,
            payload: `r${round}-${i}`,
            priority: Math.floor(rnd() * 4) - 1,
          };
          // Keys now and then, some of them repeated (within a batch and across batches).
          if (rnd() < 0.25) spec.key = `k${rnd() < 0.3 ? Math.floor(rnd() * Math.max(1, keys)) : keys++}`;
          if (rnd() < 0.1) spec.timeoutMs = 2_000;
          specs.push(spec);
        }
        const claims: MultiClaim[] = [];
        const nClaims = Math.floor(rnd() * 4);
        for (let i = 0; i < nClaims; i++) {
          const order = [...types].sort(() => rnd() - 0.5).slice(0, 1 + Math.floor(rnd() * 3));
          claims.push({
            types: order,
            limit: 1 + Math.floor(rnd() * 6),
            worker: `w${i}`,
            leaseMs: rnd() < 0.5 ? 1_000 : (t: number) => t + 7,
          });
        }

        const a = await batched.batch(
          {
            complete: outcomes,
            submit: { specs, options: DEFAULTS },
            claims: () => claims,
          },
          now,
        );

        const completedB = await stepwise.complete(outcomes, now);
        const submittedB: SubmitResult[] =
          specs.length > 0 ? await stepwise.submit(specs, now, DEFAULTS) : [];
        const exhaustedB = new Set<string>();
        const claimedB: TaskAssignment[][] = [];
        for (const c of claims) {
          const out: TaskAssignment[] = [];
          for (const type of c.types) {
            const want = c.limit - out.length;
            if (want < 1) break;
            if (exhaustedB.has(type)) continue;
            const got = await stepwise.claim(
              { type, limit: want, worker: c.worker, leaseMs: c.leaseMs },
              now,
            );
            if (got.length < want) exhaustedB.add(type);
            out.push(...got);
          }
          claimedB.push(out);
        }

        const where = `round ${round}`;
        assert.deepEqual(a.completed, completedB, where);
        assert.deepEqual(a.submitted, submittedB, where);
        assert.deepEqual(a.claimed, claimedB, where);
        assert.deepEqual([...a.exhausted].sort(), [...exhaustedB].sort(), where);
        assert.deepEqual(readA.prepare(all).all(), readB.prepare(all).all(), where);
        assert.deepEqual(await batched.counts(), await stepwise.counts(), where);
        assert.deepEqual(await batched.listRunning(), await stepwise.listRunning(), where);
        assert.equal(await batched.nextAvailableAt(), await stepwise.nextAvailableAt(), where);
        const fresh = new Set(a.submitted.flatMap((r) => ('id' in r && !r.duplicate ? [r.id] : [])));
        handedOff += a.claimed.flat().filter((t) => fresh.has(t.id)).length;
      }
      // The comparison covered the hand-off, not only the ordinary path.
      assert.ok(handedOff > 50, `only ${handedOff} tasks were claimed in the batch that submitted them`);
    } finally {
      readA.close();
      readB.close();
      await batched.close();
      await stepwise.close();
    }
  });

  test('a batch rolled back after its claim promoted a backing-off task leaves that task claimable', async () => {
    // The store skips the promoting UPDATE while it knows no backing-off task is due; what a
    // rolled-back transaction taught it must not outlive the rollback.
    const store = new SqliteTaskStore({
      path: join(root, 'rollback', 'dispatcher.db'),
      maxBytes: 256 * 1024,
      retry: { baseMs: 10, factor: 1, maxMs: 10, jitter: 0 },
    });
    try {
      const [first] = await store.submit([{ type: 'd', payload: 'x' }], T0, DEFAULTS);
      assert.ok(first !== undefined && 'id' in first);
      const [task] = await store.claim({ type: 'd', limit: 1, worker: 'w', leaseMs: 1_000 }, T0);
      const failed = await store.complete(
        [
          {
            id: first.id,
            attempt: task!.attempt,
            ok: false,
            error: { code: ErrorCode.HANDLER_FAILED, message: 'no' },
            permanent: false,
            runMs: 1,
          },
        ],
        T0 + 1,
      );
      assert.equal(failed.requeued[0]?.availableAt, T0 + 11);
      // The claim promotes and takes the task; then the held task, too large for the file,
      // fails the commit and everything is rolled back.
      await assert.rejects(
        store.batch(
          {
            submit: { specs: [{ type: 'big', payload: 'z'.repeat(600_000) }], options: DEFAULTS },
            claims: () => [{ types: ['d'], limit: 1, worker: 'w', leaseMs: 1_000 }],
          },
          T0 + 20,
        ),
        (err: unknown) => (err as { code?: unknown }).code === ErrorCode.STORE,
      );
      assert.equal((await store.listRunning()).length, 0);
      const again = await store.claim({ type: 'd', limit: 1, worker: 'w2', leaseMs: 1_000 }, T0 + 21);
      assert.deepEqual(
        again.map((t) => [t.id, t.attempt]),
        [[first.id, 2]],
      );
    } finally {
      await store.close();
    }
  });

  test('a batch that fails after holding its new tasks leaves nothing of them, and the ids are given again', async () => {
    const store = new SqliteTaskStore({ path: ':memory:' });
    try {
      await assert.rejects(
        store.batch(
          {
            submit: { specs: [{ type: 'h', payload: 'x' }], options: DEFAULTS },
            claims: () => {
              throw new Error('planner failed');
            },
          },
          T0,
        ),
      );
      assert.equal(await store.queueDepth('h'), 0);
      const res = await store.batch(
        {
          submit: { specs: [{ type: 'h', payload: 'y' }], options: DEFAULTS },
          claims: () => [{ types: ['h'], limit: 1, worker: 'w', leaseMs: 1_000 }],
        },
        T0 + 1,
      );
      assert.deepEqual(res.submitted, [{ id: 1, duplicate: false }]);
      assert.deepEqual(
        res.claimed.map((l) => l.map((t) => [t.id, t.payload, t.attempt])),
        [[[1, 'y', 1]]],
      );
      const { tasks } = await store.get([1], { payload: true });
      assert.equal(tasks[0]?.status, 'running');
      assert.equal(tasks[0]?.payload, 'y');
      assert.equal(tasks[0]?.worker, 'w');
    } finally {
      await store.close();
    }
  });
});
