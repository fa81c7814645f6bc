/**
 * TaskGrid beside BullMQ on Redis (issue 7), one run on one machine:
 *
 *   npm run bench [-- --quick] [-- --rounds N] [-- --no-aof | --aof] [-- --chart docs/bench.svg]
 *                 [-- --tasks N] [-- --sequential N] [-- --queued N] [-- --queued-runs N]
 *
 * Each round measures, in this order: the limit (raw node:dgram ping-pong, raw windowed echo,
 * TaskGrid request/response with 1,000 in flight, between two processes); then TaskGrid and
 * BullMQ (the order alternating between rounds), each with one worker process (warm-up,
 * sequential round trips, throughput) and then with four (throughput). TaskGrid: the CLI's
 * nameservice, dispatcher and workers as processes over UDP on loopback, one client here; its
 * workers run `reverse` inline (`taskgrid worker --inline`, on their main thread, as BullMQ's
 * Worker runs its processor), and a second grid measures one worker running it in handler
 * threads (TaskGrid's default: warm-up, round trips, throughput).
 * BullMQ: a private redis-server on a free loopback port (no persistence; and a second one
 * with appendonly everysec: full runs unless --no-aof, quick ones with --aof), worker
 * processes of bench/bullmq-worker.ts, the producer here. Both run the same `reverse` handler
 * (worker_types/reverse.ts) on the same payloads, and every result is checked. After the rounds: 1,000,000 tasks submitted to a
 * dispatcher with no workers (submit rate, dispatcher RSS), then drained by four workers.
 *
 * Prints a table (median [min..max] over rounds; ratios pair by pair within each round), the
 * targets and whether each holds, writes bench/results/bench-<time>.{json,md,svg} and ends
 * with one line a script can read. --quick: smaller counts, under two minutes.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createUdpTransport } from '../src/transport/index.ts';
import { handle as reverse } from '../worker_types/reverse.ts';
import type { Grid } from '../test/support/grid.ts';
import { rssMb } from '../test/support/process.ts';
import { BULLMQ_CONCURRENCY, BullmqSide } from './lib/bullmq.ts';
import { cpuMeter } from './lib/cpu.ts';
import { ensureRedisServer, startRedis, type RedisServer } from './lib/redis.ts';
import {
  markdownReport,
  svgChart,
  textReport,
  type BenchData,
  type Rounds,
  type System,
} from './lib/report.ts';
import { pct } from './lib/stats.ts';
import {
  TASKGRID_CONCURRENCY,
  addWorkers,
  connect,
  startTaskGrid,
  submitAll,
  taskgridRoundTrips,
  taskgridThroughput,
  throughputPayload,
  waitForWorkers,
} from './lib/taskgrid.ts';
import { rawPingPong, rawSocket, rawWindowed, rrWindowed, startTransportPeer } from './lib/transport.ts';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string, fallback: number) => Number(flag(name) ?? fallback);

const quick = process.argv.includes('--quick');
const ROUNDS = num('--rounds', quick ? 2 : 3);
const TASKS = num('--tasks', quick ? 20_000 : 100_000);
const SEQ = num('--sequential', quick ? 200 : 2_000);
const QUEUED = num('--queued', quick ? 100_000 : 1_000_000);
const QUEUED_RUNS = num('--queued-runs', 1);
const WORKERS = [1, 4];
const WARM_TASKS = quick ? 1_000 : 2_000;
/** Sequential round trips before the measured ones: the JIT needs a few thousand to settle. */
const WARM_SEQ = quick ? 300 : 2_000;
const RAW_TOTAL = quick ? 20_000 : 100_000;
const RR_TOTAL = quick ? 20_000 : 100_000;
/** Tasks per submitMany call while filling the queue (the client splits them into batches of 500). */
const QUEUED_CHUNK = 100_000;
/** BullMQ also on Redis with an append-only file: by default in a full run (--no-aof: not), in --quick only with --aof. */
const AOF = quick ? process.argv.includes('--aof') : !process.argv.includes('--no-aof');
const root = fileURLToPath(new URL('..', import.meta.url));

