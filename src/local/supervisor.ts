/**
 * The local supervisor: runs each grid component as its own child process, interleaves their
 * output with a component prefix, restarts a component that dies (with backoff, logged and
 * counted), and stops everything cleanly. No Docker needed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SUPERVISED_ENV } from '../config/env.ts';

export interface ComponentSpec {
  /** Name shown as the line prefix, e.g. `dispatcher` or `worker-reverse-1`. */
  name: string;
  /** Arguments of the taskgrid CLI, e.g. `['worker', 'reverse']`. */
  args: string[];
  env?: Record<string, string>;
  /**
   * Components of one group stop together; groups stop in the reverse order of their start
   * (workers, then the dispatcher, then the nameservice, so that each can still say goodbye).
   * Default: its own name.
   */
  group?: string;
}

export interface SupervisorOptions {
  /** The command that runs the CLI: e.g. [process.execPath, 'bin/taskgrid.js']. */
  command: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Where interleaved output goes (a line at a time). */
  write?: (line: string) => void;
  /** Folder where each component's raw output is also appended, as `<name>.log`. */
  logDir?: string | undefined;
  /** Turns a component's raw line (pino JSON) into what the terminal shows. */
  format?: (line: string) => string;
  /** Called when a component starts, restarts or stops (to persist pids and restart counts). */
  onChange?: () => void;
  /** First restart delay; doubles per quick death up to the maximum. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** A component that ran at least this long before dying restarts after the first delay again. */
  stableAfterMs?: number;
  /** How long stop() waits for SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /**
   * Names of every component that will start, so that the prefixes of the first lines are as
   * wide as those of the last (otherwise they widen as longer names start).
   */
  names?: readonly string[];
}

interface Running {
  spec: ComponentSpec;
  proc: ChildProcess | undefined;
  restarts: number;
  delay: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
  ready: boolean;
  readyWaiters: { resolve: () => void; reject: (err: Error) => void }[];
  log: WriteStream | undefined;
  lastLines: string[];
  /** Where the component said it listens, in its ready line (its real port when given 0). */
  address: { host: string; port: number } | undefined;
}

const COLORS = [36, 33, 35, 32, 34, 31, 96, 93, 95, 92, 94];

