/**
 * TaskGrid+ programs against a real grid: a Python 3 program (test/fixtures/legacy/
 * taskgrid_plus.py, standard library only) speaks TaskGrid+'s JSON messages to a nameservice,
 * a dispatcher and v1 workers running as separate processes over real UDP on loopback.
 *
 * Why 127.x.y.z:6000: a TaskGrid+ worker is registered at the sender's IP with port 6000
 * (TaskGrid+ workers always listened there), so the Python worker must listen on port 6000,
 * while tests never bind fixed ports of 127.0.0.1. Every 127.0.0.0/8 address is loopback on
 * Linux, so the worker takes port 6000 of a random 127.x.y.z address that nothing else uses and
 * sends its REGISTER_WORKER from that address. The program binds before it sends anything and
 * exits 3 when the address is taken; the test then tries another one. On a system where only
 * 127.0.0.1 is configured (macOS), the test is skipped with that reason.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Grid } from '../support/grid.ts';
import { ROOT } from '../support/process.ts';

const SCRIPT = join(ROOT, 'test/fixtures/legacy/taskgrid_plus.py');
const TYPES_DIR = join(ROOT, 'test/fixtures/legacy/types');
const LEGACY_TYPE = 'shout';
const V1_TYPES = ['reverse', 'sum', 'upper', 'hash', 'wait'];

/** workers.json of the grid: the five built-in types and the one the Python worker serves. */
const WORKERS_JSON = [
  ...V1_TYPES.map((name) => ({ name, active: true, description: `built-in ${name}` })),
  {
    name: LEGACY_TYPE,
    active: true,
    description: 'served by a TaskGrid+ worker (taskgrid_plus.py); no v1 worker runs it',
    // A lost TASK or RESULT_RETURN costs one lease: keep it short in a test.
    timeoutMs: 5_000,
  },
];

/** TaskGrid+'s test tasks (client/tasks.json and test_client_simulation.py), one wait kept short. */
const TASKS: [string, unknown][] = [
  ['reverse', 'Hello'],
  ['sum', '1,2,3'],
  ['upper', 'openai'],
  ['hash', 'abc'],
  ['wait', '1'],
  // test_client_simulation.py sent the numbers as a JSON list: it arrives as its JSON text.
  ['sum', [1, 2, 3]],
  [LEGACY_TYPE, 'hello from python'],
];

const EXPECTED: Record<string, string> = {
  reverse: 'olleH',
  sum: '6',
  upper: 'OPENAI',
  hash: createHash('sha256').update('abc').digest('hex'),
  wait: 'waited 1s',
  [LEGACY_TYPE]: 'HELLO FROM PYTHON!',
};

type Reply = [string, Record<string, unknown>];

