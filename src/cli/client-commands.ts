/**
 * The client side of the `taskgrid` CLI: send, result, run, cancel, retry, simulate, submit,
 * workers, stats and ping. Arguments are checked before any datagram is sent; every command
 * has a `--json` form; errors end in one stderr line naming their code (see output.ts for the
 * exit codes).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Argument, InvalidArgumentError, type Command } from 'commander';
import {
  CLIENT_DEFAULTS,
  TaskFailedError,
  TaskGridClient,
  defaultBindHost,
  formatAddress,
  parseSimulationFile,
  parseTaskLines,
  type ClientOptions,
  type SubmitOutcome,
} from '../client/index.ts';
import {
  BOUNDS,
  DEFAULTS,
  findProjectRoot,
  loadConfig,
  parseHostPort,
  parseHostPortList,
} from '../config/env.ts';
import { ErrorCode, TaskGridError, TimeoutError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { TaskTypeName, type TaskSpec, type TaskView, type WireError } from '../protocol/messages.ts';
import type { CliContext } from './main.ts';
import {
  createProgress,
  describeError,
  ExitCode,
  formatDuration,
  InputRequestError,
  Output,
  type CliIo,
} from './output.ts';

/** Defaults of the CLI's own, on top of the client library's. */
export const CLI_DEFAULTS = {
  /** How long `send --wait`, `run`, `result --wait` and `simulate` wait when `--timeout` is not given. */
  waitTimeoutMs: 60_000,
  /** Bad lines, rejected and failed tasks listed one by one before the rest are only counted. */
  maxListed: 20,
  /** Longest payload shown by `simulate` before it is cut. */
  shownPayloadChars: 40,
} as const;

/** What `run` says of itself once the grid's `run` shares its name. */
export const RUN_WITH_GRID_DESCRIPTION =
  'with <type> <payload>: submit a task, wait and print its result alone; without arguments: start the grid';

/** The global flags, as commander parsed them. */
export interface GlobalOptions {
  nameservice?: string;
  dispatcher?: string;
  json?: boolean;
  timeout?: number;
}

// ---- argument parsers: commander turns their InvalidArgumentError into a usage error (exit 2)

function invalid(err: unknown): InvalidArgumentError {
  return new InvalidArgumentError(describeError(err).message);
}

/** Longest delay a Node timer takes (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A positive whole number of milliseconds, at most `max`. */
export function msParser(max: number = MAX_TIMER_MS): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d{1,10}$/.test(text.trim()) || n < 1 || n > max) {
      throw new InvalidArgumentError(`expected a whole number of milliseconds, 1..${max}`);
    }
    return n;
  };
}

/** `host:port` (the port may be left out where a default exists). */
export function addressParser(defaultPort?: number): (text: string) => string {
  return (text) => {
    try {
      parseHostPort(text, defaultPort);
    } catch (err) {
      throw invalid(err);
    }
    return text;
  };
}

/** A comma-separated list of `host:port`. */
export function parseAddressList(text: string): string {
  try {
    parseHostPortList(text, DEFAULTS.nameservicePort);
  } catch (err) {
    throw invalid(err);
  }
  return text;
}

function parseType(text: string): string {
  const r = TaskTypeName.safeParse(text);
  if (!r.success) {
    throw new InvalidArgumentError(
      text === ''
        ? 'the task type is empty'
        : `${JSON.stringify(text)} is not a task type name (${r.error.issues[0]?.message ?? 'invalid'})`,
    );
  }
  return r.data;
}

function parseId(text: string): number {
  const n = Number(text);
  if (!/^\d{1,16}$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError(`${JSON.stringify(text)} is not a task id (a positive whole number)`);
  }
  return n;
}

function intParser(min: number, max: number): (text: string) => number {
  return (text) => {
    if (!/^-?\d{1,10}$/.test(text.trim()))
      throw new InvalidArgumentError(`expected a whole number ${min}..${max}`);
    const n = Number(text);
    if (n < min || n > max) throw new InvalidArgumentError(`expected a whole number ${min}..${max}`);
    return n;
  };
}

function parseKey(text: string): string {
  if (text.length === 0 || text.length > 256) throw new InvalidArgumentError('expected 1 to 256 characters');
  return text;
}

