/**
 * Profiles the grid end to end: nameservice, dispatcher and reverse workers as processes
 * (test/support/grid.ts) run under the V8 profiler (bench/profile-preload.mjs), this process too, through a throughput
 * phase (`--tasks N`, submitMany + wait) and a sequential round-trip phase (`--seq N`). Prints
 * each process's CPU time per task and its heaviest functions by self time.
 *
 *   npx tsx bench/profile-grid.ts [--workers 4] [--tasks 20000] [--seq 1000] [--concurrency 256] [--top 25] [--keep DIR] [--no-profile] [--inline]
 *
 * With --no-profile nothing is profiled and only the CPU time per task of each process (from
 * /proc, all threads) is printed: the figure to compare on a shared machine.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { readFile } from 'node:fs/promises';
import { TaskGridClient } from '../src/client/index.ts';
import { Grid } from '../test/support/grid.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const WORKERS = opt('workers', 4);
const TASKS = opt('tasks', 20_000);
const SEQ = opt('seq', 1_000);
const CONCURRENCY = opt('concurrency', 256);
const TOP = opt('top', 25);
const PROFILE = !args.includes('--no-profile');
/** Workers run reverse on their main thread (`taskgrid worker --inline`). */
const INLINE = args.includes('--inline');
const keepAt = args.indexOf('--keep');
const dir = keepAt >= 0 ? args[keepAt + 1]! : mkdtempSync(join(tmpdir(), 'taskgrid-prof-'));
mkdirSync(dir, { recursive: true });

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

function report(name: string, p: Profile): void {
  const self = new Map<number, number>();
  const deltas = p.timeDeltas ?? [];
  (p.samples ?? []).forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0)));
  const byFn = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const us = self.get(n.id) ?? 0;
    const f = n.callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const file = f.url.replace(/^file:\/\/.*?\/(node_modules|src|bench|test|worker_types)\//, '$1/');
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
  }
  console.log(`\n== ${name}: busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms`);
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(
      `  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`,
    );
  }
}

/** CPU milliseconds (user + system, all threads) of a process so far. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
}
async function cpuAll(procs: { name: string; pid: number }[]): Promise<number[]> {
  return Promise.all(procs.map((p) => cpuMs(p.pid)));
}
function perTask(
  label: string,
  procs: { name: string; pid: number }[],
  before: number[],
  after: number[],
  n: number,
): void {
  const parts = procs.map((p, i) => `${p.name} ${(((after[i]! - before[i]!) * 1000) / n).toFixed(1)}`);
  const total = procs.reduce((sum, _p, i) => sum + after[i]! - before[i]!, 0);
  console.log(`${label} CPU us/task: ${parts.join(', ')}; all ${((total * 1000) / n).toFixed(1)}`);
}

const cpu0 = process.cpuUsage();
const session = new Session();
if (PROFILE) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const grid = await Grid.start({
  env: {
    TASKGRID_LOG_LEVEL: 'warn',
    ...(PROFILE
      ? {
          TASKGRID_PROFILE_DIR: dir,
          NODE_OPTIONS: `--import=${new URL('./profile-preload.mjs', import.meta.url).href}`,
        }
      : {}),
  },
});
try {
  for (let i = 0; i < WORKERS; i++) await grid.startWorker(['reverse'], CONCURRENCY, INLINE);
  const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
  try {
    await client.run('reverse', 'warm');
    const procs = [
      { name: 'client', pid: process.pid },
      { name: 'dispatcher', pid: grid.dispatcher.pid },
      ...grid.workers.map((w, i) => ({ name: `worker${i + 1}`, pid: w.pid })),
    ];
    if (TASKS > 0) {
      const c0 = await cpuAll(procs);
      const t0 = performance.now();
      const res = await client.submitMany(
        Array.from({ length: TASKS }, (_, i) => ({ type: 'reverse', payload: `task ${i}` })),
      );
      const ids = res.map((r) => (r.ok ? r.id : 0)).filter((x) => x > 0);
      await client.wait(ids, { timeoutMs: 600_000 });
      const s = (performance.now() - t0) / 1000;
      console.log(`throughput: ${TASKS} tasks in ${s.toFixed(2)} s = ${Math.round(TASKS / s)} tasks/s`);
      perTask('throughput', procs, c0, await cpuAll(procs), TASKS);
    }
    if (SEQ > 0) {
      const c0 = await cpuAll(procs);
      const times: number[] = [];
      for (let i = 0; i < SEQ; i++) {
        const t0 = performance.now();
        await client.run('reverse', `rt ${i}`);
        times.push((performance.now() - t0) * 1000);
      }
      times.sort((a, b) => a - b);
      const pct = (p: number) => Math.round(times[Math.min(times.length - 1, Math.floor(p * times.length))]!);
      console.log(`round trip: p50 ${pct(0.5)} us, p90 ${pct(0.9)} us, p99 ${pct(0.99)} us`);
      perTask('round trip', procs, c0, await cpuAll(procs), SEQ);
    }
    const st = await client.stats();
    const c = st.transport;
    console.log(
      `dispatcher transport: datagrams in ${c.datagramsIn} out ${c.datagramsOut}, messages in ${c.messagesIn} out ${c.messagesOut}, retransmits ${c.retransmits}, duplicates ${c.duplicates}`,
    );
  } finally {
    await client.close();
  }
} finally {
  // Workers first, while the nameservice still answers their deregistration.
  await Promise.all(grid.workers.map((w) => w.stop(10_000)));
  await grid.stop();
}
if (!PROFILE) process.exit(0);
const { profile } = await session.post('Profiler.stop');
const cpu = process.cpuUsage(cpu0);
console.log(`client CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms`);
report('client (this process)', profile as unknown as Profile);
for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile;
  // Which component: the biggest src/ file names it.
  const urls = p.nodes.map((n) => n.callFrame.url);
  const name = urls.some((u) => u.includes('/dispatcher/dispatcher.ts'))
    ? 'dispatcher'
    : urls.some((u) => u.includes('/worker/thread.ts'))
      ? 'handler thread'
      : urls.some((u) => u.includes('/worker/worker.ts'))
        ? 'worker'
        : urls.some((u) => u.includes('/nameservice/'))
          ? 'nameservice'
          : 'other';
  report(`${name} ${f}`, p);
}
if (keepAt < 0) rmSync(dir, { recursive: true, force: true });
