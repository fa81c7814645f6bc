/**
 * The SQLite task store: the conformance suite over a file and over `:memory:`, then what only
 * a file can show: restart, schema versions, locking and storage faults.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ErrorCode, TaskGridError } from '../../src/errors.ts';
import { SCHEMA_VERSION, SqliteTaskStore, migrate } from '../../src/dispatcher/store/sqlite.ts';
import type { TaskStore } from '../../src/dispatcher/store/store.ts';
import { storeConformance } from './store.case.ts';

const root = mkdtempSync(join(tmpdir(), 'taskgrid-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A path in a fresh directory that does not exist yet (the store creates it). */
const freshPath = (): string => join(root, `t${++n}`, 'data', 'dispatcher.db');

storeConformance('SQLite file', (options) => new SqliteTaskStore({ path: freshPath(), ...options }));
storeConformance('SQLite :memory:', (options) => new SqliteTaskStore({ path: ':memory:', ...options }));

const T0 = 1_700_000_000_000;
const DEFAULTS = { timeoutMs: 1_000, maxAttempts: 3 };
const specs = (count: number, payload = 'x') =>
  Array.from({ length: count }, (_, i) => ({ type: 'io', payload: `${payload}${i}` }));

function isStoreError(err: unknown): boolean {
  assert.ok(err instanceof TaskGridError, `expected a TaskGridError, got ${String(err)}`);
  assert.equal(err.code, ErrorCode.STORE);
  return true;
}

/** Every id the store holds, straight from the file, and SQLite's integrity check. */
function inspect(path: string): { ids: number[]; integrity: string } {
  const db = new Database(path, { readonly: true });
  try {
    const ids = db.prepare('SELECT id FROM tasks ORDER BY id').pluck().all() as number[];
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    return { ids, integrity };
  } finally {
    db.close();
  }
}

async function submitted(store: TaskStore, count: number): Promise<number[]> {
  return (await store.submit(specs(count), T0, DEFAULTS)).map((r) => {
    assert.ok('id' in r);
    return r.id;
  });
}

