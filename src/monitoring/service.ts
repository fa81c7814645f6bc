/**
 * `taskgrid monitoring`: the monitoring service as its own process. It reads the grid over the
 * protocol (a UDP socket subscribed to the nameservices, requests to the dispatcher), serves the
 * app of app.ts on http/8080 (TASKGRID_MONITORING_PORT, 0 = any free port), prints a `ready`
 * line with the address it bound, and stops cleanly on SIGTERM or SIGINT.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import type { Command } from 'commander';
import {
  announceReady,
  componentContext,
  onSignals,
  VERSION,
  warnIfUnsigned,
  type ComponentContext,
} from '../cli/components.ts';
import { advertiseHost, DEFAULTS, formatHostPort, type ConfigFlags } from '../config/env.ts';
import { parseWorkers, type WorkerTypeEntry } from '../config/workers.ts';
import { ConfigError } from '../errors.ts';
import type { Hono } from 'hono';
import { createApp, isLoopbackHost } from './app.ts';
import { EventHub } from './events.ts';
import { ProtocolGrid } from './grid.ts';
import { MonitoringMetrics } from './metrics.ts';
import { resolveMonitoringTuning, type MonitoringTuning } from './options.ts';
import { GridWatcher } from './watcher.ts';

/** The environment variable of the API token; never a flag (argv is visible to every user). */
export const TOKEN_ENV = 'TASKGRID_MONITOR_TOKEN';

/** Shortest token accepted: a shorter one is guessable. */
const MIN_TOKEN_LENGTH = 16;

/** Time open connections get to finish after a stop before they are cut. */
const CLOSE_GRACE_MS = 2_000;

/**
 * The token from the environment, checked.
 *
 * @throws ConfigError when it is too short or has surrounding whitespace (value not shown).
 */
export function readToken(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const value = env[TOKEN_ENV];
  if (value === undefined || value === '') return undefined;
  if (value.trim() !== value)
    throw new ConfigError(`${TOKEN_ENV} has leading or trailing whitespace (value not shown)`);
  if (value.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(
      `${TOKEN_ENV} is ${value.length} characters long (expected at least ${MIN_TOKEN_LENGTH}; value not shown)`,
    );
  }
  return value;
}

/** A bound HTTP server and how to stop it. */
export interface HttpListener {
  address: { host: string; port: number };
  close(): Promise<void>;
}

/**
 * The host of the URL @hono/node-server builds for a request without a Host header. Node would
 * answer such an HTTP/1.1 request itself, with an empty 400; it passes them on instead
 * (`requireHostHeader: false`) so that the app answers its JSON 400 TG_ERR_BAD_REQUEST. `serve`
 * would build the URL on the bound address, which passes the app's loopback check and is no
 * valid URL host when it is IPv6 (the adapter then answers an empty 400 itself). A reserved name
 * (RFC 2606) instead: a valid URL that names no loopback host.
 */
const NO_HOST_HEADER = 'host-header-missing.invalid';

