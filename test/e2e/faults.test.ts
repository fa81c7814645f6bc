/**
 * The grid under faults, with real processes killed with SIGKILL: a worker dies mid-run, the
 * dispatcher dies after acknowledging, the nameservice restarts, a handler never returns.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskGridClient } from '../../src/client/index.ts';
import { statePaths } from '../../src/config/env.ts';
import { SqliteTaskStore } from '../../src/dispatcher/store/sqlite.ts';
import { ROOT, startTs } from '../support/process.ts';
import { Grid } from '../support/grid.ts';

const FIXTURES = join(ROOT, 'test/fixtures/handlers');
const fixtureTypes = [
  { name: 'echo', active: true, description: 'returns its payload', concurrency: 8, maxAttempts: 3 },
  {
    name: 'slow',
    active: true,
    description: 'waits payload ms',
    concurrency: 8,
    timeoutMs: 10_000,
    maxAttempts: 5,
  },
  {
    name: 'hang',
    active: true,
    description: 'never returns',
    concurrency: 1,
    timeoutMs: 500,
    maxAttempts: 2,
  },
];

async function connect(grid: Grid) {
  return TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
}

function ids(results: Awaited<ReturnType<TaskGridClient['submitMany']>>): number[] {
  return results.map((r) => {
    assert.ok('id' in r, JSON.stringify(r));
    return r.id;
  });
}

test(
  'two workers of one type share the load, and when one is killed every task still completes once',
  { timeout: 120_000 },
  async () => {
    const grid = await Grid.start({ typesDir: FIXTURES, workersJson: fixtureTypes });
    const client = await connect(grid);
    try {
      const a = await grid.startWorker(['slow'], 8);
      await grid.startWorker(['slow'], 8);
      const submitted = ids(
        await client.submitMany(Array.from({ length: 120 }, () => ({ type: 'slow', payload: '100' }))),
      );
      await new Promise((r) => setTimeout(r, 400));
      await a.kill('SIGKILL');
      const views = await client.wait(submitted, { timeoutMs: 90_000 });
      assert.equal(views.length, 120);
      assert.ok(
        views.every((v) => v.status === 'succeeded'),
        'every task succeeded',
      );
      const workers = new Set(views.map((v) => v.worker));
      assert.ok(workers.size >= 1);
      const stats = await client.stats();
      assert.equal(stats.types.slow?.succeeded, 120, 'each task recorded once');
      const retried = views.filter((v) => v.attempts > 1).length;
      assert.ok(retried > 0, 'the killed worker’s tasks ran again elsewhere');
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'a dispatcher killed after 1,000 acknowledged submits and restarted completes all of them once',
  { timeout: 120_000 },
  async () => {
    const grid = await Grid.start({ typesDir: FIXTURES, workersJson: fixtureTypes });
    let client = await connect(grid);
    try {
      const submitted = ids(
        await client.submitMany(Array.from({ length: 1000 }, (_, i) => ({ type: 'echo', payload: `p${i}` }))),
      );
      assert.equal(submitted.length, 1000);
      await grid.dispatcher.kill('SIGKILL');
      await client.close();
      await grid.startDispatcher(grid.dispatcherPort);
      await grid.startWorker(['echo'], 64);
      client = await connect(grid);
      const views = await client.wait(submitted, { timeoutMs: 90_000 });
      assert.equal(views.length, 1000);
      views.forEach((v, i) => {
        assert.equal(v.status, 'succeeded');
        assert.equal(v.result, `p${i}`);
      });
      const stats = await client.stats();
      assert.equal(stats.types.echo?.succeeded, 1000, 'none recorded twice');
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'after a nameservice restart the workers are back within one heartbeat interval',
  { timeout: 60_000 },
  async () => {
    const grid = await Grid.start({
      typesDir: FIXTURES,
      workersJson: fixtureTypes,
      workers: [{ types: ['echo'] }, { types: ['slow'] }],
    });
    const client = await connect(grid);
    try {
      const before = await client.workers();
      assert.equal(before.filter((w) => w.role === 'worker').length, 2);
      await grid.nameservice.kill('SIGKILL');
      await grid.startNameservice(grid.nsPort);
      // Counted from the moment the new nameservice answers: its own start-up (a tsx process on
      // a loaded machine can take seconds) is not the workers' doing.
      const restarted = Date.now();
      let back = 0;
      while (Date.now() - restarted < 10_000) {
        back = (await client.workers()).filter((w) => w.role === 'worker').length;
        if (back === 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const took = Date.now() - restarted;
      assert.equal(back, 2);
      // One heartbeat interval (1 s): the heartbeat that meets the new nameservice learns its
      // lease is unknown and re-registers at once. Far below the lease TTL; slack for a loaded
      // machine, where an unanswered heartbeat sent during the restart waits out its 1 s deadline.
      assert.ok(took < 3_500, `workers were back ${took} ms after the nameservice was ready`);
      const r = await client.run('echo', 'still works', { timeoutMs: 20_000 });
      assert.equal(r, 'still works');
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'with the nameservice gone, SIGTERM still stops an idle worker and the dispatcher within their deregister bound',
  { timeout: 60_000 },
  async () => {
    const grid = await Grid.start({
      typesDir: FIXTURES,
      workersJson: fixtureTypes,
      workers: [{ types: ['echo'] }],
    });
    try {
      await grid.nameservice.kill('SIGKILL');
      for (const [name, child] of [
        ['worker', grid.workers[0]!],
        ['dispatcher', grid.dispatcher],
      ] as const) {
        const began = Date.now();
        child.proc.kill('SIGTERM');
        assert.equal(await child.exited, 0, `the ${name} exits cleanly`);
        // The deregister is given 2 s; a worker used to wait out a 10 s request timeout first,
        // announcing it took no more tasks to a nameservice that could not answer.
        const took = Date.now() - began;
        assert.ok(took < 7_000, `the ${name} took ${took} ms to stop`);
      }
    } finally {
      await grid.stop();
    }
  },
);

test(
  'a handler that loops forever is stopped at its timeout, retried, then failed; its worker serves the next task',
  { timeout: 60_000 },
  async () => {
    const grid = await Grid.start({
      typesDir: FIXTURES,
      workersJson: fixtureTypes,
      workers: [{ types: ['hang', 'echo'] }],
    });
    const client = await connect(grid);
    try {
      const [hung] = ids(await client.submitMany([{ type: 'hang', payload: '' }]));
      const view = await client.wait(hung!, { timeoutMs: 30_000 });
      assert.equal(view.status, 'failed');
      assert.equal(view.error?.code, 'TG_ERR_TASK_TIMEOUT');
      assert.equal(view.attempts, 2);
      assert.equal(await client.run('echo', 'next', { timeoutMs: 20_000 }), 'next');
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'a task whose worker died while the dispatcher was down runs again soon after the restart, not after its lease',
  { timeout: 120_000 },
  async () => {
    const grid = await Grid.start({ typesDir: FIXTURES, workersJson: fixtureTypes });
    let client = await connect(grid);
    try {
      const a = await grid.startWorker(['slow'], 1);
      // A 10-minute timeout: waiting out its lease would take that long.
      const id = await client.submit({ type: 'slow', payload: '2000', timeoutMs: 600_000 });
      for (let v = await client.result(id); v.status !== 'running'; v = await client.result(id)) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await grid.dispatcher.kill('SIGKILL');
      await a.kill('SIGKILL');
      await client.close();
      client = await connect(grid);
      // The nameservice drops the dead worker (its lease lapses) while the dispatcher is down.
      while ((await client.workers()).some((w) => w.role === 'worker'))
        await new Promise((r) => setTimeout(r, 200));
      await grid.startWorker(['slow'], 1);
      let bId: string | undefined;
      while (bId === undefined) {
        bId = (await client.workers()).find((w) => w.role === 'worker')?.id;
        if (bId === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      await grid.startDispatcher(grid.dispatcherPort);
      const restarted = Date.now();
      const view = await client.wait(id, { timeoutMs: 90_000 });
      assert.equal(view.status, 'succeeded');
      assert.equal((JSON.parse(view.result ?? '{}') as { taskId?: number }).taskId, id);
      assert.equal(view.attempts, 2, 'it ran again');
      assert.equal(view.worker, bId, 'on the live worker');
      // Far below the 10-minute lease: the unlisted worker's tasks go back after a short grace.
      assert.ok(Date.now() - restarted < 60_000, `ended ${Date.now() - restarted} ms after the restart`);
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'after a restart, a task claimed for a live worker but never sent runs again at once; those it holds are left to it',
  { timeout: 120_000 },
  async () => {
    const grid = await Grid.start({ typesDir: FIXTURES, workersJson: fixtureTypes });
    let client = await connect(grid);
    try {
      await grid.startWorker(['slow'], 2);
      // 10-minute timeouts: waiting out a lease would take that long. One task runs through the
      // restart; one ends while the dispatcher is down, its result waiting to be acknowledged.
      const long = await client.submit({ type: 'slow', payload: '6000', timeoutMs: 600_000 });
      const short = await client.submit({ type: 'slow', payload: '1000', timeoutMs: 600_000 });
      for (;;) {
        const views = await Promise.all([client.result(long), client.result(short)]);
        if (views.every((v) => v.status === 'running')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const lost = await client.submit({ type: 'slow', payload: '100', timeoutMs: 600_000 }); // queued: capacity 2
      const worker = (await client.result(long)).worker;
      assert.ok(worker !== undefined);
      await grid.dispatcher.kill('SIGKILL');
      // What a dispatcher dying at the wrong moment leaves: a claim for that worker committed, its
      // TASK never sent.
      const store = new SqliteTaskStore({ path: join(statePaths(grid.home).data, 'dispatcher.db') });
      try {
        const claimed = await store.claim({ type: 'slow', limit: 1, worker, leaseMs: 605_000 }, Date.now());
        assert.deepEqual(
          claimed.map((t) => t.id),
          [lost],
        );
      } finally {
        await store.close();
      }
      await client.close();
      await new Promise((r) => setTimeout(r, 1_200)); // the short task ends meanwhile
      await grid.startDispatcher(grid.dispatcherPort);
      const restarted = Date.now();
      client = await connect(grid);
      const [ran, ended, again] = await client.wait([long, short, lost], { timeoutMs: 90_000 });
      assert.equal(ran?.status, 'succeeded');
      assert.equal(ran?.attempts, 1, 'the task the worker was running was left to it');
      assert.equal(ended?.status, 'succeeded');
      assert.equal(
        ended?.attempts,
        1,
        'the result the worker still had to deliver was recorded, not run again',
      );
      assert.equal(again?.status, 'succeeded');
      assert.equal(again?.attempts, 2, 'the attempt that never reached the worker counted as lost');
      assert.equal(again?.worker, worker);
      assert.ok(Date.now() - restarted < 30_000, `all ended ${Date.now() - restarted} ms after the restart`);
    } finally {
      await client.close();
      await grid.stop();
    }
  },
);

test(
  'a client without the grid secret, or with another, is told to check TASKGRID_SECRET, and the nameservice logs TG_ERR_AUTH',
  { timeout: 120_000 },
  async () => {
    const grid = await Grid.start({ env: { TASKGRID_SECRET: 'the-secret-of-this-grid-0123456789' } });
    try {
      for (const [secret, reason] of [
        [undefined, 'unsigned'],
        ['another-secret-altogether-0123456789', 'bad-signature'],
      ] as const) {
        const r = await grid.cli(['--timeout', '2000', 'run', 'reverse', 'x'], 60_000, {
          TASKGRID_SECRET: secret,
        });
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /TG_ERR_UNREACHABLE: no nameservice answered .*same TASKGRID_SECRET/);
        const line = await grid.nameservice.nextJson<{ code?: string; reason?: string; msg: string }>(
          (v) => v.code === 'TG_ERR_AUTH' && v.reason === reason,
          10_000,
        );
        assert.match(line.msg, /failed authentication/);
      }
    } finally {
      await grid.stop();
    }
  },
);

test('a worker whose handler module does not load exits with TG_ERR_CONFIG naming the file, instead of staying up unregistered', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'taskgrid-badtype-'));
  try {
    writeFileSync(join(dir, 'never.mjs'), 'export const hello = 1;\n');
    const worker = startTs('src/cli/main.ts', ['worker', 'never', '--port', '0'], {
      TASKGRID_TYPES_DIR: dir,
      TASKGRID_NAMESERVICE: '127.0.0.1:9',
      TASKGRID_LOG_LEVEL: 'warn',
    });
    try {
      const code = await Promise.race([
        worker.exited,
        new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000)),
      ]);
      assert.equal(code, 2, worker.stderr());
      assert.match(
        worker.stderr(),
        /TG_ERR_CONFIG: task type "never": .*never\.mjs does not export a handle/,
      );
    } finally {
      await worker.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker refuses a --concurrency its variable would refuse, naming the flag', async () => {
  for (const bad of ['1e3', '0', '20000']) {
    const worker = startTs('src/cli/main.ts', ['worker', 'reverse', '--port', '0', '--concurrency', bad], {
      TASKGRID_NAMESERVICE: '127.0.0.1:9',
      TASKGRID_LOG_LEVEL: 'error',
    });
    try {
      assert.equal(await worker.exited, 2, worker.stderr());
      assert.match(
        worker.stderr(),
        new RegExp(`TG_ERR_CONFIG: --concurrency="${bad}" is not a concurrency \\(expected an integer 1-10000\\)`),
      );
    } finally {
      await worker.stop();
    }
  }
});