describe('SQLite task store on a file', () => {
  test('a reopened file has every task, lease, counter and the id sequence where they were', async () => {
    const path = freshPath();
    const first = new SqliteTaskStore({ path });
    const ids = await submitted(first, 10);
    const claimed = await first.claim({ type: 'io', limit: 4, worker: 'w1', leaseMs: 60_000 }, T0);
    await first.complete([{ id: claimed[0]!.id, attempt: 1, ok: true, result: 'done', runMs: 3 }], T0 + 1);
    const before = {
      tasks: await first.get(ids),
      counts: await first.counts(),
      running: await first.listRunning(),
    };
    await first.close();

    const again = new SqliteTaskStore({ path });
    try {
      assert.deepEqual(await again.get(ids), before.tasks);
      assert.deepEqual(await again.counts(), before.counts);
      assert.deepEqual(await again.listRunning(), before.running);
      assert.equal(before.running.length, 3);
      assert.equal(await again.nextLeaseExpiry(), T0 + 60_000);
      // The surviving worker's result is still recorded after the restart.
      assert.equal(
        (await again.complete([{ id: claimed[1]!.id, attempt: 1, ok: true, result: 'r', runMs: 1 }], T0 + 2))
          .recorded,
        1,
      );
      const [next] = await submitted(again, 1);
      assert.equal(next, ids[9]! + 1);
    } finally {
      await again.close();
    }
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
  });

  test('a file of schema version 1 opens with its counters, running attempts and id sequence', async () => {
    const path = freshPath();
    mkdirSync(join(path, '..'), { recursive: true });
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    migrate(old, 1);
    // What version 1 wrote: counters in a table, the id sequence in meta (ids up to 49 pruned).
    old.exec(`
      INSERT INTO types (id, name) VALUES (1, 'io');
      INSERT INTO tasks (id, type_id, state, priority, attempts, max_attempts, timeout_ms, created_at, payload)
        VALUES (50, 1, 0, 0, 0, 3, 1000, ${T0}, 'a'), (51, 1, 0, 0, 0, 3, 1000, ${T0}, 'b');
      INSERT INTO tasks (id, type_id, state, priority, attempts, max_attempts, timeout_ms, created_at,
          started_at, lease_until, worker, payload)
        VALUES (52, 1, 1, 0, 1, 3, 1000, ${T0}, ${T0}, ${T0 + 1_000}, 'w1', 'c');
      INSERT INTO counts (type_id, status, n) VALUES (1, 0, 2), (1, 1, 1);
      UPDATE meta SET value = 60 WHERE name = 'next_id';
    `);
    old.close();

    const store = new SqliteTaskStore({ path });
    try {
      assert.deepEqual((await store.counts()).get('io'), {
        queued: 2,
        running: 1,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
      });
      assert.deepEqual(await store.listRunning(), [
        { id: 52, type: 'io', worker: 'w1', attempt: 1, leaseUntil: T0 + 1_000 },
      ]);
      assert.equal(await store.nextLeaseExpiry(), T0 + 1_000);
      assert.deepEqual(await submitted(store, 1), [60], 'ids below the old sequence are never reused');
      assert.equal(
        (await store.complete([{ id: 52, attempt: 1, ok: true, result: 'r', runMs: 1 }], T0 + 2)).recorded,
        1,
      );
    } finally {
      await store.close();
    }
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    const objects = db
      .prepare(`SELECT name FROM sqlite_master WHERE name IN ('counts', 'tasks_running')`)
      .all();
    assert.deepEqual(objects, [], 'the counters table and the running index are gone');
    db.close();
  });

  test('ids of pruned tasks are never given again, across a restart', async () => {
    const path = freshPath();
    const first = new SqliteTaskStore({ path });
    const ids = await submitted(first, 5);
    for (const id of ids) await first.cancel(id, T0);
    assert.equal((await first.prune(T0 + 10, { keepMs: 0, keepMax: 0 })).pruned, 5);
    await first.close();
    const again = new SqliteTaskStore({ path });
    try {
      assert.equal((await again.get(ids)).missing.length, 5, 'all pruned');
      assert.deepEqual(await submitted(again, 1), [ids[4]! + 1]);
    } finally {
      await again.close();
    }
  });

  test('a file written by a newer schema version is refused with TG_ERR_STORE', async () => {
    const path = freshPath();
    await new SqliteTaskStore({ path }).close();
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    assert.throws(
      () => new SqliteTaskStore({ path }),
      (err) => isStoreError(err) && /newer/.test(String(err)),
    );
  });

  test('a corrupt file is refused with TG_ERR_STORE', () => {
    const dir = join(root, `t${++n}`);
    mkdirSync(dir);
    const path = join(dir, 'dispatcher.db');
    writeFileSync(path, 'this is not a database\n'.repeat(1000));
    assert.throws(() => new SqliteTaskStore({ path }), isStoreError);
  });

  test('a data directory that cannot be created is refused with TG_ERR_STORE', () => {
    const file = join(root, `t${++n}-file`);
    writeFileSync(file, 'a file where the data directory should be');
    assert.throws(() => new SqliteTaskStore({ path: join(file, 'data', 'dispatcher.db') }), isStoreError);
  });

  test('a second store on a file another one holds fails at start with TG_ERR_STORE', async () => {
    const path = freshPath();
    const holder = new SqliteTaskStore({ path });
    try {
      await submitted(holder, 1);
      assert.throws(() => new SqliteTaskStore({ path }), isStoreError);
    } finally {
      await holder.close();
    }
  });

  test('the WAL is flushed in the background while the store is open, and its file let go at close', async () => {
    // Descriptors of this process open on a file, from /proc (Linux).
    const openOn = (file: string): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          const target = readlinkSync(`/proc/self/fd/${fd}`);
          return target === file || target === `${file} (deleted)`; // SQLite deletes it at close
        } catch {
          return false; // closed meanwhile (readdir's own descriptor)
        }
      }).length;
    const path = freshPath();
    const wal = `${path}-wal`;
    const store = new SqliteTaskStore({ path, walFlushCommits: 4 });
    // SQLite holds the WAL itself; the flusher opens it a second time after four commits.
    for (let i = 0; i < 3; i++) await submitted(store, 1);
    const bySqlite = openOn(wal);
    await submitted(store, 1);
    assert.equal(openOn(wal), bySqlite + 1, 'the flusher opened the WAL');
    for (let i = 0; i < 40; i++) await submitted(store, 5);
    await new Promise((resolve) => setImmediate(resolve));
    await store.close(); // with a flush possibly in flight: the descriptor goes after it
    for (let i = 0; i < 100 && openOn(wal) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(openOn(wal), 0, 'no descriptor left on the WAL');
    // The flushes changed nothing in the file.
    assert.equal(inspect(path).ids.length, 3 + 1 + 200);
    // Not with synchronous FULL (every commit syncs), nor with flushing off.
    for (const options of [{ synchronous: 'full' as const }, { walFlushCommits: 0 }]) {
      const other = freshPath();
      const s2 = new SqliteTaskStore({ path: other, ...options });
      const before = openOn(`${other}-wal`);
      for (let i = 0; i < 20; i++) await submitted(s2, 1);
      assert.equal(openOn(`${other}-wal`), before, JSON.stringify(options));
      await s2.close();
    }
  });

  test('an invalid synchronous setting is a configuration error', () => {
    assert.throws(
      () => new SqliteTaskStore({ path: freshPath(), synchronous: 'off' as 'full' }),
      (err) => err instanceof TaskGridError && err.code === ErrorCode.CONFIG,
    );
    const full = new SqliteTaskStore({ path: freshPath(), synchronous: 'full' });
    return full.close();
  });
});

