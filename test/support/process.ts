/**
 * Child processes for tests: start a TypeScript entry under tsx, read the JSON lines it prints,
 * and stop it (SIGTERM, then SIGKILL) when the test ends. Never kills anything it did not start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Resolves with the next stdout line that parses as JSON (and matches `pred`). */
  nextJson<T = Record<string, unknown>>(pred?: (v: T) => boolean, timeoutMs?: number): Promise<T>;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** The last `n` lines written to stdout (JSON or not), for a failing test to show what the process said. */
  tail(n?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * @param wrap a command that runs the entry, e.g. `['ip', 'netns', 'exec', 'ns1']`; it must exec
 *   node in its own place (as `ip netns exec` does), so that signals reach node itself.
 */
export function startTs(
  entry: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  wrap: string[] = [],
): Child {
  const command = [...wrap, process.execPath, '--import', 'tsx', entry, ...args];
  const proc = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d: string) => {
    err += d;
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const lines: unknown[] = [];
  const recent: string[] = [];
  const waiters: { pred: (v: unknown) => boolean; resolve: (v: unknown) => void }[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    recent.push(line);
    if (recent.length > 400) recent.splice(0, 200);
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return;
    }
    const i = waiters.findIndex((w) => w.pred(v));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(v);
    else lines.push(v);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const child: Child = {
    proc,
    pid: proc.pid!,
    exited,
    stderr: () => err,
    tail: (n = 40) => recent.slice(-n).join('\n'),
    nextJson<T>(pred: (v: T) => boolean = () => true, timeoutMs = 20_000): Promise<T> {
      const i = lines.findIndex((v) => pred(v as T));
      if (i >= 0) return Promise.resolve(lines.splice(i, 1)[0] as T);
      return new Promise<T>((resolve, reject) => {
        const w = { pred: pred as (v: unknown) => boolean, resolve: resolve as (v: unknown) => void };
        waiters.push(w);
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(
            new Error(`no expected output from ${entry} within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`),
          );
        }, timeoutMs);
        void exited.then(() => {
          clearTimeout(t);
          setTimeout(() => reject(new Error(`${entry} exited; stderr: ${err.slice(-2000)}`)), 50);
        });
        const orig = w.resolve;
        w.resolve = (v) => {
          clearTimeout(t);
          orig(v);
        };
      });
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
    async stop(graceMs = 3_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  return child;
}

/** Resident set size of a process in MiB, from /proc. */
export async function rssMb(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** A UDP port on 127.0.0.1 that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** What a finished `taskgrid` process printed, and its exit code. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`bin/taskgrid.js`) as a process to its end, from `cwd` (default the project). */
export function runCli(args: string[], o: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<CliRun> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/taskgrid.js'), ...args], {
      cwd: o.cwd ?? ROOT,
      env: o.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
