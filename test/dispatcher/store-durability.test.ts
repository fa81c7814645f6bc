/**
 * Acknowledged means durable, tested with real processes: a writer process (see
 * test/fixtures/store-writer.ts) prints what each resolved store call acknowledged, is killed
 * with SIGKILL mid-stream, and the store reopened here must hold all of it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteTaskStore } from '../../src/dispatcher/store/sqlite.ts';

const repo = resolve(import.meta.dirname, '../..');
const writer = join(repo, 'test/fixtures/store-writer.ts');
const root = mkdtempSync(join(tmpdir(), 'taskgrid-durability-'));
after(() => rmSync(root, { recursive: true, force: true }));

/**
 * Runs the writer and SIGKILLs it as soon as it has printed `killAfter` lines; resolves with
 * every complete line it printed before it died.
 */
function runAndKill(args: string[], killAfter: number): Promise<{ lines: string[]; signal: string | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', writer, ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer printed ${lines.length} lines in 20 s; stderr: ${stderr}`));
    }, 20_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.stdout.on('data', (d: string) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
      if (lines.length >= killAfter) child.kill('SIGKILL');
    });
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal === null) reject(new Error(`writer exited by itself; stderr: ${stderr}`));
      else resolvePromise({ lines, signal });
    });
  });
}

/** SQLite finds the file sound. */
function assertConsistent(path: string): void {
  const db = new Database(path, { readonly: true });
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  } finally {
    db.close();
  }
}

describe('task store durability across SIGKILL', () => {
  test('every submission acknowledged before the kill is stored and queued after a restart', async () => {
    const path = join(root, 'submit', 'dispatcher.db');
    const { lines, signal } = await runAndKill([path, 'submit', '500'], 15);
    assert.equal(signal, 'SIGKILL');
    assert.ok(lines.length >= 15);
    assertConsistent(path);

    const store = new SqliteTaskStore({ path });
    try {
      let expected = 0;
      for (const [n, line] of lines.entries()) {
        const m = /^ack (\d+) (\d+)$/.exec(line);
        assert.ok(m, `unexpected line ${line}`);
        const first = Number(m[1]);
        const ids = Array.from({ length: Number(m[2]) - first + 1 }, (_, i) => first + i);
        assert.equal(ids.length, 500);
        const { tasks, missing } = await store.get(ids, { payload: true });
        assert.deepEqual(missing, [], `acknowledged ids lost in batch ${n}`);
        for (const [i, t] of tasks.entries()) {
          assert.equal(t.status, 'queued');
          assert.equal(t.payload, `p${n}-${i}`);
        }
        expected += ids.length;
      }
      // Batches committed but not yet printed when the kill came may be there too, whole.
      const queued = await store.queueDepth('dur');
      assert.ok(
        queued >= expected && (queued - expected) % 500 === 0,
        `${queued} queued, ${expected} acknowledged`,
      );
    } finally {
      await store.close();
    }
  });

  test('every result recorded before the kill is there after a restart, and the rest still run', async () => {
    const path = join(root, 'complete', 'dispatcher.db');
    const setup = new SqliteTaskStore({ path });
    const total = 40_000;
    for (let i = 0; i < total; i += 10_000) {
      const specs = Array.from({ length: 10_000 }, (_, j) => ({ type: 'dur', payload: `q${i + j}` }));
      await setup.submit(specs, Date.now(), { timeoutMs: 1_000, maxAttempts: 3 });
    }
    const leaseUntil = Date.now() + 3_600_000;
    const claimed = await setup.claim(
      { type: 'dur', limit: total, worker: 'w1', leaseMs: 3_600_000 },
      leaseUntil - 3_600_000,
    );
    assert.equal(claimed.length, total);
    await setup.close();

    const { lines, signal } = await runAndKill([path, 'complete', '50'], 10);
    assert.equal(signal, 'SIGKILL');
    const recorded = new Set<number>();
    for (const line of lines) {
      assert.notEqual(line, 'done', 'the writer finished before the kill: nothing was interrupted');
      const m = /^rec ([\d ]+)$/.exec(line);
      assert.ok(m, `unexpected line ${line}`);
      for (const id of m[1]!.split(' ')) recorded.add(Number(id));
    }
    assert.ok(recorded.size >= 500);
    assertConsistent(path);

    const store = new SqliteTaskStore({ path });
    try {
      const { tasks, missing } = await store.get(claimed.map((t) => t.id));
      assert.deepEqual(missing, []);
      let stillRunning = 0;
      for (const t of tasks) {
        if (recorded.has(t.id)) {
          assert.equal(t.status, 'succeeded', `recorded result of task ${t.id} lost`);
          assert.equal(t.result, `r${t.id}`);
        } else if (t.status === 'running') {
          stillRunning++;
          assert.equal(t.worker, 'w1');
        } else {
          // Committed after the last line that got out: a whole batch, recorded once.
          assert.equal(t.status, 'succeeded');
        }
      }
      assert.ok(stillRunning > 0, 'the kill came after the last batch');
      const running = await store.listRunning('w1');
      assert.equal(running.length, stillRunning);
      assert.ok(
        running.every((r) => r.leaseUntil === leaseUntil && r.attempt === 1),
        'leases survive',
      );
    } finally {
      await store.close();
    }
  });
});
