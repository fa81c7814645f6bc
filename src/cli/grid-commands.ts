/**
 * Commands that run and manage the whole grid: `build`, `start` (what `npm start` runs),
 * `run` without arguments, `stop`/`down`, `status`, `logs`, `regen-compose`, `reset`, `man`.
 * Locally by default (one process per component, no Docker); `--docker` drives Docker Compose.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { generateCompose } from '../compose/generate.ts';
import { findProjectRoot, loadConfig, statePaths } from '../config/env.ts';
import { loadWorkersFile, type WorkerTypeEntry } from '../config/workers.ts';
import { ConfigError, ErrorCode, TaskGridError } from '../errors.ts';
import {
  gridHealth,
  logFiles,
  refuseIfRunning,
  removeState,
  runningGrid,
  startDetached,
  stopGrid,
  tailLog,
} from '../local/control.ts';
import {
  buildGrid,
  formatLogLine,
  gridBanner,
  gridComponents,
  runGrid,
  type LocalGridOptions,
} from '../local/grid.ts';
import { installGridRun, type CliContext } from './main.ts';
import { ExitCode, Output, formatBytes, formatDuration } from './output.ts';

const COMPOSE_FILE = 'docker-compose.generated.yml';
/** The same grid as a Swarm stack (`docker stack deploy -c`): `regen-compose --swarm`. */
const STACK_FILE = 'docker-stack.generated.yml';

/**
 * TASKGRID_WORKERS_FILE and TASKGRID_TYPES_DIR as absolute paths: a relative one names a path
 * from the directory the command runs in, and is made absolute in `env` too, since the grid's
 * supervisor and components inherit `env` but run from the package's folder (which, for an
 * installed package, is node_modules/taskgrid, holding the package's own workers.json).
 */
export function absoluteTypePaths(env: NodeJS.ProcessEnv, cwd: string): void {
  for (const name of ['TASKGRID_WORKERS_FILE', 'TASKGRID_TYPES_DIR'] as const) {
    const value = env[name];
    if (value) env[name] = resolve(cwd, value);
  }
}

function gridOptions(ctx: CliContext): LocalGridOptions {
  const root = findProjectRoot();
  const config = loadConfig(process.env, {}, { projectRoot: root });
  absoluteTypePaths(process.env, process.cwd());
  return {
    config,
    root,
    workersFile: process.env.TASKGRID_WORKERS_FILE || join(root, 'workers.json'),
    typesDir: process.env.TASKGRID_TYPES_DIR || join(root, 'worker_types'),
    say: (line) => ctx.io.stdout.write(`taskgrid: ${line}\n`),
  };
}

/** A workers.json or compile failure as a one-line, coded error. */
function asConfigError(err: unknown): never {
  if (err instanceof TaskGridError) throw err;
  throw new ConfigError(err instanceof Error ? err.message : String(err));
}

function loadEntries(o: LocalGridOptions): WorkerTypeEntry[] {
  try {
    return [...loadWorkersFile(o.workersFile, { typesDir: o.typesDir })];
  } catch (err) {
    asConfigError(err);
  }
}

/** Throws the one clear line of Docker mode without a Docker engine. */
function requireDockerEngine(): void {
  const info = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8' });
  if (info.error || info.status !== 0) {
    throw new TaskGridError(
      ErrorCode.UNREACHABLE,
      'Docker mode needs a running Docker engine, and `docker info` found none; run without --docker for the local grid',
    );
  }
}

/** Runs `docker compose` with the generated file; without a Docker engine, one clear line. */
function docker(o: LocalGridOptions, args: string[]): number {
  requireDockerEngine();
  const r = spawnSync('docker', ['compose', '-p', 'taskgrid', '-f', join(o.root, COMPOSE_FILE), ...args], {
    cwd: o.root,
    stdio: 'inherit',
  });
  return r.status ?? 1;
}

interface RunFlags {
  detach?: boolean;
  docker?: boolean;
  supervise?: boolean;
}

/** Runs the grid as built: in the foreground, detached, or with Docker. */
async function runBuilt(
  ctx: CliContext,
  o: LocalGridOptions,
  entries: WorkerTypeEntry[],
  f: RunFlags,
): Promise<number> {
  if (f.docker) return docker(o, ['up', ...(f.detach ? ['-d'] : [])]);
  if (f.supervise) return runGrid(o, entries, { banner: false });
  if (f.detach) {
    const state = await startDetached({
      root: o.root,
      config: o.config,
      args: ['run', '--supervise'],
      say: o.say,
    });
    gridBanner(o, gridComponents(entries), { detached: true, state });
    return ExitCode.OK;
  }
  refuseIfRunning(statePaths(o.config.home));
  return runGrid(o, entries, { banner: true });
}

