import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Watchers } from '../../src/dispatcher/watchers.ts';

const taken = (w: Watchers, id: number): string[] => {
  const t = w.take(id);
  return t === undefined ? [] : typeof t === 'string' ? [t] : [...t].sort();
};

test('a task watched by one client, then by several, gives each watcher once when taken', () => {
  const w = new Watchers();
  w.add(1, 'a:1');
  w.add(1, 'a:1');
  w.add(2, 'a:1');
  w.add(2, 'b:2');
  w.add(2, 'c:3');
  w.add(2, 'b:2');
  assert.equal(w.size, 2);
  assert.ok(w.has(1) && w.has(2) && !w.has(3));
  assert.deepEqual(taken(w, 1), ['a:1']);
  assert.deepEqual(taken(w, 2), ['a:1', 'b:2', 'c:3']);
  assert.deepEqual(taken(w, 2), []);
  assert.equal(w.size, 0);
});

test('removing one watcher keeps the others; removing the last forgets the task', () => {
  const w = new Watchers();
  w.add(5, 'a:1');
  w.remove(5, 'b:2'); // not a watcher: nothing changes
  assert.ok(w.has(5));
  w.remove(5, 'a:1');
  assert.ok(!w.has(5));
  w.add(6, 'a:1');
  w.add(6, 'b:2');
  w.remove(6, 'a:1');
  assert.deepEqual(taken(w, 6), ['b:2']);
  w.add(7, 'a:1');
  w.add(7, 'b:2');
  w.remove(7, 'a:1');
  w.remove(7, 'b:2');
  assert.equal(w.size, 0);
  w.add(8, 'a:1');
  w.add(9, 'a:1');
  w.add(9, 'b:2');
  w.delete(8);
  w.delete(9);
  assert.equal(w.size, 0);
});
