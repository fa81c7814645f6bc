/**
 * The component commands: `taskgrid nameservice`, `taskgrid dispatcher`, `taskgrid worker
 * <type...>`. Each runs one component as its own process (the local orchestrator and the
 * containers use them), logs JSON lines with pino, prints a `ready` line with its address once
 * it serves, and stops cleanly on SIGTERM or SIGINT.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Dispatcher } from '../dispatcher/dispatcher.ts';
import { SqliteTaskStore } from '../dispatcher/store/sqlite.ts';
import { ConfigError } from '../errors.ts';
import { authFailureLog, createLogger, muteOutput, type Logger } from '../log.ts';
import { LegacyDispatcher, LegacyNameservice, legacyPolicy } from '../legacy/index.ts';
import { Directory } from '../nameservice/directory.ts';
import { Nameservice } from '../nameservice/nameservice.ts';
import { Registration } from '../nameservice/registration.ts';
import { createUdpTransport, type Endpoint } from '../transport/index.ts';
import { TaskWorker } from '../worker/worker.ts';
import {
  SUPERVISED_ENV,
  UNSIGNED_WARNED_ENV,
  UNSIGNED_WARNING,
  advertiseAddress,
  findProjectRoot,
  loadConfig,
  statePaths,
  type Config,
  type ConfigFlags,
} from '../config/env.ts';
import { activeTypes, loadWorkersFile, type WorkerTypeEntry } from '../config/workers.ts';

export const VERSION = '0.1.0';

/** Everything a component process needs: config, logger, the project's files. */
export interface ComponentContext {
  component: string;
  config: Config;
  logger: Logger;
  root: string;
  typesDir: string;
  workersFile: string;
}

export function componentContext(component: string, flags: ConfigFlags, env = process.env): ComponentContext {
  const root = findProjectRoot();
  const config = loadConfig(env, flags, { projectRoot: root });
  const logger = createLogger({ component, level: config.logLevel });
  const typesDir = env.TASKGRID_TYPES_DIR ?? join(root, 'worker_types');
  const workersFile = env.TASKGRID_WORKERS_FILE ?? join(root, 'workers.json');
  return { component, config, logger, root, typesDir, workersFile };
}

/**
 * Announces that a component serves: one JSON line on stdout in the logger's format, written
 * whatever the log level, since supervisors and tests wait for it.
 */
