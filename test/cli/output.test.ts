/**
 * The CLI's output helpers, pure: exit codes, error lines and plain-line progress (with an
 * injected clock).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createProgress,
  describeError,
  ExitCode,
  exitCodeFor,
  exitCodeOf,
  InputRequestError,
  type CliIo,
} from '../../src/cli/output.ts';
import { ConfigError, ErrorCode, TaskGridError } from '../../src/errors.ts';
import { ROOT } from '../support/process.ts';

function captureIo(): { io: CliIo; stderr: () => string } {
  let stderr = '';
  return {
    io: {
      stdout: { write: () => true },
      stderr: { write: (s: string) => (stderr += s) },
      env: {},
      cwd: ROOT,
      readStdin: () => Promise.resolve(''),
    },
    stderr: () => stderr,
  };
}

test('TG_ERR_TOO_LARGE exits 2 when it refused the user’s input, and 7 from the grid', () => {
  const tooLarge = 'submit request of 70078 bytes exceeds the maximum message size of 65536 bytes';
  assert.equal(exitCodeOf(new InputRequestError(ErrorCode.TOO_LARGE, tooLarge)), ExitCode.BAD_ARGUMENT);
  assert.equal(exitCodeOf(new TaskGridError(ErrorCode.TOO_LARGE, 'reply too large')), ExitCode.GRID_ERROR);
  assert.equal(exitCodeFor(ErrorCode.TOO_LARGE, 'input'), ExitCode.BAD_ARGUMENT);
  // Other codes keep their exit code whatever the request carried.
  assert.equal(exitCodeOf(new InputRequestError(ErrorCode.UNKNOWN_TYPE, 'x')), ExitCode.UNKNOWN_TYPE);
  assert.equal(exitCodeOf(new InputRequestError(ErrorCode.UNREACHABLE, 'x')), ExitCode.UNREACHABLE);
  assert.equal(exitCodeOf(new Error('bug')), ExitCode.GRID_ERROR);
});

test('an error listing problems under a heading becomes one line: heading, then items', () => {
  const listed = new ConfigError(
    'workers.json: 2 problems:\n  - entry 1 ("a"): no module\n  - entry 2 ("b"): duplicate name',
  );
  assert.deepEqual(describeError(listed), {
    code: ErrorCode.CONFIG,
    message: 'workers.json: 2 problems: entry 1 ("a"): no module; entry 2 ("b"): duplicate name',
  });
  const compiled = new Error(
    'compilation failed:\nworker_types/a.ts(1,1): error TS1\nworker_types/b.ts(2,2): error TS2\n',
  );
  assert.equal(
    describeError(compiled).message,
    'compilation failed: worker_types/a.ts(1,1): error TS1; worker_types/b.ts(2,2): error TS2',
  );
  assert.equal(describeError(new Error('one line')).message, 'one line');
});

test('plain progress does not repeat its final line when the last update printed it', () => {
  let now = 0;
  const { io, stderr } = captureIo();
  const progress = createProgress(io, 'finished', 7, { plainEveryMs: 2_000, now: () => now });
  now = 2_500;
  progress.update(3);
  now = 5_000;
  progress.update(7);
  progress.stop();
  progress.stop();
  assert.equal(stderr(), 'taskgrid: finished 3/7\ntaskgrid: finished 7/7\n');

  // When the last line printed is not the final count, stop() prints it.
  const late = captureIo();
  now = 0;
  const other = createProgress(late.io, 'submitted', 7, { plainEveryMs: 2_000, now: () => now });
  now = 2_500;
  other.update(3);
  other.update(7);
  other.stop();
  assert.equal(late.stderr(), 'taskgrid: submitted 3/7\ntaskgrid: submitted 7/7\n');

  // A job too short to print on the way stays silent.
  const quick = captureIo();
  now = 0;
  const short = createProgress(quick.io, 'finished', 2, { now: () => now });
  short.update(2);
  short.stop();
  assert.equal(quick.stderr(), '');
});
