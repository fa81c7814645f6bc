/**
 * End-to-end benchmark of the grid: nameservice, dispatcher and reverse workers as separate
 * processes over real UDP on loopback, beside a raw node:dgram ping-pong between two processes
 * measured in the same run (the machine's speed drifts; only ratios within a run mean much).
 *
 *   npm run bench [-- --quick] [-- --workers N]
 *
 * Prints a table (median [min..max] over rounds), writes bench/results/grid-<time>.json and
 * ends with one line a script can read.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TaskGridClient } from '../src/client/index.ts';
import { Grid } from '../test/support/grid.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const workersArg = args.indexOf('--workers');
const WORKERS = workersArg >= 0 ? Number(args[workersArg + 1]) : 1;
const ROUNDS = quick ? 2 : 3;
const TASKS = quick ? 5_000 : 10_000;
const SEQ = quick ? 500 : 2_000;
const CONCURRENCY = 256;
const root = fileURLToPath(new URL('..', import.meta.url));

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
function summary(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { median: pct(s, 0.5), min: s[0]!, max: s.at(-1)! };
}

/** A raw UDP echo in its own process, and sequential round trips to it. */
async function rawPingPong(n: number): Promise<number[]> {
  const echo = spawn(
    process.execPath,
    [
      '-e',
      `const s=require('node:dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(0,'127.0.0.1',()=>console.log(s.address().port));process.on('SIGTERM',()=>process.exit(0));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((r) => createInterface({ input: echo.stdout }).once('line', (l) => r(Number(l))));
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const msg = Buffer.from('{"k":"get-result","id":1,"b":{"ids":[1]}}');
  const times: number[] = [];
  for (let i = 0; i < n + 200; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      sock.once('message', () => resolve());
      sock.send(msg, port, '127.0.0.1');
    });
    if (i >= 200) times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  sock.close();
  echo.kill('SIGTERM');
  return times.sort((a, b) => a - b);
}

async function throughput(client: TaskGridClient, n: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const results = await client.submitMany(Array.from({ length: n }, (_, i) => ({ type: 'reverse', payload: `task ${i}` })));
  const ids = results.map((r) => {
    if (!('id' in r)) throw new Error(`a submit failed: ${JSON.stringify(r)}`);
    return r.id;
  });
  const views = await client.wait(ids, { timeoutMs: 600_000 });
  const failed = views.filter((v) => v.status !== 'succeeded').length;
  if (failed > 0) throw new Error(`${failed} tasks did not succeed`);
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function roundTrips(client: TaskGridClient, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await client.run('reverse', `rt ${i}`);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return times.sort((a, b) => a - b);
}

const grid = await Grid.start({ env: { TASKGRID_LOG_LEVEL: 'warn' } });
const rounds = { tps: [] as number[], p50_us: [] as number[], p99_us: [] as number[], raw_p50_us: [] as number[], p50_ratio: [] as number[] };
try {
  for (let i = 0; i < WORKERS; i++) await grid.startWorker(['reverse'], CONCURRENCY);
  const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
  try {
    await throughput(client, 1_000); // warm-up
    await roundTrips(client, 100);
    for (let r = 0; r < ROUNDS; r++) {
      const raw = await rawPingPong(SEQ);
      const rt = await roundTrips(client, SEQ);
      rounds.raw_p50_us.push(pct(raw, 0.5));
      rounds.p50_us.push(pct(rt, 0.5));
      rounds.p99_us.push(pct(rt, 0.99));
      rounds.p50_ratio.push(pct(rt, 0.5) / pct(raw, 0.5));
      rounds.tps.push(await throughput(client, TASKS));
    }
  } finally {
    await client.close();
  }
} finally {
  await grid.stop();
}

const s = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, summary(v)])) as Record<keyof typeof rounds, ReturnType<typeof summary>>;
const f = (x: number) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2));
console.log(`grid benchmark (${quick ? 'quick' : 'full'}; ${ROUNDS} rounds; ${WORKERS} reverse worker process(es), concurrency ${CONCURRENCY}; median [min..max])`);
const rows: [string, keyof typeof rounds][] = [
  [`end to end, ${TASKS.toLocaleString('en-US')} reverse tasks (tasks/s)`, 'tps'],
  [`single-task round trip p50 (us), ${SEQ} sequential`, 'p50_us'],
  ['single-task round trip p99 (us)', 'p99_us'],
  ['raw node:dgram ping-pong p50 (us)', 'raw_p50_us'],
  ['round trip p50 / raw p50 (per round)', 'p50_ratio'],
];
for (const [label, key] of rows) console.log(`  ${label.padEnd(54)} ${f(s[key].median).padStart(10)}  [${f(s[key].min)}..${f(s[key].max)}]`);
mkdirSync(`${root}bench/results`, { recursive: true });
const file = `${root}bench/results/grid-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ quick, workers: WORKERS, tasks: TASKS, sequential: SEQ, rounds, summary: s }, null, 2));
console.log(`  results: ${file}`);
console.log(
  `bench: tps=${Math.round(s.tps.median)} p50_us=${Math.round(s.p50_us.median)} p99_us=${Math.round(s.p99_us.median)} raw_p50_us=${Math.round(s.raw_p50_us.median)} p50_ratio=${s.p50_ratio.median.toFixed(2)} workers=${WORKERS}`,
);
