/**
 * The duplicate cache's index: entries found by (peer, id) until evicted by age, count or
 * bytes, in insertion order, with their replies, through growth and heavy turnover.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeenCache } from '../../src/transport/seen-cache.ts';

const OK = Buffer.from('{"k":"ok","id":');

test('the seen cache finds entries by peer and id across the 32-bit wrap, and forgets the oldest beyond its count bound', () => {
  const c = new SeenCache(1000, Infinity, 7);
  const id = (i: number) => (0xfffff000 + i) >>> 0;
  for (let i = 0; i < 5000; i++) c.add(1 + (i % 3), id(i), i, 1);
  assert.equal(c.size, 1000);
  for (let i = 0; i < 4000; i++) assert.equal(c.find(1 + (i % 3), id(i)), -1, `evicted ${i}`);
  for (let i = 4000; i < 5000; i++) {
    const n = c.find(1 + (i % 3), id(i));
    assert.ok(c.has(n), `kept ${i}`);
    assert.equal(c.id(n), id(i));
  }
  assert.equal(c.find(2, id(4998)), -1, 'the same id from another peer is another entry');
  assert.equal(c.countFor(1) + c.countFor(2) + c.countFor(3), 1000);
});

test('the seen cache keeps each reply with its entry and evicts by age and by bytes, oldest first', () => {
  const c = new SeenCache(100, 1000, 1);
  const a = c.add(1, 1, 10, 1);
  const b = c.add(1, 2, 20, 2);
  assert.equal(c.hasReply(a), false, 'no reply while the handler runs');
  c.setReply(a, OK, '{"x":1}', undefined, 77, 400);
  c.setReply(b, OK, undefined, undefined, 78, 400);
  assert.equal(c.replyBody(a), '{"x":1}');
  assert.equal(c.replyId(a), 77);
  assert.equal(c.hasReply(b), true, 'a reply without a body is a reply');
  const d = c.add(2, 3, 30, 3);
  c.setReply(d, OK, '{}', undefined, 79, 400);
  assert.equal(c.has(a), false, 'over 1000 bytes: the oldest went');
  assert.equal(c.find(1, 1), -1);
  assert.equal(c.tx(a), 0, 'an evicted entry answers nothing');
  c.setReply(a, OK, 'late', undefined, 1, 1);
  assert.equal(c.replyBody(a), undefined, 'a reply for an evicted entry is not kept');
  c.evict(25);
  assert.equal(c.find(1, 2), -1, 'older than the cutoff');
  assert.equal(c.id(c.find(2, 3)), 3);
  assert.equal(c.bytes, 400);
  c.setTx(d, 5);
  assert.equal(c.tx(d), 5);
});

test('the seen cache stays exact under random and clustered ids, eviction pressure and growth', () => {
  let s = 12345;
  const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  const c = new SeenCache(20_000, Infinity, rand());
  const added: { peer: number; id: number; n: number }[] = [];
  for (let i = 0; i < 100_000; i++) {
    const peer = 1 + (rand() % 50);
    // Clustered ids, as real senders count up, plus random ones.
    const id = i % 2 ? (peer * 1_000_000 + i) >>> 0 : rand();
    if (c.find(peer, id) >= 0) continue;
    added.push({ peer, id, n: c.add(peer, id, i, 1) });
    if (i % 997 === 0) c.evict(i - 5000);
  }
  let held = 0;
  for (const e of added) {
    const found = c.find(e.peer, e.id);
    if (c.has(e.n)) {
      held++;
      assert.equal(found, e.n);
    } else {
      assert.equal(found, -1);
    }
  }
  assert.equal(held, c.size);
  assert.ok(c.size <= 20_000);
  c.clear();
  assert.equal(c.size, 0);
  assert.equal(c.find(added.at(-1)!.peer, added.at(-1)!.id), -1);
});