interface Report {
  event: string;
  register: Reply;
  heartbeat: Reply;
  lookup: Reply;
  lookup_missing: Reply;
  list: Reply;
  nameservice_unknown: Reply;
  tasks: {
    type: string;
    payload: unknown;
    post: Record<string, unknown>;
    id: number | null;
    result?: Record<string, unknown>;
    polls?: number;
  }[];
  unknown_type: Record<string, unknown>;
  unknown_id: Reply;
  stats: Reply;
  all_tasks: Reply;
  dispatcher_unknown: Reply;
  deregister: Reply;
  lookup_after: Reply;
  served: { task: Record<string, unknown>; reply_type: string; reply: Record<string, unknown> }[];
  worker_errors: string[];
  largest_datagram: number;
  read_limit: number;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the Python program to its end (at most `timeoutMs`; then it is killed). */
function runPython(args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn('python3', [SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function randomLoopback(): string {
  const octet = () => 2 + Math.floor(Math.random() * 250);
  return `127.${octet()}.${octet()}.${octet()}`;
}

describe('TaskGrid+ programs against a TaskGrid grid', () => {
  let grid: Grid;
  before(async () => {
    grid = await Grid.start({
      workersJson: WORKERS_JSON,
      typesDir: TYPES_DIR,
      workers: [{ types: V1_TYPES }],
    });
  });
  after(async () => {
    await grid?.stop();
  });

  test('a TaskGrid+ client and a TaskGrid+ worker (Python) work beside v1 workers', async (t) => {
    const common = [
      '--dispatcher',
      `127.0.0.1:${grid.dispatcherPort}`,
      '--nameservice',
      `127.0.0.1:${grid.nsPort}`,
      '--worker-type',
      LEGACY_TYPE,
      '--tasks',
      JSON.stringify(TASKS),
    ];
    let run: Run | undefined;
    let workerIp = '';
    for (let i = 0; i < 5; i++) {
      workerIp = randomLoopback();
      run = await runPython([...common, '--worker-ip', workerIp]);
      if (run.code !== 3) break;
      if (/Cannot assign requested address|EADDRNOTAVAIL|Can't assign/i.test(run.stdout)) {
        t.skip(`this system has no loopback address besides 127.0.0.1 (${run.stdout.trim()})`);
        return;
      }
    }
    assert.ok(run, 'the program ran');
    assert.equal(run.code, 0, `taskgrid_plus.py failed:\n${run.stderr}\n${run.stdout}`);
    const report = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as Report;
    const legacyAddress = `${workerIp}:6000`;

    // Nameservice: the sender's IP with port 6000, found by LOOKUP_WORKER and LIST_WORKERS.
    assert.deepEqual(report.register, [
      'RESPONSE',
      { message: `Registered ${LEGACY_TYPE} at ${legacyAddress}` },
    ]);
    assert.deepEqual(report.heartbeat, ['RESPONSE', { message: 'Heartbeat received, updated 1 entries' }]);
    assert.deepEqual(report.lookup, ['RESPONSE', { address: legacyAddress }]);
    assert.deepEqual(report.lookup_missing, [
      'RESPONSE',
      { error: "No active worker found for type 'no_such_type'" },
    ]);
    const listed = report.list[1].workers as { type: string; address: string }[];
    assert.ok(
      listed.some((w) => w.type === LEGACY_TYPE && w.address === legacyAddress),
      JSON.stringify(listed),
    );
    for (const type of V1_TYPES)
      assert.ok(
        listed.some((w) => w.type === type),
        `${type} listed: ${JSON.stringify(listed)}`,
      );
    assert.deepEqual(report.nameservice_unknown, ['RESPONSE', { error: 'Unknown message type' }]);

    // Client: every task got a real integer id and its result, the legacy type's included.
    assert.equal(report.tasks.length, TASKS.length);
    const ids = new Set<number>();
    for (const task of report.tasks) {
      assert.equal(typeof task.id, 'number', `POST_TASK ${task.type}: ${JSON.stringify(task.post)}`);
      assert.equal(task.post.message, `Task received, ID = ${task.id}`);
      ids.add(task.id!);
      assert.deepEqual(
        task.result,
        { result: EXPECTED[task.type] },
        `${task.type} ${JSON.stringify(task.payload)}`,
      );
    }
    assert.equal(ids.size, TASKS.length, 'ids are distinct');

    // Worker: exactly one TASK, with TaskGrid+'s task fields, answered "Result stored".
    assert.deepEqual(report.worker_errors, []);
    assert.equal(report.served.length, 1, JSON.stringify(report.served));
    const served = report.served[0]!;
    const legacyTask = report.tasks.find((x) => x.type === LEGACY_TYPE)!;
    assert.deepEqual(Object.keys(served.task).sort(), [
      'assigned_worker',
      'id',
      'payload',
      'result',
      'status',
      'timestamp_completed',
      'timestamp_created',
      'type',
    ]);
    assert.equal(served.task.id, legacyTask.id);
    assert.equal(served.task.type, LEGACY_TYPE);
    assert.equal(served.task.payload, 'hello from python');
    assert.equal(served.task.assigned_worker, legacyAddress);
    assert.deepEqual([served.reply_type, served.reply], ['RESPONSE', { message: 'Result stored' }]);

    // The other questions a TaskGrid+ program could ask.
    assert.match(String(report.unknown_type.error), /no_such_type.*TG_ERR_UNKNOWN_TYPE/);
    assert.deepEqual(report.unknown_id, ['RESPONSE', { error: 'Task not found' }]);
    const stats = report.stats[1].stats as Record<string, unknown>;
    assert.equal(stats.total_tasks, TASKS.length);
    assert.equal(stats.completed_tasks, TASKS.length);
    assert.equal(stats.open_tasks, 0);
    assert.equal(typeof stats.avg_completion_time, 'number');
    assert.ok(Object.hasOwn(stats.avg_completion_by_worker as object, LEGACY_TYPE), JSON.stringify(stats));
    assert.deepEqual(report.stats[1].pending, []);
    const all = report.all_tasks[1] as {
      stats: Record<string, unknown>;
      tasks: { id: number; status: string }[];
    };
    assert.deepEqual(
      { total: all.stats.total, done: all.stats.done, pending: all.stats.pending },
      {
        total: TASKS.length,
        done: TASKS.length,
        pending: 0,
      },
    );
    assert.ok(all.tasks.length > 0 && all.tasks.every((x) => ids.has(x.id) && x.status === 'done'));
    assert.deepEqual(report.dispatcher_unknown, ['RESPONSE', { error: 'Invalid message type' }]);
    assert.deepEqual(report.deregister, ['RESPONSE', { message: 'Deregistered 1 entries' }]);
    assert.deepEqual(report.lookup_after, [
      'RESPONSE',
      { error: `No active worker found for type '${LEGACY_TYPE}'` },
    ]);

    // Nothing a TaskGrid+ program read was larger than it reads.
    assert.ok(
      report.largest_datagram <= report.read_limit,
      `largest datagram ${report.largest_datagram} bytes`,
    );

    // v1 sees the same tasks: the legacy worker's result is an ordinary result.
    const r = await grid.cli(['result', String(legacyTask.id), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /HELLO FROM PYTHON!/);
  });
});
