/**
 * The `taskgrid` command line. One program; each part of TaskGrid adds its commands through a
 * registrar listed in {@link COMMAND_REGISTRARS}. `main()` parses, runs and returns the exit
 * code without calling process.exit, so that tests and the bin/ launcher can run it.
 *
 * Global flags: --nameservice, --dispatcher, --json, --timeout. The cluster secret is never a
 * flag (argv is visible to every user of the machine): it comes from TASKGRID_SECRET only.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { DEFAULTS, findProjectRoot } from '../config/env.ts';
import { ErrorCode, TaskGridError } from '../errors.ts';
import {
  addressParser,
  msParser,
  parseAddressList,
  registerClientCommands,
  RUN_WITH_GRID_DESCRIPTION,
} from './client-commands.ts';
import { registerComponentCommands } from './components.ts';
import { registerGridCommands, rewriteManFlag } from './grid-commands.ts';
import { registerMonitoringCommands } from '../monitoring/service.ts';
import { EXIT_CODE_HELP, ExitCode, Output, processIo, type CliIo } from './output.ts';

/**
 * The grid's own `run` (start the grid), sharing its name with the client's `run <type>
 * <payload>`: one command whose action branches on the number of positional arguments. The
 * grid side adds its options (e.g. `-d`, `--docker`) in `configure` and is called with none.
 */
export interface GridRunHook {
  configure(cmd: Command): void;
  /** Runs the grid's `run`; resolves with the exit code. */
  action(options: Record<string, unknown>, cmd: Command): Promise<number>;
}

/** State of one CLI run, handed to every registrar (no module-level state). */
export interface CliContext {
  readonly io: CliIo;
  /** Set by the command that ran; main() returns it. */
  exitCode: number;
  /** The grid's `run`, when installed (BuildOptions.gridRun or {@link installGridRun}). */
  gridRun: GridRunHook | undefined;
  /** The `run` command, once the client commands registered it. */
  runCommand: Command | undefined;
}

/**
 * Makes `taskgrid run` without arguments start the grid: for a registrar that comes after the
 * client commands (the hook's options are added to the existing `run` command).
 */
export function installGridRun(ctx: CliContext, hook: GridRunHook): void {
  ctx.gridRun = hook;
  if (ctx.runCommand) {
    hook.configure(ctx.runCommand);
    ctx.runCommand.description(RUN_WITH_GRID_DESCRIPTION);
  }
}

/**
 * Adds commands to the program. Create subcommands with `program.command(...)` so that they
 * inherit the error handling; return exit codes through `ctx.exitCode`, or throw a
 * TaskGridError (reported as one line naming its code, with the matching exit code).
 */
export type CommandRegistrar = (program: Command, ctx: CliContext) => void;

/** The modules that add commands, in --help order. */
export const COMMAND_REGISTRARS: readonly CommandRegistrar[] = [
  registerClientCommands,
  registerComponentCommands,
  registerGridCommands,
  registerMonitoringCommands,
  // The grid's `run` without arguments plugs into the client's `run` with installGridRun().
];

export interface BuildOptions {
  io?: CliIo;
  registrars?: readonly CommandRegistrar[];
  gridRun?: GridRunHook;
}

/** A fresh context for one run of the program. */
export function createContext(options: BuildOptions = {}): CliContext {
  return {
    io: options.io ?? processIo(),
    exitCode: ExitCode.OK,
    gridRun: options.gridRun,
    runCommand: undefined,
  };
}

function version(): string {
  try {
    const manifest: unknown = JSON.parse(readFileSync(join(findProjectRoot(), 'package.json'), 'utf8'));
    if (
      typeof manifest === 'object' &&
      manifest !== null &&
      'version' in manifest &&
      typeof manifest.version === 'string'
    ) {
      return manifest.version;
    }
  } catch {
    // --version is the only thing that needs it
  }
  return 'unknown';
}

/** The `taskgrid` program with every registered command; parse it with `parseAsync`. */
export function buildProgram(
  ctx: CliContext = createContext(),
  registrars: readonly CommandRegistrar[] = COMMAND_REGISTRARS,
): Command {
  const { io } = ctx;
  const program = new Command('taskgrid')
    .description('TaskGrid: a distributed task grid over UDP')
    .version(version(), '-V, --version')
    .option(
      '--nameservice <list>',
      `nameservice address(es), comma-separated host:port (env TASKGRID_NAMESERVICE; default ${DEFAULTS.nameserviceHost}:${DEFAULTS.nameservicePort})`,
      parseAddressList,
    )
    .option(
      '--dispatcher <host:port>',
      'dispatcher address, instead of looking it up at the nameservice (env TASKGRID_DISPATCHER)',
      addressParser(DEFAULTS.dispatcherPort),
    )
    .option('--json', 'machine-readable output: JSON on stdout, one document per line')
    .option(
      '--timeout <ms>',
      'longest wait for the grid: for each reply, and for results (default 60000)',
      msParser(),
    )
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `\nEnvironment: TASKGRID_NAMESERVICE, TASKGRID_DISPATCHER, TASKGRID_SECRET (the cluster secret;\n` +
        `never a flag), TASKGRID_BIND, TASKGRID_LOG_LEVEL and the other TASKGRID_* settings.\n\n${EXIT_CODE_HELP}\n`,
    );
  configure(program, io);
  for (const register of registrars) register(program, ctx);
  // Commands built with `new Command()` and added later do not inherit these settings.
  const visit = (cmd: Command) => {
    configure(cmd, io);
    cmd.commands.forEach(visit);
  };
  program.commands.forEach(visit);
  return program;
}

function configure(cmd: Command, io: CliIo): void {
  cmd.exitOverride().configureOutput({
    writeOut: (s) => io.stdout.write(s),
    writeErr: (s) => io.stderr.write(s),
    // main() reports usage errors itself, as one line with a code.
    outputError: () => {},
  });
}

function usageError(err: CommanderError): TaskGridError {
  let message = err.message.replace(/^error: /, '');
  if (err.code === 'commander.unknownOption' && /'--secret\b/.test(message)) {
    message += '; the secret is never a flag (argv is visible to other users): set TASKGRID_SECRET';
  }
  if (err.code === 'commander.help') message = 'no command given (see taskgrid --help)';
  return new TaskGridError(ErrorCode.BAD_ARGUMENT, message);
}

/**
 * Runs the CLI on `argv` (as process.argv: node, script, arguments) and resolves with the exit
 * code. Never exits the process.
 */
export async function main(
  argv: readonly string[] = process.argv,
  options: BuildOptions = {},
): Promise<number> {
  const ctx = createContext(options);
  const program = buildProgram(ctx, options.registrars);
  try {
    await program.parseAsync(rewriteManFlag(argv));
    return ctx.exitCode;
  } catch (err) {
    const end = argv.indexOf('--');
    const json = (end < 0 ? argv : argv.slice(0, end)).includes('--json');
    const out = new Output(ctx.io, json);
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.OK;
      return out.error(usageError(err));
    }
    return out.error(err);
  }
}

function isEntryModule(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/**
 * Runs the CLI as the process's program: real streams, and the exit code as the process's
 * (set, not forced, so that buffered output still drains). Used by bin/taskgrid.js and when
 * this module is run directly.
 */
export async function runAsProcess(argv: readonly string[] = process.argv): Promise<void> {
  // `taskgrid workers | head -1` closes the pipe early; that is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
  process.exitCode = await main(argv);
}

if (isEntryModule()) await runAsProcess();
