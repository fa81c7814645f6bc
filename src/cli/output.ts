/**
 * What the CLI writes and how it ends: data on stdout (text, or JSON with `--json`), progress
 * and problems on stderr, errors as one line naming their stable code, and the exit codes.
 */
import cliProgress from 'cli-progress';
import { ErrorCode, TaskGridError } from '../errors.ts';

/**
 * Exit codes of `taskgrid`. Scripts branch on them; the stderr line names the exact error code.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success |
 * | 1 | a task failed or was cancelled (TG_ERR_TASK_FAILED, TG_ERR_CANCELLED) |
 * | 2 | bad arguments, flags, configuration or input file (TG_ERR_BAD_ARGUMENT, TG_ERR_CONFIG; TG_ERR_TOO_LARGE for a task too large to send) |
 * | 3 | the grid is unreachable, or a wait timed out (TG_ERR_UNREACHABLE, TG_ERR_TIMEOUT) |
 * | 4 | no worker type of that name (TG_ERR_UNKNOWN_TYPE) |
 * | 5 | no task with that id (TG_ERR_NOT_FOUND) |
 * | 6 | the dispatcher's queue stayed full (TG_ERR_BUSY) |
 * | 7 | any other error reported by the grid (TG_ERR_STORE, TG_ERR_INTERNAL; TG_ERR_CONFLICT, e.g. cancelling a task that succeeded) |
 * | 8 | `result` without `--wait`: the task has not ended yet |
 */