const t00 = performance.now();
const log = (line: string) =>
  console.log(`  .. ${((performance.now() - t00) / 1000).toFixed(0).padStart(4)} s  ${line}`);
const rounds: Rounds = {};
const queued: Rounds = {};
const latency: BenchData['latency'] = {};
function record(into: Rounds, key: string, index: number, value: number): void {
  (into[key] ??= [])[index] = value;
}

// Everything started is stopped on the way out, also on Ctrl-C.
const cleanups = new Set<() => Promise<void>>();
async function owned<T>(
  start: Promise<T>,
  stop: (v: T) => Promise<void>,
  body: (v: T) => Promise<void>,
): Promise<void> {
  const v = await start;
  const cleanup = () => stop(v);
  cleanups.add(cleanup);
  try {
    await body(v);
  } finally {
    cleanups.delete(cleanup);
    await stop(v);
  }
}
process.once('SIGINT', () => {
  void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(130));
});

const gridPids = (g: Grid) => [g.nameservice.pid, g.dispatcher.pid, ...g.workers.map((w) => w.pid)];

/** Raw ping-pong, raw windowed echo and request/response with 1,000 in flight. */
async function limitPhase(r: number): Promise<void> {
  await owned(
    startTransportPeer(),
    (p) => Promise.resolve(p.stop()),
    async (peer) => {
      const sock = await rawSocket();
      const endpoint = await createUdpTransport({ host: '127.0.0.1', port: 0 });
      const addr = { host: '127.0.0.1', port: peer.endpoint };
      try {
        await rawPingPong(sock, peer.raw, 200);
        await rrWindowed(endpoint, addr, 5_000, 1_000);
        const raw = (await rawPingPong(sock, peer.raw, SEQ)).sort((a, b) => a - b);
        (latency.raw ??= []).push(...raw);
        record(rounds, 'raw_p50_us', r, pct(raw, 0.5));
        record(rounds, 'raw_p99_us', r, pct(raw, 0.99));
        record(rounds, 'raw_window_mps', r, await rawWindowed(sock, peer.raw, RAW_TOTAL, 128));
        record(rounds, 'rr_window_rps', r, await rrWindowed(endpoint, addr, RR_TOTAL, 1_000));
      } finally {
        sock.close();
        await endpoint.close();
      }
    },
  );
  log(
    `limit: raw p50 ${rounds.raw_p50_us![r]!.toFixed(1)} us, request/response ${Math.round(rounds.rr_window_rps![r]!)}/s`,
  );
}

function recordRoundTrips(sys: System | 'raw', r: number, times: number[]): void {
  const sorted = [...times].sort((a, b) => a - b);
  (latency[sys] ??= []).push(...sorted);
  record(rounds, `${sys}_p50_us`, r, pct(sorted, 0.5));
  record(rounds, `${sys}_p99_us`, r, pct(sorted, 0.99));
}

/** TaskGrid with inline workers (`tg`: every worker count), or in handler threads (`tgt`: one worker). */
async function taskgridPhase(r: number, sys: 'tg' | 'tgt'): Promise<void> {
  const inline = sys === 'tg';
  const counts = inline ? WORKERS : WORKERS.slice(0, 1);
  await owned(
    startTaskGrid(1, inline),
    (g) => g.stop(),
    async (grid) => {
      const client = await connect(grid);
      try {
        await waitForWorkers(client, 1);
        await taskgridThroughput(client, WARM_TASKS);
        await taskgridRoundTrips(client, WARM_SEQ);
        recordRoundTrips(sys, r, await taskgridRoundTrips(client, SEQ));
        for (const w of counts) {
          await addWorkers(grid, w - grid.workers.length, inline);
          await waitForWorkers(client, w);
          const cpu = cpuMeter(gridPids(grid));
          record(rounds, `${sys}_tps_w${w}`, r, await taskgridThroughput(client, TASKS));
          record(rounds, `${sys}_cpu_us_w${w}`, r, (cpu() * 1000) / TASKS);
        }
      } finally {
        await client.close();
      }
    },
  );
  log(
    `TaskGrid${inline ? '' : ' (handler threads)'}: ${counts.map((w) => `${Math.round(rounds[`${sys}_tps_w${w}`]![r]!)}/s with ${w}`).join(', ')}; p50 ${Math.round(rounds[`${sys}_p50_us`]![r]!)} us`,
  );
}

