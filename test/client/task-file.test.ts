import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { encodedSize, flatSize, planBatches } from '../../src/client/batches.ts';
import { Completions } from '../../src/client/completions.ts';
import { parseSimulationFile, parseTaskLines } from '../../src/client/task-file.ts';
import { defaultBindHost } from '../../src/client/index.ts';
import type { TaskView } from '../../src/protocol/messages.ts';

test('planBatches keeps order and bounds each batch by count and by bytes', () => {
  const items = Array.from({ length: 7 }, (_, index) => ({ index, bytes: 10 }));
  assert.deepEqual(planBatches(items, 3, 1000), [[0, 1, 2], [3, 4, 5], [6]]);
  assert.deepEqual(planBatches(items, 100, 25), [[0, 1], [2, 3], [4, 5], [6]]);
  // An item bigger than the byte bound travels alone rather than being dropped.
  assert.deepEqual(
    planBatches(
      [
        { index: 0, bytes: 5 },
        { index: 1, bytes: 500 },
        { index: 2, bytes: 5 },
      ],
      10,
      100,
    ),
    [[0], [1], [2]],
  );
  assert.deepEqual(planBatches([], 10, 100), []);
});

test('flatSize counts a task spec exactly as encodedSize does, with or without escapes', () => {
  const specs: Record<string, unknown>[] = [
    {},
    { type: 'reverse', payload: 'task 1' },
    { type: 'a', payload: '' },
    { type: 'a', payload: 'say "hi"\\' },
    { type: 'a', payload: 'caf\u00e9 \u{1F600} \ud800' },
    { type: 'a', payload: 'line\nbreak\u0001' },
    { type: 'a', payload: 'x', key: 'k-1', priority: -5, timeoutMs: 86_400_000, maxAttempts: 3 },
    { type: 'a', payload: 'x', key: undefined },
    { type: 'a', payload: 'y'.repeat(100_000) },
    { n: 1.5, z: -0, big: 1e21, nan: NaN, nested: { a: 1 } },
  ];
  for (const spec of specs)
    assert.equal(flatSize(spec), encodedSize(spec), JSON.stringify(spec).slice(0, 80));
});

test('Completions.due leaves out waits younger than the cutoff and says when the next one is due', () => {
  const c = new Completions({ maxEntries: 10, maxBytes: 1e6 }, () => 0);
  const at = (since: number) => ({ onTask: () => {}, onError: () => {}, since });
  const old = at(100);
  c.listen(1, old);
  c.listen(2, at(500));
  c.listen(3, at(300));
  c.listen(3, old); // two waits, one old enough
  c.listen(4, { onTask: () => {}, onError: () => {} }); // no start: always due
  assert.deepEqual(c.due(200), { ids: [1, 3, 4], nextSince: 300 });
  assert.deepEqual(c.due(1000), { ids: [1, 2, 3, 4], nextSince: undefined });
  // A poll's answer for a task nobody awaits any more is not kept.
  const view = {
    id: 9,
    type: 't',
    status: 'succeeded',
    priority: 0,
    attempts: 1,
    maxAttempts: 1,
    timeoutMs: 1,
    createdAt: 0,
  } as const;
  c.settle(view, false);
  assert.equal(c.take(9), undefined);
  c.settle(view);
  assert.equal(c.take(9)?.id, 9);
});

test('parseTaskLines accepts task specs and reports every bad line with its number', () => {
  const text = [
    '{"type":"reverse","payload":"Hello"}',
    '',
    '{"type":"sum","payload":"1,2,3","key":"k","priority":3,"timeoutMs":1000,"maxAttempts":2}',
    'not json',
    '{"type":"","payload":"x"}',
    '{"type":"upper","payload":"x","timeout":5}',
    '["reverse","x"]',
    '{"type":"upper"}',
  ].join('\n');
  const { tasks, bad } = parseTaskLines(text);
  assert.deepEqual(tasks, [
    { line: 1, spec: { type: 'reverse', payload: 'Hello' } },
    {
      line: 3,
      spec: { type: 'sum', payload: '1,2,3', key: 'k', priority: 3, timeoutMs: 1000, maxAttempts: 2 },
    },
  ]);
  assert.deepEqual(
    bad.map((b) => b.line),
    [4, 5, 6, 7, 8],
  );
  assert.match(bad[0]!.message, /not JSON/);
  assert.match(bad[1]!.message, /^type: /);
  assert.match(bad[2]!.message, /timeout/);
  assert.match(bad[4]!.message, /payload/);
});

