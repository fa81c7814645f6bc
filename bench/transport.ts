/**
 * Transport benchmark: request/response over loopback UDP between two processes, beside a raw
 * node:dgram ping-pong measured in the same run (the machine's speed drifts, so only ratios
 * within one run mean anything).
 *
 *   npm run bench:transport [-- --quick] [-- --secret] [-- --rounds N] [-- --windows 100,1000]
 *                           [-- --only latency|throughput|raw-window|rr-window]
 *
 * Each round measures, in this order: raw ping-pong and request/response round trips (one at a
 * time), raw windowed echo, and request/response with each window of requests in flight.
 * Prints a table (median, min, max over rounds), a latency histogram over every round, the
 * retransmissions and duplicates of each throughput phase, the kernel's UDP receive-buffer
 * drops (machine-wide), writes bench/results/transport-<time>.json and ends with one line a
 * script can read. BENCH_PEER_PROFILE=<dir> runs the far side under `node --cpu-prof`.
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createUdpTransport } from '../src/transport/index.ts';
import { pct as pctOf, summary as stats, fmt as f } from './lib/stats.ts';
import {
  rawPingPong,
  rawSocket,
  rawWindowed,
  rrSequential,
  rrWindowed,
  startTransportPeer,
} from './lib/transport.ts';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  if (i >= 0) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

const quick = process.argv.includes('--quick');
const secret = process.argv.includes('--secret') ? 'bench-secret' : '';
const ROUNDS = Number(flag('--rounds') ?? (quick ? 3 : 5));
// --only latency | throughput | raw-window | rr-window (a comma-separated list)
const only = flag('--only')?.split(',');
const doLatency = !only || only.includes('latency');
const doRawWindow = !only || only.includes('throughput') || only.includes('raw-window');
const doRrWindow = !only || only.includes('throughput') || only.includes('rr-window');
const SEQ = quick ? 2_000 : 5_000;
const RAW_WINDOW = 128;
const RAW_TOTAL = quick ? 50_000 : 200_000;
const RR_WINDOWS = (flag('--windows') ?? '100,1000').split(',').map(Number);
const RR_TOTAL = quick ? 50_000 : 200_000;
const root = fileURLToPath(new URL('..', import.meta.url));

/** Percentile `p` (0..100) of sorted samples. */
const pct = (sorted: number[], p: number): number => pctOf(sorted, p / 100);

/** The kernel's UDP receive-buffer drops so far (machine-wide; Linux only). */
function rcvbufErrors(): number {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf('RcvbufErrors')] ?? NaN);
  } catch {
    return NaN;
  }
}

