/**
 * workers.json: the task types of a grid, one entry per type, each backed by a module in
 * worker_types/. Validation reports every problem of the file at once, each naming the entry
 * (by position and name) and the field, so a typo is found on the first run rather than the fifth.
 *
 * Two shapes are read: an array of entries (TaskGrid's) and `{"workers": [...]}` (TaskGrid+'s).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { TaskTypeName } from '../protocol/messages.ts';
import { BOUNDS, DEFAULTS } from './env.ts';
import { checkJson } from './json-check.ts';

/** One task type as workers.json describes it, with defaults filled in. */
export interface WorkerTypeEntry {
  /** The task type name; its handler is `worker_types/<name>.ts` (or .js, .mjs). */
  readonly name: string;
  /** Inactive types stay listed but get no workers, locally or in Compose. */
  readonly active: boolean;
  readonly description: string;
  /** Worker instances (processes, or Compose replicas) that serve the type. */
  readonly replicas: number;
  /** Tasks of the type one worker instance runs at once. */
  readonly concurrency: number;
  /** Per-attempt timeout; undefined = the dispatcher's default. */
  readonly timeoutMs: number | undefined;
  /** Most attempts per task; undefined = the dispatcher's default. */
  readonly maxAttempts: number | undefined;
  /**
   * Run the handler on the worker's main thread rather than in a handler thread: faster for
   * small tasks, unprotected from a handler that blocks, crashes or exits. Default false.
   */
  readonly inline: boolean;
}

/** File extensions of a task type module, in the order they are looked for. */
export const TYPE_MODULE_EXTENSIONS = ['.ts', '.js', '.mjs'] as const;

const intIn = (b: { readonly min: number; readonly max: number }) => z.number().int().min(b.min).max(b.max);
const MAX_DESCRIPTION = 1000;

/** Each field: its schema and, for messages, what it expects. Insertion order is the documented order. */
const FIELDS = {
  name: {
    required: true,
    schema: TaskTypeName,
    expected: 'a string of 1-64 letters, digits, "_", "-" or ".", starting with a letter or digit',
  },
  active: { required: true, schema: z.boolean(), expected: 'true or false' },
  description: {
    required: true,
    schema: z.string().max(MAX_DESCRIPTION),
    expected: `a string of at most ${MAX_DESCRIPTION} characters`,
  },
  replicas: {
    required: false,
    schema: intIn(BOUNDS.replicas),
    expected: `an integer ${BOUNDS.replicas.min}-${BOUNDS.replicas.max}`,
  },
  concurrency: {
    required: false,
    schema: intIn(BOUNDS.concurrency),
    expected: `an integer ${BOUNDS.concurrency.min}-${BOUNDS.concurrency.max}`,
  },
  timeoutMs: {
    required: false,
    schema: intIn(BOUNDS.taskTimeoutMs),
    expected: `an integer number of milliseconds ${BOUNDS.taskTimeoutMs.min}-${BOUNDS.taskTimeoutMs.max}`,
  },
  maxAttempts: {
    required: false,
    schema: intIn(BOUNDS.maxAttempts),
    expected: `an integer ${BOUNDS.maxAttempts.min}-${BOUNDS.maxAttempts.max}`,
  },
  inline: { required: false, schema: z.boolean(), expected: 'true or false' },
} as const;

type FieldName = keyof typeof FIELDS;
const FIELD_NAMES = Object.keys(FIELDS) as FieldName[];

/** Options of {@link parseWorkers}. */
export interface ParseWorkersOptions {
  /** Name of the file in messages; default "workers.json". */
  readonly source?: string;
  /**
   * Whether a type has a module; omit to skip the check (the text alone is being validated).
   * {@link loadWorkersFile} looks in its `typesDir`.
   */
  readonly moduleExists?: (name: string) => boolean;
  /** The types folder as messages name it; default "worker_types/". */
  readonly typesDirLabel?: string;
}

