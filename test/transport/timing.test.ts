import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RttEstimator } from '../../src/transport/rtt.ts';
import { TimerQueue, type TimerEntry } from '../../src/transport/timer-queue.ts';
import type { Clock } from '../../src/transport/types.ts';

/** A clock whose time moves only when the test says so. */
class FakeClock implements Clock {
  t = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const h = this.#next++;
    this.#timers.set(h, { at: this.t + ms, fn });
    return h;
  }
  clearTimeout(h: unknown) {
    this.#timers.delete(h as number);
  }
  get pending() {
    return this.#timers.size;
  }
  advance(ms: number) {
    this.t += ms;
    for (const [h, e] of [...this.#timers]) {
      if (e.at <= this.t) {
        this.#timers.delete(h);
        e.fn();
      }
    }
  }
}

test('the timer queue fires entries in due order on one clock timer', () => {
  const clock = new FakeClock();
  const q = new TimerQueue(clock);
  const fired: string[] = [];
  q.schedule(30, () => fired.push('c'));
  q.schedule(10, () => fired.push('a'));
  const b = q.schedule(20, () => fired.push('b'));
  assert.equal(clock.pending, 1);
  q.cancel(b);
  clock.advance(15);
  assert.deepEqual(fired, ['a']);
  clock.advance(100);
  assert.deepEqual(fired, ['a', 'c']);
  assert.equal(q.size, 0);
});

test('the timer queue releases its clock timer when every entry is cancelled', () => {
  const clock = new FakeClock();
  const q = new TimerQueue(clock);
  const a = q.schedule(1000, () => assert.fail('cancelled'));
  const b = q.schedule(2000, () => assert.fail('cancelled'));
  q.cancel(a);
  q.cancel(b);
  assert.equal(clock.pending, 0);
});

test('the retransmission timeout follows measured round trips within its bounds', () => {
  const r = new RttEstimator({ initialMs: 200, minMs: 10, maxMs: 2000 });
  assert.equal(r.rtoMs, 200);
  for (let i = 0; i < 20; i++) r.sample(0.2);
  assert.equal(r.rtoMs, 10, 'a fast LAN is paced by the floor, not by 1 s');
  for (let i = 0; i < 20; i++) r.sample(100);
  const rto: number = r.rtoMs;
  assert.ok(rto > 100 && rto < 400, `rto ${rto}`);
  for (let i = 0; i < 20; i++) r.sample(10_000);
  assert.equal(r.rtoMs, 2000);
});

test('a timer entry moved earlier or later fires at its new time, and cancelling removes it at once', () => {
  const clock = new FakeClock();
  const q = new TimerQueue(clock);
  const fired: string[] = [];
  const fn = (e: TimerEntry) => fired.push((e as TimerEntry & { name: string }).name);
  const entries = ['a', 'b', 'c', 'd'].map((name, i) => {
    const e = { at: 0, index: -1, fn, name };
    q.scheduleAt(e, 100 + 10 * i);
    return e;
  });
  q.scheduleAt(entries[3]!, 5); // d: earlier than all
  q.scheduleAt(entries[0]!, 500); // a: later than all
  q.cancel(entries[1]); // b: gone
  assert.equal(q.size, 3);
  assert.equal(entries[1]!.index, -1);
  clock.advance(200);
  assert.deepEqual(fired, ['d', 'c']);
  clock.advance(400);
  assert.deepEqual(fired, ['d', 'c', 'a']);
  assert.equal(q.size, 0);
});

test('the timer queue re-uses its clock timer, released but not cleared, when the next entry is due no earlier', () => {
  // A Node-like handle that can stop holding the process without being cleared.
  const refs: boolean[] = [];
  const base = new FakeClock();
  let created = 0;
  const clock: Clock = {
    now: () => base.now(),
    setTimeout: (fn, ms) => {
      created++;
      const h = base.setTimeout(fn, ms);
      return { h, ref: () => refs.push(true), unref: () => refs.push(false) };
    },
    clearTimeout: (handle) => base.clearTimeout((handle as { h: number }).h),
  };
  const q = new TimerQueue(clock);
  const a = q.schedule(10, () => {});
  q.cancel(a);
  assert.deepEqual(refs, [false], 'no entry left: the timer no longer holds the process');
  q.schedule(20, () => {});
  assert.deepEqual(refs, [false, true], 'the next entry, due later, re-uses and re-holds it');
  assert.equal(created, 1, 'one clock timer for both');
  base.advance(10); // the re-used timer fires early, finds nothing due, and re-arms
  assert.equal(created, 2);
  assert.equal(q.size, 1);
});
