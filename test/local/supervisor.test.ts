/**
 * The local supervisor: a component that dies is restarted, and its own log file says so (an
 * operator reading `taskgrid logs <component>` sees why its pid changed, not only grid.log).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Supervisor } from '../../src/local/supervisor.ts';

test('a component that dies is restarted and its own log file records the exit and the restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-supervisor-'));
  const marker = join(dir, 'died-once');
  const script = join(dir, 'component.cjs');
  // Prints its ready line; the first run then dies with exit code 3, the next stays up.
  writeFileSync(
    script,
    `const fs = require('node:fs');
console.log(JSON.stringify({ level: 30, msg: 'ready', pid: process.pid }));
if (!fs.existsSync(${JSON.stringify(marker)})) { fs.writeFileSync(${JSON.stringify(marker)}, ''); setTimeout(() => process.exit(3), 50); }
else setInterval(() => {}, 1000);
process.on('SIGTERM', () => process.exit(0));
`,
  );
  const lines: string[] = [];
  const sup = new Supervisor({
    command: [process.execPath, script],
    cwd: dir,
    logDir: join(dir, 'logs'),
    write: (line) => lines.push(line),
    restartDelayMs: 20,
  });
  try {
    await sup.start({ name: 'worker-x', args: [] });
    for (let i = 0; i < 200 && sup.restarts()['worker-x'] !== 1; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(sup.restarts()['worker-x'], 1);
    for (let i = 0; i < 200 && !lines.some((l) => l.includes('"msg":"ready"') && lines.indexOf(l) > 1); i++)
      await new Promise((r) => setTimeout(r, 20));
    await sup.stop();
    const log = readFileSync(join(dir, 'logs', 'worker-x.log'), 'utf8')
      .trimEnd()
      .split('\n');
    const exits = log
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e.restart !== undefined);
    assert.equal(exits.length, 1, log.join('\n'));
    assert.equal(exits[0]!.exitCode, 3);
    assert.equal(exits[0]!.restart, 1);
    assert.match(String(exits[0]!.msg), /exited \(code 3\) after \d+ ms; restart 1 in 20 ms/);
    assert.equal(typeof exits[0]!.time, 'number');
    // The terminal (grid.log in detached mode) still says it too.
    assert.ok(lines.some((l) => /exited \(code 3\)/.test(l)));
  } finally {
    await sup.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