/** Serves `app` on `host:port` (0 = any free port); resolves once it listens. */
export function listen(app: Hono, host: string, port: number): Promise<HttpListener> {
  return new Promise((resolve, reject) => {
    const handle = getRequestListener(app.fetch, { hostname: NO_HOST_HEADER });
    const server = createServer({ requireHostHeader: false }, (req, res) => void handle(req, res));
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({
        address: { host, port: (server.address() as AddressInfo).port },
        close: () => closeServer(server),
      });
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

function readWorkerTypes(file: string): readonly WorkerTypeEntry[] {
  // Monitoring only describes the types: their modules are the workers' business.
  return parseWorkers(readFileSync(file, 'utf8'), { source: basename(file) });
}

/** Options of {@link runMonitoring} beyond the component context. */
export interface RunMonitoringOptions {
  env?: Readonly<Record<string, string | undefined>>;
  tuning?: MonitoringTuning;
}

/** Runs the monitoring service until SIGTERM or SIGINT. */
export async function runMonitoring(
  ctx: ComponentContext,
  options: RunMonitoringOptions = {},
): Promise<void> {
  const token = readToken(options.env ?? process.env);
  warnIfUnsigned(ctx);
  const c = ctx.config;
  const log = ctx.logger;
  const tuning = resolveMonitoringTuning(options.tuning);
  const grid = await ProtocolGrid.open({
    nameservers: [...c.nameservices],
    dispatcher: c.dispatcher,
    secret: c.secret,
    bindHost: c.bind,
    advertiseHost: advertiseHost(c, { hostname: hostname() }),
    advertisePort: c.advertisePort,
    datagramBudget: c.datagramBudget,
    maxMessageBytes: c.maxMessageBytes,
    logger: log,
  });
  const hub = new EventHub({ maxClients: tuning.sseMaxClients, maxQueued: tuning.sseMaxQueued });
  const metrics = new MonitoringMetrics({
    maxWorkerSeries: tuning.maxWorkerSeries,
    transportCounters: () => grid.transportCounters(),
    sseClients: () => hub.clients,
  });
  const watcher = new GridWatcher({ grid, hub, metrics, tuning, logger: log });
  const { app } = createApp({
    grid,
    hub,
    metrics,
    watcher,
    tuning,
    token,
    bindHost: c.bind,
    home: c.home,
    workerTypes: () => readWorkerTypes(ctx.workersFile),
    version: VERSION,
    logger: log,
  });
  let listener: HttpListener;
  try {
    listener = await listen(app, c.bind, c.monitoringPort);
  } catch (err) {
    await grid.close();
    throw new ConfigError(
      `monitoring cannot listen on ${formatHostPort({ host: c.bind, port: c.monitoringPort })}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  watcher.start();
  if (token === undefined && !isLoopbackHost(c.bind)) {
    log.warn(
      `${TOKEN_ENV} is not set and monitoring is bound to ${c.bind}: anyone who can reach it can read the grid; submit, cancel and retry are disabled`,
    );
  }
  const urlHost = c.bind === '0.0.0.0' || c.bind === '::' ? '127.0.0.1' : c.bind;
  const url = `http://${formatHostPort({ host: urlHost, port: listener.address.port })}/`;
  announceReady(ctx, { address: listener.address, url, auth: token !== undefined, udp: grid.address });
  onSignals(ctx, async () => {
    hub.close();
    await watcher.close();
    await listener.close();
    await grid.close();
  });
}

/** Adds `taskgrid monitoring` to the CLI. */
export function registerMonitoringCommands(program: Command): void {
  program
    .command('monitoring')
    .description(
      `run the monitoring service (REST API, dashboard, /metrics), http/${DEFAULTS.monitoringPort}`,
    )
    .option('--port <port>', 'HTTP port, 0 = any free port (TASKGRID_MONITORING_PORT)')
    .option('--bind <address>', 'address to bind (TASKGRID_BIND; default 127.0.0.1)')
    .option('--advertise <host[:port]>', 'address the nameservices send changes to (TASKGRID_ADVERTISE)')
    .option('--home <dir>', 'state directory whose logs/ GET /api/logs reads (TASKGRID_HOME)')
    .option('--log-level <level>', 'TASKGRID_LOG_LEVEL')
    .addHelpText(
      'after',
      `\nWith ${TOKEN_ENV} set (16+ characters), every API call needs "Authorization: Bearer <token>".\n` +
        'Without it, submit, cancel and retry work only when bound to loopback.\n',
    )
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Record<string, string | undefined>>();
      const flags: ConfigFlags = {
        nameservice: o.nameservice,
        dispatcher: o.dispatcher,
        monitoringPort: o.port,
        bind: o.bind,
        advertise: o.advertise,
        home: o.home,
        logLevel: o.logLevel,
      };
      await runMonitoring(componentContext('monitoring', flags));
    });
}