export class Supervisor {
  readonly #o: Required<Omit<SupervisorOptions, 'env' | 'logDir'>> & {
    env: NodeJS.ProcessEnv;
    logDir: string | undefined;
  };
  readonly #running = new Map<string, Running>();
  #stopping = false;
  #width = 12;

  constructor(options: SupervisorOptions) {
    this.#o = {
      env: options.env ?? process.env,
      write: options.write ?? ((line) => process.stdout.write(`${line}\n`)),
      restartDelayMs: options.restartDelayMs ?? 500,
      maxRestartDelayMs: options.maxRestartDelayMs ?? 10_000,
      stableAfterMs: options.stableAfterMs ?? 30_000,
      stopGraceMs: options.stopGraceMs ?? 10_000,
      command: options.command,
      cwd: options.cwd,
      logDir: options.logDir,
      format: options.format ?? ((line) => line),
      onChange: options.onChange ?? (() => {}),
      names: options.names ?? [],
    };
    for (const name of this.#o.names) this.#width = Math.max(this.#width, name.length);
    if (this.#o.logDir) mkdirSync(this.#o.logDir, { recursive: true });
  }

  /** Restarts per component since the supervisor started. */
  restarts(): Record<string, number> {
    return Object.fromEntries([...this.#running].map(([name, r]) => [name, r.restarts]));
  }

  /** Each ready component's address, as its ready line gave it. */
  addresses(): Record<string, { host: string; port: number } | undefined> {
    return Object.fromEntries([...this.#running].map(([name, r]) => [name, r.address]));
  }

  pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.#running].map(([name, r]) => [name, r.proc?.pid]));
  }

  /**
   * Starts a component; resolves once it printed its `ready` line, rejects if it exits before
   * (then it is not restarted: a component that cannot start needs a person, not a loop).
   */
  start(spec: ComponentSpec): Promise<void> {
    this.#width = Math.max(this.#width, spec.name.length);
    const r: Running = {
      spec,
      proc: undefined,
      restarts: 0,
      delay: this.#o.restartDelayMs,
      startedAt: 0,
      timer: undefined,
      ready: false,
      readyWaiters: [],
      log: this.#o.logDir
        ? createWriteStream(join(this.#o.logDir, `${spec.name}.log`), { flags: 'a' })
        : undefined,
      lastLines: [],
      address: undefined,
    };
    this.#running.set(spec.name, r);
    const ready = new Promise<void>((resolve, reject) => r.readyWaiters.push({ resolve, reject }));
    this.#spawn(r);
    return ready;
  }

  #prefix(name: string): string {
    const i = [...this.#running.keys()].indexOf(name);
    const color = COLORS[i % COLORS.length]!;
    const label = name.padEnd(this.#width);
    return process.stdout.isTTY ? `\x1b[${color}m${label} |\x1b[0m` : `${label} |`;
  }

  #spawn(r: Running): void {
    const [cmd, ...base] = this.#o.command;
    // A process group of its own: the terminal's Ctrl-C (SIGINT to the foreground group) reaches
    // the supervisor alone, which then stops the components in order (workers first) instead of
    // all at once. Its stdin is a pipe that closes when the supervisor dies (SUPERVISED_ENV).
    const proc = spawn(cmd!, [...base, ...r.spec.args], {
      cwd: this.#o.cwd,
      env: { ...this.#o.env, ...r.spec.env, [SUPERVISED_ENV]: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    // Written to never; an error here only means the component is gone.
    proc.stdin.on('error', () => {});
    r.proc = proc;
    r.startedAt = Date.now();
    this.#o.onChange();
    const onLine = (line: string) => {
      // Every ready line, a restart's too: given port 0, a restarted component listens elsewhere.
      if (line.includes('"msg":"ready"')) {
        r.address = readyAddress(line) ?? r.address;
        if (!r.ready) {
          r.ready = true;
          for (const w of r.readyWaiters.splice(0)) w.resolve();
        }
        this.#o.onChange();
      }
      r.log?.write(`${line}\n`);
      r.lastLines.push(line);
      if (r.lastLines.length > 5) r.lastLines.shift();
      this.#o.write(`${this.#prefix(r.spec.name)} ${this.#o.format(line)}`);
    };
    createInterface({ input: proc.stdout }).on('line', onLine);
    createInterface({ input: proc.stderr }).on('line', onLine);
    proc.on('error', (err) => this.#o.write(`${this.#prefix(r.spec.name)} failed to start: ${err.message}`));
    proc.on('exit', (code, signal) => {
      r.proc = undefined;
      this.#o.onChange();
      if (this.#stopping) return;
      if (!r.ready) {
        const why = r.lastLines.map((l) => this.#o.format(l)).join('\n  ');
        const err = new Error(
          `${r.spec.name} exited (${signal ?? `code ${code}`}) before it was ready:\n  ${why}`,
        );
        for (const w of r.readyWaiters.splice(0)) w.reject(err);
        return;
      }
      const ranMs = Date.now() - r.startedAt;
      if (ranMs >= this.#o.stableAfterMs) r.delay = this.#o.restartDelayMs;
      r.restarts++;
      const msg = `exited (${signal ?? `code ${code}`}) after ${ranMs} ms; restart ${r.restarts} in ${r.delay} ms`;
      this.#o.write(`${this.#prefix(r.spec.name)} ${msg}`);
      // The component's own log says it too, as a log line of its own format (pino JSON, level
      // error): `taskgrid logs <component>` then shows why its pid changed, not only grid.log.
      r.log?.write(
        `${JSON.stringify({ level: 50, time: Date.now(), component: r.spec.name, pid: proc.pid, exitCode: code, signal, ranMs, restart: r.restarts, delayMs: r.delay, msg })}\n`,
      );
      r.timer = setTimeout(() => {
        r.timer = undefined;
        if (!this.#stopping) this.#spawn(r);
      }, r.delay);
      r.delay = Math.min(r.delay * 2, this.#o.maxRestartDelayMs);
    });
  }

  /** Stops every component, group by group: SIGTERM, then SIGKILL after the grace period. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const all = [...this.#running.values()];
    const groups = new Map<string, Running[]>();
    for (const r of all) {
      const g = r.spec.group ?? r.spec.name;
      groups.set(g, [...(groups.get(g) ?? []), r]);
    }
    for (const members of [...groups.values()].reverse()) await this.#stopAll(members);
    for (const r of all) r.log?.end();
  }

  async #stopAll(members: Running[]): Promise<void> {
    await Promise.all(
      members.map(async (r) => {
        clearTimeout(r.timer);
        const proc = r.proc;
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), this.#o.stopGraceMs);
        await exited;
        clearTimeout(t);
      }),
    );
  }
}

/** The `address` of a component's ready line, if it has a well-formed one. */
function readyAddress(line: string): { host: string; port: number } | undefined {
  try {
    const v = JSON.parse(line) as { address?: { host?: unknown; port?: unknown } };
    const a = v.address;
    return a && typeof a.host === 'string' && typeof a.port === 'number'
      ? { host: a.host, port: a.port }
      : undefined;
  } catch {
    return undefined;
  }
}
