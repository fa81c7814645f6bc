/**
 * Transport benchmark: request/response over loopback UDP between two processes, beside a raw
 * node:dgram ping-pong measured in the same run (the machine's speed drifts, so only ratios
 * within one run mean anything).
 *
 *   npm run bench:transport [-- --quick] [-- --secret]
 *
 * Prints a table (median, min, max over rounds), writes bench/results/transport-<time>.json and
 * ends with one line a script can read.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createUdpTransport, type Endpoint, type PeerAddress } from '../src/transport/index.ts';

const quick = process.argv.includes('--quick');
const secret = process.argv.includes('--secret') ? 'bench-secret' : '';
const ROUNDS = quick ? 3 : 5;
const SEQ = quick ? 2_000 : 5_000;
const RAW_WINDOW = 128;
const RAW_TOTAL = quick ? 50_000 : 200_000;
const RR_WINDOW = 1_000;
const RR_TOTAL = quick ? 50_000 : 200_000;
const root = fileURLToPath(new URL('..', import.meta.url));

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { median: pct(s, 50), min: s[0]!, max: s[s.length - 1]! };
}

async function rawSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.setRecvBufferSize(4 * 1024 * 1024);
  s.setSendBufferSize(4 * 1024 * 1024);
  return s;
}

/** Sequential raw round trips: latency of one datagram there and back. */
async function rawPingPong(s: dgram.Socket, port: number, n: number): Promise<number[]> {
  const times: number[] = [];
  const msg = Buffer.from('{"k":"get-result","id":1,"b":{"ids":[1]}}');
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      s.once('message', () => resolve());
      s.send(msg, port, '127.0.0.1');
    });
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return times;
}

/** Raw windowed echo: messages a second with `window` in flight (no loss handling). */
async function rawWindowed(s: dgram.Socket, port: number, total: number, window: number): Promise<number> {
  const msg = Buffer.from('{"k":"get-result","id":1,"b":{"ids":[1]}}');
  let sent = 0;
  let got = 0;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    const onMessage = () => {
      got++;
      if (got >= total * 0.99) {
        s.off('message', onMessage);
        clearInterval(refill);
        resolve();
      } else if (sent < total) {
        sent++;
        s.send(msg, port, '127.0.0.1');
      }
    };
    s.on('message', onMessage);
    // Datagrams lost to buffer overflow would stall a fixed window; top it up.
    const refill = setInterval(() => {
      const missing = Math.min(window - (sent - got), total - sent);
      for (let i = 0; i < missing; i++, sent++) s.send(msg, port, '127.0.0.1');
    }, 5);
    for (; sent < window; sent++) s.send(msg, port, '127.0.0.1');
  });
  return got / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function rrSequential(c: Endpoint, peer: PeerAddress, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await c.request(peer, 'get-result', { ids: [i + 1] });
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return times;
}

async function rrWindowed(c: Endpoint, peer: PeerAddress, total: number, window: number): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) {
      next++;
      await c.request(peer, 'get-result', { ids: [next] });
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

// BENCH_PEER_PROFILE=dir profiles the far side too (node --cpu-prof).
const profile = process.env.BENCH_PEER_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PEER_PROFILE}`] : [];
const peerProc = spawn(process.execPath, [...profile, '--import', 'tsx', 'bench/transport-peer.ts', secret], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
const ports = await new Promise<{ raw: number; endpoint: number }>((resolve) => {
  createInterface({ input: peerProc.stdout }).once('line', (l) => resolve(JSON.parse(l) as { raw: number; endpoint: number }));
});
const sock = await rawSocket();
const client = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: secret || undefined });
const peer = { host: '127.0.0.1', port: ports.endpoint };

const rounds: Record<string, number[]> = {
  raw_p50_us: [],
  raw_p99_us: [],
  rr_p50_us: [],
  rr_p99_us: [],
  raw_window_mps: [],
  rr_window_rps: [],
  p50_ratio: [],
};
// Warm up both paths (JIT, socket buffers, RTT estimate).
await rawPingPong(sock, ports.raw, 500);
await rrSequential(client, peer, 500);
await rrWindowed(client, peer, 20_000, RR_WINDOW);
for (let r = 0; r < ROUNDS; r++) {
  const raw = (await rawPingPong(sock, ports.raw, SEQ)).sort((a, b) => a - b);
  const rr = (await rrSequential(client, peer, SEQ)).sort((a, b) => a - b);
  rounds.raw_p50_us!.push(pct(raw, 50));
  rounds.raw_p99_us!.push(pct(raw, 99));
  rounds.rr_p50_us!.push(pct(rr, 50));
  rounds.rr_p99_us!.push(pct(rr, 99));
  rounds.p50_ratio!.push(pct(rr, 50) / pct(raw, 50));
  rounds.raw_window_mps!.push(await rawWindowed(sock, ports.raw, RAW_TOTAL, RAW_WINDOW));
  rounds.rr_window_rps!.push(await rrWindowed(client, peer, RR_TOTAL, RR_WINDOW));
}
const counters = client.counters();
await client.close();
sock.close();
peerProc.kill('SIGTERM');

const summary = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, stats(v)]));
console.log(`transport benchmark (${quick ? 'quick' : 'full'}, ${ROUNDS} rounds, ${secret ? 'signed' : 'unsigned'}; median [min..max])`);
const rows: [string, string, string][] = [
  ['raw ping-pong p50 (us)', 'raw_p50_us', ''],
  ['raw ping-pong p99 (us)', 'raw_p99_us', ''],
  ['request/response p50 (us)', 'rr_p50_us', ''],
  ['request/response p99 (us)', 'rr_p99_us', ''],
  ['p50 ratio rr/raw (per round)', 'p50_ratio', ''],
  [`raw echo, ${RAW_WINDOW} in flight (msg/s)`, 'raw_window_mps', ''],
  [`request/response, ${RR_WINDOW} in flight (req/s)`, 'rr_window_rps', ''],
];
for (const [label, key] of rows) {
  const s = summary[key]!;
  const f = (x: number) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2));
  console.log(`  ${label.padEnd(42)} ${f(s.median).padStart(10)}  [${f(s.min)}..${f(s.max)}]`);
}
console.log(
  `  client datagrams out ${counters.datagramsOut}, messages out ${counters.messagesOut}, retransmits ${counters.retransmits}`,
);
mkdirSync(`${root}bench/results`, { recursive: true });
const file = `${root}bench/results/transport-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ quick, secret: !!secret, rounds, summary, counters }, null, 2));
console.log(`  results: ${file}`);
const m = (k: string) => summary[k]!.median;
console.log(
  `bench-transport: rr_p50_us=${m('rr_p50_us').toFixed(1)} rr_p99_us=${m('rr_p99_us').toFixed(1)} raw_p50_us=${m('raw_p50_us').toFixed(1)} p50_ratio=${m('p50_ratio').toFixed(2)} rps=${Math.round(m('rr_window_rps'))} raw_mps=${Math.round(m('raw_window_mps'))}`,
);
