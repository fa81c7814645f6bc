/**
 * Finding and loading task type modules, and refusing what is not one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, ErrorCode } from '../../src/errors.ts';
import { findHandlerFile, loadHandler } from '../../src/worker/loader.ts';
import type { HandlerContext } from '../../src/worker/handler-api.ts';

const fixtures = fileURLToPath(new URL('../fixtures/handlers/', import.meta.url));
const builtins = fileURLToPath(new URL('../../worker_types/', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

const ctx: HandlerContext = {
  signal: new AbortController().signal,
  progress: () => {},
  taskId: 1,
  attempt: 1,
  type: 'test',
};

function configError(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.CONFIG);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('loadHandler', () => {
  let scratch = '';
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'taskgrid-loader-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test('loads a built-in TypeScript task type and its handle runs', async () => {
    const loaded = await loadHandler(builtins, 'reverse');
    assert.equal(loaded.type, 'reverse');
    assert.equal(loaded.file, join(builtins, 'reverse.ts'));
    assert.equal(await loaded.handle('abc', ctx), 'cba');
  });

  test('accepts a default export object with a handle method', async () => {
    const { handle } = await loadHandler(fixtures, 'default-export');
    assert.equal(await handle('x', ctx), 'default:x');
  });

  test('loads a .mjs module', async () => {
    await writeFile(join(scratch, 'shout.mjs'), 'export const handle = (p) => p + "!";\n');
    const { handle, file } = await loadHandler(scratch, 'shout');
    assert.equal(file, join(scratch, 'shout.mjs'));
    assert.equal(await handle('hey', ctx), 'hey!');
  });

  test('refuses a module without handle, naming the file and its exports', async () => {
    await assert.rejects(
      loadHandler(fixtures, 'not-a-handler'),
      configError(
        /^task type "not-a-handler": .*not-a-handler\.ts does not export a handle\(payload, ctx\) function .*its exports are: handler, version\)$/,
      ),
    );
  });

  test('refuses a missing module, naming the type and the directory searched', async () => {
    await assert.rejects(
      loadHandler(fixtures, 'nope'),
      configError(
        new RegExp(
          `^no module for task type "nope" in ${escape(fixtures.replace(/\/$/, ''))} \\(looked for nope\\.ts, nope\\.js, nope\\.mjs\\)$`,
        ),
      ),
    );
  });

  test('refuses a missing directory', async () => {
    await assert.rejects(
      loadHandler(join(scratch, 'missing'), 'reverse'),
      configError(/^task types directory .*missing does not exist \(looking for task type "reverse"\)$/),
    );
  });

  test('reports a module that throws while loading', async () => {
    await assert.rejects(
      loadHandler(fixtures, 'broken'),
      configError(/^task type "broken": .*broken\.ts failed to load: broken fixture: top-level failure$/),
    );
  });

  test('a TypeScript module in a folder without package.json "type": "module" is refused with what to do', async () => {
    // tsx loads such a .ts file as CommonJS; Node 20.19+ then says only "Cannot require() ES
    // Module ... in a cycle". Run as the worker runs (plain node with tsx registered), not in
    // this test process, which loads it fine.
    const dir = join(scratch, 'nopkg');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'shout.ts'), "export function handle(p: string): string { return p + '!'; }\n");
    const script = `import { register } from 'tsx/esm/api';
register();
const { importHandler } = await import(${JSON.stringify(join(root, 'src/worker/import-handler.ts'))});
try { await importHandler(${JSON.stringify(join(dir, 'shout.ts'))}, 'shout'); console.log('loaded'); }
catch (err) { console.log(err.message); }`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
    });
    if (out.trim() === 'loaded') return; // a Node that loads it (no require(esm)): nothing to explain
    assert.match(out, /task type "shout": .*shout\.ts failed to load: /);
    assert.match(out, /package\.json with \{"type": "module"\}/);
  });

  test('refuses type names that could leave the directory', async () => {
    for (const name of ['../worker_types/reverse', '/etc/passwd', '.hidden', '', 'a/b', 'a\\b']) {
      await assert.rejects(loadHandler(fixtures, name), configError(/is not a valid task type name/), name);
    }
  });

  test('refuses a type with two modules rather than guess which one is current', async () => {
    await writeFile(join(scratch, 'twice.js'), 'export const handle = () => "js";\n');
    await writeFile(join(scratch, 'twice.mjs'), 'export const handle = () => "mjs";\n');
    await assert.rejects(
      findHandlerFile(scratch, 'twice'),
      configError(/^task type "twice" has more than one module in .*; keep only one$/),
    );
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
