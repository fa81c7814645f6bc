/**
 * Throughput of HandlerPool: how many small `reverse` tasks per second go through the pool
 * (main thread -> handler thread -> outcome), for a few thread and concurrency settings.
 *
 * Usage: npx tsx bench/pool.ts [tasks-per-run=200000] [payload=Hello, world]
 * Tasks are submitted in bursts of 1000, as a worker would receive them in TASK batches.
 */
import { fileURLToPath } from 'node:url';
import { HandlerPool } from '../src/worker/pool.ts';

const total = Number(process.argv[2] ?? 200_000);
const payload = process.argv[3] ?? 'Hello, world';
const burst = 1000;
const typesDir = fileURLToPath(new URL('../worker_types/', import.meta.url));

const settings = [
  { threads: 1, concurrency: 1 },
  { threads: 1, concurrency: 64 },
  { threads: 2, concurrency: 64 },
  { threads: 2, concurrency: 1024 },
];

for (const { threads, concurrency } of settings) {
  const pool = new HandlerPool({ typesDir, types: ['reverse'], threads, concurrency });
  const startedAt = performance.now();
  await pool.start();
  const startMs = performance.now() - startedAt;
  // Warm up the JIT on both sides before measuring.
  await runMany(pool, Math.min(total, 20_000));
  const t0 = performance.now();
  const failures = await runMany(pool, total);
  const seconds = (performance.now() - t0) / 1000;
  await pool.close();
  console.log(
    `threads=${threads} concurrency=${concurrency}: ${Math.round(total / seconds).toLocaleString('en')} tasks/s` +
      ` (${total} tasks in ${seconds.toFixed(2)} s, start ${startMs.toFixed(0)} ms${failures ? `, ${failures} FAILED` : ''})`,
  );
}

/** Keeps about `burst * 2` tasks submitted at a time, like a worker whose dispatcher keeps it busy. */
async function runMany(pool: HandlerPool, count: number): Promise<number> {
  let id = 0;
  let failures = 0;
  const inFlight = new Set<Promise<void>>();
  while (id < count) {
    const n = Math.min(burst, count - id);
    const batch: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      batch.push(
        pool.run({ id: ++id, type: 'reverse', payload, attempt: 1, timeoutMs: 60_000 }).then((o) => {
          if (!o.ok) failures++;
        }),
      );
    }
    const all = Promise.all(batch).then(() => {
      inFlight.delete(all);
    });
    inFlight.add(all);
    if (inFlight.size >= 2) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return failures;
}