export const ExitCode = {
  OK: 0,
  TASK_FAILED: 1,
  BAD_ARGUMENT: 2,
  UNREACHABLE: 3,
  UNKNOWN_TYPE: 4,
  NOT_FOUND: 5,
  BUSY: 6,
  GRID_ERROR: 7,
  NOT_FINISHED: 8,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit-code table for `--help`. */
export const EXIT_CODE_HELP = `Exit codes:
  0  success
  1  a task failed or was cancelled
  2  bad arguments, flags, configuration or input
  3  grid unreachable, or timed out waiting
  4  unknown task type
  5  no such task
  6  the dispatcher's queue stayed full (busy)
  7  other grid error (store, internal, ...)
  8  result without --wait: the task has not ended yet`;

const EXIT_BY_CODE: Partial<Record<string, ExitCode>> = {
  [ErrorCode.TASK_FAILED]: ExitCode.TASK_FAILED,
  [ErrorCode.CANCELLED]: ExitCode.TASK_FAILED,
  [ErrorCode.BAD_ARGUMENT]: ExitCode.BAD_ARGUMENT,
  [ErrorCode.CONFIG]: ExitCode.BAD_ARGUMENT,
  [ErrorCode.UNREACHABLE]: ExitCode.UNREACHABLE,
  [ErrorCode.TIMEOUT]: ExitCode.UNREACHABLE,
  [ErrorCode.UNKNOWN_TYPE]: ExitCode.UNKNOWN_TYPE,
  [ErrorCode.NOT_FOUND]: ExitCode.NOT_FOUND,
  [ErrorCode.BUSY]: ExitCode.BUSY,
};

/**
 * Codes whose exit code differs when they answer a request that carried the user's own input
 * (a task's payload): then the input is at fault, not the grid. TG_ERR_TOO_LARGE in a reply
 * (a result too large to send) stays a grid error.
 */
const EXIT_BY_INPUT_CODE: Partial<Record<string, ExitCode>> = {
  [ErrorCode.TOO_LARGE]: ExitCode.BAD_ARGUMENT,
};

/**
 * An error answering a request that carried the user's input (submitting their tasks), with
 * the code and message of the error it stands for; only its exit code may differ (see
 * {@link exitCodeFor}).
 */
export class InputRequestError extends TaskGridError {
  override name = 'InputRequestError';
}

/**
 * The exit code for an error code (7 for any code without one of its own); `input` when the
 * error answered a request carrying the user's input.
 */
export function exitCodeFor(code: string, origin: 'grid' | 'input' = 'grid'): ExitCode {
  return (
    (origin === 'input' ? EXIT_BY_INPUT_CODE[code] : undefined) ?? EXIT_BY_CODE[code] ?? ExitCode.GRID_ERROR
  );
}

/** The exit code for a thrown error. */
export function exitCodeOf(err: unknown): ExitCode {
  return exitCodeFor(describeError(err).code, err instanceof InputRequestError ? 'input' : 'grid');
}

/** A stream the CLI writes to. */
export interface CliStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** The process around the CLI, injected so that tests and embedders can run it in-process. */
export interface CliIo {
  stdout: CliStream;
  stderr: CliStream;
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory: relative paths (task files) are resolved against it. */
  cwd: string;
  /** All of standard input (for `--file -`). */
  readStdin(): Promise<string>;
}

/** The real process's streams, environment and working directory. */
export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

/** An error as the CLI reports it: its code and a message on one line. */
export function describeError(err: unknown): { code: string; message: string } {
  const code = err instanceof TaskGridError ? err.code : ErrorCode.INTERNAL;
  const raw = err instanceof Error ? err.message : String(err);
  // Configuration errors list problems on several lines, under a heading that ends in ":"; the
  // CLI promises one line: `heading: item; item`.
  let message = '';
  for (const line of raw.split('\n')) {
    const item = line.trim().replace(/^- /, '');
    if (item.length === 0) continue;
    message += message === '' ? item : `${message.endsWith(':') ? ' ' : '; '}${item}`;
  }
  return { code, message };
}

/** Writes the CLI's output in text or JSON form. */
export class Output {
  readonly io: CliIo;
  readonly json: boolean;

  constructor(io: CliIo, json: boolean) {
    this.io = io;
    this.json = json;
  }

  /** A line of data on stdout. */
  line(text: string): void {
    this.io.stdout.write(`${text}\n`);
  }

  /** A JSON document on stdout, on one line (so that line-oriented tools can split a stream of them). */
  data(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A remark for the human on stderr (progress, skipped input); never data. */
  note(text: string): void {
    this.io.stderr.write(`taskgrid: ${text}\n`);
  }

  /**
   * The error line on stderr and, with `--json`, the error as JSON on stdout (unless `data` is
   * false: the command already printed its JSON, which says what went wrong). Returns the
   * error's exit code.
   */
  error(err: unknown, options: { data?: boolean } = {}): ExitCode {
    const { code, message } = describeError(err);
    if (this.json && options.data !== false) this.data({ error: { code, message } });
    this.io.stderr.write(`taskgrid: ${code}: ${message}\n`);
    return exitCodeOf(err);
  }

  /** Rows aligned in columns under a header. */
  table(headers: readonly string[], rows: readonly (readonly string[])[]): void {
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const fmt = (cells: readonly string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd();
    this.line(fmt(headers));
    for (const r of rows) this.line(fmt(r));
  }
}

/** Progress of a long operation: a bar on a terminal, otherwise a plain line now and then. */
export interface Progress {
  update(value: number, total?: number): void;
  stop(): void;
}

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** Plain-line mode: at most one line per this many ms. */
  plainEveryMs?: number;
  now?: () => number;
}

const PLAIN_PROGRESS_EVERY_MS = 2_000;

/**
 * A progress display on stderr for `label` (e.g. "submitted"): cli-progress's bar when stderr
 * is a terminal, else a line such as `taskgrid: submitted 5000/20000` at most every 2 s (and
 * the final count at the end if any line was printed and the last was not that one), so that
 * logs of CI jobs stay readable.
 */
export function createProgress(
  io: CliIo,
  label: string,
  total: number,
  options: ProgressOptions = {},
): Progress {
  if (io.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: io.stderr as NodeJS.WritableStream,
        format: `${label.padEnd(9)} [{bar}] {percentage}% | {value}/{total} | {duration_formatted}`,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return {
      update: (value, newTotal) => {
        if (newTotal !== undefined) bar.setTotal(newTotal);
        bar.update(value);
      },
      stop: () => bar.stop(),
    };
  }
  const every = options.plainEveryMs ?? PLAIN_PROGRESS_EVERY_MS;
  const now = options.now ?? Date.now;
  let last = now();
  let current = 0;
  let max = total;
  let stopped = false;
  let printed: string | undefined;
  const line = () => `taskgrid: ${label} ${current}/${max}\n`;
  const print = () => {
    printed = line();
    io.stderr.write(printed);
  };
  return {
    update: (value, newTotal) => {
      current = value;
      if (newTotal !== undefined) max = newTotal;
      if (now() - last >= every) {
        last = now();
        print();
      }
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      // A job short enough to print nothing on the way stays silent at the end too, and the
      // final line is not repeated when the last update printed it already.
      if (printed !== undefined && printed !== line()) print();
    },
  };
}

/** `512 B`, `3.4 KiB`, `12.0 MiB`: a size for humans. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** `1.2 s`, `3m12s`, `2h05m`: a duration for humans. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.floor(s / 60);
  if (m < 1440) return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(m / 1440)}d${String(Math.floor(m / 60) % 24).padStart(2, '0')}h`;
}