export function announceReady(ctx: ComponentContext, fields: Record<string, unknown>): void {
  const line = {
    level: 30,
    time: Date.now(),
    pid: process.pid,
    component: ctx.component,
    ...fields,
    msg: 'ready',
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Warns loudly when the grid runs without a cluster secret (unless its supervisor did). */
export function warnIfUnsigned(ctx: ComponentContext): void {
  if (!ctx.config.secret && process.env[UNSIGNED_WARNED_ENV] !== '1') ctx.logger.warn(UNSIGNED_WARNING);
}

/** Whether this component serves TaskGrid+ messages; says so in the log when a secret is set. */
function legacyServed(ctx: ComponentContext): boolean {
  const policy = legacyPolicy(ctx.config);
  if (policy.log) ctx.logger[policy.log.level](policy.log.message);
  return policy.serve;
}

async function bind(ctx: ComponentContext, port: number): Promise<Endpoint> {
  const c = ctx.config;
  return createUdpTransport({
    host: c.bind,
    port,
    secret: c.secret,
    allowUnsignedRaw: legacyPolicy(c).allowUnsigned,
    datagramBudget: c.datagramBudget,
    maxMessageBytes: c.maxMessageBytes,
    onHandlerError: (err, info) => ctx.logger.error({ err, kind: info.kind }, 'handler failed'),
    onAuthFailure: authFailureLog(ctx.logger),
  });
}

/** Stops `stop` once on SIGTERM or SIGINT, then exits. */
export function onSignals(ctx: ComponentContext, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    ctx.logger.info({ signal }, 'stopping');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        ctx.logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  if (process.env[SUPERVISED_ENV] === '1') {
    // The supervisor's pipe: it closes when the supervisor is gone, whatever killed it. Its
    // other pipes, stdout and stderr, are gone with it: nothing can be logged any more.
    const orphaned = () => {
      muteOutput(ctx.logger);
      handler('supervisor gone');
    };
    process.stdin.on('end', orphaned);
    process.stdin.on('error', orphaned);
    process.stdin.resume();
  }
}

export async function runNameservice(ctx: ComponentContext): Promise<void> {
  warnIfUnsigned(ctx);
  const transport = await bind(ctx, ctx.config.nameservicePort);
  const ns = new Nameservice({ transport, logger: ctx.logger, version: VERSION });
  const legacy = legacyServed(ctx)
    ? new LegacyNameservice({ transport, registry: ns, logger: ctx.logger })
    : undefined;
  legacy?.start();
  announceReady(ctx, { address: transport.address });
  onSignals(ctx, async () => {
    legacy?.close();
    ns.close();
    await transport.close();
  });
}

/** An optional positive integer from the environment; a bad value is refused naming it. */
function envInt(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw.slice(0, 40))} is not an integer ${min}-${max}`);
  }
  return n;
}

/** Dispatcher settings that only the dispatcher reads: retention of finished tasks, queue bound. */
export function dispatcherEnv(env: NodeJS.ProcessEnv): {
  keepFinishedMs?: number;
  keepFinishedMax?: number;
  maxQueuedPerType?: number;
} {
  const keepFinishedMs = envInt(env, 'TASKGRID_KEEP_FINISHED_MS', 1_000, 10 * 365 * 86_400_000);
  const keepFinishedMax = envInt(env, 'TASKGRID_KEEP_FINISHED_MAX', 1, 1_000_000_000);
  const maxQueuedPerType = envInt(env, 'TASKGRID_MAX_QUEUED', 1, 1_000_000_000);
  return {
    ...(keepFinishedMs !== undefined ? { keepFinishedMs } : {}),
    ...(keepFinishedMax !== undefined ? { keepFinishedMax } : {}),
    ...(maxQueuedPerType !== undefined ? { maxQueuedPerType } : {}),
  };
}

export async function runDispatcher(ctx: ComponentContext): Promise<void> {
  warnIfUnsigned(ctx);
  const c = ctx.config;
  const entries = activeTypes(loadWorkersFile(ctx.workersFile, { typesDir: ctx.typesDir }));
  const tuning = dispatcherEnv(process.env);
  const store = new SqliteTaskStore({ path: join(statePaths(c.home).data, 'dispatcher.db') });
  const transport = await bind(ctx, c.dispatcherPort);
  const advertise = advertiseAddress(c, { hostname: hostname() }, transport.address.port);
  const directory = new Directory({
    transport,
    nameservers: [...c.nameservices],
    self: advertise,
    logger: ctx.logger,
  });
  const legacy = legacyServed(ctx)
    ? new LegacyDispatcher({ transport, store, directory, logger: ctx.logger })
    : undefined;
  // One id for the dispatcher everywhere: its registration's (ping, /api/health, the nameservice).
  const registration = new Registration({
    transport,
    nameservers: [...c.nameservices],
    instance: {
      role: 'dispatcher',
      types: [],
      address: advertise,
      capacity: 0,
      meta: { pid: String(process.pid) },
    },
    logger: ctx.logger,
    keepTrying: true,
  });
  const dispatcher = new Dispatcher({
    id: registration.id,
    transport,
    store,
    directory,
    ...(legacy ? { legacy } : {}),
    types: new Map(entries.map((e) => [e.name, { timeoutMs: e.timeoutMs, maxAttempts: e.maxAttempts }])),
    logger: ctx.logger,
    version: VERSION,
    ...tuning,
    ...(c.taskTimeoutMs !== undefined ? { taskTimeoutMs: c.taskTimeoutMs } : {}),
    ...(c.maxAttempts !== undefined ? { maxAttempts: c.maxAttempts } : {}),
  });
  // Both keep trying in the background when no nameservice answers yet: the dispatcher serves
  // submits meanwhile, and dispatches once workers are known.
  await directory
    .start()
    .catch((err: unknown) => ctx.logger.warn({ err }, 'no nameservice answered yet; still trying'));
  await dispatcher.start();
  legacy?.start(dispatcher);
  registration
    .start()
    .catch((err: unknown) => ctx.logger.warn({ err }, 'no nameservice answered yet; still trying'));
  announceReady(ctx, {
    address: transport.address,
    advertise,
    store: join(statePaths(c.home).data, 'dispatcher.db'),
  });
  onSignals(ctx, async () => {
    legacy?.close();
    await registration.stop();
    await dispatcher.close();
    directory.close();
    await transport.close();
    await store.close();
  });
}

export async function runWorker(
  ctx: ComponentContext,
  types: string[],
  flags: { inline?: boolean },
): Promise<void> {
  warnIfUnsigned(ctx);
  const c = ctx.config;
  if (types.length === 0)
    throw new ConfigError('taskgrid worker needs at least one task type, e.g. `taskgrid worker reverse`');
  let entries: readonly WorkerTypeEntry[] = [];
  try {
    entries = loadWorkersFile(ctx.workersFile, { typesDir: ctx.typesDir });
  } catch (err) {
    // A worker can serve a type that workers.json does not list (its module is what counts).
    ctx.logger.warn({ err }, 'workers.json not usable; using defaults for concurrency');
  }
  const entry = entries.find((e) => types.includes(e.name));
  // --concurrency is checked with TASKGRID_WORKER_CONCURRENCY's rules (componentContext).
  const concurrency = c.workerConcurrency ?? entry?.concurrency ?? 4;
  // --inline / --no-inline for every type of this worker; else each type's workers.json entry.
  const inline = types.filter(
    (type) => flags.inline ?? entries.find((e) => e.name === type)?.inline ?? false,
  );
  const transport = await bind(ctx, c.workerPort);
  const advertise = advertiseAddress(c, { hostname: hostname() }, transport.address.port);
  const worker = new TaskWorker({
    transport,
    nameservers: [...c.nameservices],
    types,
    typesDir: ctx.typesDir,
    concurrency,
    inline,
    ...(c.handlerMemoryMb !== undefined ? { memoryLimitMb: c.handlerMemoryMb } : {}),
    advertise,
    logger: ctx.logger,
    version: VERSION,
  });
  try {
    await worker.start();
  } catch (err) {
    // Not ready (a handler module that does not load): close the socket, so that the process
    // exits with the error instead of sitting there unregistered.
    await transport.close();
    throw err;
  }
  announceReady(ctx, { address: transport.address, advertise, types, concurrency, inline, id: worker.id });
  onSignals(ctx, async () => {
    await worker.stop();
    await transport.close();
  });
}

/** Adds the component commands to the CLI. */
export function registerComponentCommands(program: Command): void {
  const flags = (cmd: Command): ConfigFlags => {
    const o = cmd.optsWithGlobals<Record<string, string | undefined>>();
    return {
      nameservice: o.nameservice,
      nameservicePort: o.port ?? o.nameservicePort,
      dispatcher: o.dispatcher,
      home: o.home,
      bind: o.bind,
      advertise: o.advertise,
      logLevel: o.logLevel,
    };
  };
  program
    .command('nameservice')
    .description('run the nameservice (registry of live workers and dispatchers), udp/5001')
    .option('--port <port>', 'UDP port (TASKGRID_NAMESERVICE_PORT)')
    .option('--bind <address>', 'address to bind (TASKGRID_BIND)')
    .option('--log-level <level>', 'TASKGRID_LOG_LEVEL')
    .action(async (_o, cmd: Command) => {
      await runNameservice(componentContext('nameservice', flags(cmd)));
    });
  program
    .command('dispatcher')
    .description('run the dispatcher (stores, queues and dispatches tasks), udp/4000')
    .option('--port <port>', 'UDP port (TASKGRID_DISPATCHER_PORT)')
    .option('--bind <address>', 'address to bind (TASKGRID_BIND)')
    .option('--advertise <host[:port]>', 'address others reach it at (TASKGRID_ADVERTISE)')
    .option('--home <dir>', 'state directory (TASKGRID_HOME)')
    .option('--log-level <level>', 'TASKGRID_LOG_LEVEL')
    .action(async (_o, cmd: Command) => {
      const f = flags(cmd);
      const o = cmd.opts<{ port?: string }>();
      await runDispatcher(
        componentContext('dispatcher', { ...f, nameservicePort: undefined, dispatcherPort: o.port }),
      );
    });
  program
    .command('worker')
    .description('run a worker serving the given task types')
    .argument('<types...>', 'task types (modules in worker_types/)')
    .option('--port <port>', 'UDP port, 0 = any free port (TASKGRID_WORKER_PORT)')
    .option('--concurrency <n>', 'tasks run at once (TASKGRID_WORKER_CONCURRENCY)')
    .option('--inline', 'run the handlers on the main thread, not in handler threads (workers.json "inline")')
    .option('--no-inline', 'run the handlers in handler threads, whatever workers.json says')
    .option('--bind <address>', 'address to bind (TASKGRID_BIND)')
    .option('--advertise <host[:port]>', 'address the dispatcher reaches it at (TASKGRID_ADVERTISE)')
    .option('--log-level <level>', 'TASKGRID_LOG_LEVEL')
    .action(async (types: string[], _o, cmd: Command) => {
      const f = flags(cmd);
      const o = cmd.opts<{ port?: string; concurrency?: string; inline?: boolean }>();
      await runWorker(
        componentContext(`worker-${types.join('+')}`, {
          ...f,
          nameservicePort: undefined,
          workerPort: o.port,
          workerConcurrency: o.concurrency,
        }),
        types,
        o.inline !== undefined ? { inline: o.inline } : {},
      );
    });
}
