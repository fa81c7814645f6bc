/**
 * Task files: bulk JSON Lines (one task spec per line) and TaskGrid+ simulation lists
 * (`[["reverse", "Hello"], ...]`). Pure: text in, tasks and problems out, so that a bad line is
 * reported with its number before anything is sent.
 */
import { TaskSpec as TaskSpecSchema, TaskTypeName, type TaskSpec } from '../protocol/messages.ts';

/** A line (or entry) that is not a valid task, and why. */
export interface BadLine {
  /** 1-based line number (entry number in a simulation file). */
  line: number;
  message: string;
}

export interface ParsedTaskLines {
  tasks: { line: number; spec: TaskSpec }[];
  bad: BadLine[];
}

function issues(err: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): string {
  return err.issues
    .slice(0, 3)
    .map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}

/**
 * Parses JSON Lines of task specs: `{"type", "payload"}` with optional `key`, `priority`,
 * `timeoutMs` and `maxAttempts`; unknown fields are mistakes (a misspelt option would
 * otherwise be silently ignored). Blank lines are skipped.
 *
 * @example parseTaskLines('{"type":"reverse","payload":"Hello"}\n{"type":""}\n')
 * // { tasks: [{ line: 1, spec: { type: 'reverse', payload: 'Hello' } }], bad: [{ line: 2, message: ... }] }
 */
export function parseTaskLines(text: string): ParsedTaskLines {
  const out: ParsedTaskLines = { tasks: [], bad: [] };
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '') return;
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      out.bad.push({ line, message: `not JSON (${err instanceof Error ? err.message : String(err)})` });
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      out.bad.push({ line, message: 'expected a JSON object {"type": ..., "payload": ...}' });
      return;
    }
    const parsed = TaskSpecSchema.safeParse(value);
    if (parsed.success) out.tasks.push({ line, spec: parsed.data });
    else out.bad.push({ line, message: issues(parsed.error) });
  });
  return out;
}

/** One task of a simulation file. */
export interface SimulationTask {
  /** 1-based position in the file's list. */
  index: number;
  type: string;
  payload: string;
}

/**
 * Parses a TaskGrid+ simulation file: a JSON list of `[type, payload]` pairs (objects
 * `{"type", "payload"}` are accepted too). A payload that is not a string is sent as its JSON
 * text (`["sum", [1, 2, 3]]` sends "[1,2,3]"), as TaskGrid+ clients did.
 *
 * @returns the tasks, and the entries that are not tasks (with `line` = entry number).
 */
export function parseSimulationFile(text: string): { tasks: SimulationTask[]; bad: BadLine[] } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // The parser quotes the text it choked on, line breaks included: keep the message one line.
    const why = (err instanceof Error ? err.message : String(err)).replace(/\r?\n/g, '\\n');
    return { tasks: [], bad: [{ line: 0, message: `not JSON (${why})` }] };
  }
  if (!Array.isArray(value)) {
    return { tasks: [], bad: [{ line: 0, message: 'expected a JSON list of [type, payload] pairs' }] };
  }
  const tasks: SimulationTask[] = [];
  const bad: BadLine[] = [];
  value.forEach((entry: unknown, i) => {
    const index = i + 1;
    let type: unknown;
    let payload: unknown;
    if (Array.isArray(entry) && entry.length === 2) {
      const pair: readonly unknown[] = entry;
      [type, payload] = pair;
    } else if (typeof entry === 'object' && entry !== null && 'type' in entry && 'payload' in entry) {
      ({ type, payload } = entry);
    } else {
      bad.push({ line: index, message: 'expected a [type, payload] pair' });
      return;
    }
    const name = TaskTypeName.safeParse(type);
    if (!name.success) {
      bad.push({ line: index, message: `type ${JSON.stringify(type)}: ${issues(name.error)}` });
      return;
    }
    if (payload === undefined) {
      bad.push({ line: index, message: 'the payload is missing' });
      return;
    }
    tasks.push({
      index,
      type: name.data,
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  });
  return { tasks, bad };
}