describe('SQLite task store storage faults', () => {
  // Tests run as root in CI, and root ignores permission bits, so a chmod-ed directory proves
  // nothing there. The read-only case opens the file with SQLite's read-only flag, the very
  // SQLITE_READONLY path an unwritable file or directory takes; the full-disk case caps the
  // file's page count, the very SQLITE_FULL path a full disk takes. Both work as any user.
  test('a read-only store rejects submit with TG_ERR_STORE and acknowledges nothing', async () => {
    const path = freshPath();
    const writer = new SqliteTaskStore({ path });
    const ids = await submitted(writer, 5);
    await writer.close();

    const reader = new SqliteTaskStore({ path, readOnly: true });
    try {
      assert.equal((await reader.get(ids)).tasks.length, 5, 'reads still work');
      await assert.rejects(reader.submit(specs(3), T0, DEFAULTS), isStoreError);
      await assert.rejects(reader.claim({ type: 'io', limit: 1, worker: 'w', leaseMs: 1 }, T0), isStoreError);
    } finally {
      await reader.close();
    }
    const after = inspect(path);
    assert.deepEqual(after.ids, ids);
  });

  test('a full disk rejects submit with TG_ERR_STORE; the failed batch is absent and all before it intact', async () => {
    const path = freshPath();
    const store = new SqliteTaskStore({ path, maxBytes: 512 * 1024 });
    const acked: number[] = [];
    let failure: unknown;
    try {
      for (let i = 0; i < 200 && failure === undefined; i++) {
        try {
          const results = await store.submit(specs(100, 'y'.repeat(200)), T0, DEFAULTS);
          for (const r of results) if ('id' in r) acked.push(r.id);
        } catch (err) {
          failure = err;
        }
      }
      assert.ok(failure !== undefined, 'the store should have filled up');
      isStoreError(failure);
      assert.match((failure as Error).message, /full/);
      assert.ok(acked.length >= 100);
      // Still readable, and the counters were rolled back with the batch.
      assert.equal(await store.queueDepth('io'), acked.length);
    } finally {
      await store.close();
    }
    const after = inspect(path);
    assert.deepEqual(after.ids, acked);
    assert.equal(after.integrity, 'ok');
    const roomy = new SqliteTaskStore({ path });
    try {
      const [next] = await submitted(roomy, 1);
      assert.equal(next, acked[acked.length - 1]! + 1);
    } finally {
      await roomy.close();
    }
  });

  test(
    'a store in a directory made read-only refuses to start or to submit (not as root)',
    { skip: process.getuid?.() === 0 ? 'root ignores permission bits' : false },
    async () => {
      const path = freshPath();
      await new SqliteTaskStore({ path }).close();
      const dir = join(path, '..');
      chmodSync(path, 0o444);
      chmodSync(dir, 0o555);
      try {
        let store: SqliteTaskStore | undefined;
        try {
          store = new SqliteTaskStore({ path });
        } catch (err) {
          isStoreError(err);
          return;
        }
        await assert.rejects(store.submit(specs(1), T0, DEFAULTS), isStoreError);
        await store.close();
      } finally {
        chmodSync(dir, 0o755);
        chmodSync(path, 0o644);
      }
    },
  );
});
