/**
 * `taskgrid run` without arguments (what `npm start` runs after building): the whole grid as
 * child processes of one supervisor, replicas from workers.json, Ctrl-C stopping everything.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, freeTcpPort, freeUdpPort, runCli } from '../support/process.ts';

/** A fresh TASKGRID_HOME and free ports for a grid of the default workers.json. */
async function freshGridEnv(name: string): Promise<{ home: string; env: NodeJS.ProcessEnv }> {
  const home = mkdtempSync(join(tmpdir(), `taskgrid-${name}-`));
  return {
    home,
    env: {
      ...process.env,
      TASKGRID_HOME: home,
      TASKGRID_NAMESERVICE_PORT: String(await freeUdpPort()),
      TASKGRID_DISPATCHER_PORT: String(await freeUdpPort()),
      TASKGRID_MONITORING_PORT: String(await freeTcpPort()),
    },
  };
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test(
  'the local grid runs replicas from workers.json, serves tasks and stops every process on Ctrl-C, workers first',
  { timeout: 120_000 },
  async () => {
    const home = mkdtempSync(join(tmpdir(), 'taskgrid-local-'));
    const workersFile = join(home, 'workers.json');
    writeFileSync(
      workersFile,
      JSON.stringify([
        { name: 'reverse', active: true, description: 'reverse', replicas: 3, concurrency: 4 },
        { name: 'sum', active: true, description: 'sum', inline: true },
        { name: 'hash', active: false, description: 'inactive: no process' },
      ]),
    );
    const nsPort = await freeUdpPort();
    const dPort = await freeUdpPort();
    const env = {
      ...process.env,
      TASKGRID_HOME: home,
      TASKGRID_WORKERS_FILE: workersFile,
      TASKGRID_NAMESERVICE_PORT: String(nsPort),
      TASKGRID_DISPATCHER_PORT: String(dPort),
      TASKGRID_MONITORING_PORT: String(await freeTcpPort()),
    };
    // A process group of its own, as a shell gives a foreground job: Ctrl-C signals the group.
    const grid = spawn(process.execPath, ['bin/taskgrid.js', 'run'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    grid.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    grid.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => grid.on('exit', (code) => r(code)));
    let children: number[] = [];
    try {
      // The banner arrives in pieces: wait for its last line to be sure all of it is there.
      for (let i = 0; i < 600 && !/npx taskgrid send reverse Hello --wait/.test(out); i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /TaskGrid is up/, out.slice(-3000));
      assert.match(out, /npx taskgrid send reverse Hello --wait/, out.slice(-3000));
      if (!process.env.TASKGRID_SECRET) {
        assert.equal(
          out.split('TASKGRID_SECRET is not set').length - 1,
          1,
          'the missing secret is said once, not by each process',
        );
      }
      children = childrenOf(grid.pid!);
      assert.equal(
        children.length,
        3 + 3 + 1,
        'nameservice, dispatcher, monitoring, 3 reverse replicas, 1 sum',
      );
      const dashboard = /Dashboard: (http:\/\/\S+)/.exec(out)?.[1];
      assert.ok(dashboard, 'it says where the dashboard is');
      assert.equal((await fetch(dashboard)).status, 200);

      const cli = (args: string[]) => runCli(args, { env });
      const sent = await cli(['send', 'reverse', 'Hello', '--wait']);
      assert.equal(sent.code, 0);
      assert.equal(sent.stdout.trim().split('\n').at(-1), 'olleH');
      const summed = await cli(['send', 'sum', '1,2,3', '--wait']);
      assert.equal(summed.code, 0);
      assert.equal(summed.stdout.trim().split('\n').at(-1), '6', 'the inline type serves its tasks');
      const workers = await cli(['workers', '--json']);
      const { instances: list } = JSON.parse(workers.stdout.trim().split('\n').at(-1)!) as {
        instances: { role: string; types: string[] }[];
      };
      const reverse = list.filter((w) => w.role === 'worker' && w.types.includes('reverse'));
      assert.equal(reverse.length, 3, 'three reverse replicas registered');
      assert.ok(!list.some((w) => w.types.includes('hash')), 'the inactive type has no worker');

      // The terminal's Ctrl-C: SIGINT to every process of the foreground group.
      process.kill(-grid.pid!, 'SIGINT');
      assert.equal(await exited, 0);
      assert.match(out, /grid stopped/);
      // Stopped in order, each worker deregistered from a nameservice still there to answer.
      assert.doesNotMatch(out, /deregister (failed|did not finish)/, out.slice(-3000));
      for (const pid of children) assert.equal(alive(pid), false, `component ${pid} stopped`);
      assert.match(
        readFileSync(join(home, 'logs', 'dispatcher.log'), 'utf8'),
        /"msg":"ready"/,
        'logs are kept under TASKGRID_HOME',
      );
      const ready = (name: string) =>
        JSON.parse(
          readFileSync(join(home, 'logs', `${name}.log`), 'utf8')
            .split('\n')
            .find((line) => line.includes('"msg":"ready"'))!,
        ) as { inline: string[] };
      assert.deepEqual(ready('worker-sum').inline, ['sum'], 'workers.json "inline" reaches the worker');
      assert.deepEqual(ready('worker-reverse-1').inline, [], 'a type without "inline" runs in threads');
    } finally {
      // A failure before the components were listed must not leave them running.
      if (children.length === 0 && grid.exitCode === null) children = childrenOf(grid.pid!);
      if (grid.exitCode === null) grid.kill('SIGKILL');
      for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(home, { recursive: true, force: true });
    }
  },
);

function cliIn(env: NodeJS.ProcessEnv, args: string[]) {
  return runCli(args, { env });
}

test(
  'a detached grid answers status, restarts a killed worker, and stop and reset leave nothing behind',
  { timeout: 180_000 },
  async () => {
    const { home, env } = await freshGridEnv('detached');
    const stateFile = join(home, 'run', 'grid.json');
    let pids: number[] = [];
    try {
      const up = await cliIn(env, ['run', '-d']);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      assert.match(up.stdout, /TaskGrid is up/);
      assert.match(up.stdout, /npx taskgrid send reverse Hello --wait/);
      const state = JSON.parse(readFileSync(stateFile, 'utf8')) as {
        supervisorPid: number;
        components: Record<string, { pid: number; restarts: number }>;
      };
      pids = [state.supervisorPid, ...Object.values(state.components).map((c) => c.pid)];

      const status = await cliIn(env, ['status', '--json']);
      assert.equal(status.code, 0, status.stdout);
      const report = JSON.parse(status.stdout) as {
        healthy: boolean;
        components: { name: string; ok: boolean }[];
      };
      assert.equal(report.healthy, true);
      assert.deepEqual(report.components.map((c) => c.name).sort(), [
        'dispatcher',
        'monitoring',
        'nameservice',
        'worker-hash',
        'worker-reverse',
        'worker-sum',
        'worker-upper',
        'worker-wait',
      ]);

      const sent = await cliIn(env, ['send', 'reverse', 'Hello', '--wait']);
      assert.equal(sent.stdout.trim().split('\n').at(-1), 'olleH');

      // A second start on the same home is refused before it compiles or rewrites anything.
      const second = await cliIn(env, ['start', '-d']);
      assert.equal(second.code, 2, second.stdout + second.stderr);
      assert.match(second.stderr, /TG_ERR_BAD_ARGUMENT: a grid is already running/);
      assert.doesNotMatch(second.stdout + second.stderr, /compil|wrote/i);

      process.kill(state.components['worker-reverse']!.pid, 'SIGKILL');
      let restarted = false;
      for (let i = 0; i < 120 && !restarted; i++) {
        await new Promise((r) => setTimeout(r, 500));
        const s = await cliIn(env, ['status', '--json']);
        const r = JSON.parse(s.stdout) as {
          healthy: boolean;
          components: { name: string; restarts: number; pid: number }[];
        };
        const w = r.components.find((c) => c.name === 'worker-reverse');
        restarted = r.healthy && w?.restarts === 1;
        if (w?.pid) pids.push(w.pid);
      }
      assert.ok(restarted, 'status shows the worker restarted once and healthy');
      const again = await cliIn(env, ['run', 'reverse', 'abc']);
      assert.equal(again.stdout.trim(), 'cba');

      const stop = await cliIn(env, ['stop']);
      assert.equal(stop.code, 0);
      for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} stopped`);
      const reset = await cliIn(env, ['reset']);
      assert.equal(reset.code, 0);
      assert.match(reset.stdout, /removed .*data/);
      assert.equal(existsSync(home), false, 'no state left');
    } finally {
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(home, { recursive: true, force: true });
    }
  },
);

test('docker mode without a Docker engine says so in one line and exits non-zero', async () => {
  const r = await cliIn({ ...process.env, PATH: '/nonexistent' }, ['run', '--docker']);
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /TG_ERR_UNREACHABLE: Docker mode needs a running Docker engine/);
});

test('--man and man print the manual', async () => {
  const a = await cliIn(process.env, ['--man']);
  assert.equal(a.code, 0);
  assert.match(a.stdout, /taskgrid - run and use a TaskGrid distributed task grid/);
  assert.match(a.stdout, /EXIT STATUS/);
});

test(
  'a grid whose supervisor is killed with SIGKILL leaves no component running',
  { timeout: 120_000 },
  async () => {
    const { home, env } = await freshGridEnv('orphans');
    const grid = spawn(process.execPath, ['bin/taskgrid.js', 'run'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    grid.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    grid.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    let children: number[] = [];
    try {
      for (let i = 0; i < 600 && !/npx taskgrid send reverse Hello --wait/.test(out); i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /TaskGrid is up/, out.slice(-3000));
      children = childrenOf(grid.pid!);
      assert.ok(children.length >= 3, `components: ${children.join(' ')}`);
      grid.kill('SIGKILL');
      for (let i = 0; i < 300 && children.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(children.filter(alive), [], 'every component stopped once its supervisor was gone');
    } finally {
      if (grid.exitCode === null) grid.kill('SIGKILL');
      for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(home, { recursive: true, force: true });
    }
  },
);
