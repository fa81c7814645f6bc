// What an application that installs TaskGrid from npm (`npm install taskgrid`) gets: the packed
// files must hold everything the components read at run time, nothing of the development
// checkout, and `taskgrid start` run from node_modules/taskgrid must not try to compile it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildGrid } from '../../src/local/grid.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The paths `npm pack` would put in the tarball (without running the prepack build). */
function packedFiles(): Set<string> {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
  return new Set(pack.files.map((f) => f.path));
}

test('the package builds before it is packed, so that the tarball always holds a current dist/', () => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
    main: string;
  };
  assert.match(manifest.scripts.prepack ?? '', /npm run build/);
  assert.match(manifest.main, /^dist\//);
});

test('the tarball holds what the components read at run time and nothing of the checkout', () => {
  const files = packedFiles();
  // The monitoring service serves its dashboard from the sources' folder (dist/ has no copy).
  for (const asset of ['index.html', 'app.js', 'style.css', 'favicon.svg']) {
    assert.ok(files.has(`src/monitoring/dashboard/${asset}`), `src/monitoring/dashboard/${asset} is packed`);
  }
  // The shipped task types are TypeScript modules run through tsx: whatever they import
  // relatively must be packed too.
  const types = [...files].filter((f) => /^worker_types\/[^/]+\.ts$/.test(f));
  assert.ok(types.length >= 5, `the built-in task types are packed (${types.join(', ')})`);
  for (const type of types) {
    const text = readFileSync(join(ROOT, type), 'utf8');
    for (const [, spec] of text.matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
      const target = posix.normalize(posix.join(posix.dirname(type), spec!));
      assert.ok(files.has(target), `${type} imports ${spec}, which is not packed`);
    }
  }
  for (const f of files) {
    assert.doesNotMatch(
      f,
      /^(test|bench|scripts|examples|\.taskgrid|\.ci|node_modules)\//,
      `${f} is not packed`,
    );
    assert.doesNotMatch(
      f,
      /(^|\/)\.env|\.db$|\.log$|\.tgz$|\.tsbuildinfo$|docker-compose\.generated\.yml$/,
      `${f} is not packed`,
    );
  }
});

test('building the grid of an installed package does not try to compile it, even with TypeScript at hand', (t) => {
  // node_modules/taskgrid of an application that has TypeScript among its own dependencies:
  // the package's root has no tsconfig.build.json, but `typescript` resolves from it.
  const app = mkdtempSync(join(tmpdir(), 'taskgrid-installed-'));
  t.after(() => rmSync(app, { recursive: true, force: true }));
  const pkg = join(app, 'node_modules', 'taskgrid');
  mkdirSync(pkg, { recursive: true });
  symlinkSync(join(ROOT, 'node_modules', 'typescript'), join(app, 'node_modules', 'typescript'), 'dir');
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'workers.json'), join(pkg, 'workers.json'));
  cpSync(join(ROOT, 'worker_types'), join(pkg, 'worker_types'), { recursive: true });
  const said: string[] = [];
  const entries = buildGrid({
    root: pkg,
    workersFile: join(pkg, 'workers.json'),
    typesDir: join(pkg, 'worker_types'),
    say: (line) => said.push(line),
  });
  assert.ok(entries.length >= 5);
  assert.ok(!said.some((l) => l.includes('compiling')), said.join('\n'));
});
