/**
 * Imports one task type module and checks that it has a handler. Kept apart from loader.ts so
 * that handler threads can use it without loading the protocol schemas (zod costs each thread
 * about 150 ms of start-up).
 */
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.ts';
import type { Handler } from './handler-api.ts';

/**
 * Imports `file` and returns its `handle` function (or its default export's `handle`).
 *
 * @throws ConfigError (TG_ERR_CONFIG) when the module fails to load or has no handler; the
 *   message names the type, the file and what is missing.
 */
export async function importHandler(file: string, typeName: string): Promise<Handler> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`task type "${typeName}": ${file} failed to load: ${describeLoadError(err)}`, {
      cause: err,
    });
  }
  const handle = pickHandle(mod);
  if (handle) return handle;
  const names = Object.keys(mod);
  const found = names.length > 0 ? `its exports are: ${names.join(', ')}` : 'it has no exports';
  throw new ConfigError(
    `task type "${typeName}": ${file} does not export a handle(payload, ctx) function ` +
      `(neither as "handle" nor as "handle" of its default export; ${found})`,
  );
}

function pickHandle(mod: Record<string, unknown>): Handler | undefined {
  if (typeof mod.handle === 'function') return mod.handle as Handler;
  const fallback: unknown = mod.default;
  if (typeof fallback === 'object' && fallback !== null) {
    const handle: unknown = (fallback as Record<string, unknown>).handle;
    if (typeof handle === 'function') return handle.bind(fallback) as Handler;
  }
  return undefined;
}

function describeLoadError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if ((err as NodeJS.ErrnoException).code === 'ERR_UNKNOWN_FILE_EXTENSION') {
    // The usual cause: a .ts module imported by plain node, outside a handler thread (which
    // registers tsx) and outside `node --import tsx`.
    return `${err.message} (TypeScript modules need tsx registered in the importing thread)`;
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (
    code === 'ERR_REQUIRE_CYCLE_MODULE' ||
    code === 'ERR_REQUIRE_ESM' ||
    code === 'ERR_REQUIRE_ASYNC_MODULE'
  ) {
    // A module outside a package of "type": "module" (a TASKGRID_TYPES_DIR elsewhere than this
    // project) is taken for CommonJS, and its ES syntax then fails with Node's own wording.
    return (
      `${err.message} (the module is loaded as CommonJS because no package.json with {"type": "module"} ` +
      `is in its folder or above: add one, or name the module .mjs)`
    );
  }
  return err.message;
}
