/**
 * The whole grid on one machine, one process per component: the nameservice, the dispatcher,
 * `replicas` worker processes per active workers.json entry. Used by `taskgrid start` (and
 * `npm start`) and by `taskgrid run` without arguments.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCompose } from '../compose/generate.ts';
import {
  UNSIGNED_WARNED_ENV,
  UNSIGNED_WARNING,
  formatHostPort,
  statePaths,
  type Config,
} from '../config/env.ts';
import { activeTypes, loadWorkersFile, type WorkerTypeEntry } from '../config/workers.ts';
import { START_FAILED, dashboardUrl, removeStateFile, writeState, type GridState } from './control.ts';
import { Supervisor, type ComponentSpec } from './supervisor.ts';

/** Where `taskgrid start`'s incremental compile keeps its build info (inside dist/, not packed). */
const BUILD_INFO = 'dist/.tsbuildinfo';

export interface LocalGridOptions {
  config: Config;
  root: string;
  workersFile: string;
  typesDir: string;
  /** Prints a line for a person. */
  say: (line: string) => void;
  /** Where component output goes (default: stdout, prefixed). */
  write?: (line: string) => void;
}

/** The component processes a grid runs, in start order. */
export function gridComponents(entries: readonly WorkerTypeEntry[]): ComponentSpec[] {
  const specs: ComponentSpec[] = [
    { name: 'nameservice', args: ['nameservice'] },
    { name: 'dispatcher', args: ['dispatcher'] },
    { name: 'monitoring', args: ['monitoring'] },
  ];
  for (const e of activeTypes(entries)) {
    for (let i = 1; i <= e.replicas; i++) {
      specs.push({
        name: e.replicas > 1 ? `worker-${e.name}-${i}` : `worker-${e.name}`,
        args: ['worker', e.name, '--concurrency', String(e.concurrency), ...(e.inline ? ['--inline'] : [])],
        group: 'workers',
      });
    }
  }
  return specs;
}

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'name', 'component', 'msg']);

/** Shows a pino JSON line as `INFO message key=value …`; other lines as they are. */
export function formatLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    const level = LEVELS[Number(v.level)] ?? String(v.level);
    const extra = Object.entries(v)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, x]) => `${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`)
      .join(' ');
    const msg = typeof v.msg === 'string' ? v.msg : '';
    return `${level.padEnd(5)} ${msg}${extra ? `  ${extra}` : ''}`;
  } catch {
    return line;
  }
}

/**
 * Compiles the sources (when TypeScript is installed, as in a development checkout), checks
 * workers.json and regenerates docker-compose.generated.yml.
 */
