import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckStatus } from '../../src/protocol/frame.ts';
import { Reassembler } from '../../src/protocol/reassembly.ts';

const limits = { maxMessages: 4, maxBytes: 10_000, ttlMs: 1_000, maxMessageBytes: 5_000 };
const part = (s: string) => Buffer.from(s);

test('fragments arriving out of order and twice reassemble into the message once', () => {
  const r = new Reassembler(limits);
  assert.equal(r.add('k', 2, 3, 9, part('ghi'), 0, 32).kind, 'partial');
  assert.equal(r.add('k', 0, 3, 9, part('abc'), 0, 32).kind, 'partial');
  assert.equal(r.add('k', 0, 3, 9, part('abc'), 0, 32).kind, 'duplicate');
  const done = r.add('k', 1, 3, 9, part('def'), 0, 32);
  assert.equal(done.kind, 'complete');
  assert.ok(done.kind === 'complete');
  assert.equal(done.message.toString(), 'abcdefghi');
  assert.equal(r.add('k', 1, 3, 9, part('def'), 0, 32).kind, 'already-complete');
  assert.equal(r.pendingBytes, 0);
});

test('the ack state reports what arrived as a cumulative point and a bitmap', () => {
  const r = new Reassembler(limits);
  r.add('k', 0, 10, 100, part('0123456789'), 0, 32);
  r.add('k', 1, 10, 100, part('0123456789'), 0, 32);
  r.add('k', 4, 10, 100, part('0123456789'), 0, 32);
  const s = r.ackState('k', 10, 100);
  assert.equal(s.status, AckStatus.PARTIAL);
  assert.equal(s.below, 2);
  assert.equal(s.bitmap[0], 0b100); // index 4 = below + 2
  assert.equal(r.ackState('other', 10, 100).status, AckStatus.UNKNOWN);
});

test('a message declaring more than the maximum size is refused at its first fragment', () => {
  const r = new Reassembler(limits);
  assert.deepEqual(r.add('k', 0, 2, 6_000, part('x'), 0, 32), { kind: 'rejected', reason: 'too-large' });
  assert.equal(r.pendingMessages, 0);
});

test('partial messages are bounded in count and bytes, and expire', () => {
  const r = new Reassembler(limits);
  for (let i = 0; i < 4; i++) assert.equal(r.add(`k${i}`, 0, 2, 4000, Buffer.alloc(2000), 0, 32).kind, 'partial');
  assert.deepEqual(r.add('k9', 0, 2, 4000, Buffer.alloc(10), 0, 32), { kind: 'rejected', reason: 'no-room' });
  assert.equal(r.pendingMessages, 4);
  assert.ok(r.pendingBytes <= limits.maxBytes);
  r.expire(5_000);
  assert.equal(r.pendingMessages, 0);
  assert.equal(r.pendingBytes, 0);
  assert.equal(r.add('k9', 0, 2, 4000, Buffer.alloc(10), 5_000, 32).kind, 'partial');
});

test('fragments that disagree with their message are refused', () => {
  const r = new Reassembler(limits);
  r.add('k', 0, 3, 9, part('abc'), 0, 32);
  assert.deepEqual(r.add('k', 1, 4, 9, part('def'), 0, 32), { kind: 'rejected', reason: 'inconsistent' });
  assert.deepEqual(r.add('k', 1, 3, 9, part('defghijkl'), 0, 32), { kind: 'rejected', reason: 'inconsistent' });
});

test('when full, a partial message idle past evictIdleMs makes room for a new one, least recently active first', () => {
  const r = new Reassembler({ ...limits, evictIdleMs: 100 });
  // A flood of first fragments that never complete fills every slot...
  for (let i = 0; i < 4; i++) r.add(`junk${i}`, 0, 2, 20, Buffer.alloc(10), i, 32);
  // ...while they are fresh, a new message is refused...
  assert.deepEqual(r.add('legit', 0, 2, 6, part('abc'), 50, 32), { kind: 'rejected', reason: 'no-room' });
  // ...but once they have been idle for evictIdleMs (well inside the TTL), it takes the oldest one's room.
  assert.equal(r.add('legit', 0, 2, 6, part('abc'), 101, 32).kind, 'partial');
  assert.equal(r.pendingMessages, 4);
  assert.equal(r.add('junk0', 1, 2, 20, Buffer.alloc(10), 102, 32).kind, 'partial', 'junk0 was evicted: it starts anew');
  const done = r.add('legit', 1, 2, 6, part('def'), 103, 32);
  assert.ok(done.kind === 'complete');
  assert.equal(done.message.toString(), 'abcdef');
  // Bytes are bounded the same way: an active message gets room from idle ones.
  const b = new Reassembler({ ...limits, evictIdleMs: 100 });
  b.add('idle', 0, 3, 4_500, Buffer.alloc(4_000), 0, 32);
  b.add('active', 0, 3, 4_500, Buffer.alloc(4_000), 0, 32);
  assert.deepEqual(b.add('active', 1, 3, 4_500, Buffer.alloc(400), 50, 32).kind, 'partial');
  assert.deepEqual(b.add('new', 0, 2, 4_000, Buffer.alloc(3_000), 60, 32), { kind: 'rejected', reason: 'no-room' });
  assert.equal(b.add('new', 0, 2, 4_000, Buffer.alloc(3_000), 120, 32).kind, 'partial');
  assert.ok(b.pendingBytes <= limits.maxBytes);
  assert.equal(b.add('active', 2, 3, 4_500, Buffer.alloc(100), 130, 32).kind, 'complete');
});
