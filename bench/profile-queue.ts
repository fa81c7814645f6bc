/**
 * A deep queue end to end: a grid with no workers (test/support/grid.ts processes), one client
 * submitting `--tasks` reverse tasks (default 1,000,000) in `submitMany` calls of `--chunk`,
 * then `--workers` worker processes draining them. Prints the submit rate, the dispatcher's
 * RSS and CPU time when full, and the drain rate (from the dispatcher's `stats`).
 *
 *   npx tsx bench/profile-queue.ts [--tasks 1000000] [--chunk 100000] [--workers 2] [--concurrency 256]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskGridClient } from '../src/client/index.ts';
import { Grid } from '../test/support/grid.ts';
import { rssMb } from '../test/support/process.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const TASKS = opt('tasks', 1_000_000);
const CHUNK = opt('chunk', 100_000);
const WORKERS = opt('workers', 2);
const CONCURRENCY = opt('concurrency', 256);

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

const memDir = mkdtempSync(join(tmpdir(), 'taskgrid-mem-'));
const grid = await Grid.start({
  env: {
    TASKGRID_LOG_LEVEL: 'warn',
    // Each process reports process.memoryUsage() (bench/profile-preload.mjs): where the RSS goes.
    TASKGRID_MEMORY_DIR: memDir,
    NODE_OPTIONS: `--import=${new URL('./profile-preload.mjs', import.meta.url).href}`,
  },
});
const memory = async (pid: number): Promise<string> => {
  try {
    const m = JSON.parse(await readFile(join(memDir, `${pid}.mem`), 'utf8')) as Record<string, number>;
    const f = (k: string) => `${k} ${((m[k] ?? 0) / 2 ** 20).toFixed(0)}`;
    return `(MiB: ${['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'].map(f).join(', ')})`;
  } catch {
    return '';
  }
};
try {
  const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
  try {
    const pid = grid.dispatcher.pid;
    const rss0 = await rssMb(pid);
    const cpu0 = await cpuMs(pid);
    let peak = rss0;
    const t0 = performance.now();
    for (let done = 0; done < TASKS; done += CHUNK) {
      const n = Math.min(CHUNK, TASKS - done);
      const out = await client.submitMany(
        Array.from({ length: n }, (_, i) => ({ type: 'reverse', payload: `task ${done + i}` })),
      );
      const bad = out.filter((o) => !o.ok).length;
      if (bad > 0) throw new Error(`${bad} submits failed: ${JSON.stringify(out.find((o) => !o.ok))}`);
      peak = Math.max(peak, await rssMb(pid));
    }
    const s = (performance.now() - t0) / 1000;
    const cpu = (await cpuMs(pid)) - cpu0;
    const st = await client.stats();
    console.log(
      `submitted ${TASKS} in ${s.toFixed(1)} s = ${Math.round(TASKS / s)} tasks/s; dispatcher CPU ${((cpu * 1000) / TASKS).toFixed(1)} us/task; ` +
        `RSS ${rss0.toFixed(0)} MiB before, ${peak.toFixed(0)} MiB peak, ${(await rssMb(pid)).toFixed(0)} MiB now; queued ${st.totals.queued}`,
    );
    await new Promise((r) => setTimeout(r, 1100));
    console.log(`dispatcher memory ${await memory(pid)}`);
    if (WORKERS > 0) {
      const d0 = performance.now();
      const dc0 = await cpuMs(pid);
      await Promise.all(Array.from({ length: WORKERS }, () => grid.startWorker(['reverse'], CONCURRENCY)));
      for (;;) {
        const t = (await client.stats()).totals;
        peak = Math.max(peak, await rssMb(pid));
        if (t.succeeded + t.failed >= TASKS) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const ds = (performance.now() - d0) / 1000;
      const dcpu = (await cpuMs(pid)) - dc0;
      console.log(
        `drained by ${WORKERS} worker(s) (concurrency ${CONCURRENCY}) in ${ds.toFixed(1)} s = ${Math.round(TASKS / ds)} tasks/s (worker start-up included); ` +
          `dispatcher CPU ${((dcpu * 1000) / TASKS).toFixed(1)} us/task; RSS peak ${peak.toFixed(0)} MiB`,
      );
    }
  } finally {
    await client.close();
  }
} finally {
  await Promise.all(grid.workers.map((w) => w.stop(10_000)));
  await grid.stop();
  rmSync(memDir, { recursive: true, force: true });
}
