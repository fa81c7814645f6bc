/**
 * Finds and loads task type modules from a types directory (`worker_types/` by default).
 * Only names that pass the protocol's TaskTypeName rule are looked up, so a type name can
 * never reach outside the directory.
 */
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { TaskTypeName } from '../protocol/messages.ts';
import type { Handler } from './handler-api.ts';
import { importHandler } from './import-handler.ts';

export { importHandler } from './import-handler.ts';

/** File extensions a task type module may have, in the order they are looked for. */
export const HANDLER_EXTENSIONS = ['.ts', '.js', '.mjs'] as const;

/** A task type's handler together with where it came from. */
export interface LoadedHandler {
  readonly type: string;
  /** Absolute path of the module. */
  readonly file: string;
  readonly handle: Handler;
}

/**
 * Returns the absolute path of `<typesDir>/<typeName>.ts|.js|.mjs`.
 *
 * @throws ConfigError when the name is not a valid task type name, the directory does not
 *   exist, no module exists, or more than one does (a stale build next to its source is a
 *   classic way to run the wrong code, so it is refused rather than guessed at).
 */
export async function findHandlerFile(typesDir: string, typeName: string): Promise<string> {
  const valid = TaskTypeName.safeParse(typeName);
  if (!valid.success) {
    const why = valid.error.issues[0]?.message ?? 'invalid';
    throw new ConfigError(`${JSON.stringify(typeName)} is not a valid task type name: ${why}`);
  }
  const dir = resolve(typesDir);
  if (!(await isDirectory(dir))) {
    throw new ConfigError(`task types directory ${dir} does not exist (looking for task type "${typeName}")`);
  }
  const found: string[] = [];
  for (const ext of HANDLER_EXTENSIONS) {
    // "x.d" + ".ts" would be a declaration file, which has no code to run.
    if (ext === '.ts' && typeName.endsWith('.d')) continue;
    const file = join(dir, typeName + ext);
    if (await isFile(file)) found.push(file);
  }
  const [first, ...others] = found;
  if (first === undefined) {
    const tried = HANDLER_EXTENSIONS.map((ext) => typeName + ext).join(', ');
    throw new ConfigError(`no module for task type "${typeName}" in ${dir} (looked for ${tried})`);
  }
  if (others.length > 0) {
    throw new ConfigError(
      `task type "${typeName}" has more than one module in ${dir} (${found.join(', ')}); keep only one`,
    );
  }
  return first;
}

/**
 * Finds, imports and checks a task type module.
 *
 * @example
 * ```ts
 * const { handle } = await loadHandler('worker_types', 'reverse');
 * ```
 * @throws ConfigError (TG_ERR_CONFIG) naming the type and the directory or file when the
 *   module is missing, fails to load, or exports no `handle` function.
 */
export async function loadHandler(typesDir: string, typeName: string): Promise<LoadedHandler> {
  const file = await findHandlerFile(typesDir, typeName);
  return { type: typeName, file, handle: await importHandler(file, typeName) };
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
