/**
 * The transport's limits, shared by the benchmarks: the far side (`bench/transport-peer.ts`, a
 * raw node:dgram echo and a TaskGrid endpoint answering `get-result`) in its own process, raw
 * ping-pong and windowed echo against it, and request/response one at a time or with a window
 * of callers in flight.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Endpoint, PeerAddress, TransportCounters } from '../../src/transport/index.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A message the size of a small request. */
export const RAW_MSG = Buffer.from('{"k":"get-result","id":1,"b":{"ids":[1]}}');

/** A UDP socket on 127.0.0.1 with 4 MiB buffers. */
export async function rawSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.setRecvBufferSize(4 * 1024 * 1024);
  s.setSendBufferSize(4 * 1024 * 1024);
  return s;
}

/** Sequential raw round trips (microseconds each, in order): one datagram there and back. */
export async function rawPingPong(s: dgram.Socket, port: number, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      s.once('message', () => resolve());
      s.send(RAW_MSG, port, '127.0.0.1');
    });
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return times;
}

/** Raw windowed echo: messages a second with `window` in flight (no loss handling). */
export async function rawWindowed(
  s: dgram.Socket,
  port: number,
  total: number,
  window: number,
): Promise<number> {
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
        s.send(RAW_MSG, port, '127.0.0.1');
      }
    };
    s.on('message', onMessage);
    // Datagrams lost to buffer overflow would stall a fixed window; top it up.
    const refill = setInterval(() => {
      const missing = Math.min(window - (sent - got), total - sent);
      for (let i = 0; i < missing; i++, sent++) s.send(RAW_MSG, port, '127.0.0.1');
    }, 5);
    for (; sent < window; sent++) s.send(RAW_MSG, port, '127.0.0.1');
  });
  return got / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Sequential request/response round trips (microseconds each, in order). */
export async function rrSequential(c: Endpoint, peer: PeerAddress, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await c.request(peer, 'get-result', { ids: [i + 1] });
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return times;
}

/** Requests a second with `window` callers, each sending its next request when answered. */
export async function rrWindowed(
  c: Endpoint,
  peer: PeerAddress,
  total: number,
  window: number,
): Promise<number> {
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

/** The far side of the transport benchmarks, running in its own process. */
export interface TransportPeer {
  proc: ChildProcess;
  /** Port of the raw echo socket. */
  raw: number;
  /** Port of the TaskGrid endpoint. */
  endpoint: number;
  /** The peer's transport counters and CPU time so far. */
  counters(): Promise<{ counters: TransportCounters; cpu: NodeJS.CpuUsage }>;
  stop(): void;
}

/**
 * Starts `bench/transport-peer.ts` (signing with `secret` if given; `nodeArgs`, e.g.
 * `--cpu-prof`, go to its node) and resolves once it printed its ports.
 */
export async function startTransportPeer(secret = '', nodeArgs: string[] = []): Promise<TransportPeer> {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'bench/transport-peer.ts', secret], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  type Waiter = { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void };
  const waiters: Waiter[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) =>
    waiters.shift()?.resolve(JSON.parse(l) as Record<string, unknown>),
  );
  let exited = false;
  proc.once('exit', (code, signal) => {
    exited = true;
    const err = new Error(`bench/transport-peer.ts exited (${signal ?? code})`);
    for (const w of waiters.splice(0)) w.reject(err);
  });
  const line = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      if (exited) reject(new Error('bench/transport-peer.ts is not running'));
      else waiters.push({ resolve, reject });
    });
  const ports = (await line()) as { raw: number; endpoint: number };
  return {
    proc,
    ...ports,
    async counters() {
      const next = line();
      proc.stdin.write('counters\n');
      return (await next) as { counters: TransportCounters; cpu: NodeJS.CpuUsage };
    },
    stop() {
      proc.stdin.end();
      proc.kill('SIGTERM');
    },
  };
}
