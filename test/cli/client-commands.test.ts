/**
 * The client commands run in-process through main() with captured streams, against a fake
 * grid on real UDP: the whole matrix of arguments, outputs and exit codes, without paying for
 * a process start per case.
 */
import { registerGridCommands } from '../../src/cli/grid-commands.ts';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import {
  buildProgram,
  COMMAND_REGISTRARS,
  createContext,
  installGridRun,
  main,
  type CliContext,
} from '../../src/cli/main.ts';
import { ExitCode, type CliIo } from '../../src/cli/output.ts';
import { ErrorCode, TaskGridError } from '../../src/errors.ts';
import { startUdpGrid } from '../client/fake-grid.ts';
import { ROOT } from '../support/process.ts';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  lines: string[];
}

async function run(args: string[], env: Record<string, string> = {}, stdin = ''): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    cwd: ROOT,
    readStdin: () => Promise.resolve(stdin),
  };
  const code = await main(['node', 'taskgrid', ...args], { io });
  const lines = stdout === '' ? [] : stdout.replace(/\n$/, '').split('\n');
  return { code, stdout, stderr, lines };
}

function stderrLine(r: Result): string {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one stderr line, got: ${r.stderr}`);
  return lines[0]!;
}

let grid: Awaited<ReturnType<typeof startUdpGrid>>;
let quiet: Awaited<ReturnType<typeof startUdpGrid>>;
let env: Record<string, string>;
let tmp: string;

before(async () => {
  grid = await startUdpGrid({ waitScaleMs: 100 });
  quiet = await startUdpGrid();
  env = { TASKGRID_NAMESERVICE: grid.nameserviceAddr };
  tmp = mkdtempSync(join(tmpdir(), 'taskgrid-cli-'));
});

after(async () => {
  await grid.close();
  await quiet.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('taskgrid client commands', { concurrency: true }, () => {
  test('bad arguments exit 2 with one TG_ERR_BAD_ARGUMENT line before any network use', async () => {
    const cases = [
      ['send', '', 'x'],
      ['send', 'no spaces', 'x'],
      ['send', 'reverse'],
      ['result', 'abc'],
      ['result', '0'],
      ['cancel', '1.5'],
      ['retry', '-3'],
      ['send', 'reverse', 'x', '--bogus'],
      ['send', 'reverse', 'x', '--priority', 'high'],
      ['send', 'reverse', 'x', '--attempts', '0'],
      ['send', 'reverse', 'x', '--task-timeout', '-1'],
      ['send', 'reverse', 'x', 'extra'],
      // (`run` without arguments starts the grid: see the grid tests.)
      ['run', 'reverse'],
      ['frobnicate'],
      ['--timeout', 'soon', 'stats'],
      ['--dispatcher', 'not an address', 'stats'],
      ['--nameservice', 'a:1,a:1', 'workers'],
      ['ping', 'localhost'],
      ['submit'],
      ['--secret', 'abcdefghijklmnopqrstuvwxyz', 'stats'],
      [],
    ];
    const results = await Promise.all(
      cases.map((args) => run(['--dispatcher', quiet.dispatcherAddr, ...args])),
    );
    results.forEach((r, i) => {
      const what = cases[i]!.join(' ');
      assert.equal(r.code, ExitCode.BAD_ARGUMENT, `${what}: ${r.stderr}`);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('taskgrid: '));
      assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
      assert.match(lines[0]!, /^taskgrid: TG_ERR_BAD_ARGUMENT: /, what);
    });
    assert.equal(quiet.dispatcher.requests.size, 0, 'no request reached the dispatcher');
    const secret = cases.findIndex((c) => c.includes('--secret'));
    assert.match(results[secret]!.stderr, /set TASKGRID_SECRET/);
  });

  test('a bad TASKGRID_* variable exits 2 naming it', async () => {
    const r = await run(['stats'], { TASKGRID_DISPATCHER: 'http://x' });
    assert.equal(r.code, 2);
    assert.match(stderrLine(r), /^taskgrid: TG_ERR_CONFIG: TASKGRID_DISPATCHER="http:\/\/x"/);
  });

  test('--json gives one parseable document for every client command', async () => {
    const sent = await run(['--json', 'send', 'reverse', 'json'], env);
    assert.equal(sent.code, 0, sent.stderr);
    const { id, duplicate } = JSON.parse(sent.stdout) as { id: number; duplicate: boolean };
    assert.equal(duplicate, false);
    const docs = await Promise.all([
      run(['--json', 'result', String(id), '--wait'], env),
      run(['--json', 'run', 'upper', 'abc'], env),
      run(['--json', 'workers'], env),
      run(['--json', 'stats'], env),
      run(['--json', 'ping', grid.nameserviceAddr]),
      run(['--json', 'simulate'], env),
    ]);
    for (const d of docs) {
      assert.equal(d.code, 0, d.stderr);
      assert.equal(d.lines.length, 1, d.stdout);
      JSON.parse(d.stdout);
    }
    const [result, runDoc, workers, stats, ping, simulate] = docs.map(
      (d) => JSON.parse(d.stdout) as Record<string, unknown>,
    );
    assert.equal(result!.result, 'nosj');
    assert.equal(runDoc!.result, 'ABC');
    assert.equal((workers!.instances as unknown[]).length, 2);
    assert.ok('totals' in stats!);
    assert.equal(ping!.component, 'nameservice');
    assert.deepEqual(
      simulate!.summary && [
        (simulate!.summary as { succeeded: number }).succeeded,
        (simulate!.summary as { rejected: number }).rejected,
      ],
      [5, 1],
    );
    const failed = await run(['--json', 'run', 'fail', 'x'], env);
    assert.equal(failed.code, ExitCode.TASK_FAILED);
    assert.equal((JSON.parse(failed.stdout) as { status: string }).status, 'failed');
    assert.match(stderrLine(failed), /TG_ERR_TASK_FAILED/);
  });

  test('send prints the id, and send --wait the id then the result alone', async () => {
    const sent = await run(
      [
        'send',
        'reverse',
        'abc',
        '--key',
        'k-send',
        '--priority',
        '-5',
        '--attempts',
        '2',
        '--task-timeout',
        '1000',
      ],
      env,
    );
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /^\d+\n$/);
    const task = grid.dispatcher.tasks.get(Number(sent.lines[0]));
    assert.deepEqual(
      [task?.key, task?.priority, task?.maxAttempts, task?.timeoutMs],
      ['k-send', -5, 2, 1000],
    );
    const waited = await run(['send', 'reverse', 'multi\nline', '--wait'], env);
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.lines[0]!, /^\d+$/);
    assert.equal(waited.stdout.slice(waited.lines[0]!.length + 1), 'enil\nitlum\n');
    // A payload that starts with "-" goes after "--".
    const dashed = await run(['run', '--', 'sum', '-1,2'], env);
    assert.deepEqual([dashed.code, dashed.lines], [0, ['1']]);
  });

  test('an unknown type exits 4, a missing task 5, and an unreachable grid 3', async () => {
    const unknown = await run(['send', 'nosuchtype', 'x'], env);
    assert.equal(unknown.code, ExitCode.UNKNOWN_TYPE);
    assert.match(stderrLine(unknown), /^taskgrid: TG_ERR_UNKNOWN_TYPE: no worker serves type "nosuchtype"$/);
    const missing = await run(['result', '987654'], env);
    assert.equal(missing.code, ExitCode.NOT_FOUND);
    assert.match(stderrLine(missing), /^taskgrid: TG_ERR_NOT_FOUND: /);
    const [down, ping, workers] = await Promise.all([
      run(['--timeout', '300', 'stats', '--dispatcher', grid.deadAddr]),
      run(['--timeout', '300', 'ping', grid.deadAddr]),
      run(['--timeout', '300', 'workers'], { TASKGRID_NAMESERVICE: grid.deadAddr }),
    ]);
    for (const r of [down, ping, workers]) {
      assert.equal(r.code, ExitCode.UNREACHABLE, r.stderr);
      assert.match(stderrLine(r), /^taskgrid: TG_ERR_UNREACHABLE: /);
    }
  });

  test('result of an unfinished task exits 8, cancel ends it, retry reruns it', async () => {
    const sent = await run(['send', 'wait', '100'], env);
    const id = sent.lines[0]!;
    const pending = await run(['result', id], env);
    assert.equal(pending.code, ExitCode.NOT_FINISHED);
    assert.match(pending.stdout, new RegExp(`^task ${id} is (queued|running) \\(attempt [01] of 3\\)\\n$`));
    // Not failed or cancelled: nothing to retry, and the CLI says so.
    const early = await run(['retry', id], env);
    assert.equal(early.code, ExitCode.GRID_ERROR);
    assert.match(
      stderrLine(early),
      new RegExp(`^taskgrid: TG_ERR_CONFLICT: task ${id} cannot be retried: it is (queued|running)`),
    );
    const cancel = await run(['cancel', id], env);
    assert.deepEqual([cancel.code, cancel.stdout], [0, `task ${id} cancelled\n`]);
    const ended = await run(['result', id, '--wait'], env);
    assert.equal(ended.code, ExitCode.TASK_FAILED);
    // The task's own code is the error's: named once.
    assert.equal(
      stderrLine(ended),
      `taskgrid: TG_ERR_CANCELLED: task ${id} (wait) was cancelled: cancelled by a client`,
    );
    const retry = await run(['retry', id], env);
    assert.deepEqual([retry.code, retry.stdout], [0, `task ${id} is queued again\n`]);
    await run(['cancel', id], env);
  });

  test('a result --wait that runs out of time exits 3 with TG_ERR_TIMEOUT', async () => {
    const sent = await run(['send', 'wait', '100'], env);
    const r = await run(['--timeout', '200', 'result', sent.lines[0]!, '--wait'], env);
    assert.equal(r.code, ExitCode.UNREACHABLE);
    assert.match(
      stderrLine(r),
      new RegExp(`^taskgrid: TG_ERR_TIMEOUT: task ${sent.lines[0]} had not ended within 200 ms`),
    );
    await run(['cancel', sent.lines[0]!], env);
  });

  test('workers and stats print tables', async () => {
    const [workers, stats] = await Promise.all([run(['workers'], env), run(['stats'], env)]);
    assert.equal(workers.code, 0, workers.stderr);
    assert.match(workers.lines[0]!, /^ID\s+ROLE\s+TYPES\s+ADDRESS\s+CAPACITY\s+IN FLIGHT\s+LAST SEEN$/);
    assert.match(workers.stdout, /^dispatcher-1\s+dispatcher\s+-\s+127\.0\.0\.1:\d+\s+4\s+0\s+.+ ago$/m);
    assert.match(
      workers.stdout,
      /^worker-reverse-1\s+worker\s+reverse,upper\s+127\.0\.0\.1:6001\s+4\s+0\s+/m,
    );
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.lines[0]!, /^TYPE\s+QUEUED\s+RUNNING\s+SUCCEEDED\s+FAILED\s+CANCELLED\s+PER SEC/);
    assert.ok(stats.lines.some((l) => l.startsWith('total ')));
    assert.ok(stats.lines.some((l) => /^WORKER\s+ADDRESS/.test(l)));
  });

  test('submit --file reports rejected and failed tasks by line, with the matching exit code', async () => {
    const file = join(tmp, 'mixed.jsonl');
    writeFileSync(
      file,
      [
        '{"type":"reverse","payload":"one"}',
        '',
        '{"type":"nosuchtype","payload":"x"}',
        '{"type":"fail","payload":"two"}',
        '{"type":"upper","payload":"three","key":"bulk-key"}',
      ].join('\n'),
    );
    const abs = await run(['submit', '--file', file, '--wait'], env);
    assert.equal(abs.code, ExitCode.UNKNOWN_TYPE, abs.stderr);
    assert.match(abs.stderr, /^taskgrid: rejected line 3: TG_ERR_UNKNOWN_TYPE: /m);
    assert.match(abs.stderr, /^taskgrid: line 4 \(task \d+\) failed: TG_ERR_HANDLER_FAILED: fail: two$/m);
    assert.deepEqual(abs.lines, [
      'submitted 3 of 4 tasks; 1 rejected',
      '3 of 3 tasks ended: 2 succeeded, 1 failed, 0 cancelled',
    ]);

    const good = join(tmp, 'good.jsonl');
    writeFileSync(
      good,
      '{"type":"upper","payload":"three","key":"bulk-key"}\n{"type":"fail","payload":"x"}\n',
    );
    const json = await run(['--json', 'submit', '-f', good, '--wait'], env);
    assert.equal(json.code, ExitCode.TASK_FAILED);
    const doc = JSON.parse(json.stdout) as {
      submitted: number;
      tasks: { line: number; status: string; duplicate: boolean }[];
    };
    assert.equal(doc.submitted, 2);
    assert.deepEqual(
      doc.tasks.map((t) => [t.line, t.status, t.duplicate]),
      [
        [1, 'succeeded', true],
        [2, 'failed', false],
      ],
    );
    assert.match(
      stderrLine(json),
      /^taskgrid: TG_ERR_TASK_FAILED: 1 of 2 tasks did not succeed \(first: line 2/,
    );

    const stdin = await run(['submit', '--file', '-'], env, '{"type":"reverse","payload":"z"}\n\n');
    assert.deepEqual([stdin.code, stdin.lines], [0, ['submitted 1 of 1 tasks']]);
    const empty = await run(['submit', '--file', '-'], env, '\n');
    assert.equal(empty.code, ExitCode.BAD_ARGUMENT);
    const none = await run(['submit', '--file', join(tmp, 'nope.jsonl')], env);
    assert.equal(none.code, ExitCode.BAD_ARGUMENT);
    assert.match(stderrLine(none), /cannot read .*nope\.jsonl/);
  });

  test('cancel of a task that had ended exits 7 with TG_ERR_CONFLICT, as REST answers 409', async () => {
    const done = await run(['send', 'reverse', 'x', '--wait'], env);
    const id = done.lines[0]!;
    const late = await run(['cancel', id], env);
    assert.equal(late.code, ExitCode.GRID_ERROR);
    assert.equal(late.stdout, '');
    assert.equal(
      stderrLine(late),
      `taskgrid: TG_ERR_CONFLICT: task ${id} cannot be cancelled: it had already ended (succeeded)`,
    );
    const json = await run(['--json', 'cancel', id], env);
    assert.equal(json.code, ExitCode.GRID_ERROR);
    assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'TG_ERR_CONFLICT');
  });

  test('retry of a task that succeeded exits 7 with TG_ERR_CONFLICT, as REST answers 409', async () => {
    // A dispatcher that does not say `changed` answers a retry it cannot make with the task
    // unchanged: the client must tell from the task it gets back.
    const own = await startUdpGrid();
    try {
      own.dispatcher.transport.handle('retry', ({ id }) => {
        const task = own.dispatcher.tasks.get(id);
        if (!task) throw new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} not found`);
        return { task };
      });
      const ownEnv = { TASKGRID_NAMESERVICE: own.nameserviceAddr };
      const done = await run(['send', 'reverse', 'x', '--wait'], ownEnv);
      const id = done.lines[0]!;
      const retry = await run(['retry', id], ownEnv);
      assert.equal(retry.code, ExitCode.GRID_ERROR);
      assert.equal(retry.stdout, '');
      assert.equal(
        stderrLine(retry),
        `taskgrid: TG_ERR_CONFLICT: task ${id} cannot be retried: it is succeeded, and only a failed or cancelled task can be`,
      );
    } finally {
      await own.close();
    }
  });

  test("run with a task refuses the grid's flags before any network use, and its --help hides --supervise", async () => {
    const cases = [['-d'], ['--docker'], ['--detach', '--docker']];
    const results = await Promise.all(
      cases.map((flags) => run(['--dispatcher', quiet.dispatcherAddr, 'run', 'reverse', 'x', ...flags])),
    );
    results.forEach((r, i) => {
      assert.equal(r.code, ExitCode.BAD_ARGUMENT, `${cases[i]!.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(stderrLine(r), /^taskgrid: TG_ERR_BAD_ARGUMENT: run reverse: (--detach|--docker)/);
    });
    assert.equal(
      stderrLine(results[2]!),
      'taskgrid: TG_ERR_BAD_ARGUMENT: run reverse: --detach and --docker are for starting the grid (taskgrid run, without a task), not for running a task',
    );
    assert.equal(quiet.dispatcher.requests.size, 0, 'no request reached the dispatcher');
    const help = await run(['run', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /-d, --detach/);
    assert.doesNotMatch(help.stdout, /--supervise/);
  });

  test('a payload over the maximum message size exits 2 with TG_ERR_TOO_LARGE (the input, not the grid)', async () => {
    const small = { ...env, TASKGRID_MAX_MESSAGE: '64KiB' };
    const payload = 'x'.repeat(70_000);
    const file = join(tmp, 'large.jsonl');
    writeFileSync(file, `${JSON.stringify({ type: 'reverse', payload })}\n`);
    const results = await Promise.all([
      run(['send', 'reverse', payload], small),
      run(['run', 'reverse', payload], small),
      run(['submit', '--file', file], small),
    ]);
    for (const r of results) {
      assert.equal(r.code, ExitCode.BAD_ARGUMENT, r.stderr);
      assert.match(r.stderr.split('\n').at(-2)!, /^taskgrid: TG_ERR_TOO_LARGE: .*65536 bytes\)?$/);
    }
  });

  test('send with a key used before prints the earlier task id, and says so on stderr', async () => {
    const first = await run(['send', 'reverse', 'one', '--key', 'k-dup'], env);
    assert.deepEqual([first.code, first.stderr], [0, '']);
    const again = await run(['send', 'reverse', 'two', '--key', 'k-dup'], env);
    assert.deepEqual([again.code, again.stdout], [0, first.stdout]);
    assert.equal(
      stderrLine(again),
      `taskgrid: key "k-dup" names task ${first.lines[0]}, submitted before; this payload was not used`,
    );
    const json = await run(['--json', 'send', 'reverse', 'two', '--key', 'k-dup'], env);
    assert.equal(json.stderr, '');
    assert.equal((JSON.parse(json.stdout) as { duplicate: boolean }).duplicate, true);
  });

  test('simulate rejects a malformed file before sending anything', async () => {
    const file = join(tmp, 'bad-sim.json');
    writeFileSync(file, '[["reverse", "x"], ["only-type"]]');
    const r = await run(['--dispatcher', quiet.dispatcherAddr, 'simulate', file]);
    assert.equal(r.code, ExitCode.BAD_ARGUMENT);
    assert.match(stderrLine(r), /bad-sim\.json: entry 2: expected a \[type, payload\] pair$/);
  });
});

test('the program can be built without running it, and leaves room for more commands', () => {
  const ctx = createContext({
    io: {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: {},
      cwd: ROOT,
      readStdin: () => Promise.resolve(''),
    },
  });
  const program = buildProgram(ctx, [
    (p) => {
      p.command('status').description('added by another module');
    },
  ]);
  assert.deepEqual(
    program.commands.map((c) => c.name()),
    ['status'],
  );
  const full = buildProgram(ctx);
  const names = full.commands.map((c) => c.name());
  assert.deepEqual(names.slice(0, 10), [
    'send',
    'result',
    'run',
    'cancel',
    'retry',
    'simulate',
    'submit',
    'workers',
    'stats',
    'ping',
  ]);
});

test('run without arguments goes to the grid run hook when one is installed', async () => {
  const calls: Record<string, unknown>[] = [];
  const out: string[] = [];
  const io: CliIo = {
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => out.push(s) },
    env: {},
    cwd: ROOT,
    readStdin: () => Promise.resolve(''),
  };
  const gridRun = {
    configure: (cmd: Command) => {
      cmd.option('-d, --detach', 'run in the background');
    },
    action: (options: Record<string, unknown>) => {
      calls.push(options);
      return Promise.resolve(0);
    },
  };
  assert.equal(await main(['node', 'taskgrid', 'run', '-d'], { io, gridRun }), 0);
  assert.deepEqual(calls, [{ detach: true }]);
  assert.equal(await main(['node', 'taskgrid', 'run', 'reverse'], { io, gridRun }), ExitCode.BAD_ARGUMENT);

  // A registrar that comes after the client commands installs it on the existing `run`.
  const late = (_program: Command, ctx: CliContext) => installGridRun(ctx, gridRun);
  // (Without the real grid commands, which install a `run` of their own.)
  const program = buildProgram(createContext({ io }), [
    ...COMMAND_REGISTRARS.filter((r) => r !== registerGridCommands),
    late,
  ]);
  await program.parseAsync(['node', 'taskgrid', 'run', '--detach']);
  assert.deepEqual(calls, [{ detach: true }, { detach: true }]);
  assert.match(
    program.commands.find((c) => c.name() === 'run')!.description(),
    /without arguments: start the grid/,
  );
});
