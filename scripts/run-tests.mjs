#!/usr/bin/env node
// Runs the test suite with node:test. Node 20 does not expand globs, so the files are listed
// here; a run that executes no test, or any failing test, exits non-zero.
//
// Usage: node scripts/run-tests.mjs [file-or-folder ...]   (default: every *.test.ts under test/)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

function collect(path, out) {
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path).sort()) collect(join(path, name), out);
  } else if (/\.test\.(ts|mjs|js)$/.test(path)) {
    out.push(path);
  }
  return out;
}

const roots = process.argv.slice(2);
const files = (roots.length ? roots : ['test']).flatMap((r) => collect(resolve(r), []));
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}

const tmp = mkdtempSync(join(tmpdir(), 'taskgrid-tests-'));
const tap = join(tmp, 'report.tap');
const run = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit' },
);

let passed = 0;
let failed = 0;
try {
  const text = readFileSync(tap, 'utf8');
  passed = Number(/^# pass (\d+)/m.exec(text)?.[1] ?? 0);
  failed =
    Number(/^# fail (\d+)/m.exec(text)?.[1] ?? 0) + Number(/^# cancelled (\d+)/m.exec(text)?.[1] ?? 0);
} catch {
  // no report: the runner itself failed, the exit status says so below
}
rmSync(tmp, { recursive: true, force: true });

console.log(`tests: ${passed} passed, ${failed} failed`);
if (run.status !== 0) process.exit(run.status ?? 1);
if (passed === 0) {
  console.error('run-tests: no test was executed');
  process.exit(1);
}
