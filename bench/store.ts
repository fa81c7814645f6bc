/**
 * Task store benchmark: submit rate (batches of 1,000, WAL file), claim+complete rate, and
 * what holding 1,000,000 queued tasks costs (time, RSS, file size, claim latency at depth).
 *
 *   npx tsx bench/store.ts [--queued 1000000] [--payload 100]
 *
 * Each phase runs in a fresh process (so that RSS is that phase's alone), on a file in a fresh
 * temporary directory. Rates are given by wall clock and by CPU time: on a shared machine the
 * CPU figure is the steadier one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteTaskStore } from '../src/dispatcher/store/sqlite.ts';
import type { Synchronous } from '../src/dispatcher/store/sqlite.ts';
import type { TaskOutcome, TaskSpec } from '../src/protocol/messages.ts';

const { values: args } = parseArgs({
  options: {
    queued: { type: 'string', default: '1000000' },
    payload: { type: 'string', default: '100' },
    phase: { type: 'string' },
  },
});
const QUEUED = Number(args.queued);
const PAYLOAD = 'x'.repeat(Number(args.payload));
const DEFAULTS = { timeoutMs: 30_000, maxAttempts: 3 };
let dir = '';
let files = 0;

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const rate = (n: number, ms: number): string => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
/** Wall and CPU milliseconds since a start mark. */
const mark = () => ({ wall: performance.now(), cpu: process.cpuUsage() });
function elapsed(start: ReturnType<typeof mark>): { wall: number; cpu: number } {
  const cpu = process.cpuUsage(start.cpu);
  return { wall: performance.now() - start.wall, cpu: (cpu.user + cpu.system) / 1000 };
}
const rates = (n: number, t: { wall: number; cpu: number }): string =>
  `${rate(n, t.wall)} (${t.wall.toFixed(0)} ms wall), ${rate(n, t.cpu)} by CPU time`;
const fileSize = (path: string): number => {
  let size = 0;
  for (const suffix of ['', '-wal']) {
    try {
      size += statSync(path + suffix).size;
    } catch {
      // no WAL right now
    }
  }
  return size;
};
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}
const open = (synchronous: Synchronous = 'normal'): { store: SqliteTaskStore; path: string } => {
  const path = join(dir, `s${++files}`, 'dispatcher.db');
  return { store: new SqliteTaskStore({ path, synchronous }), path };
};
const specs = (n: number, type = 'bench', keyed = false, base = 0): TaskSpec[] =>
  Array.from({ length: n }, (_, i) =>
    keyed ? { type, payload: PAYLOAD, key: `k-${base + i}` } : { type, payload: PAYLOAD },
  );

async function submitRate(
  label: string,
  synchronous: Synchronous,
  total: number,
  keyed = false,
): Promise<void> {
  const { store } = open(synchronous);
  const now = Date.now();
  const started = mark();
  for (let i = 0; i < total; i += 1_000) await store.submit(specs(1_000, 'bench', keyed, i), now, DEFAULTS);
  console.log(
    `submit ${total.toLocaleString('en-US')} in batches of 1,000, ${label}: ${rates(total, elapsed(started))}`,
  );
  await store.close();
}

async function claimCompleteRate(claimBatch: number, completeBatch: number, total: number): Promise<void> {
  const { store } = open();
  const now = Date.now();
  for (let i = 0; i < total; i += 1_000) await store.submit(specs(1_000), now, DEFAULTS);
  let done = 0;
  const started = mark();
  let pending: TaskOutcome[] = [];
  let claimMs = 0;
  let completeMs = 0;
  const completeSome = async (outcomes: TaskOutcome[]): Promise<void> => {
    const t = performance.now();
    await store.complete(outcomes, now);
    completeMs += performance.now() - t;
  };
  while (done < total) {
    const t = performance.now();
    const claimed = await store.claim(
      { type: 'bench', limit: claimBatch, worker: 'w1', leaseMs: 60_000 },
      now,
    );
    claimMs += performance.now() - t;
    if (claimed.length === 0) break;
    for (const c of claimed) pending.push({ id: c.id, attempt: c.attempt, ok: true, result: 'ok', runMs: 1 });
    while (pending.length >= completeBatch) {
      await completeSome(pending.slice(0, completeBatch));
      pending = pending.slice(completeBatch);
    }
    done += claimed.length;
  }
  if (pending.length > 0) await completeSome(pending);
  console.log(
    `claim ${claimBatch} + complete ${completeBatch}, ${done.toLocaleString('en-US')} tasks: ${rates(done, elapsed(started))}` +
      `\n  of which claim alone ${rate(done, claimMs)}, complete (recording results) alone ${rate(done, completeMs)}`,
  );
  await store.close();
}

