/**
 * `taskgrid start`/`build` compile incrementally. bin/taskgrid.js runs the compiled CLI only
 * when its entry (dist/src/cli/main.js) is at least as new as every source, else the sources
 * through tsx: an incremental build that rewrites nothing must still leave the build current.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildGrid } from '../../src/local/grid.ts';
import { ROOT } from '../support/process.ts';

/** Newest modification time of the .ts files under a folder, as the launcher reads it. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newest(path));
    else if (entry.name.endsWith('.ts')) latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

test(
  'after a build the launcher runs the compiled CLI, even when the incremental compile rewrote nothing',
  { timeout: 120_000 },
  () => {
    const build = () =>
      buildGrid({
        root: ROOT,
        workersFile: join(ROOT, 'workers.json'),
        typesDir: join(ROOT, 'worker_types'),
        say: () => {},
      });
    build();
    // A source touched without a change (a checkout, an editor's save): the next incremental
    // compile has nothing to emit.
    const source = join(ROOT, 'src/errors.ts');
    const later = new Date(Date.now() + 1_000);
    utimesSync(source, later, later);
    build();
    const entry = statSync(join(ROOT, 'dist/src/cli/main.js')).mtimeMs;
    assert.ok(entry >= newest(join(ROOT, 'src')), 'dist/src/cli/main.js is at least as new as every source');
  },
);
