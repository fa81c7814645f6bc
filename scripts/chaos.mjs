#!/usr/bin/env node
// `npm run test:chaos`: runs every chaos scenario (test/chaos/*.test.ts) at full scale, then
// sums their reports into one line a script can read:
//
//   chaos: submitted=N acknowledged=N completed=N lost=0 wrong=0 duplicated=0
//
// with a table of the scenarios above it. Exits non-zero if any test failed, any scenario
// reported a lost, wrong or duplicated task, or no scenario wrote a report.
//
// Usage: node scripts/chaos.mjs [scenario files ...]   (default: every test/chaos/*.test.ts)
// Reports go to a fresh temporary folder, removed afterwards; set TASKGRID_CHAOS_REPORT_DIR to
// an empty (or missing) folder to keep them there.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const files = process.argv.slice(2).length
  ? process.argv.slice(2).map((f) => resolve(f))
  : readdirSync(join(ROOT, 'test/chaos'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => join(ROOT, 'test/chaos', f));
if (files.length === 0) {
  console.error('chaos: no scenario files found in test/chaos');
  process.exit(1);
}

const kept = process.env.TASKGRID_CHAOS_REPORT_DIR;
let dir;
if (kept) {
  dir = resolve(kept);
  if (existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.json'))) {
    console.error(
      `chaos: ${dir} already holds reports; give an empty folder so that old reports are not summed`,
    );
    process.exit(2);
  }
  mkdirSync(dir, { recursive: true });
} else {
  dir = mkdtempSync(join(tmpdir(), 'taskgrid-chaos-reports-'));
}

const run = spawnSync(process.execPath, [join(ROOT, 'scripts/run-tests.mjs'), ...files], {
  cwd: ROOT,
  stdio: 'inherit',
  env: { ...process.env, TASKGRID_CHAOS_SCALE: 'full', TASKGRID_CHAOS_REPORT_DIR: dir },
});

const reports = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
if (!kept) rmSync(dir, { recursive: true, force: true });

const COUNTS = ['submitted', 'acknowledged', 'completed', 'lost', 'wrong', 'duplicated'];
const rows = [
  ['scenario', ...COUNTS, 'seconds', 'RSS MB'],
  ...reports.map((r) => [
    r.scenario,
    ...COUNTS.map((k) => String(r[k] ?? '?')),
    (r.durationMs / 1000).toFixed(1),
    r.rssBeforeMb !== undefined ? `${r.rssBeforeMb}->${r.rssAfterMb ?? '?'}` : '-',
  ]),
];
const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
console.log('');
for (const row of rows)
  console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));

const total = Object.fromEntries(
  COUNTS.map((k) => [k, reports.reduce((n, r) => n + (Number(r[k]) || 0), 0)]),
);
console.log(`chaos: ${COUNTS.map((k) => `${k}=${total[k]}`).join(' ')}`);

const problems = [];
if (run.status !== 0) problems.push(`the scenario tests failed (exit status ${run.status ?? run.signal})`);
if (reports.length === 0) problems.push('no scenario wrote a report');
for (const r of reports) {
  const bad = ['lost', 'wrong', 'duplicated'].filter((k) => !(Number(r[k]) === 0));
  if (bad.length) problems.push(`${r.scenario}: ${bad.map((k) => `${k}=${r[k]}`).join(' ')}`);
}
if (problems.length) {
  for (const p of problems) console.error(`chaos: FAILED: ${p}`);
  process.exit(1);
}
