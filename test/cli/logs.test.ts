/**
 * `taskgrid logs`' reading of a component's log file (src/local/control.ts tailLog): the end of
 * a large file, lines appended while following, and the console's formatting of pino lines.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { statePaths } from '../../src/config/env.ts';
import { tailLog } from '../../src/local/control.ts';
import { formatLogLine } from '../../src/local/grid.ts';

const home = mkdtempSync(join(tmpdir(), 'taskgrid-logs-'));
after(() => rmSync(home, { recursive: true, force: true }));
const paths = statePaths(home);
mkdirSync(paths.logs, { recursive: true });

async function tail(component: string, lines: number, format?: (l: string) => string): Promise<string> {
  let out = '';
  await tailLog(paths, component, {
    lines,
    follow: false,
    write: (s) => (out += s),
    ...(format ? { format } : {}),
  });
  return out;
}

describe('taskgrid logs', () => {
  test('prints the last lines of a log of many megabytes, each whole', async () => {
    // Multi-byte characters on every line, so that a read from the end that split one shows it.
    const n = 60_000;
    const body = Array.from({ length: n }, (_, i) => `line ${i} ünïcødé ${'x'.repeat(i % 50)}`).join('\n');
    writeFileSync(paths.logFile('big'), `${body}\n`);
    const last = (await tail('big', 3)).split('\n');
    assert.deepEqual(last, [
      `line ${n - 3} ünïcødé ${'x'.repeat((n - 3) % 50)}`,
      `line ${n - 2} ünïcødé ${'x'.repeat((n - 2) % 50)}`,
      `line ${n - 1} ünïcødé ${'x'.repeat((n - 1) % 50)}`,
      '',
    ]);
    // More lines than one read from the end holds (64 KiB), and more than the file has.
    const many = (await tail('big', 5_000)).split('\n');
    assert.equal(many.length, 5_001);
    assert.equal(many[0], `line ${n - 5_000} ünïcødé ${'x'.repeat((n - 5_000) % 50)}`);
    writeFileSync(paths.logFile('short'), 'a\nb\nlast without a break');
    assert.equal(await tail('short', 10), 'a\nb\nlast without a break\n');
    assert.equal(await tail('short', 0), '');
  });

  test('shows pino lines as the console does, other lines as they are', async () => {
    writeFileSync(
      paths.logFile('dispatcher'),
      '{"level":30,"time":1,"pid":7,"component":"dispatcher","msg":"ready","port":4000}\nplain text\n',
    );
    assert.equal(await tail('dispatcher', 5, formatLogLine), 'INFO  ready  port=4000\nplain text\n');
    assert.match(await tail('dispatcher', 5), /^\{"level":30,.*"msg":"ready"/);
  });

  test('follows appended lines, never printing half a line, across a truncation, until stopped', async () => {
    writeFileSync(paths.logFile('worker-reverse'), 'old\n');
    const stop = new AbortController();
    const seen: string[] = [];
    const following = tailLog(paths, 'worker-reverse', {
      lines: 1,
      follow: true,
      write: (s) => seen.push(s),
      signal: stop.signal,
    });
    const until = async (want: string) => {
      const deadline = Date.now() + 5_000;
      while (!seen.join('').endsWith(want) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      assert.equal(
        seen.join('').endsWith(want),
        true,
        `waited for ${JSON.stringify(want)}; got ${JSON.stringify(seen)}`,
      );
    };
    await until('old\n');
    appendFileSync(paths.logFile('worker-reverse'), 'first\nsec');
    await until('first\n');
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(!seen.join('').includes('sec'), 'half a line waits for its end');
    appendFileSync(paths.logFile('worker-reverse'), 'ond\n');
    await until('second\n');
    // Rotated with copytruncate while a line was half written: the new file is read from its
    // start, and the old half line is not glued to its first line.
    appendFileSync(paths.logFile('worker-reverse'), 'half a li');
    await new Promise((r) => setTimeout(r, 600));
    writeFileSync(paths.logFile('worker-reverse'), 'fresh\n');
    await until('fresh\n');
    stop.abort();
    await following;
    assert.equal(seen.join(''), 'old\nfirst\nsecond\nfresh\n');
  });

  test('names the components that have logs when asked for one without', async () => {
    await assert.rejects(tail('nameservice', 5), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TG_ERR_NOT_FOUND');
      assert.match(err.message, /no log for "nameservice" .*components with logs: big, dispatcher/);
      return true;
    });
  });
});