async function bullmqPhase(r: number, sys: 'bull' | 'aof', redis: RedisServer): Promise<void> {
  // Events kept in Redis's stream: enough that the producer never misses a completion.
  await owned(
    BullmqSide.open(redis, `bench-${sys}-${r}`, 10 * TASKS),
    (s) => s.close(),
    async (side) => {
      await side.addWorkers(1);
      await side.throughput(WARM_TASKS);
      await side.roundTrips(WARM_SEQ);
      recordRoundTrips(sys, r, await side.roundTrips(SEQ));
      for (const w of WORKERS) {
        await side.addWorkers(w - side.workers.length);
        const cpu = cpuMeter([redis.pid, ...side.workers.map((c) => c.pid)]);
        record(rounds, `${sys}_tps_w${w}`, r, await side.throughput(TASKS));
        record(rounds, `${sys}_cpu_us_w${w}`, r, (cpu() * 1000) / TASKS);
      }
    },
  );
  log(
    `${sys === 'bull' ? 'BullMQ' : 'BullMQ (AOF)'}: ${WORKERS.map((w) => `${Math.round(rounds[`${sys}_tps_w${w}`]![r]!)}/s with ${w}`).join(', ')}; p50 ${Math.round(rounds[`${sys}_p50_us`]![r]!)} us`,
  );
}

/** QUEUED tasks into a dispatcher with no workers, then drained by the most workers measured. */
async function queuedPhase(run: number): Promise<void> {
  const workers = WORKERS.at(-1)!;
  await owned(
    startTaskGrid(0, true),
    (g) => g.stop(),
    async (grid) => {
      const client = await connect(grid);
      const pid = grid.dispatcher.pid;
      let peak = 0;
      const sample = async () => (peak = Math.max(peak, await rssMb(pid)));
      const sampler = setInterval(() => void sample(), 200);
      try {
        const ids: number[] = [];
        const t0 = process.hrtime.bigint();
        for (let start = 0; start < QUEUED; start += QUEUED_CHUNK) {
          const specs = Array.from({ length: Math.min(QUEUED_CHUNK, QUEUED - start) }, (_, i) => ({
            type: 'reverse',
            payload: throughputPayload(start + i),
          }));
          ids.push(...(await submitAll(client, specs)));
        }
        const submitS = Number(process.hrtime.bigint() - t0) / 1e9;
        clearInterval(sampler);
        const after = await rssMb(pid);
        await sample();
        const { totals } = await client.stats();
        if (totals.queued !== QUEUED) throw new Error(`${totals.queued} tasks queued, not ${QUEUED}`);
        record(queued, 'submit_tps', run, QUEUED / submitS);
        record(queued, 'rss_mb', run, peak);
        record(queued, 'rss_after_mb', run, after);
        log(
          `queued ${QUEUED} in ${submitS.toFixed(1)} s; dispatcher RSS ${after.toFixed(0)} MB (peak ${peak.toFixed(0)})`,
        );

        // Timed from the first worker ready (starting a worker process takes seconds on a
        // loaded machine; that is not the drain).
        const spawned = process.hrtime.bigint();
        const starting = Array.from({ length: workers }, () =>
          grid.startWorker(['reverse'], TASKGRID_CONCURRENCY, true),
        );
        await Promise.race(starting);
        const t1 = process.hrtime.bigint();
        await Promise.all(starting);
        record(queued, 'workers_start_s', run, Number(process.hrtime.bigint() - spawned) / 1e9);
        for (;;) {
          const { totals: t } = await client.stats();
          if (t.failed + t.cancelled > 0)
            throw new Error(`${t.failed} failed, ${t.cancelled} cancelled while draining`);
          if (t.succeeded >= QUEUED) break;
          await new Promise((res) => setTimeout(res, 100));
        }
        const drainS = Number(process.hrtime.bigint() - t1) / 1e9;
        record(queued, 'drain_s', run, drainS);
        record(queued, 'drain_tps', run, QUEUED / drainS);
        // Spot-check results across the queue.
        const step = Math.max(1, Math.floor(QUEUED / 1_000));
        const picks = ids.map((id, i) => ({ id, i })).filter((_, i) => i % step === 0);
        const views = await client.wait(picks.map((p) => p.id));
        const wrong = views.filter((v, k) => v.result !== reverse(throughputPayload(picks[k]!.i))).length;
        if (wrong > 0) throw new Error(`${wrong} of ${views.length} drained tasks have a wrong result`);
        log(`drained by ${workers} workers in ${drainS.toFixed(1)} s`);
      } finally {
        clearInterval(sampler);
        await client.close();
      }
    },
  );
}

