/**
 * The package's entry point: `import { TaskGridClient } from 'taskgrid'`, as the README shows,
 * resolves through package.json's main and types to src/index.ts (compiled to dist/), and
 * brings the client and its errors.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../support/process.ts';

test("package.json's main and types name the compiled src/index.ts, which exports the client and its errors", async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { main: string; types: string };
  // tsconfig.build.json compiles src/ to dist/src/ (rootDir is the project).
  const source = (built: string) => built.replace(/^dist\//, '').replace(/\.(d\.ts|js)$/, '.ts');
  assert.equal(source(pkg.main), 'src/index.ts');
  assert.equal(source(pkg.types), 'src/index.ts');
  assert.ok(existsSync(join(ROOT, 'src/index.ts')));
  const api = (await import('../../src/index.ts')) as Record<string, unknown>;
  for (const name of [
    'TaskGridClient',
    'TaskGridError',
    'ErrorCode',
    'TaskFailedError',
    'PermanentTaskError',
  ])
    assert.ok(api[name] !== undefined, `exports ${name}`);
  assert.equal(typeof (api.TaskGridClient as { connect?: unknown }).connect, 'function');
});
