/**
 * A whole grid of real processes for end-to-end tests: nameservice, dispatcher and workers,
 * each started with the real CLI (`node --import tsx src/cli/main.ts <component>`) on port 0,
 * with a fresh TASKGRID_HOME. Every process started here is stopped by `stop()`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, startTs, type Child } from './process.ts';

export interface GridOptions {
  /** Worker processes to start: type names per process, and whether they run inline (`--inline`). */
  workers?: { types: string[]; concurrency?: number; inline?: boolean }[];
  /** workers.json entries (default: the project's file). */
  workersJson?: unknown[];
  /** Directory of task type modules (default: worker_types/). */
  typesDir?: string;
  env?: Record<string, string>;
}

interface Ready {
  msg: string;
  address: { host: string; port: number };
  id?: string;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class Grid {
  readonly home: string;
  readonly env: Record<string, string>;
  nameservice!: Child;
  nsPort = 0;
  dispatcher!: Child;
  dispatcherPort = 0;
  /**
   * Worker processes: those of `GridOptions.workers` in the order given there (not the order in
   * which they got ready), then those of later `startWorker` calls.
   */
  readonly workers: Child[] = [];
  readonly #all = new Set<Child>();

  constructor(options: GridOptions = {}) {
    this.home = mkdtempSync(join(tmpdir(), 'taskgrid-e2e-'));
    this.env = { TASKGRID_HOME: this.home, TASKGRID_LOG_LEVEL: 'info', ...options.env };
    if (options.workersJson) {
      const file = join(this.home, 'workers.json');
      writeFileSync(file, JSON.stringify(options.workersJson, null, 2));
      this.env.TASKGRID_WORKERS_FILE = file;
    }
    if (options.typesDir) this.env.TASKGRID_TYPES_DIR = options.typesDir;
  }

  #spawn(args: string[], env: Record<string, string> = {}): Child {
    const child = startTs('src/cli/main.ts', args, { ...this.env, ...env });
    this.#all.add(child);
    return child;
  }

  static async #ready(child: Child): Promise<Ready> {
    return child.nextJson<Ready>((v) => v.msg === 'ready', 60_000);
  }

  async startNameservice(port = 0): Promise<void> {
    this.nameservice = this.#spawn(['nameservice', '--port', String(port)]);
    this.nsPort = (await Grid.#ready(this.nameservice)).address.port;
    this.env.TASKGRID_NAMESERVICE = `127.0.0.1:${this.nsPort}`;
  }

  async startDispatcher(port = 0): Promise<void> {
    this.dispatcher = this.#spawn(['dispatcher', '--port', String(port)]);
    this.dispatcherPort = (await Grid.#ready(this.dispatcher)).address.port;
  }

  async startWorker(types: string[], concurrency?: number, inline = false): Promise<Child> {
    const args = ['worker', ...types];
    if (concurrency !== undefined) args.push('--concurrency', String(concurrency));
    if (inline) args.push('--inline');
    const w = this.#spawn(args);
    await Grid.#ready(w);
    this.workers.push(w);
    return w;
  }

  static async start(options: GridOptions = {}): Promise<Grid> {
    const g = new Grid(options);
    try {
      await g.startNameservice();
      await g.startDispatcher();
      // Started at once, they get ready in any order (on a loaded machine the second one often
      // first); tests address them by their place in options.workers, so keep that order.
      const started = await Promise.all(
        (options.workers ?? []).map((w) => g.startWorker(w.types, w.concurrency, w.inline)),
      );
      g.workers.splice(0, g.workers.length, ...started);
    } catch (err) {
      await g.stop();
      throw err;
    }
    return g;
  }

  /**
   * Runs the CLI with this grid's environment (and `env` over it; a value of `undefined`
   * removes a variable) and collects its output.
   */
  cli(args: string[], timeoutMs = 60_000, env: Record<string, string | undefined> = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        cwd: ROOT,
        env: { ...process.env, ...this.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const t = setTimeout(() => {
        p.kill('SIGKILL');
        reject(new Error(`taskgrid ${args.join(' ')} did not finish in ${timeoutMs} ms: ${stderr}`));
      }, timeoutMs);
      p.on('exit', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /**
   * Stops workers first, then every other process but the nameservice, then the nameservice:
   * each deregisters from a nameservice still there to answer, instead of waiting out its
   * deregistration timeout.
   */
  async stop(): Promise<void> {
    const workers = [...this.#all].filter((c) => this.workers.includes(c));
    const last = [...this.#all].filter((c) => c === this.nameservice);
    const others = [...this.#all].filter((c) => !workers.includes(c) && !last.includes(c));
    for (const group of [workers, others, last]) await Promise.all(group.map((c) => c.stop(5_000)));
    rmSync(this.home, { recursive: true, force: true });
  }
}