async function deep(): Promise<void> {
  const { store, path } = open();
  const rssBefore = process.memoryUsage().rss;
  const now = Date.now();
  const started = mark();
  // Two types, so that each type's queue is interleaved with the other's in the table.
  for (let i = 0; i < QUEUED; i += 1_000)
    await store.submit(specs(1_000, i % 2000 === 0 ? 'a' : 'b'), now, DEFAULTS);
  const t = elapsed(started);
  const rss = process.memoryUsage().rss;
  console.log(
    `hold ${QUEUED.toLocaleString('en-US')} queued: filled in ${(t.wall / 1000).toFixed(1)} s, ${rates(QUEUED, t)}; ` +
      `RSS ${mib(rss)} (${mib(rssBefore)} at start), file ${mib(fileSize(path))}`,
  );
  for (const [label, limit] of [
    ['claim 1', 1],
    ['claim 100', 100],
  ] as const) {
    const lat: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const got = await store.claim(
        { type: i % 2 === 0 ? 'a' : 'b', limit, worker: 'w', leaseMs: 60_000 },
        now,
      );
      lat.push(performance.now() - t);
      if (got.length !== limit) throw new Error('claim came back short');
    }
    lat.sort((x, y) => x - y);
    console.log(
      `  ${label} at depth: p50 ${percentile(lat, 0.5).toFixed(3)} ms, p99 ${percentile(lat, 0.99).toFixed(3)} ms`,
    );
  }
  for (const [label, fn] of [
    ['counts()', () => store.counts()],
    ['queueDepth()', () => store.queueDepth('b')],
    ['nextAvailableAt()', () => store.nextAvailableAt()],
    ['list 100 newest', () => store.list({ limit: 100 })],
    ['list 100 queued of b', () => store.list({ limit: 100, status: 'queued', type: 'b' })],
    ['list 100 running', () => store.list({ limit: 100, status: 'running' })],
    ['submit 1,000 at depth', () => store.submit(specs(1_000), now, DEFAULTS)],
  ] as const) {
    const lat: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await fn();
      lat.push(performance.now() - t);
    }
    lat.sort((x, y) => x - y);
    console.log(
      `  ${label}: p50 ${percentile(lat, 0.5).toFixed(3)} ms, p99 ${percentile(lat, 0.99).toFixed(3)} ms`,
    );
  }
  console.log(`  RSS after: ${mib(process.memoryUsage().rss)}`);
  await store.close();
}

const phases: Record<string, () => Promise<void>> = {
  'submit-normal': () => submitRate('WAL + synchronous=NORMAL', 'normal', 200_000),
  'submit-keys': () => submitRate('WAL + NORMAL, each with an idempotency key', 'normal', 200_000, true),
  'submit-full': () => submitRate('WAL + synchronous=FULL', 'full', 100_000),
  'claim-100': () => claimCompleteRate(100, 100, 100_000),
  'claim-1000': () => claimCompleteRate(1_000, 1_000, 100_000),
  deep,
};

if (args.phase === undefined) {
  console.log(`payload ${PAYLOAD.length} bytes, node ${process.version}`);
  for (const phase of Object.keys(phases)) {
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        import.meta.filename,
        '--phase',
        phase,
        '--queued',
        args.queued,
        '--payload',
        args.payload,
      ],
      { stdio: 'inherit' },
    );
    if (run.status !== 0) process.exit(run.status ?? 1);
  }
} else {
  const phase = phases[args.phase];
  if (phase === undefined) throw new Error(`unknown phase ${args.phase}`);
  dir = mkdtempSync(join(tmpdir(), 'taskgrid-bench-store-'));
  try {
    await phase();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