/** Options of {@link loadWorkersFile}. */
export interface LoadWorkersOptions {
  /** Folder of the task type modules (worker_types/). */
  readonly typesDir: string;
  /** Name of the file in messages; default the file's base name. */
  readonly source?: string;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : type === 'undefined' ? 'nothing' : `a ${type}`;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** Edit distance, to suggest the field a typo meant. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function unknownFieldHint(field: string): string {
  const close = FIELD_NAMES.map((known) => ({ known, d: distance(field, known) }))
    .filter(({ d }) => d <= 2)
    .sort((x, y) => x.d - y.d)[0];
  return close !== undefined ? `did you mean "${close.known}"?` : `known fields: ${FIELD_NAMES.join(', ')}`;
}

/**
 * Validates the text of a workers.json file and returns its entries with defaults filled in.
 * Pure unless `moduleExists` does I/O.
 *
 * @throws ConfigError listing every problem, one per line, e.g.
 *   `workers.json: entry 3 ("sum"): duplicate name, also entry 1`.
 */
export function parseWorkers(text: string, options: ParseWorkersOptions = {}): readonly WorkerTypeEntry[] {
  const source = options.source ?? 'workers.json';
  const typesDir = options.typesDirLabel ?? 'worker_types/';
  const problems: string[] = [];
  const report = (): never => {
    if (problems.length === 1) throw new ConfigError(problems[0] ?? '');
    throw new ConfigError(
      // The heading names the file once; each problem, one line under it, without it again.
      `${source}: ${problems.length} problems:\n${problems
        .map((p) => `  - ${p.startsWith(`${source}: `) ? p.slice(source.length + 2) : p}`)
        .join('\n')}`,
    );
  };

  // Editors on Windows may save a byte-order mark; it is no part of the content.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const checked = checkJson(text);
  if (checked.syntaxError !== undefined) {
    const { line, column, message } = checked.syntaxError;
    throw new ConfigError(`${source}: not valid JSON at line ${line}, column ${column}: ${message}`);
  }
  for (const { line, column, message } of checked.duplicateKeys) {
    problems.push(`${source}: line ${line}, column ${column}: ${message}`);
  }

  const document: unknown = JSON.parse(text);
  let list: unknown;
  if (Array.isArray(document)) {
    list = document;
  } else if (typeof document === 'object' && document !== null) {
    for (const key of Object.keys(document)) {
      if (key !== 'workers')
        problems.push(`${source}: unknown top-level field ${show(key)} (expected only "workers")`);
    }
    list = (document as { workers?: unknown }).workers;
    if (!Array.isArray(list)) {
      problems.push(`${source}: "workers" is ${describeType(list)} (expected an array of task types)`);
      report();
    }
  } else {
    problems.push(
      `${source}: is ${describeType(document)} (expected an array of task types, or {"workers": [...]})`,
    );
    report();
  }
  const items = list as readonly unknown[];
  if (items.length === 0) problems.push(`${source}: lists no task types (expected at least one entry)`);

  const entries: WorkerTypeEntry[] = [];
  const byName = new Map<string, { index: number; name: string }>();
  for (const [index, item] of items.entries()) {
    const number = index + 1;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      problems.push(
        `${source}: entry ${number}: is ${describeType(item)} (expected an object like {"name": "sum", "active": true, "description": "..."})`,
      );
      continue;
    }
    const record = item as Record<string, unknown>;
    const where =
      typeof record.name === 'string'
        ? `${source}: entry ${number} (${show(record.name)})`
        : `${source}: entry ${number}`;
    const before = problems.length;

    for (const key of Object.keys(record)) {
      if (!(key in FIELDS)) problems.push(`${where}: unknown field ${show(key)} (${unknownFieldHint(key)})`);
    }
    const values: Partial<Record<FieldName, unknown>> = {};
    for (const field of FIELD_NAMES) {
      const spec = FIELDS[field];
      if (!(field in record) || record[field] === undefined) {
        if (spec.required) problems.push(`${where}: missing field "${field}" (expected ${spec.expected})`);
        continue;
      }
      const value = record[field];
      const result = spec.schema.safeParse(value);
      if (result.success) values[field] = result.data;
      else problems.push(`${where}: ${field} ${show(value)} is not valid (expected ${spec.expected})`);
    }

    const name = values.name as string | undefined;
    if (name !== undefined) {
      // Case-insensitive: Sum.ts and sum.ts are one file on macOS and Windows, and one DNS name in Compose.
      const key = name.toLowerCase();
      const first = byName.get(key);
      if (first !== undefined) {
        const also = first.name === name ? '' : ` (${show(first.name)}; names may not differ only in case)`;
        problems.push(`${where}: duplicate name, also entry ${first.index + 1}${also}`);
      } else {
        byName.set(key, { index, name });
        if (options.moduleExists !== undefined && !options.moduleExists(name)) {
          const files = TYPE_MODULE_EXTENSIONS.map((ext) => `${name}${ext}`);
          problems.push(
            `${where}: no module for it in ${typesDir} (expected ${files.slice(0, -1).join(', ')} or ${files.at(-1) ?? ''})`,
          );
        }
      }
    }
    if (problems.length > before || name === undefined) continue;
    entries.push({
      name,
      active: values.active as boolean,
      description: values.description as string,
      replicas: (values.replicas as number | undefined) ?? DEFAULTS.replicas,
      concurrency: (values.concurrency as number | undefined) ?? DEFAULTS.concurrency,
      timeoutMs: values.timeoutMs as number | undefined,
      maxAttempts: values.maxAttempts as number | undefined,
      inline: (values.inline as boolean | undefined) ?? false,
    });
  }

  if (problems.length > 0) report();
  return entries;
}

/**
 * The module file of a task type in `typesDir`: the first of `<name>.ts`, `.js`, `.mjs` that
 * exists, or undefined.
 */
export function findTypeModule(typesDir: string, name: string): string | undefined {
  for (const extension of TYPE_MODULE_EXTENSIONS) {
    const path = join(typesDir, `${name}${extension}`);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/**
 * Reads and validates a workers.json file: its JSON, its entries, and that each type has a
 * module in `typesDir`.
 *
 * @example const entries = loadWorkersFile(join(root, 'workers.json'), { typesDir: join(root, 'worker_types') });
 * @throws ConfigError listing every problem (see {@link parseWorkers}), or naming the file if it cannot be read.
 */
export function loadWorkersFile(path: string, options: LoadWorkersOptions): readonly WorkerTypeEntry[] {
  const source = options.source ?? basename(path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = error instanceof Error && 'code' in error ? String(error.code) : String(error);
    throw new ConfigError(`${source}: cannot read ${path} (${reason})`, { cause: error });
  }
  return parseWorkers(text, {
    source,
    typesDirLabel: `${basename(options.typesDir)}/`,
    moduleExists: (name) => findTypeModule(options.typesDir, name) !== undefined,
  });
}

/** The entries whose type is active: those that get workers. */
export function activeTypes(entries: readonly WorkerTypeEntry[]): readonly WorkerTypeEntry[] {
  return entries.filter((entry) => entry.active);
}