export function buildGrid(
  o: Pick<LocalGridOptions, 'root' | 'workersFile' | 'typesDir' | 'say'>,
): WorkerTypeEntry[] {
  const entries = [...loadWorkersFile(o.workersFile, { typesDir: o.typesDir })];
  o.say(
    `workers.json: ${activeTypes(entries).length} active task types (${activeTypes(entries)
      .map((e) => e.name)
      .join(', ')})`,
  );
  let tsc: string | undefined;
  // An installed package ships dist/ already built, and no tsconfig.build.json: TypeScript
  // that resolves from it is the application's own, not a reason to compile it.
  if (existsSync(join(o.root, 'tsconfig.build.json'))) {
    try {
      tsc = createRequire(join(o.root, 'package.json')).resolve('typescript/bin/tsc');
    } catch {
      // A checkout installed without its devDependencies: run what is built.
    }
  }
  if (tsc) {
    o.say('compiling (tsc -p tsconfig.build.json)…');
    // Incremental: with the sources unchanged it takes a quarter of a full build (2.5 s against
    // 9 s here). Its build info lives in dist/, so that removing dist/ rebuilds everything.
    const r = spawnSync(
      process.execPath,
      [tsc, '-p', 'tsconfig.build.json', '--incremental', '--tsBuildInfoFile', BUILD_INFO],
      { cwd: o.root, encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`compilation failed:\n${r.stdout}${r.stderr}`);
    // An incremental build rewrites only what changed, but bin/taskgrid.js runs dist/ only when
    // its entry is at least as new as every source (else it runs src/ through tsx): the build
    // is current now, so say so.
    const entry = join(o.root, 'dist/src/cli/main.js');
    const now = new Date();
    if (existsSync(entry)) utimesSync(entry, now, now);
  }
  writeFileSync(join(o.root, 'docker-compose.generated.yml'), generateCompose(entries));
  o.say('wrote docker-compose.generated.yml');
  return entries;
}

/** Tells a person where the grid is and how to send it a task. */
export function gridBanner(
  o: LocalGridOptions,
  specs: ComponentSpec[],
  how: { detached: boolean; state?: GridState | undefined },
): void {
  const ns = o.config.nameservices[0]!;
  const paths = statePaths(o.config.home);
  const types = specs.filter((s) => s.args[0] === 'worker').map((s) => s.args[1]!);
  const example = types.includes('reverse') ? 'reverse' : types[0];
  o.say('');
  o.say(
    `TaskGrid is up: nameservice udp/${formatHostPort(ns)}, dispatcher udp/${o.config.bind}:${o.config.dispatcherPort}, ${specs.filter((s) => s.name.startsWith('worker-')).length} worker processes.`,
  );
  const monitoringPort = how.state?.components.monitoring?.address?.port;
  o.say(
    `Dashboard: ${dashboardUrl(o.config, monitoringPort)}   (REST API under /api, Prometheus metrics at /metrics)`,
  );
  if (example) {
    o.say('Send a task' + (how.detached ? ':' : ' from another terminal:'));
    o.say(`  npx taskgrid send ${example} Hello --wait`);
  }
  o.say(
    how.detached
      ? `Logs: ${paths.logs} (npx taskgrid logs <component>)   Status: npx taskgrid status   Stop: npx taskgrid stop`
      : `Logs: ${paths.logs}   Stop: Ctrl-C`,
  );
  o.say('');
}

/** Runs the grid in the foreground until SIGINT or SIGTERM; resolves with the exit code. */
export async function runGrid(
  o: LocalGridOptions,
  entries: readonly WorkerTypeEntry[],
  how: { banner: boolean } = { banner: true },
): Promise<number> {
  const paths = statePaths(o.config.home);
  const specs = gridComponents(entries);
  const state: GridState = {
    supervisorPid: process.pid,
    startedAt: Date.now(),
    ready: false,
    components: {},
  };
  const save = () => {
    const pids = supervisor.pids();
    const restarts = supervisor.restarts();
    const addresses = supervisor.addresses();
    for (const spec of specs) {
      state.components[spec.name] = {
        pid: pids[spec.name],
        restarts: restarts[spec.name] ?? 0,
        args: spec.args,
        address: addresses[spec.name],
      };
    }
    writeState(paths, state);
  };
  // Said once here rather than by each of the components.
  if (!o.config.secret) o.say(`warning: ${UNSIGNED_WARNING}`);
  const supervisor: Supervisor = new Supervisor({
    command: [process.execPath, join(o.root, 'bin/taskgrid.js')],
    cwd: o.root,
    env: o.config.secret ? process.env : { ...process.env, [UNSIGNED_WARNED_ENV]: '1' },
    logDir: paths.logs,
    format: formatLogLine,
    onChange: () => save(),
    names: specs.map((s) => s.name),
    ...(o.write ? { write: o.write } : {}),
  });
  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      o.say(`${signal}: stopping the grid…`);
      void supervisor.stop().then(() => {
        removeStateFile(paths);
        o.say('grid stopped');
        resolve(0);
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  try {
    // The nameservice first, so that the others register at once rather than retrying.
    await supervisor.start(specs[0]!);
    await Promise.all(specs.slice(1).map((s) => supervisor.start(s)));
  } catch (err) {
    o.say(`${START_FAILED}${err instanceof Error ? err.message : String(err)}`);
    await supervisor.stop();
    removeStateFile(paths);
    return 1;
  }
  state.ready = true;
  save();
  if (how.banner) gridBanner(o, specs, { detached: false, state });
  return stopped;
}
