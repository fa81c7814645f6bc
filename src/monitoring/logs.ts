/**
 * `GET /api/logs`: the tail of a component's log file in local mode, where `taskgrid start`
 * writes each component's output to TASKGRID_HOME/logs/<component>.log. This is the one place
 * monitoring reads files of other components, and only there: the component name is checked
 * against the file-name rule of statePaths (no separators, no leading dot), the file must be a
 * regular file directly inside the logs folder (no symbolic links), and only its last bytes are read.
 */
import { lstat, open, readdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { statePaths } from '../config/env.ts';
import { ErrorCode, TaskGridError } from '../errors.ts';

/** What {@link tailLog} returns. */
export interface LogTail {
  lines: string[];
  /** Older lines exist than those returned. */
  truncated: boolean;
}

/** Components that have a log file in `home`'s logs folder, sorted; empty when there is none (not local mode). */
export async function listLogComponents(home: string): Promise<string[]> {
  const dir = statePaths(home).logs;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names) {
    if (!name.endsWith('.log')) continue;
    const component = name.slice(0, -4);
    try {
      statePaths(home).logFile(component); // the same rule as for reading
      if ((await lstat(resolve(dir, name))).isFile()) out.push(component);
    } catch {
      // a name the API could not ask for: not listed
    }
  }
  return out.sort();
}

/**
 * The last `maxLines` lines of `component`'s log, from its last `maxBytes` bytes.
 *
 * @throws TaskGridError TG_ERR_BAD_REQUEST for a name that cannot be a component's log;
 *   TG_ERR_NOT_FOUND when it has no log file.
 */
export async function tailLog(
  home: string,
  component: string,
  maxLines: number,
  maxBytes: number,
): Promise<LogTail> {
  const paths = statePaths(home);
  let file: string;
  try {
    file = paths.logFile(component);
  } catch (err) {
    throw new TaskGridError(ErrorCode.BAD_REQUEST, err instanceof Error ? err.message : String(err));
  }
  // Defence in depth: the name rule already keeps the path inside the logs folder.
  if (dirname(resolve(file)) !== resolve(paths.logs)) {
    throw new TaskGridError(
      ErrorCode.BAD_REQUEST,
      `component ${JSON.stringify(component)} names no log file`,
    );
  }
  const notFound = new TaskGridError(
    ErrorCode.NOT_FOUND,
    `no log file for component "${component}" (logs are kept in local mode, by taskgrid start)`,
  );
  try {
    const st = await lstat(file);
    if (!st.isFile()) throw notFound;
  } catch (err) {
    if (err instanceof TaskGridError) throw err;
    throw notFound;
  }
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    let text = buffer.subarray(0, bytesRead).toString('utf8');
    let truncated = start > 0;
    // The first line read from the middle of the file is partial: drop it.
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (lines.length > maxLines) {
      truncated = true;
      lines.splice(0, lines.length - maxLines);
    }
    return { lines, truncated };
  } finally {
    await handle.close();
  }
}
