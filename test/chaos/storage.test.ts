/**
 * Chaos: storage faults under the real grid (processes, real UDP on loopback). The dispatcher's
 * data directory is a small tmpfs that the test mounts itself:
 * - full: a filler file takes every free byte while the dispatcher runs; submits must then be
 *   refused with TG_ERR_STORE, and once the filler is gone, accepted again;
 * - read-only between runs: the data directory is remounted read-only while the dispatcher is
 *   down (Linux refuses to remount a file system read-only while a process holds a file open for
 *   writing), so the dispatcher that starts on it must refuse to run with TG_ERR_STORE; once
 *   remounted read-write, a new dispatcher takes over;
 * - read-only under a running dispatcher: as a remount cannot do that, strace makes every
 *   pwrite64 of the running dispatcher fail with EROFS, exactly what a read-only file system
 *   answers (SQLite writes its WAL and database with pwrite64; logs and UDP do not use it).
 *   Submits must be refused with TG_ERR_STORE meanwhile, results of tasks that end meanwhile
 *   re-sent by their worker, and once strace has detached, submits accepted again.
 * Either way nothing may be acknowledged that is not stored: afterwards (the fault cleared, and
 * the dispatcher killed with SIGKILL and restarted), every acknowledged id is in the store once
 * and completes with the right result, and no refused submit is in the store.
 *
 * Mounting needs root (CAP_SYS_ADMIN), strace needs ptrace permission (root or
 * CAP_SYS_PTRACE); where either is missing or not permitted, its tests skip, saying so.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { TaskGridClient, type SubmitOutcome } from '../../src/client/index.ts';
import { ErrorCode } from '../../src/errors.ts';
import { report, scale, type ChaosReport } from '../support/chaos.ts';
import { Grid } from '../support/grid.ts';

const BEFORE = scale(100, 2_000);
const DURING = scale(10, 100);
const AFTER = scale(100, 2_000);
/** Size of the full test's tmpfs: room for every task before and after the fault, with a filler taking the rest. */
const TMPFS_MB = scale(16, 64);
/** Payloads are this long, so that a few batches need new pages in a full file system. */
const PAYLOAD_BYTES = 2_000;

/** A tmpfs of `sizeMb` mounted on a fresh TASKGRID_HOME's data/, or why it could not be. */
function mountData(sizeMb: number): { home: string; data: string } | { skip: string } {
  const home = mkdtempSync(join(tmpdir(), 'taskgrid-chaos-storage-'));
  const data = join(home, 'data');
  mkdirSync(data);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', data], {
      stdio: 'pipe',
    });
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
    return { skip: `mounting a tmpfs is not permitted here (needs root / CAP_SYS_ADMIN): ${why}` };
  }
  return { home, data };
}

function unmount(home: string, data: string): void {
  try {
    execFileSync('umount', [data], { stdio: 'pipe' });
  } catch {
    // A process still holding it is killed by the grid's stop(); try once more, lazily.
    execFileSync('umount', ['-l', data], { stdio: 'pipe' });
  }
  rmSync(home, { recursive: true, force: true });
}

/** The tracer of every thread of `pid` (0: none), from /proc; threads that exit meanwhile are left out. */
function tracers(pid: number): Set<number> {
  const out = new Set<number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      out.add(Number(/^TracerPid:\s*(\d+)/m.exec(status)?.[1] ?? 0));
    } catch {
      // the thread has exited
    }
  }
  return out;
}

/**
 * Makes every pwrite64 of process `pid` (all its threads) fail with EROFS, as on a read-only file
 * system, until {@link stopInjecting}: strace, started as a child of the test, attached to `pid`.
 * Resolves once strace traces every thread, or with why it cannot (no strace, no ptrace
 * permission).
 */