test('the shipped bulk example is valid JSON Lines of tasks', () => {
  const { tasks, bad } = parseTaskLines(
    readFileSync(new URL('../../examples/tasks.jsonl', import.meta.url), 'utf8'),
  );
  assert.deepEqual(bad, []);
  assert.equal(tasks.length, 7);
});

test('parseSimulationFile reads TaskGrid+ [type, payload] pairs, and the shipped example is valid', () => {
  const shipped = parseSimulationFile(
    readFileSync(new URL('../../examples/tasks.json', import.meta.url), 'utf8'),
  );
  assert.deepEqual(shipped.bad, []);
  assert.deepEqual(
    shipped.tasks.map((t) => [t.type, t.payload]),
    [
      ['reverse', 'Hello'],
      ['sum', '1,2,3'],
      ['upper', 'openai'],
      ['hash', 'abc'],
      ['wait', '2'],
      ['unknown', 'test'],
    ],
  );
  const parsed = parseSimulationFile(
    '[["sum", [1, 2]], {"type": "wait", "payload": 2}, ["x"], ["", "y"], 5]',
  );
  assert.deepEqual(
    parsed.tasks.map((t) => [t.index, t.type, t.payload]),
    [
      [1, 'sum', '[1,2]'],
      [2, 'wait', '2'],
    ],
  );
  assert.deepEqual(
    parsed.bad.map((b) => b.line),
    [3, 4, 5],
  );
  assert.match(parseSimulationFile('{"a": 1}').bad[0]!.message, /JSON list/);
});

test('a pushed task that ends before anyone waits is kept for the wait that comes later', () => {
  const c = new Completions({ maxEntries: 2, maxBytes: 1e6 }, () => 0);
  const view = (id: number, status: TaskView['status'] = 'succeeded'): TaskView => ({
    id,
    type: 't',
    status,
    priority: 0,
    attempts: 1,
    maxAttempts: 1,
    timeoutMs: 1,
    createdAt: 0,
  });
  c.settle(view(1, 'running'));
  assert.equal(c.take(1), undefined, 'a task that has not ended is not kept');
  c.settle(view(1));
  assert.equal(c.take(1)?.id, 1);
  const seen: number[] = [];
  c.listen(2, { onTask: (v) => seen.push(v.id), onError: () => {} });
  c.settle(view(2));
  assert.deepEqual(seen, [2]);
  assert.equal(c.take(2), undefined, 'a task handed to its waiter is not kept as well');
  c.settle(view(3));
  c.settle(view(4));
  assert.equal(c.take(1), undefined, 'the oldest kept task leaves first');
});

test('the client binds loopback for a local grid and every interface otherwise', () => {
  assert.equal(defaultBindHost([{ host: '127.0.0.1', port: 5001 }]), '127.0.0.1');
  assert.equal(defaultBindHost([{ host: 'localhost', port: 5001 }]), '127.0.0.1');
  assert.equal(defaultBindHost([{ host: '::1', port: 5001 }]), '::1');
  assert.equal(
    defaultBindHost([
      { host: '10.0.0.5', port: 5001 },
      { host: '127.0.0.1', port: 4000 },
    ]),
    '0.0.0.0',
  );
  assert.equal(defaultBindHost([{ host: 'fd00::5', port: 5001 }]), '::');
});

test('a simulation file that is not JSON is refused in one line, its line breaks escaped', () => {
  const { tasks, bad } = parseSimulationFile('nope\n');
  assert.deepEqual(tasks, []);
  assert.equal(bad.length, 1);
  assert.match(bad[0]!.message, /^not JSON \(/);
  assert.ok(!bad[0]!.message.includes('\n'), bad[0]!.message);
});
