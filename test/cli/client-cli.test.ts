/**
 * The real `taskgrid` CLI as a child process, against a fake grid on real UDP in this process.
 * Each run costs a Node start under tsx (about a second of CPU), so the matrix of cases lives
 * in client-commands.test.ts, in-process; this suite checks what only a real process shows:
 * stdout/stderr/exit code as a shell sees them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startUdpGrid } from '../client/fake-grid.ts';
import { ROOT } from '../support/process.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout's lines, without the empty one after the final newline. */
  lines: string[];
}

/** The test process's environment minus TaskGrid's own variables, so that none leaks in. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TASKGRID_')) env[k] = v;
  return env;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`taskgrid ${args.join(' ')} did not exit; stderr: ${stderr}`));
    }, 30_000);
    proc.once('close', (code) => {
      clearTimeout(timer);
      const lines = stdout.endsWith('\n') ? stdout.slice(0, -1).split('\n') : stdout.split('\n');
      resolve({ code, stdout, stderr, lines: stdout === '' ? [] : lines });
    });
  });
}

function oneStderrLine(run: Run): string {
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one stderr line, got: ${run.stderr}`);
  return lines[0]!;
}

let grid: Awaited<ReturnType<typeof startUdpGrid>>;
let env: NodeJS.ProcessEnv;
let tmp: string;

before(async () => {
  grid = await startUdpGrid({ waitScaleMs: 100 });
  env = { TASKGRID_NAMESERVICE: grid.nameserviceAddr };
  tmp = mkdtempSync(join(tmpdir(), 'taskgrid-cli-'));
});

after(async () => {
  await grid.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('the taskgrid CLI as a process', { concurrency: 3 }, () => {
  test('send --wait prints the task id, then the result alone on the last line', async () => {
    const run = await cli(['send', 'reverse', 'Hello', '--wait'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.lines.length, 2);
    assert.match(run.lines[0]!, /^\d+$/);
    assert.equal(run.lines.at(-1), 'olleH');
    assert.equal(run.stderr, '');
  });

  test('--json output is one JSON document that parses', async () => {
    const run = await cli(['--json', 'send', 'sum', '1,2,3', '--wait', '--dispatcher', grid.dispatcherAddr]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.lines.length, 1);
    const view = JSON.parse(run.lines[0]!) as { status: string; result: string };
    assert.deepEqual([view.status, view.result], ['succeeded', '6']);
  });

  test('a bad argument exits 2 with one TG_ERR_BAD_ARGUMENT line', async () => {
    const run = await cli(['send', '', 'x'], env);
    assert.equal(run.code, 2);
    assert.match(oneStderrLine(run), /^taskgrid: TG_ERR_BAD_ARGUMENT: .*the task type is empty$/);
    assert.equal(run.stdout, '');
  });

  test('an unreachable grid exits 3 with one line naming TG_ERR_UNREACHABLE, within the timeout', async () => {
    const started = Date.now();
    const run = await cli(['--timeout', '500', 'send', 'reverse', 'x'], {
      TASKGRID_NAMESERVICE: grid.deadAddr,
    });
    assert.equal(run.code, 3);
    assert.match(oneStderrLine(run), /^taskgrid: TG_ERR_UNREACHABLE: no nameservice answered/);
    assert.ok(Date.now() - started < 15_000);
  });

  test('a failed task exits 1 with one line naming the task error', async () => {
    const run = await cli(['run', 'fail', 'boom'], env);
    assert.equal(run.code, 1);
    assert.match(
      oneStderrLine(run),
      /^taskgrid: TG_ERR_TASK_FAILED: task \d+ \(fail\) failed after 1 attempt: TG_ERR_HANDLER_FAILED: fail: boom$/,
    );
    assert.equal(run.stdout, '');
  });

  test('ping prints what answered and exits 0', async () => {
    const run = await cli(['ping', grid.dispatcherAddr]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^dispatcher 0\.0\.0-fake at 127\.0\.0\.1:\d+: up [\d.]+ m?s \(pid \d+\)\n$/);
  });

  test('simulate runs the shipped TaskGrid+ example and prints each outcome and a summary', async () => {
    const run = await cli(['simulate', 'examples/tasks.json'], env);
    assert.equal(run.code, 0, run.stderr);
    const text = run.stdout;
    assert.match(text, /^\[1\] reverse "Hello" -> succeeded: olleH$/m);
    assert.match(text, /^\[2\] sum "1,2,3" -> succeeded: 6$/m);
    assert.match(text, /^\[3\] upper "openai" -> succeeded: OPENAI$/m);
    assert.match(
      text,
      /^\[4\] hash "abc" -> succeeded: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad$/m,
    );
    assert.match(text, /^\[5\] wait "2" -> succeeded: waited 2s$/m);
    assert.match(text, /^\[6\] unknown "test" -> rejected: TG_ERR_UNKNOWN_TYPE: /m);
    assert.equal(run.lines.length, 7);
    assert.match(
      run.lines.at(-1)!,
      /^6 tasks: 5 succeeded, 0 failed, 0 cancelled, 1 rejected, 0 unfinished in /,
    );
  });

  test('submit --file with a bad line names the line and submits nothing; --skip-bad submits the rest', async () => {
    const file = join(tmp, 'tasks.jsonl');
    writeFileSync(
      file,
      [
        '{"type":"reverse","payload":"abc"}',
        '{"type":"reverse","payload":',
        '{"type":"sum","payload":"1,2"}',
      ].join('\n'),
    );
    // Other tests submit at the same time: count only this file's tasks.
    const mine = () =>
      [...grid.dispatcher.tasks.values()].filter(
        (t) => (t.type === 'reverse' && t.payload === 'abc') || (t.type === 'sum' && t.payload === '1,2'),
      ).length;
    const refused = await cli(['submit', '--file', file], env);
    assert.equal(refused.code, 2);
    assert.match(
      oneStderrLine(refused),
      /^taskgrid: TG_ERR_BAD_ARGUMENT: .*1 bad line: line 2: not JSON .*nothing was submitted/,
    );
    assert.equal(mine(), 0);

    const skipped = await cli(['submit', '--file', file, '--skip-bad', '--wait'], env);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stderr, /^taskgrid: skipping line 2: not JSON/m);
    assert.deepEqual(skipped.lines, [
      'submitted 2 of 2 tasks',
      '2 of 2 tasks ended: 2 succeeded, 0 failed, 0 cancelled',
    ]);
    assert.equal(mine(), 2);
  });

  test('logs lists each component log with its size and age, and prints the end of one as the console shows it', async () => {
    const home = join(tmp, 'logs-home');
    mkdirSync(join(home, 'logs'), { recursive: true });
    const homeEnv = { TASKGRID_HOME: home };
    const empty = await cli(['logs'], homeEnv);
    assert.equal(empty.code, 0, empty.stderr);
    assert.deepEqual(empty.lines, [`no logs in ${join(home, 'logs')}`]);

    writeFileSync(join(home, 'logs', 'dispatcher.log'), 'one\ntwo\nthree\n');
    writeFileSync(join(home, 'logs', 'worker-gone.log'), 'x'.repeat(3 * 1024));
    // A type removed from workers.json keeps its log until reset: its age says it is old.
    const twoDaysAgo = (Date.now() - 2 * 86_400_000) / 1000;
    utimesSync(join(home, 'logs', 'worker-gone.log'), twoDaysAgo, twoDaysAgo);
    const list = await cli(['logs'], homeEnv);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.lines[0]!, /^COMPONENT\s+SIZE\s+LAST WRITTEN$/);
    assert.match(list.lines[1]!, /^dispatcher\s+14 B\s+\d+(\.\d)? m?s ago$/);
    assert.match(list.lines[2]!, /^worker-gone\s+3\.0 KiB\s+2d0\dh ago$/);
    assert.equal(list.lines.length, 3);

    const tail = await cli(['logs', 'dispatcher', '-n', '2'], homeEnv);
    assert.equal(tail.code, 0, tail.stderr);
    assert.deepEqual(tail.lines, ['two', 'three']);
    const pino = '{"level":40,"time":1,"pid":7,"msg":"worker lost","id":"w1"}';
    writeFileSync(join(home, 'logs', 'dispatcher.log'), `${pino}\n`);
    assert.deepEqual((await cli(['logs', 'dispatcher'], homeEnv)).lines, ['WARN  worker lost  id=w1']);
    assert.deepEqual((await cli(['--json', 'logs', 'dispatcher'], homeEnv)).lines, [pino]);
    const listed = JSON.parse((await cli(['--json', 'logs'], homeEnv)).stdout) as {
      logs: { component: string; bytes: number }[];
    };
    assert.deepEqual(
      listed.logs.map((l) => [l.component, l.bytes]),
      [
        ['dispatcher', pino.length + 1],
        ['worker-gone', 3 * 1024],
      ],
    );
    const missing = await cli(['logs', 'nameservice'], homeEnv);
    assert.notEqual(missing.code, 0);
    assert.match(
      oneStderrLine(missing),
      /TG_ERR_NOT_FOUND: no log for "nameservice" .*dispatcher, worker-gone/,
    );
  });
});