async function build(ctx: CliContext, f: RunFlags & { reset?: boolean; cache?: boolean }): Promise<number> {
  const o = gridOptions(ctx);
  // Before compiling (seconds): what would refuse to run after it.
  if (f.docker) requireDockerEngine();
  else if (!f.reset && !f.supervise) refuseIfRunning(statePaths(o.config.home));
  if (f.reset) await reset(ctx, o, { docker: f.docker ?? false });
  if (f.cache === false) rmSync(join(o.root, 'dist'), { recursive: true, force: true });
  let entries: WorkerTypeEntry[];
  try {
    entries = buildGrid(o);
  } catch (err) {
    asConfigError(err);
  }
  if (f.docker) {
    const code = docker(o, ['build', ...(f.cache === false ? ['--no-cache'] : [])]);
    if (code !== 0) return code;
  }
  return runBuilt(ctx, o, entries, f);
}

async function reset(ctx: CliContext, o: LocalGridOptions, f: { docker: boolean }): Promise<void> {
  if (f.docker) {
    docker(o, ['down', '-v', '--rmi', 'local', '--remove-orphans']);
  }
  const paths = statePaths(o.config.home);
  const stopped = await stopGrid(paths);
  if (stopped.length > 0) o.say(`stopped ${stopped.length} processes (${stopped.join(', ')})`);
  for (const path of removeState(paths)) o.say(`removed ${path}`);
  for (const name of [COMPOSE_FILE, STACK_FILE]) {
    const file = join(o.root, name);
    if (existsSync(file)) {
      rmSync(file);
      o.say(`removed ${file}`);
    }
  }
}

function man(ctx: CliContext): void {
  const file = join(findProjectRoot(), 'docs', 'taskgrid.1');
  // On a terminal, the real man viewer; otherwise (or without man) the page as text.
  if (process.stdout.isTTY && spawnSync('man', ['-l', file], { stdio: 'inherit' }).status === 0) return;
  const r = spawnSync('man', ['-l', '-P', 'cat', file], {
    encoding: 'utf8',
    env: { ...process.env, MANWIDTH: '80' },
  });
  ctx.io.stdout.write(r.status === 0 && r.stdout ? r.stdout : readFileSync(file, 'utf8'));
}

