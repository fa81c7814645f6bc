/**
 * A private redis-server for the BullMQ side of the benchmark: on a free loopback port, in a
 * temporary directory, started and stopped by the benchmark. When `redis-server` is missing it
 * is installed with `apt-get install -y redis-server` (Debian's package; needs root); nothing
 * else is installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `redis-server --version`, or undefined when there is none on the PATH. */
export function redisServerVersion(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Makes sure `redis-server` exists, installing Debian's package through apt if it does not. */
export function ensureRedisServer(log: (line: string) => void = console.log): string {
  const found = redisServerVersion();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'redis-server is missing and this is not root: run `apt-get install -y redis-server` first',
    );
  }
  // RUNLEVEL=1: without systemd, the package's scripts then leave the system-wide service
  // stopped (invoke-rc.d does not start it); the benchmark starts its own server anyway.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', RUNLEVEL: '1' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', 'redis-server'], { stdio: 'inherit', env }).status;
  log('redis-server is missing: apt-get install -y redis-server');
  if (install() !== 0) {
    // A fresh machine may have no package lists yet.
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
    if (install() !== 0) throw new Error('apt-get install -y redis-server failed');
  }
  const version = redisServerVersion();
  if (!version) throw new Error('redis-server is still missing after apt-get install');
  return version;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Sends one inline command and resolves with the first reply line (e.g. `+PONG`). */
export function redisCommand(port: number, command: string, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${command} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d: string) => {
      data += d;
      const end = data.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        sock.end();
        resolve(data.slice(0, end));
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export interface RedisOptions {
  /** Append-only file with `appendfsync everysec` (else no persistence at all). */
  aof?: boolean;
}

export interface RedisServer {
  port: number;
  pid: number;
  aof: boolean;
  /** Deletes every key (between phases). */
  flush(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), then removes its directory. */
  stop(): Promise<void>;
}

/** Starts redis-server on a free loopback port and resolves once it answers PING. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const aof = options.aof ?? false;
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'taskgrid-bench-redis-'));
    const port = await freePort();
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--dir',
      dir,
      '--daemonize',
      'no',
    ];
    args.push(...(aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']));
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    for (const s of [proc.stdout, proc.stderr])
      s.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4_000)));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    };
    if (await answersPing(port, proc, 10_000)) {
      return {
        port,
        pid: proc.pid!,
        aof,
        async flush() {
          const reply = await redisCommand(port, 'FLUSHALL', 30_000);
          if (reply !== '+OK') throw new Error(`FLUSHALL answered ${reply}`);
        },
        stop,
      };
    }
    await stop();
    // Another process may have taken the port between freePort() and redis-server's bind.
    if (attempt >= 3) throw new Error(`redis-server did not start: ${output}`);
  }
}

async function answersPing(port: number, proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
    try {
      if ((await redisCommand(port, 'PING')) === '+PONG') return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