function version(pkg: string): string {
  const json = JSON.parse(readFileSync(`${root}node_modules/${pkg}/package.json`, 'utf8')) as {
    version: string;
  };
  return json.version;
}

const started = new Date();
const loadBefore = os.loadavg();
const redisVersion = ensureRedisServer((l) => log(l));
console.log(
  `bench: TaskGrid beside BullMQ (${quick ? 'quick' : 'full'}): ${ROUNDS} rounds of ${TASKS} tasks and ${SEQ} round trips, then ${QUEUED} queued`,
);
await owned(
  startRedis(),
  (r) => r.stop(),
  async (plain) => {
    await owned(
      AOF ? startRedis({ aof: true }) : Promise.resolve(undefined),
      async (r) => r?.stop(),
      async (aof) => {
        for (let r = 0; r < ROUNDS; r++) {
          log(`round ${r + 1} of ${ROUNDS}`);
          await limitPhase(r);
          const bull = async () => {
            await bullmqPhase(r, 'bull', plain);
            if (aof) await bullmqPhase(r, 'aof', aof);
          };
          // Alternate which system goes first, so that a drift of the machine favours neither.
          const taskgrid = async () => {
            await taskgridPhase(r, 'tg');
            await taskgridPhase(r, 'tgt');
          };
          if (r % 2 === 0) {
            await taskgrid();
            await bull();
          } else {
            await bull();
            await taskgrid();
          }
        }
      },
    );
  },
);
for (let run = 0; run < QUEUED_RUNS; run++) await queuedPhase(run);

const data: BenchData = {
  meta: {
    date: started.toISOString().replace(/\.\d+Z$/, 'Z'),
    quick,
    rounds: ROUNDS,
    workers: WORKERS,
    tasks: TASKS,
    sequential: SEQ,
    queued: QUEUED,
    queuedRuns: QUEUED_RUNS,
    taskgridConcurrency: TASKGRID_CONCURRENCY,
    bullmqConcurrency: BULLMQ_CONCURRENCY,
    loadBefore,
    loadAfter: os.loadavg(),
    cpus: os.cpus().length,
    node: process.version,
    redis: redisVersion.replace(/^Redis server v=(\S+).*$/, 'Redis $1'),
    bullmq: version('bullmq'),
    aof: AOF,
  },
  rounds,
  queued,
  latency,
};
const lines = textReport(data);
mkdirSync(`${root}bench/results`, { recursive: true });
const base = `${root}bench/results/bench-${started.toISOString().replace(/[:.]/g, '-')}`;
const rounded = Object.fromEntries(
  Object.entries(latency).map(([k, v]) => [k, v.map((x) => Math.round(x * 10) / 10)]),
);
writeFileSync(`${base}.json`, JSON.stringify({ ...data, latency: rounded, report: lines }));
writeFileSync(`${base}.md`, markdownReport(data));
const svg = svgChart(data);
writeFileSync(`${base}.svg`, svg);
const chart = flag('--chart');
if (chart) writeFileSync(chart, svg);
console.log(lines.slice(0, -1).join('\n'));
console.log(`  results: ${base}.{json,md,svg}${chart ? `; chart: ${chart}` : ''}`);
console.log(lines.at(-1));