export function registerGridCommands(program: Command, ctx: CliContext): void {
  const runOptions = (cmd: Command) =>
    cmd
      .option('-d, --detach', 'run in the background; return once every component answers a health check')
      .option('--docker', 'use Docker Compose with the generated file instead of local processes');
  const buildAction = async (f: RunFlags & { reset?: boolean; cache?: boolean }) => {
    ctx.exitCode = await build(ctx, f);
  };

  runOptions(
    program
      .command('build')
      .description(
        'compile, check workers.json, regenerate docker-compose.generated.yml, then start the grid',
      )
      .option('--reset', 'stop and remove all state first (as `taskgrid reset`)')
      .option('--no-cache', 'rebuild from scratch (remove dist/; with --docker, no image cache)'),
  ).action(buildAction);
  runOptions(
    program
      .command('start')
      .description(
        'build and run the whole grid (what `npm start` runs); in the foreground unless -d; Ctrl-C stops it',
      ),
  ).action(buildAction);

  // A caller (a test) may have supplied its own grid `run`; it wins.
  if (!ctx.gridRun)
    installGridRun(ctx, {
      configure: (cmd) => {
        runOptions(cmd);
        // Internal: the detached supervisor's own command line.
        cmd.addOption(new Option('--supervise', 'run as the background supervisor (used by -d)').hideHelp());
      },
      action: async (opts) => {
        const o = gridOptions(ctx);
        return runBuilt(ctx, o, loadEntries(o), opts);
      },
    });

  program
    .command('stop')
    .alias('down')
    .description('stop the grid started with -d (workers first, then the dispatcher, then the nameservice)')
    .option('--docker', 'docker compose down')
    .action(async (f: { docker?: boolean }) => {
      const o = gridOptions(ctx);
      if (f.docker) {
        ctx.exitCode = docker(o, ['down']);
        return;
      }
      const stopped = await stopGrid(statePaths(o.config.home));
      o.say(
        stopped.length > 0
          ? `stopped ${stopped.length} processes`
          : `no grid is running from ${o.config.home}`,
      );
    });

  program
    .command('status')
    .description('ask every component of the local grid over the protocol whether it answers')
    .action(async () => {
      const o = gridOptions(ctx);
      const json = program.opts<{ json?: boolean }>().json === true;
      const paths = statePaths(o.config.home);
      const supervisor = runningGrid(paths);
      const health = await gridHealth(o.config, paths);
      const healthy = health.every((h) => h.ok);
      if (json) {
        ctx.io.stdout.write(
          `${JSON.stringify({ supervisor: supervisor?.supervisorPid ?? null, healthy, components: health })}\n`,
        );
      } else {
        ctx.io.stdout.write(
          supervisor
            ? `grid supervisor pid ${supervisor.supervisorPid}, state in ${o.config.home}\n`
            : `no supervisor runs from ${o.config.home}; asking the grid at ${o.config.nameservices.map((n) => `${n.host}:${n.port}`).join(', ')}\n`,
        );
        const rows = health.map((h) => [
          h.name,
          String(h.pid ?? '-'),
          String(h.restarts),
          h.ok ? 'healthy' : 'NOT ANSWERING',
          h.detail,
        ]);
        new Output(ctx.io, false).table(['COMPONENT', 'PID', 'RESTARTS', 'STATE', 'DETAIL'], rows);
      }
      ctx.exitCode = healthy ? ExitCode.OK : ExitCode.UNREACHABLE;
    });

  program
    .command('logs')
    .description('print the end of a component’s log (local grid); without a component, list them')
    .argument(
      '[component]',
      'e.g. dispatcher, nameservice, worker-reverse; grid: the background supervisor of run/start -d',
    )
    .option('-f, --follow', 'keep printing what is appended')
    .option('-n, --lines <n>', 'lines to print', '100')
    .action(async (component: string | undefined, f: { follow?: boolean; lines: string }) => {
      const o = gridOptions(ctx);
      const paths = statePaths(o.config.home);
      const json = program.opts<{ json?: boolean }>().json === true;
      if (!component) {
        const files = logFiles(paths);
        if (json) {
          ctx.io.stdout.write(`${JSON.stringify({ logs: files })}\n`);
          return;
        }
        if (files.length === 0) {
          ctx.io.stdout.write(`no logs in ${paths.logs}\n`);
          return;
        }
        const now = Date.now();
        new Output(ctx.io, false).table(
          ['COMPONENT', 'SIZE', 'LAST WRITTEN'],
          files.map((f) => [
            f.component,
            formatBytes(f.bytes),
            `${formatDuration(Math.max(0, now - f.modifiedMs))} ago`,
          ]),
        );
        return;
      }
      const lines = Number(f.lines);
      if (!Number.isInteger(lines) || lines < 0)
        throw new TaskGridError(ErrorCode.BAD_ARGUMENT, `--lines ${JSON.stringify(f.lines)} is not a count`);
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      await tailLog(paths, component, {
        lines,
        follow: f.follow ?? false,
        write: (s) => ctx.io.stdout.write(s),
        // As the grid's console shows them; --json keeps the files' pino JSON lines.
        ...(json ? {} : { format: formatLogLine }),
        signal: stop.signal,
      });
    });

  program
    .command('regen-compose')
    .description(`regenerate ${COMPOSE_FILE} from workers.json`)
    .option(
      '--swarm',
      `write ${STACK_FILE} instead, for docker stack deploy (no client service, no build, no restart)`,
    )
    .action((f: { swarm?: boolean }) => {
      const o = gridOptions(ctx);
      const file = join(o.root, f.swarm ? STACK_FILE : COMPOSE_FILE);
      writeFileSync(file, generateCompose(loadEntries(o), f.swarm ? { target: 'swarm' } : {}));
      o.say(`wrote ${file}`);
    });

  program
    .command('reset')
    .description('stop everything and remove state, logs, data and the generated Compose file')
    .option('--docker', 'also `docker compose down -v` and remove the project’s images')
    .action(async (f: { docker?: boolean }) => {
      await reset(ctx, gridOptions(ctx), { docker: f.docker ?? false });
    });

  program
    .command('man')
    .description('the manual (also docs/taskgrid.1)')
    .action(() => man(ctx));
}

/** `taskgrid --man` is `taskgrid man`, as in TaskGrid+. */
export function rewriteManFlag(argv: readonly string[]): string[] {
  const args = [...argv];
  const i = args.indexOf('--man');
  if (i >= 2) args.splice(i, 1, 'man');
  return args;
}

/** For tests: the state directory's paths of the current configuration. */
export function currentPaths(): ReturnType<typeof statePaths> {
  return statePaths(loadConfig(process.env, {}, { projectRoot: findProjectRoot() }).home);
}
