import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requests } from '../../src/protocol/messages.ts';

test('a submit body accepts a batch of tasks with their options', () => {
  const r = requests.submit.req.safeParse({
    tasks: [
      { type: 'reverse', payload: 'Hello' },
      { type: 'my_type.v2', payload: '', key: 'k-1', priority: 5, timeoutMs: 1000, maxAttempts: 3 },
    ],
    notify: true,
  });
  assert.ok(r.success, JSON.stringify(r.error?.issues));
});

test('a submit body with a bad type name, unknown field or empty batch is refused with the field named', () => {
  const cases: [unknown, RegExp][] = [
    [{ tasks: [{ type: '../etc', payload: 'x' }] }, /tasks\.0\.type/],
    [{ tasks: [{ type: 'reverse', payload: 'x', colour: 'red' }] }, /colour/],
    [{ tasks: [] }, /tasks/],
    [{ tasks: [{ type: 'reverse', payload: 5 }] }, /payload/],
    [{ tasks: [{ type: 'reverse', payload: 'x', priority: 1.5 }] }, /priority/],
    [{ tasks: [{ type: 'reverse', payload: 'x', maxAttempts: 0 }] }, /maxAttempts/],
  ];
  for (const [body, re] of cases) {
    const r = requests.submit.req.safeParse(body);
    assert.equal(r.success, false);
    const text = r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ');
    assert.match(text, re, JSON.stringify(body));
  }
});

test('a task outcome is either a result or an error with a stable code', () => {
  const ok = requests.result.req.safeParse({ results: [{ id: 1, attempt: 1, ok: true, result: 'olleH', runMs: 0.1 }] });
  assert.ok(ok.success);
  const bad = requests.result.req.safeParse({
    results: [{ id: 1, attempt: 1, ok: false, error: { code: 'NOT_A_CODE', message: 'x' }, permanent: false, runMs: 1 }],
  });
  assert.equal(bad.success, false);
});
