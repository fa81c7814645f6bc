/**
 * A developer's own task types: a workers.json and a folder of handler modules in their own
 * project, named by relative TASKGRID_WORKERS_FILE and TASKGRID_TYPES_DIR from where they run
 * `taskgrid`, and a handler that does not load reported as such by `taskgrid run -d`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freeTcpPort, freeUdpPort, runCli } from '../support/process.ts';

/** A project of the developer's own: one type per module given, run from its folder. */
async function project(modules: Record<string, string>, extraEnv: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'taskgrid-own-types-'));
  mkdirSync(join(dir, 'handlers'));
  for (const [name, text] of Object.entries(modules))
    writeFileSync(join(dir, 'handlers', `${name}.mjs`), text);
  const entries = Object.keys(modules).map((name) => ({
    name,
    active: true,
    description: name,
    replicas: 1,
    concurrency: 2,
    timeoutMs: 5000,
    maxAttempts: 1,
  }));
  writeFileSync(join(dir, 'my-workers.json'), JSON.stringify(entries));
  const nsPort = await freeUdpPort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TASKGRID_HOME: join(dir, 'home'),
    TASKGRID_NAMESERVICE_PORT: String(nsPort),
    TASKGRID_NAMESERVICE: `127.0.0.1:${nsPort}`,
    TASKGRID_DISPATCHER_PORT: String(await freeUdpPort()),
    TASKGRID_MONITORING_PORT: String(await freeTcpPort()),
    TASKGRID_WORKERS_FILE: 'my-workers.json',
    TASKGRID_TYPES_DIR: 'handlers',
    ...extraEnv,
  };
  const cli = (args: string[]) => runCli(args, { env, cwd: dir });
  const cleanup = async () => {
    await cli(['stop']);
    // Whatever the stop missed (a failed assertion before the grid was up, say).
    try {
      const state = JSON.parse(readFileSync(join(dir, 'home', 'run', 'grid.json'), 'utf8')) as {
        supervisorPid: number;
      };
      process.kill(state.supervisorPid, 'SIGKILL');
    } catch {
      // no grid left
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, cli, cleanup };
}

test(
  'relative TASKGRID_WORKERS_FILE and TASKGRID_TYPES_DIR name the files of the folder taskgrid runs in, for every component',
  { timeout: 120_000 },
  async () => {
    const p = await project({ shout: 'export const handle = (payload) => `${payload.toUpperCase()}!`;\n' });
    try {
      const up = await p.cli(['run', '-d']);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      assert.match(up.stdout, /TaskGrid is up: .*, 1 worker processes/);
      const run = await p.cli(['run', 'shout', 'hi']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(run.stdout.trim(), 'HI!');
    } finally {
      await p.cleanup();
    }
  },
);

test(
  'a handler module that does not load makes `run -d` fail with its TG_ERR_CONFIG line, not a timeout and a log tail',
  { timeout: 120_000 },
  async () => {
    const p = await project({ broken: 'export const handle = (payload) => payload +;\n' });
    try {
      const up = await p.cli(['run', '-d']);
      assert.equal(up.code, 2, up.stdout + up.stderr);
      const line = up.stderr.trim();
      assert.match(line, /^taskgrid: TG_ERR_CONFIG: the grid could not start: worker-broken exited/);
      assert.match(line, /task type "broken": .*handlers\/broken\.mjs failed to load/);
      assert.doesNotMatch(line, /INFO/, 'no other component lines');
    } finally {
      await p.cleanup();
    }
  },
);

test(
  'a detached grid with TASKGRID_MONITORING_PORT=0 is healthy and names the port its dashboard got, and a task type it serves',
  { timeout: 120_000 },
  async () => {
    const p = await project(
      { shout: 'export const handle = (payload) => `${payload.toUpperCase()}!`;\n' },
      { TASKGRID_MONITORING_PORT: '0' },
    );
    try {
      const up = await p.cli(['run', '-d']);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      const url = /Dashboard: (http:\/\/127\.0\.0\.1:(\d+)\/)/.exec(up.stdout);
      assert.ok(url && url[2] !== '0', up.stdout);
      assert.match(up.stdout, /npx taskgrid send shout Hello --wait/);
      const res = await fetch(`${url[1]}healthz`);
      assert.equal(res.status, 200);
      const status = await p.cli(['status', '--json']);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.equal((JSON.parse(status.stdout) as { healthy: boolean }).healthy, true);
    } finally {
      await p.cleanup();
    }
  },
);
