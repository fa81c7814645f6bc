/**
 * Commands that run the whole grid locally: `taskgrid start` (build, then run in the
 * foreground; what `npm start` does) and `taskgrid run` without arguments (run what is built).
 */
import type { Command } from 'commander';
import { findProjectRoot, loadConfig } from '../config/env.ts';
import { loadWorkersFile } from '../config/workers.ts';
import { ConfigError } from '../errors.ts';
import { buildGrid, runGrid, type LocalGridOptions } from '../local/grid.ts';
import { installGridRun, type CliContext } from './main.ts';
import { join } from 'node:path';

function gridOptions(ctx: CliContext): LocalGridOptions {
  const root = findProjectRoot();
  const config = loadConfig(process.env, {}, { projectRoot: root });
  return {
    config,
    root,
    workersFile: process.env.TASKGRID_WORKERS_FILE ?? join(root, 'workers.json'),
    typesDir: process.env.TASKGRID_TYPES_DIR ?? join(root, 'worker_types'),
    say: (line) => ctx.io.stdout.write(`taskgrid: ${line}\n`),
  };
}

/** Turns a workers.json or compile failure into a one-line, coded error. */
function asConfigError(err: unknown): never {
  if (err instanceof ConfigError) throw err;
  throw new ConfigError(err instanceof Error ? err.message : String(err));
}

export function registerGridCommands(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description('build (compile, check workers.json, regenerate the Compose file), then run the whole grid in the foreground; Ctrl-C stops it')
    .action(async () => {
      const o = gridOptions(ctx);
      let entries;
      try {
        entries = buildGrid(o);
      } catch (err) {
        asConfigError(err);
      }
      ctx.exitCode = await runGrid(o, entries);
    });
  installGridRun(ctx, {
    configure: () => {},
    action: async () => {
      const o = gridOptions(ctx);
      return runGrid(o, [...loadWorkersFile(o.workersFile, { typesDir: o.typesDir })]);
    },
  });
}