async function injectErofs(pid: number): Promise<{ strace: ChildProcess } | { skip: string }> {
  const strace = spawn(
    'strace',
    [
      '-qq',
      '-o',
      '/dev/null',
      '-f',
      '-e',
      'trace=pwrite64',
      '-e',
      'inject=pwrite64:error=EROFS',
      '-p',
      String(pid),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  strace.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let failed: Error | undefined;
  strace.once('error', (err) => (failed = err));
  const began = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    if (failed !== undefined) {
      return {
        skip:
          (failed as NodeJS.ErrnoException).code === 'ENOENT'
            ? 'strace is not installed (apt-get install strace)'
            : `strace could not be started: ${String(failed)}`,
      };
    }
    if (strace.exitCode !== null || strace.signalCode !== null) {
      return {
        skip: `strace could not attach to the dispatcher (needs ptrace permission: root or CAP_SYS_PTRACE): ${stderr.trim() || `exit ${strace.exitCode ?? strace.signalCode}`}`,
      };
    }
    const by = tracers(pid);
    if (by.size === 1 && by.has(strace.pid!)) return { strace };
    if (Date.now() - began > 20_000) {
      await stopInjecting(strace);
      throw new Error(
        `strace did not attach to every thread of ${pid} in 20 s (tracers ${[...by].join(', ')}): ${stderr}`,
      );
    }
  }
}

/** Stops strace (SIGTERM to that child only: it detaches, the traced process runs on) and waits for it to exit. */
async function stopInjecting(strace: ChildProcess): Promise<void> {
  if (strace.exitCode !== null || strace.signalCode !== null) return;
  const exited = new Promise((r) => strace.once('exit', r));
  strace.kill('SIGTERM');
  const t = setTimeout(() => strace.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** Reversed payloads are the right results of `reverse` (ASCII only here). */
const reversed = (s: string): string => s.split('').reverse().join('');

function payload(tag: string, i: number): string {
  const head = `${tag}-${i}-`;
  return head + 'x'.repeat(PAYLOAD_BYTES - head.length);
}

interface Ledger {
  acked: Map<number, string>;
  refused: { payload: string; code: string }[];
  /** Right results of acknowledged tasks that are not `reverse`, by id. */
  expected?: Map<number, string>;
}

function record(ledger: Ledger, payloads: string[], outcomes: SubmitOutcome[]): void {
  outcomes.forEach((o, i) => {
    if (o.ok) {
      assert.ok(!ledger.acked.has(o.id), `id ${o.id} acknowledged twice`);
      ledger.acked.set(o.id, payloads[i]!);
    } else ledger.refused.push({ payload: payloads[i]!, code: o.error.code });
  });
}

async function submit(
  client: TaskGridClient,
  ledger: Ledger,
  tag: string,
  n: number,
  batch = 10,
): Promise<SubmitOutcome[]> {
  const all: SubmitOutcome[] = [];
  for (let i = 0; i < n; i += batch) {
    const payloads = Array.from({ length: Math.min(batch, n - i) }, (_, k) => payload(tag, i + k));
    const outcomes = await client.submitMany(payloads.map((p) => ({ type: 'reverse', payload: p })));
    record(ledger, payloads, outcomes);
    all.push(...outcomes);
  }
  return all;
}

/**
 * After the fault: restart the dispatcher (SIGKILL first), check every acknowledged id completes
 * with the right result, then read the store file itself.
 */
async function verify(t: TestContext, grid: Grid, ledger: Ledger, home: string) {
  await grid.dispatcher.kill('SIGKILL');
  await grid.startDispatcher(grid.dispatcherPort);
  const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
  let completed = 0;
  let wrong = 0;
  let lost = 0;
  try {
    const ids = [...ledger.acked.keys()];
    const views = await client.wait(ids, { timeoutMs: 120_000 }).catch((err: unknown) => {
      t.diagnostic(`wait failed: ${String(err)}`);
      return [];
    });
    for (const v of views) {
      const p = ledger.acked.get(v.id)!;
      if (v.status === 'succeeded' && v.result === (ledger.expected?.get(v.id) ?? reversed(p))) completed++;
      else if (v.status === 'succeeded' || v.status === 'failed') wrong++;
      else lost++;
    }
    lost += ids.length - views.length;
  } finally {
    await client.close();
  }
  await grid.dispatcher.stop(5_000);
  // The store itself: every acknowledged task once, no refused one.
  const db = new Database(join(home, 'data', 'dispatcher.db'), { readonly: true });
  const rows = db.prepare('SELECT id, payload FROM tasks').all() as { id: number; payload: string }[];
  db.close();
  const byPayload = new Map<string, number[]>();
  for (const r of rows) byPayload.set(r.payload, [...(byPayload.get(r.payload) ?? []), r.id]);
  const missing = [...ledger.acked].filter(([id, p]) => !byPayload.get(p)?.includes(id));
  const duplicated = [...byPayload.values()].filter((ids) => ids.length > 1).length;
  const refusedStored = ledger.refused.filter((r) => byPayload.has(r.payload));
  return { completed, wrong, lost, missing, duplicated, refusedStored, stored: rows.length };
}

/**
 * The fault has cleared: AFTER more submits must all be acknowledged; then {@link verify}, the
 * scenario's report, and the checks that nothing acknowledged was lost, doubled or wrong and
 * nothing refused was stored.
 */
async function afterFault(
  t: TestContext,
  grid: Grid,
  client: TaskGridClient,
  ledger: Ledger,
  home: string,
  scenario: Pick<ChaosReport, 'scenario' | 'faults' | 'notes'> & { began: number },
): Promise<void> {
  const afterOutcomes = await submit(client, ledger, 'after', AFTER, 50);
  assert.ok(
    afterOutcomes.every((o) => o.ok),
    `every submit acknowledged after the fault: ${JSON.stringify(afterOutcomes.find((o) => !o.ok))}`,
  );
  const v = await verify(t, grid, ledger, home);
  report({
    scenario: scenario.scenario,
    submitted: ledger.acked.size + ledger.refused.length,
    acknowledged: ledger.acked.size,
    completed: v.completed,
    lost: v.lost + v.missing.length,
    wrong: v.wrong + v.refusedStored.length,
    duplicated: v.duplicated,
    faults: scenario.faults,
    durationMs: Date.now() - scenario.began,
    ...(scenario.notes !== undefined ? { notes: scenario.notes } : {}),
  });
  assert.deepEqual(v.missing, [], 'every acknowledged task is in the store');
  assert.equal(v.duplicated, 0);
  assert.deepEqual(v.refusedStored, [], 'no refused submit is in the store');
  assert.equal(v.lost, 0);
  assert.equal(v.wrong, 0);
  assert.equal(v.completed, ledger.acked.size);
  assert.equal(v.stored, ledger.acked.size);
}

test(
  'a full data directory: submits refused with TG_ERR_STORE while full, accepted once space is back, every acknowledged task stored and completed',
  { timeout: 240_000 },
  async (t) => {
    const m = mountData(TMPFS_MB);
    if ('skip' in m) {
      t.skip(m.skip);
      return;
    }
    const began = Date.now();
    const { home, data } = m;
    const ledger: Ledger = { acked: new Map(), refused: [] };
    let grid: Grid | undefined;
    let client: TaskGridClient | undefined;
    try {
      grid = await Grid.start({
        env: { TASKGRID_HOME: home },
        workers: [{ types: ['reverse'], concurrency: 8 }],
      });
      client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
      await submit(client, ledger, 'before', BEFORE, 50);
      assert.equal(ledger.acked.size, BEFORE, 'all acknowledged while healthy');

      // Fill the file system: write until ENOSPC.
      const filler = join(data, 'filler');
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 7);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      }
      for (;;) {
        try {
          writeSync(fd, chunk, 0, 4096); // the last pages, page by page
        } catch {
          break;
        }
      }
      closeSync(fd);

      // Pages the store already holds (a WAL that restarted from its beginning) take writes
      // without the file system: submit until the store needs a new page and refuses, then
      // some more. What is acknowledged meanwhile is stored, and checked as such below.
      const during: SubmitOutcome[] = [];
      for (let round = 0; !during.some((o) => !o.ok) && round < 200; round++) {
        during.push(...(await submit(client, ledger, `fill${round}`, 50, 50)));
      }
      during.push(...(await submit(client, ledger, 'full', DURING)));
      const refusedFull = during.filter((o) => !o.ok) as {
        ok: false;
        error: { code: string; message: string };
      }[];
      t.diagnostic(
        `while full: ${during.length - refusedFull.length} acknowledged, ${refusedFull.length} refused; first error: ${JSON.stringify(refusedFull[0]?.error)}`,
      );
      assert.ok(refusedFull.length > 0, 'a full data directory refuses submits');
      for (const r of refusedFull) {
        assert.equal(r.error.code, ErrorCode.STORE);
        assert.match(r.error.message, /full|SQLITE_FULL/i);
      }
      assert.equal(grid.dispatcher.proc.exitCode, null, 'the dispatcher stays up while its disk is full');

      unlinkSync(filler);
      // The fault has cleared: the next submits are accepted (the first may still meet a
      // transaction that failed just before).
      const recovered = Date.now();
      let probe: SubmitOutcome[] = [];
      for (let i = 0; Date.now() - recovered < 20_000; i++) {
        probe = await submit(client, ledger, `probe${i}`, 1);
        if (probe[0]?.ok) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(probe[0]?.ok, 'submits are accepted again once space is back');
      await afterFault(t, grid, client, ledger, home, {
        scenario: 'storage-full',
        faults: { tmpfsMb: TMPFS_MB, refusedWhileFull: refusedFull.length, dispatcherSigkills: 1 },
        notes: `data dir a ${TMPFS_MB} MiB tmpfs filled to ENOSPC while running; refusals are TG_ERR_STORE (SQLITE_FULL)`,
        began,
      });
    } finally {
      await client?.close();
      await grid?.stop();
      unmount(home, data);
    }
  },
);

test(
  'a read-only data directory: the dispatcher refuses to run with TG_ERR_STORE, nothing is acknowledged, and a dispatcher on the read-write directory completes every acknowledged task',
  { timeout: 240_000 },
  async (t) => {
    const m = mountData(64);
    if ('skip' in m) {
      t.skip(m.skip);
      return;
    }
    const began = Date.now();
    const { home, data } = m;
    const ledger: Ledger = { acked: new Map(), refused: [] };
    let grid: Grid | undefined;
    let client: TaskGridClient | undefined;
    try {
      grid = await Grid.start({
        env: { TASKGRID_HOME: home },
        workers: [{ types: ['reverse'], concurrency: 8 }],
      });
      client = await TaskGridClient.connect({
        nameservers: [{ host: '127.0.0.1', port: grid.nsPort }],
        requestTimeoutMs: 1_000,
        submitTimeoutMs: 1_500,
      });
      await submit(client, ledger, 'before', BEFORE, 50);
      assert.equal(ledger.acked.size, BEFORE, 'all acknowledged while healthy');

      // The dispatcher dies with tasks in flight; its data directory becomes read-only.
      await grid.dispatcher.kill('SIGKILL');
      execFileSync('mount', ['-o', 'remount,ro', data], { stdio: 'pipe' });

      // A dispatcher started on it refuses to run, with the store's error.
      let refusedStart = '';
      await assert.rejects(grid.startDispatcher(grid.dispatcherPort), (err: Error) => {
        refusedStart = err.message;
        return true;
      });
      t.diagnostic(`dispatcher on a read-only data dir: ${refusedStart.slice(0, 300)}`);
      assert.match(
        refusedStart,
        /TG_ERR_STORE: task store: opening .*dispatcher\.db \(the data directory .* is on a read-only file system\) failed/,
      );
      assert.notEqual(await grid.dispatcher.exited, 0, 'it exits with a failure status');

      // Submits meanwhile are not acknowledged.
      const during = await submit(client, ledger, 'readonly', DURING);
      assert.ok(
        during.every((o) => !o.ok),
        'nothing is acknowledged while the store cannot be written',
      );
      for (const o of during)
        if (!o.ok)
          assert.ok([ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT].includes(o.error.code as never), o.error.code);

      // The fault clears: remounted read-write, a dispatcher runs again on the same port.
      execFileSync('mount', ['-o', 'remount,rw', data], { stdio: 'pipe' });
      await grid.startDispatcher(grid.dispatcherPort);
      await client.close();
      client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
      await afterFault(t, grid, client, ledger, home, {
        scenario: 'storage-readonly',
        faults: { remountRo: 1, refusedWhileReadOnly: during.length, dispatcherSigkills: 2 },
        notes:
          'data dir tmpfs remounted read-only between dispatcher runs; the dispatcher exits with TG_ERR_STORE',
        began,
      });
    } finally {
      await client?.close();
      await grid?.stop();
      try {
        execFileSync('mount', ['-o', 'remount,rw', data], { stdio: 'pipe' });
      } catch {
        // already read-write
      }
      unmount(home, data);
    }
  },
);

/** `wait` tasks of this many seconds end while the data directory is read-only. */
const WAIT_S = 5;
const WAITS = 8;

test(
  'a data directory that turns read-only under a running dispatcher: submits refused with TG_ERR_STORE, nothing acknowledged that is not stored, accepted again once writable, every acknowledged task completed',
  { timeout: 240_000 },
  async (t) => {
    const began = Date.now();
    // No tmpfs needed: the fault is injected into the dispatcher's writes, not the file system.
    const home = mkdtempSync(join(tmpdir(), 'taskgrid-chaos-storage-'));
    mkdirSync(join(home, 'data'));
    const ledger: Ledger = { acked: new Map(), refused: [], expected: new Map() };
    let grid: Grid | undefined;
    let client: TaskGridClient | undefined;
    let strace: ChildProcess | undefined;
    try {
      grid = await Grid.start({
        env: { TASKGRID_HOME: home },
        workers: [
          { types: ['reverse'], concurrency: 8 },
          { types: ['wait'], concurrency: WAITS },
        ],
      });
      client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
      await submit(client, ledger, 'before', BEFORE, 50);
      assert.equal(ledger.acked.size, BEFORE, 'all acknowledged while healthy');

      // Tasks that end while the directory is read-only: their results must not be lost.
      const waits = Array.from({ length: WAITS }, (_, i) => String(WAIT_S + (i + 1) / 1000));
      const waitOutcomes = await client.submitMany(waits.map((p) => ({ type: 'wait', payload: p })));
      waitOutcomes.forEach((o, i) => {
        assert.ok(o.ok, `wait task acknowledged: ${JSON.stringify(o)}`);
        ledger.acked.set(o.id, waits[i]!);
        ledger.expected!.set(o.id, `waited ${waits[i]!}s`);
      });
      const waitIds = waitOutcomes.map((o) => (o.ok ? o.id : 0));
      for (const since = Date.now(); ;) {
        const views = await Promise.all(waitIds.map((id) => client!.result(id)));
        if (views.every((v) => v.status === 'running')) break;
        assert.ok(
          Date.now() - since < 30_000,
          `wait tasks running: ${views.map((v) => v.status).join(', ')}`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      const waitsRunning = Date.now();

      // The data directory turns read-only: every write of the dispatcher fails with EROFS.
      const injected = await injectErofs(grid.dispatcher.pid);
      if ('skip' in injected) {
        t.skip(injected.skip);
        return;
      }
      strace = injected.strace;
      const attachedAfterMs = Date.now() - waitsRunning;
      // Attached means traced: the next write fails. Probe until a submit is refused (what
      // was acknowledged before is stored, and checked as such below).
      let probe: SubmitOutcome[] = [];
      for (let i = 0; Date.now() - waitsRunning < 30_000; i++) {
        probe = await submit(client, ledger, `attach${i}`, 1);
        if (!probe[0]?.ok) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(!probe[0]?.ok, 'a submit is refused once strace is attached');

      const during = await submit(client, ledger, 'readonly', DURING);
      const refused = during.filter((o) => !o.ok) as {
        ok: false;
        error: { code: string; message: string };
      }[];
      t.diagnostic(
        `strace attached ${attachedAfterMs} ms after the wait tasks started; while read-only: ${during.length - refused.length} acknowledged, ${refused.length} refused; first error: ${JSON.stringify(refused[0]?.error)}`,
      );
      assert.equal(
        refused.length,
        during.length,
        'nothing is acknowledged while the store cannot be written',
      );
      for (const r of refused) {
        assert.equal(r.error.code, ErrorCode.STORE);
        assert.match(r.error.message, /SQLITE_(IOERR|READONLY)/);
        assert.match(r.error.message, /read-only|data directory/, 'the error says what to look at');
      }
      assert.equal(grid.dispatcher.proc.exitCode, null, 'the dispatcher stays up while it cannot write');

      // The wait tasks end meanwhile: the store refuses their results, their worker re-sends them.
      // All of them have ended (they started before strace attached) while it is still attached.
      await grid.workers[1]!.nextJson<{ msg?: string }>(
        (v) => v.msg === 'results not acknowledged; re-sending',
        WAIT_S * 1000 + 30_000,
      ).catch(async (err: unknown) => {
        const views = await Promise.all(waitIds.map((id) => client!.result(id)));
        // What the wait worker and the dispatcher said last: the evidence of why.
        const g = grid!;
        throw new Error(
          `the wait worker re-sent no refused result (wait tasks: ${views.map((v) => v.status).join(', ')}): ${String(err)}\n` +
            `--- wait worker stdout (last lines):\n${g.workers[1]!.tail(60)}\n--- wait worker stderr:\n${g.workers[1]!.stderr().slice(-2000)}\n` +
            `--- dispatcher stdout (last lines):\n${g.dispatcher.tail(60)}\n--- dispatcher stderr:\n${g.dispatcher.stderr().slice(-2000)}`,
        );
      });
      const rest = waitsRunning + WAIT_S * 1000 + 1_000 - Date.now();
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));

      // The fault clears: strace detaches, the same dispatcher writes again.
      await stopInjecting(strace);
      assert.deepEqual([...tracers(grid.dispatcher.pid)], [0], 'strace has detached');
      assert.equal(grid.dispatcher.proc.exitCode, null, 'the dispatcher runs on');
      const cleared = Date.now();
      for (let i = 0; Date.now() - cleared < 20_000; i++) {
        probe = await submit(client, ledger, `probe${i}`, 1);
        if (probe[0]?.ok) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(probe[0]?.ok, `submits are accepted again once writable: ${JSON.stringify(probe[0])}`);
      // The re-sent results are recorded by the dispatcher that refused them, before any restart.
      const ended = await client.wait(waitIds, { timeoutMs: 60_000 });
      assert.deepEqual(
        ended.map((v) => `${v.status} ${v.result ?? ''}`),
        waits.map((p) => `succeeded waited ${p}s`),
      );
      await afterFault(t, grid, client, ledger, home, {
        scenario: 'storage-readonly-running',
        faults: {
          injectedErofs: 1,
          refusedWhileReadOnly: refused.length,
          resultsRefusedThenResent: WAITS,
          dispatcherSigkills: 1,
        },
        notes:
          'strace injects EROFS into every pwrite64 of the running dispatcher (its WAL and database writes), as a read-only file system would; refusals are TG_ERR_STORE (SQLITE_IOERR_WRITE); wait tasks ending meanwhile re-sent by their worker',
        began,
      });
    } finally {
      if (strace) await stopInjecting(strace);
      await client?.close();
      await grid?.stop();
      rmSync(home, { recursive: true, force: true });
    }
  },
);
