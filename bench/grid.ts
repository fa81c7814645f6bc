/**
 * End-to-end benchmark of the grid: nameservice, dispatcher and reverse workers as separate
 * processes over real UDP on loopback, beside a raw node:dgram ping-pong between two processes
 * measured in the same run (the machine's speed drifts; only ratios within a run mean much).
 *
 *   npx tsx bench/grid.ts [--quick] [--workers N] [--inline]
 *
 * --inline: the workers run `reverse` on their main thread (`taskgrid worker --inline`).
 *
 * (`npm run bench` is bench/main.ts: this beside BullMQ, with more workers and 1M queued.)
 *
 * Prints a table (median [min..max] over rounds), writes bench/results/grid-<time>.json and
 * ends with one line a script can read.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmt as f, pct, summary } from './lib/stats.ts';
import { connect, startTaskGrid, taskgridRoundTrips, taskgridThroughput } from './lib/taskgrid.ts';
import { rawPingPong, rawSocket, startTransportPeer } from './lib/transport.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const workersArg = args.indexOf('--workers');
const WORKERS = workersArg >= 0 ? Number(args[workersArg + 1]) : 1;
const ROUNDS = quick ? 2 : 3;
const TASKS = quick ? 5_000 : 10_000;
const SEQ = quick ? 500 : 2_000;
const CONCURRENCY = 256;
const INLINE = args.includes('--inline');
const root = fileURLToPath(new URL('..', import.meta.url));

/** Sequential raw node:dgram round trips to an echo in another process, sorted (after 200 unmeasured). */
async function rawPingPongSorted(n: number): Promise<number[]> {
  const peer = await startTransportPeer();
  const sock = await rawSocket();
  try {
    await rawPingPong(sock, peer.raw, 200);
    return (await rawPingPong(sock, peer.raw, n)).sort((a, b) => a - b);
  } finally {
    sock.close();
    peer.stop();
  }
}

const grid = await startTaskGrid(WORKERS, INLINE, CONCURRENCY);
const rounds = {
  tps: [] as number[],
  p50_us: [] as number[],
  p99_us: [] as number[],
  raw_p50_us: [] as number[],
  p50_ratio: [] as number[],
};
try {
  const client = await connect(grid);
  try {
    await taskgridThroughput(client, 1_000); // warm-up
    await taskgridRoundTrips(client, 100);
    for (let r = 0; r < ROUNDS; r++) {
      const raw = await rawPingPongSorted(SEQ);
      const rt = (await taskgridRoundTrips(client, SEQ)).sort((a, b) => a - b);
      rounds.raw_p50_us.push(pct(raw, 0.5));
      rounds.p50_us.push(pct(rt, 0.5));
      rounds.p99_us.push(pct(rt, 0.99));
      rounds.p50_ratio.push(pct(rt, 0.5) / pct(raw, 0.5));
      rounds.tps.push(await taskgridThroughput(client, TASKS));
    }
  } finally {
    await client.close();
  }
} finally {
  await grid.stop();
}

const s = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, summary(v)])) as Record<
  keyof typeof rounds,
  ReturnType<typeof summary>
>;
console.log(
  `grid benchmark (${quick ? 'quick' : 'full'}; ${ROUNDS} rounds; ${WORKERS} reverse worker process(es)${INLINE ? ' running it inline' : ''}, concurrency ${CONCURRENCY}; median [min..max])`,
);
const rows: [string, keyof typeof rounds][] = [
  [`end to end, ${TASKS.toLocaleString('en-US')} reverse tasks (tasks/s)`, 'tps'],
  [`single-task round trip p50 (us), ${SEQ} sequential`, 'p50_us'],
  ['single-task round trip p99 (us)', 'p99_us'],
  ['raw node:dgram ping-pong p50 (us)', 'raw_p50_us'],
  ['round trip p50 / raw p50 (per round)', 'p50_ratio'],
];
for (const [label, key] of rows)
  console.log(`  ${label.padEnd(54)} ${f(s[key].median).padStart(10)}  [${f(s[key].min)}..${f(s[key].max)}]`);
mkdirSync(`${root}bench/results`, { recursive: true });
const file = `${root}bench/results/grid-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(
  file,
  JSON.stringify(
    { quick, workers: WORKERS, inline: INLINE, tasks: TASKS, sequential: SEQ, rounds, summary: s },
    null,
    2,
  ),
);
console.log(`  results: ${file}`);
console.log(
  `bench: tps=${Math.round(s.tps.median)} p50_us=${Math.round(s.p50_us.median)} p99_us=${Math.round(s.p99_us.median)} raw_p50_us=${Math.round(s.raw_p50_us.median)} p50_ratio=${s.p50_ratio.median.toFixed(2)} workers=${WORKERS}`,
);