function badArgument(message: string): TaskGridError {
  return new TaskGridError(ErrorCode.BAD_ARGUMENT, message);
}

// ---- plumbing shared by the commands

interface TaskFlags {
  priority?: number;
  key?: string;
  attempts?: number;
  taskTimeout?: number;
}

function addTaskFlags(cmd: Command): Command {
  return cmd
    .option('--priority <n>', 'higher runs first (-1000..1000, default 0)', intParser(-1000, 1000))
    .option('--key <key>', 'idempotency key: sending again with the same key is the same task', parseKey)
    .option('--attempts <n>', 'most attempts before the task fails (1..100)', intParser(1, 100))
    .option(
      '--task-timeout <ms>',
      'per-attempt timeout of the task in ms',
      msParser(BOUNDS.taskTimeoutMs.max),
    );
}

function specOf(type: string, payload: string, flags: TaskFlags): TaskSpec {
  const spec: TaskSpec = { type, payload };
  if (flags.priority !== undefined) spec.priority = flags.priority;
  if (flags.key !== undefined) spec.key = flags.key;
  if (flags.attempts !== undefined) spec.maxAttempts = flags.attempts;
  if (flags.taskTimeout !== undefined) spec.timeoutMs = flags.taskTimeout;
  return spec;
}

function globalsOf(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** The client's options from the global flags and the environment (TASKGRID_*; the secret only from there). */
export function clientOptionsFrom(globals: GlobalOptions, io: CliIo): ClientOptions {
  const config = loadConfig(
    io.env,
    { nameservice: globals.nameservice, dispatcher: globals.dispatcher },
    { projectRoot: io.cwd },
  );
  // A deadline given with --timeout bounds every single request too, so that an unreachable
  // grid is reported within it.
  const cap = (ms: number) => (globals.timeout === undefined ? ms : Math.min(ms, globals.timeout));
  const options: ClientOptions = {
    nameservers: config.nameservices,
    dispatcher: config.dispatcher,
    secret: config.secret,
    datagramBudget: config.datagramBudget,
    maxMessageBytes: config.maxMessageBytes,
    requestTimeoutMs: cap(CLIENT_DEFAULTS.requestTimeoutMs),
    submitTimeoutMs: cap(CLIENT_DEFAULTS.submitTimeoutMs),
    lookupTimeoutMs: cap(CLIENT_DEFAULTS.lookupTimeoutMs),
  };
  // The component default (loopback) would cut a client off from a remote grid; only an
  // explicit TASKGRID_BIND overrides the client's own choice.
  if (io.env.TASKGRID_BIND?.trim()) options.bindHost = config.bind;
  if (io.env.TASKGRID_LOG_LEVEL?.trim()) {
    options.logger = createLogger({ component: 'client', level: config.logLevel, destination: 2 });
  }
  return options;
}

async function withClient<T>(
  globals: GlobalOptions,
  io: CliIo,
  fn: (client: TaskGridClient) => Promise<T>,
  extra: Partial<ClientOptions> = {},
): Promise<T> {
  const client = await TaskGridClient.connect({ ...clientOptionsFrom(globals, io), ...extra });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Wraps a command's action: its return value becomes the exit code; a throw is reported by main(). */
function act<A extends unknown[]>(
  ctx: CliContext,
  fn: (...args: A) => Promise<number>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    ctx.exitCode = await fn(...args);
  };
}

function waitTimeout(globals: GlobalOptions): number {
  return globals.timeout ?? CLI_DEFAULTS.waitTimeoutMs;
}

/**
 * Prints a task as `result` shows it: the result alone when it succeeded (so that scripts can
 * capture it), the error line when it failed, the status when it has not ended.
 */
function reportView(out: Output, view: TaskView): number {
  if (out.json) out.data(view);
  if (view.status === 'succeeded') {
    if (!out.json) out.line(view.result ?? '');
    return ExitCode.OK;
  }
  if (view.status === 'failed' || view.status === 'cancelled') {
    return out.error(new TaskFailedError(view), { data: false });
  }
  if (!out.json) {
    out.line(`task ${view.id} is ${view.status} (attempt ${view.attempts} of ${view.maxAttempts})`);
  }
  return ExitCode.NOT_FINISHED;
}

function shown(payload: string): string {
  const max = CLI_DEFAULTS.shownPayloadChars;
  return JSON.stringify(payload.length > max ? `${payload.slice(0, max - 1)}…` : payload);
}

/** The first outcome that says the grid could not be reached at all, if any. */
function unreachableIn(outcomes: readonly SubmitOutcome[]): TaskGridError | undefined {
  for (const o of outcomes) {
    if (!o.ok && (o.error.code === ErrorCode.UNREACHABLE || o.error.code === ErrorCode.AUTH)) {
      return new TaskGridError(o.error.code, o.error.message);
    }
  }
  return undefined;
}

/**
 * Submits one task of the user's; a refusal is reported as such (so that TG_ERR_TOO_LARGE
 * exits 2, see output.ts). In text mode, says on stderr when the key named a task submitted
 * before: that task is the answer, and this payload was not used.
 */
async function submitOne(
  client: TaskGridClient,
  out: Output,
  spec: TaskSpec,
  notify: boolean,
): Promise<{ id: number; duplicate: boolean }> {
  const [outcome] = await client.submitMany([spec], { notify });
  if (!outcome) throw new TaskGridError(ErrorCode.INTERNAL, 'no outcome for the task');
  if (!outcome.ok) throw new InputRequestError(outcome.error.code, outcome.error.message);
  if (outcome.duplicate && !out.json) {
    out.note(
      `key ${JSON.stringify(spec.key ?? '')} names task ${outcome.id}, submitted before; this payload was not used`,
    );
  }
  return outcome;
}

async function readInput(file: string, io: CliIo): Promise<string> {
  try {
    return file === '-' ? await io.readStdin() : await readFile(resolve(io.cwd, file), 'utf8');
  } catch (err) {
    throw badArgument(`cannot read ${file}: ${describeError(err).message}`);
  }
}

// ---- the commands

/** Registers the client commands on `program`. */
export function registerClientCommands(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const output = (cmd: Command) => new Output(io, globalsOf(cmd).json === true);

  addTaskFlags(
    program
      .command('send')
      .description('submit a task and print its id; with --wait, then its result alone on the last line')
      .addArgument(new Argument('<type>', 'task type, e.g. reverse').argParser(parseType))
      .argument('<payload>', 'the task payload (a string; use -- before one that starts with "-")')
      .option('-w, --wait', 'wait for the task to end and print its result'),
  ).action(
    act(ctx, async (type: string, payload: string, flags: TaskFlags & { wait?: boolean }, cmd: Command) => {
      const globals = globalsOf(cmd);
      const out = output(cmd);
      return withClient(globals, io, async (client) => {
        const outcome = await submitOne(client, out, specOf(type, payload, flags), flags.wait === true);
        if (!flags.wait) {
          if (out.json) out.data({ id: outcome.id, duplicate: outcome.duplicate });
          else out.line(String(outcome.id));
          return ExitCode.OK;
        }
        if (!out.json) out.line(String(outcome.id));
        return reportView(out, await client.wait(outcome.id, { timeoutMs: waitTimeout(globals) }));
      });
    }),
  );

  program
    .command('result')
    .description(
      "print a task's result (or its status, exit 8, if it has not ended; with --wait, wait for it)",
    )
    .addArgument(new Argument('<id>', 'task id').argParser(parseId))
    .option('-w, --wait', 'wait for the task to end')
    .action(
      act(ctx, async (id: number, flags: { wait?: boolean }, cmd: Command) => {
        const globals = globalsOf(cmd);
        const out = output(cmd);
        return withClient(globals, io, async (client) =>
          reportView(
            out,
            flags.wait ? await client.wait(id, { timeoutMs: waitTimeout(globals) }) : await client.result(id),
          ),
        );
      }),
    );

  const run = addTaskFlags(
    program
      .command('run')
      .description(
        ctx.gridRun ? RUN_WITH_GRID_DESCRIPTION : 'submit a task, wait for it and print its result alone',
      )
      .addArgument(new Argument('[type]', 'task type').argParser(parseType))
      .argument('[payload]', 'the task payload'),
  );
  // Options added later (the grid's: -d, --docker, ...) apply to the grid's `run` only.
  const taskOptions = new Set(run.options.map((o) => o.attributeName()));
  ctx.runCommand = run;
  ctx.gridRun?.configure(run);
  run.action(
    act(
      ctx,
      async (type: string | undefined, payload: string | undefined, flags: TaskFlags, cmd: Command) => {
        // One name, two commands: the grid's `run` takes no positional argument, a task's takes two.
        if (type === undefined) {
          if (ctx.gridRun) return ctx.gridRun.action(cmd.opts(), cmd);
          throw badArgument('run needs a task type and a payload: taskgrid run <type> <payload>');
        }
        const gridFlags = cmd.options
          .filter((o) => !taskOptions.has(o.attributeName()))
          .filter((o) => (cmd.getOptionValueSource(o.attributeName()) ?? 'default') !== 'default')
          .map((o) => o.long ?? o.flags);
        if (gridFlags.length > 0) {
          throw badArgument(
            `run ${type}: ${gridFlags.join(' and ')} ${gridFlags.length === 1 ? 'is' : 'are'} for starting ` +
              'the grid (taskgrid run, without a task), not for running a task',
          );
        }
        if (payload === undefined) {
          throw badArgument(`run ${type}: the payload is missing: taskgrid run <type> <payload>`);
        }
        const globals = globalsOf(cmd);
        const out = output(cmd);
        return withClient(globals, io, async (client) => {
          const { id } = await submitOne(client, out, specOf(type, payload, flags), true);
          return reportView(out, await client.wait(id, { timeoutMs: waitTimeout(globals) }));
        });
      },
    ),
  );

  program
    .command('cancel')
    .description('cancel a queued or running task')
    .addArgument(new Argument('<id>', 'task id').argParser(parseId))
    .action(
      act(ctx, async (id: number, _flags: unknown, cmd: Command) => {
        const out = output(cmd);
        // A task that had ended otherwise is refused by the client (TG_ERR_CONFLICT, exit 7).
        const view = await withClient(globalsOf(cmd), io, (client) => client.cancel(id));
        if (out.json) out.data(view);
        else out.line(`task ${id} cancelled`);
        return ExitCode.OK;
      }),
    );

  program
    .command('retry')
    .description('put a failed or cancelled task back in its queue with fresh attempts')
    .addArgument(new Argument('<id>', 'task id').argParser(parseId))
    .action(
      act(ctx, async (id: number, _flags: unknown, cmd: Command) => {
        const out = output(cmd);
        // A task whose status does not allow it is refused by the client (TG_ERR_CONFLICT, exit 7).
        const view = await withClient(globalsOf(cmd), io, (client) => client.retry(id));
        if (out.json) out.data(view);
        else out.line(`task ${id} is ${view.status} again`);
        return ExitCode.OK;
      }),
    );

  program
    .command('simulate')
    .description(
      'run the tasks of a TaskGrid+ simulation file ([type, payload] pairs) and print each outcome',
    )
    .argument('[file]', 'JSON list of [type, payload] pairs (default: examples/tasks.json)')
    .action(
      act(ctx, async (file: string | undefined, _flags: unknown, cmd: Command) => {
        const path = file ?? defaultSimulationFile();
        const parsed = parseSimulationFile(await readInput(path, io));
        const firstBad = parsed.bad[0];
        if (firstBad) {
          const where = firstBad.line === 0 ? '' : `entry ${firstBad.line}: `;
          const more = parsed.bad.length > 1 ? ` (and ${parsed.bad.length - 1} more)` : '';
          throw badArgument(`${path}: ${where}${firstBad.message}${more}`);
        }
        if (parsed.tasks.length === 0) throw badArgument(`${path} lists no task`);
        return simulate(output(cmd), globalsOf(cmd), parsed.tasks);
      }),
    );

  program
    .command('submit')
    .description(
      'submit tasks in bulk from a JSON Lines file ({"type", "payload", optional key, priority, timeoutMs, maxAttempts})',
    )
    .requiredOption('-f, --file <path>', 'JSON Lines file of tasks ("-" reads stdin)')
    .option('-w, --wait', 'wait for every task to end (no deadline unless --timeout)')
    .option('--skip-bad', 'submit the valid lines even if some are not (they are listed on stderr)')
    .action(
      act(ctx, async (flags: { file: string; wait?: boolean; skipBad?: boolean }, cmd: Command) => {
        return submitFile(output(cmd), globalsOf(cmd), flags);
      }),
    );

  program
    .command('workers')
    .description('live instances known to the nameservice: workers, dispatchers, ...')
    .action(
      act(ctx, async (_flags: unknown, cmd: Command) => {
        const out = output(cmd);
        const instances = await withClient(globalsOf(cmd), io, (client) => client.workers());
        instances.sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
        if (out.json) {
          out.data({ instances });
          return ExitCode.OK;
        }
        if (instances.length === 0) {
          out.line('no live instance is registered');
          return ExitCode.OK;
        }
        const now = Date.now();
        out.table(
          ['ID', 'ROLE', 'TYPES', 'ADDRESS', 'CAPACITY', 'IN FLIGHT', 'LAST SEEN'],
          instances.map((i) => [
            i.id,
            i.role,
            i.types.length ? i.types.join(',') : '-',
            formatAddress(i.address),
            String(i.capacity),
            i.inFlight === undefined ? '-' : String(i.inFlight),
            `${formatDuration(Math.max(0, now - i.lastSeen))} ago`,
          ]),
        );
        return ExitCode.OK;
      }),
    );

  program
    .command('stats')
    .description("the dispatcher's counters per task type and per worker")
    .action(
      act(ctx, async (_flags: unknown, cmd: Command) => {
        const out = output(cmd);
        const stats = await withClient(globalsOf(cmd), io, (client) => client.stats());
        if (out.json) {
          out.data(stats);
          return ExitCode.OK;
        }
        const t = stats.totals;
        out.table(
          [
            'TYPE',
            'QUEUED',
            'RUNNING',
            'SUCCEEDED',
            'FAILED',
            'CANCELLED',
            'PER SEC',
            'RUN P50/P95 MS',
            'WAIT P50/P95 MS',
          ],
          [
            ...Object.entries(stats.types)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([type, s]) => [
                type,
                String(s.queued),
                String(s.running),
                String(s.succeeded),
                String(s.failed),
                String(s.cancelled),
                s.throughput.toFixed(1),
                `${Math.round(s.runMs.p50)}/${Math.round(s.runMs.p95)}`,
                `${Math.round(s.waitMs.p50)}/${Math.round(s.waitMs.p95)}`,
              ]),
            [
              'total',
              String(t.queued),
              String(t.running),
              String(t.succeeded),
              String(t.failed),
              String(t.cancelled),
              t.throughput.toFixed(1),
              '',
              '',
            ],
          ],
        );
        if (stats.workers.length > 0) {
          out.line('');
          out.table(
            ['WORKER', 'ADDRESS', 'TYPES', 'CAPACITY', 'IN FLIGHT', 'COMPLETED', 'FAILED'],
            stats.workers.map((w) => [
              w.id,
              formatAddress(w.address),
              w.types.join(','),
              String(w.capacity),
              String(w.inFlight),
              String(w.completed),
              String(w.failed),
            ]),
          );
        }
        return ExitCode.OK;
      }),
    );

  program
    .command('ping')
    .description(
      'ping any component at host:port and print what it is; exit 0 if it answered (for health checks)',
    )
    .addArgument(
      new Argument('<address>', 'host:port of a nameservice, dispatcher, worker, ...').argParser(
        addressParser(),
      ),
    )
    .action(
      act(ctx, async (text: string, _flags: unknown, cmd: Command) => {
        const out = output(cmd);
        const address = parseHostPort(text);
        const started = Date.now();
        const reply = await withClient(
          globalsOf(cmd),
          io,
          (client) => client.ping(address),
          // Only this address is talked to, so only it decides the bind address (unless TASKGRID_BIND does).
          io.env.TASKGRID_BIND?.trim() ? {} : { bindHost: defaultBindHost([address]) },
        );
        const rttMs = Date.now() - started;
        if (out.json) {
          out.data({ address: formatAddress(address), ...reply, rttMs });
        } else {
          const id = reply.id === undefined ? '' : `, id ${reply.id}`;
          out.line(
            `${reply.component} ${reply.version} at ${formatAddress(address)}: up ${formatDuration(reply.uptimeMs)} (pid ${reply.pid}${id})`,
          );
        }
        return ExitCode.OK;
      }),
    );

  async function simulate(
    out: Output,
    globals: GlobalOptions,
    tasks: readonly { index: number; type: string; payload: string }[],
  ): Promise<number> {
    interface Row {
      index: number;
      type: string;
      payload: string;
      id?: number;
      status: TaskView['status'] | 'rejected' | 'unfinished';
      result?: string;
      error?: WireError;
    }
    const rows: Row[] = tasks.map((t) => ({
      index: t.index,
      type: t.type,
      payload: t.payload,
      status: 'queued',
    }));
    const print = (r: Row) => {
      if (out.json) return;
      const what =
        r.status === 'succeeded'
          ? `succeeded: ${r.result ?? ''}`
          : `${r.status}${r.error ? `: ${r.error.code}: ${r.error.message}` : ''}`;
      out.line(`[${r.index}] ${r.type} ${shown(r.payload)} -> ${what}`);
    };
    const started = Date.now();
    let timedOut: TaskGridError | undefined;
    await withClient(globals, io, async (client) => {
      const outcomes = await client.submitMany(
        tasks.map((t) => ({ type: t.type, payload: t.payload })),
        { notify: true },
      );
      const down = unreachableIn(outcomes);
      if (down) throw down;
      const byId = new Map<number, Row>();
      outcomes.forEach((o, i) => {
        const row = rows[i]!;
        if (o.ok) {
          row.id = o.id;
          byId.set(o.id, row);
        } else {
          row.status = 'rejected';
          row.error = o.error;
          print(row);
        }
      });
      if (byId.size === 0) return;
      try {
        await client.wait([...byId.keys()], {
          timeoutMs: waitTimeout(globals),
          onTask: (view) => {
            const row = byId.get(view.id);
            if (!row) return;
            row.status = view.status;
            if (view.result !== undefined) row.result = view.result;
            if (view.error) row.error = view.error;
            print(row);
          },
        });
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        timedOut = err;
        for (const row of byId.values()) if (row.status === 'queued') row.status = 'unfinished';
      }
    });
    const count = (s: Row['status']) => rows.filter((r) => r.status === s).length;
    const summary = {
      tasks: rows.length,
      succeeded: count('succeeded'),
      failed: count('failed'),
      cancelled: count('cancelled'),
      rejected: count('rejected'),
      unfinished: count('unfinished'),
      elapsedMs: Date.now() - started,
    };
    if (out.json) {
      out.data({ tasks: rows, summary });
    } else {
      for (const r of rows) if (r.status === 'unfinished') print(r);
      out.line(
        `${summary.tasks} tasks: ${summary.succeeded} succeeded, ${summary.failed} failed, ${summary.cancelled} cancelled, ` +
          `${summary.rejected} rejected, ${summary.unfinished} unfinished in ${formatDuration(summary.elapsedMs)}`,
      );
    }
    // A simulation demonstrates outcomes, failures and rejections included (TaskGrid+'s example
    // has a task of an unknown type on purpose); only not getting them is an error.
    return timedOut ? out.error(timedOut, { data: false }) : ExitCode.OK;
  }

  async function submitFile(
    out: Output,
    globals: GlobalOptions,
    flags: { file: string; wait?: boolean; skipBad?: boolean },
  ): Promise<number> {
    const { tasks, bad } = parseTaskLines(await readInput(flags.file, io));
    const listed = (items: readonly string[]) =>
      items.slice(0, 5).join('; ') + (items.length > 5 ? `; and ${items.length - 5} more` : '');
    if (bad.length > 0 && !flags.skipBad) {
      throw badArgument(
        `${flags.file}: ${bad.length} bad line${bad.length === 1 ? '' : 's'}: ` +
          `${listed(bad.map((b) => `line ${b.line}: ${b.message}`))}; nothing was submitted ` +
          `(fix ${bad.length === 1 ? 'it' : 'them'}, or pass --skip-bad to submit the other ${tasks.length})`,
      );
    }
    for (const b of bad.slice(0, CLI_DEFAULTS.maxListed)) out.note(`skipping line ${b.line}: ${b.message}`);
    if (bad.length > CLI_DEFAULTS.maxListed)
      out.note(`skipping ${bad.length - CLI_DEFAULTS.maxListed} more bad lines`);
    if (tasks.length === 0) throw badArgument(`${flags.file} holds no task`);
    const specs = tasks.map((t) => t.spec);

    interface Row {
      line: number;
      id?: number;
      duplicate?: boolean;
      status?: TaskView['status'];
      result?: string;
      error?: { code: string; message: string };
    }
    const rows: Row[] = tasks.map((t) => ({ line: t.line }));
    let exit: number = ExitCode.OK;
    let problem: TaskGridError | undefined;

    await withClient(globals, io, async (client) => {
      const sending = createProgress(io, 'submitted', specs.length);
      const outcomes = await client
        .submitMany(specs, {
          notify: flags.wait === true,
          onProgress: (p) => sending.update(p.acknowledged + p.rejected),
        })
        .finally(() => sending.stop());
      const acknowledged = outcomes.filter((o) => o.ok).length;
      const down = unreachableIn(outcomes);
      if (down && acknowledged === 0) throw down;

      const rejected: string[] = [];
      outcomes.forEach((o, i) => {
        const row = rows[i]!;
        if (o.ok) {
          row.id = o.id;
          row.duplicate = o.duplicate;
        } else {
          row.error = o.error;
          rejected.push(`line ${row.line}: ${o.error.code}: ${o.error.message}`);
        }
      });
      const duplicates = outcomes.filter((o) => o.ok && o.duplicate).length;
      if (!out.json) {
        for (const r of rejected.slice(0, CLI_DEFAULTS.maxListed)) out.note(`rejected ${r}`);
        out.line(
          `submitted ${acknowledged} of ${specs.length} tasks` +
            (duplicates ? ` (${duplicates} already known by their key)` : '') +
            (rejected.length ? `; ${rejected.length} rejected` : ''),
        );
      }
      const firstRejected = outcomes.find((o) => !o.ok);
      if (firstRejected && !firstRejected.ok) {
        problem = new InputRequestError(
          firstRejected.error.code,
          `${rejected.length} of ${specs.length} tasks were not submitted (first: ${rejected[0] ?? ''})`,
        );
      }

      if (!flags.wait || acknowledged === 0) return;
      const byId = new Map<number, Row[]>();
      for (const row of rows) if (row.id !== undefined) byId.set(row.id, [...(byId.get(row.id) ?? []), row]);
      const finishing = createProgress(io, 'finished', byId.size);
      let ended = 0;
      try {
        await client.wait([...byId.keys()], {
          timeoutMs: globals.timeout ?? Infinity,
          onTask: (view) => {
            for (const row of byId.get(view.id) ?? []) {
              row.status = view.status;
              if (view.result !== undefined) row.result = view.result;
              if (view.error) row.error = view.error;
            }
            finishing.update(++ended);
          },
        });
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        problem ??= err;
      } finally {
        finishing.stop();
      }
      const waited = rows.filter((r) => r.id !== undefined);
      const count = (s: TaskView['status']) => waited.filter((r) => r.status === s).length;
      const failed = waited.filter((r) => r.status === 'failed' || r.status === 'cancelled');
      if (!out.json) {
        for (const r of failed.slice(0, CLI_DEFAULTS.maxListed)) {
          out.note(
            `line ${r.line} (task ${r.id}) ${r.status}${r.error ? `: ${r.error.code}: ${r.error.message}` : ''}`,
          );
        }
        out.line(
          `${ended} of ${byId.size} tasks ended: ${count('succeeded')} succeeded, ${count('failed')} failed, ${count('cancelled')} cancelled`,
        );
      }
      const firstFailed = failed[0];
      if (firstFailed && !problem) {
        problem = new TaskGridError(
          ErrorCode.TASK_FAILED,
          `${failed.length} of ${byId.size} tasks did not succeed (first: line ${firstFailed.line}, task ${firstFailed.id}: ` +
            `${firstFailed.status}${firstFailed.error ? `: ${firstFailed.error.code}: ${firstFailed.error.message}` : ''})`,
        );
      }
    });

    if (out.json) {
      out.data({
        submitted: rows.filter((r) => r.id !== undefined).length,
        rejected: rows.filter((r) => r.id === undefined).length,
        skipped: bad,
        tasks: rows,
      });
    }
    if (problem) exit = out.error(problem, { data: false });
    return exit;
  }
}

/** The simulation file shipped with TaskGrid, wherever the CLI is run from. */
function defaultSimulationFile(): string {
  try {
    return join(findProjectRoot(), 'examples', 'tasks.json');
  } catch {
    throw badArgument(
      'no simulation file given, and examples/tasks.json of the TaskGrid installation is not found',
    );
  }
}