// BENCH_PEER_PROFILE=dir profiles the far side too (node --cpu-prof).
const profile = process.env.BENCH_PEER_PROFILE
  ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PEER_PROFILE}`]
  : [];
const peerProc = await startTransportPeer(secret, profile);
const peerCounters = () => peerProc.counters();
const ports = { raw: peerProc.raw, endpoint: peerProc.endpoint };
const sock = await rawSocket();
const client = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: secret || undefined });
const peer = { host: '127.0.0.1', port: ports.endpoint };

/** What one throughput phase cost beyond its requests: counters of both sides, diffed. */
interface PhaseCost {
  requests: number;
  retransmits: number;
  lateReplies: number;
  serverDuplicates: number;
  datagramsOut: number;
  messagesOut: number;
  rcvbufErrors: number;
  /** CPU time (user + system) of each process over the phase, microseconds. */
  clientCpuUs: number;
  serverCpuUs: number;
}

const cpuUs = (c: NodeJS.CpuUsage) => c.user + c.system;

async function measured<T>(requests: number, fn: () => Promise<T>): Promise<{ value: T; cost: PhaseCost }> {
  const c0 = client.counters();
  const { counters: s0, cpu: sc0 } = await peerCounters();
  const k0 = rcvbufErrors();
  const cc0 = process.cpuUsage();
  const value = await fn();
  const cc1 = process.cpuUsage();
  const c1 = client.counters();
  const { counters: s1, cpu: sc1 } = await peerCounters();
  return {
    value,
    cost: {
      requests,
      retransmits: c1.retransmits - c0.retransmits,
      lateReplies: c1.lateReplies - c0.lateReplies,
      serverDuplicates: s1.duplicates - s0.duplicates,
      datagramsOut: c1.datagramsOut - c0.datagramsOut,
      messagesOut: c1.messagesOut - c0.messagesOut,
      rcvbufErrors: rcvbufErrors() - k0,
      clientCpuUs: cpuUs(cc1) - cpuUs(cc0),
      serverCpuUs: cpuUs(sc1) - cpuUs(sc0),
    },
  };
}

const rounds: Record<string, number[]> = {};
const push = (k: string, v: number) => (rounds[k] ??= []).push(v);
const costs: Record<string, PhaseCost[]> = {};
const allRaw: number[] = [];
const allRr: number[] = [];
const rcvbufBefore = rcvbufErrors();

// Warm up both paths (JIT, socket buffers, RTT estimate).
await rawPingPong(sock, ports.raw, 500);
await rrSequential(client, peer, 500);
if (doRrWindow) for (const w of RR_WINDOWS) await rrWindowed(client, peer, 20_000, w);
for (let r = 0; r < ROUNDS; r++) {
  if (doLatency) {
    const raw = (await rawPingPong(sock, ports.raw, SEQ)).sort((a, b) => a - b);
    const rr = (await rrSequential(client, peer, SEQ)).sort((a, b) => a - b);
    allRaw.push(...raw);
    allRr.push(...rr);
    push('raw_p50_us', pct(raw, 50));
    push('raw_p99_us', pct(raw, 99));
    push('rr_p50_us', pct(rr, 50));
    push('rr_p99_us', pct(rr, 99));
    push('p50_ratio', pct(rr, 50) / pct(raw, 50));
  }
  if (doRawWindow) push('raw_window_mps', await rawWindowed(sock, ports.raw, RAW_TOTAL, RAW_WINDOW));
  if (doRrWindow) {
    for (const w of RR_WINDOWS) {
      const { value, cost } = await measured(RR_TOTAL, () => rrWindowed(client, peer, RR_TOTAL, w));
      push(`rr_window_${w}_rps`, value);
      (costs[`rr_window_${w}`] ??= []).push(cost);
    }
  }
}
const counters = client.counters();
const rcvbufAfter = rcvbufErrors();
await client.close();
sock.close();
peerProc.stop();

const summary = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, stats(v)]));
console.log(
  `transport benchmark (${quick ? 'quick' : 'full'}, ${ROUNDS} rounds, ${secret ? 'signed' : 'unsigned'}; median [min..max])`,
);
const rows: [string, string][] = [
  ['raw ping-pong p50 (us)', 'raw_p50_us'],
  ['raw ping-pong p99 (us)', 'raw_p99_us'],
  ['request/response p50 (us)', 'rr_p50_us'],
  ['request/response p99 (us)', 'rr_p99_us'],
  ['p50 ratio rr/raw (per round)', 'p50_ratio'],
  [`raw echo, ${RAW_WINDOW} in flight (msg/s)`, 'raw_window_mps'],
  ...RR_WINDOWS.map((w): [string, string] => [
    `request/response, ${w} in flight (req/s)`,
    `rr_window_${w}_rps`,
  ]),
];
for (const [label, key] of rows) {
  const s = summary[key];
  if (s) console.log(`  ${label.padEnd(42)} ${f(s.median).padStart(10)}  [${f(s.min)}..${f(s.max)}]`);
}

if (allRr.length > 0) {
  allRaw.sort((a, b) => a - b);
  allRr.sort((a, b) => a - b);
  console.log(`  latency over every round (us)        p50      p90      p99    p99.9      max`);
  for (const [name, v] of [
    ['raw ping-pong', allRaw],
    ['request/response', allRr],
  ] as const) {
    const cols = [50, 90, 99, 99.9].map((p) => f(pct(v, p)).padStart(8));
    console.log(`    ${name.padEnd(32)} ${cols.join(' ')} ${f(v[v.length - 1]!).padStart(8)}`);
  }
  const edges = [25, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, Infinity];
  const hist = (v: number[]) => {
    const counts = edges.map(() => 0);
    for (const x of v) counts[edges.findIndex((e) => x < e)]!++;
    return counts.map((c) => `${((100 * c) / v.length).toFixed(1)}%`.padStart(7));
  };
  console.log(
    `  histogram (us)  ${edges.map((e) => (e === Infinity ? '>=2000' : `<${e}`).padStart(7)).join('')}`,
  );
  console.log(`    raw           ${hist(allRaw).join('')}`);
  console.log(`    rr            ${hist(allRr).join('')}`);
}

const costSummary: Record<string, Record<string, number>> = {};
for (const [phase, list] of Object.entries(costs)) {
  const med = (k: keyof PhaseCost) =>
    stats(list.map((c) => c[k] / (k === 'requests' ? 1 : c.requests / 1000))).median;
  costSummary[phase] = {
    retransmits_per_1k: med('retransmits'),
    late_replies_per_1k: med('lateReplies'),
    server_duplicates_per_1k: med('serverDuplicates'),
    messages_per_datagram: stats(list.map((c) => c.messagesOut / Math.max(1, c.datagramsOut))).median,
    rcvbuf_errors_per_1k: med('rcvbufErrors'),
    client_cpu_us_per_request: med('clientCpuUs') / 1000,
    server_cpu_us_per_request: med('serverCpuUs') / 1000,
  };
  const s = costSummary[phase];
  console.log(
    `  ${phase}: per 1000 requests ${f(s.retransmits_per_1k!)} retransmits, ${f(s.late_replies_per_1k!)} late replies, ` +
      `${f(s.server_duplicates_per_1k!)} duplicates at the server, ${f(s.rcvbuf_errors_per_1k!)} kernel drops; ` +
      `${f(s.messages_per_datagram!)} messages per client datagram; CPU per request ${f(s.client_cpu_us_per_request!)} us client, ` +
      `${f(s.server_cpu_us_per_request!)} us server (medians over rounds)`,
  );
}
console.log(
  `  client totals: datagrams out ${counters.datagramsOut}, messages out ${counters.messagesOut}, retransmits ${counters.retransmits}; ` +
    `UDP RcvbufErrors (machine-wide) +${rcvbufAfter - rcvbufBefore}`,
);
mkdirSync(`${root}bench/results`, { recursive: true });
const file = `${root}bench/results/transport-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(
  file,
  JSON.stringify(
    { quick, secret: !!secret, windows: RR_WINDOWS, rounds, summary, costs: costSummary, counters },
    null,
    2,
  ),
);
console.log(`  results: ${file}`);
const m = (k: string) => summary[k]?.median ?? NaN;
const wMax = Math.max(...RR_WINDOWS);
console.log(
  `bench-transport: rr_p50_us=${m('rr_p50_us').toFixed(1)} rr_p99_us=${m('rr_p99_us').toFixed(1)} raw_p50_us=${m('raw_p50_us').toFixed(1)} p50_ratio=${m('p50_ratio').toFixed(2)} rps=${Math.round(m(`rr_window_${wMax}_rps`))} ${RR_WINDOWS.map((w) => `rps_${w}=${Math.round(m(`rr_window_${w}_rps`))}`).join(' ')} raw_mps=${Math.round(m('raw_window_mps'))} cpu_us_client=${(costSummary[`rr_window_${wMax}`]?.client_cpu_us_per_request ?? NaN).toFixed(2)} cpu_us_server=${(costSummary[`rr_window_${wMax}`]?.server_cpu_us_per_request ?? NaN).toFixed(2)}`,
);
