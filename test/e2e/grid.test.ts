/**
 * The grid end to end: nameservice, dispatcher and workers as separate processes over real UDP
 * on loopback, driven through the real CLI and the client library.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { TaskGridClient } from '../../src/client/index.ts';
import { Grid } from '../support/grid.ts';

const lastLine = (s: string) => s.trimEnd().split('\n').at(-1);

describe('a grid of separate processes', () => {
  let grid: Grid;
  before(async () => {
    grid = await Grid.start({
      workers: [
        { types: ['reverse'] },
        { types: ['sum'] },
        { types: ['upper'] },
        { types: ['hash'] },
        { types: ['wait'] },
      ],
    });
  });
  after(async () => {
    await grid?.stop();
  });

  test("TaskGrid+'s test cases pass through the CLI", async () => {
    const cases: [string, string, string][] = [
      ['reverse', 'Hello', 'olleH'],
      ['sum', '1,2,3', '6'],
      ['upper', 'openai', 'OPENAI'],
      ['hash', 'abc', createHash('sha256').update('abc').digest('hex')],
    ];
    const results = await Promise.all(
      cases.map(([type, payload]) => grid.cli(['send', type, payload, '--wait'])),
    );
    results.forEach((r, i) => {
      assert.equal(r.code, 0, `${cases[i]![0]}: ${r.stderr}`);
      assert.equal(lastLine(r.stdout), cases[i]![2]);
    });
  });

  test('wait 2 ends after at least two seconds', async () => {
    const started = Date.now();
    const r = await grid.cli(['send', 'wait', '2', '--wait']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - started >= 2_000);
  });

  test('the dispatcher answers ping with the id it is registered under at the nameservice', async () => {
    const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
    try {
      const pong = await client.ping({ host: '127.0.0.1', port: grid.dispatcherPort });
      const registered = (await client.workers()).filter((i) => i.role === 'dispatcher').map((i) => i.id);
      assert.deepEqual(registered, [pong.id]);
    } finally {
      await client.close();
    }
  });

  test('status of a grid no supervisor of ours started asks every component the nameservice knows', async () => {
    const r = await grid.cli(['--json', 'status']);
    const report = JSON.parse(r.stdout) as { healthy: boolean; components: { name: string; ok: boolean }[] };
    assert.equal(report.healthy, true, r.stdout);
    assert.equal(r.code, 0, r.stderr);
    const names = report.components.map((c) => c.name.split(' ')[0]);
    assert.deepEqual(names, [
      'nameservice',
      'dispatcher',
      'worker-hash',
      'worker-reverse',
      'worker-sum',
      'worker-upper',
      'worker-wait',
    ]);
  });

  test('status with no nameservice answering says the dispatcher was not looked up, and exits non-zero', async () => {
    const r = await grid.cli(['--json', 'status'], 60_000, { TASKGRID_NAMESERVICE: '127.0.0.1:9' });
    const report = JSON.parse(r.stdout) as {
      healthy: boolean;
      components: { name: string; detail: string }[];
    };
    assert.equal(report.healthy, false);
    assert.notEqual(r.code, 0);
    assert.deepEqual(
      report.components.map((c) => [c.name, c.detail]),
      [
        ['nameservice', report.components[0]!.detail],
        ['dispatcher', 'not looked up: the nameservice did not answer'],
      ],
    );
  });

  test('an unknown type gets a clear error and a non-zero exit', async () => {
    const r = await grid.cli(['send', 'nosuchtype', 'x', '--wait']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /TG_ERR_UNKNOWN_TYPE/);
    assert.match(r.stderr, /nosuchtype/);
  });

  test('a batch of tasks submitted through the library all complete with their results', async () => {
    const client = await TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
    try {
      const specs = Array.from({ length: 500 }, (_, i) => ({ type: 'reverse', payload: `task-${i}` }));
      const submitted = await client.submitMany(specs);
      const ids = submitted.map((r) => {
        assert.ok('id' in r, JSON.stringify(r));
        return r.id;
      });
      const views = await client.wait(ids, { timeoutMs: 60_000 });
      assert.equal(views.length, 500);
      views.forEach((v, i) => {
        assert.equal(v.status, 'succeeded');
        assert.equal(v.result, [...`task-${i}`].reverse().join(''));
      });
    } finally {
      await client.close();
    }
  });
});
