/**
 * A fake dispatcher and nameservice for client tests: real endpoints (in-memory or UDP) with
 * handlers that follow the dispatcher's contract, tasks "run" in-process after a short delay.
 * Knobs make them misbehave on purpose: BUSY replies, lost `done` pushes.
 */
import { createHash } from 'node:crypto';
import { BusyError, ErrorCode, TaskGridError } from '../../src/errors.ts';
import type { Instance, TaskView, WireError } from '../../src/protocol/messages.ts';
import type { PeerAddress, Transport } from '../../src/transport/types.ts';

/** A task type's behaviour: return the result, or throw to fail the task. */
export type FakeHandler = (payload: string) => string;

export const FAKE_TYPES: Record<string, FakeHandler> = {
  reverse: (p) => [...p].reverse().join(''),
  upper: (p) => p.toUpperCase(),
  sum: (p) => String(p.split(',').reduce((a, b) => a + Number(b), 0)),
  hash: (p) => createHash('sha256').update(p).digest('hex'),
  wait: (p) => `waited ${p}s`,
  fail: (p) => {
    throw new Error(`fail: ${p}`);
  },
};

export interface FakeDispatcherOptions {
  types?: Record<string, FakeHandler>;
  /** Time from submit to the task ending. */
  runDelayMs?: number;
  /** A `wait` task's payload in seconds is multiplied by this many ms (instead of 1000). */
  waitScaleMs?: number;
  /** Answer the first N submit requests with BUSY. */
  busyReplies?: number;
  retryAfterMs?: number;
  /** Never push `done` (the client must poll). */
  dropPushes?: boolean;
  /** Leave the first N `watch` requests unanswered (as if they were lost). */
  ignoreWatches?: number;
  /**
   * Most views of ended tasks in one `watch` reply; the others are pushed with `done` at once
   * (as the dispatcher keeps a reply small), and so are lost too with `dropPushes`.
   */
  watchViews?: number;
}

function peerKey(p: PeerAddress): string {
  return `${p.host}:${p.port}`;
}

export class FakeDispatcher {
  readonly transport: Transport;
  readonly tasks = new Map<number, TaskView>();
  /** Every submit request that reached the handler (each runs once per message). */
  readonly submits: { at: number; size: number; busy: boolean }[] = [];
  readonly requests = new Map<string, number>();
  /** Most submit requests being handled at once. */
  maxConcurrentSubmits = 0;
  dropPushes: boolean;
  #concurrentSubmits = 0;
  #nextId = 1;
  readonly #keys = new Map<string, number>();
  readonly #watchers = new Map<number, PeerAddress[]>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #o: Required<Omit<FakeDispatcherOptions, 'dropPushes' | 'ignoreWatches' | 'watchViews'>>;
  readonly #watchViews: number | undefined;
  #ignoreWatches: number;
  readonly #started = Date.now();
  #busyLeft: number;

  constructor(transport: Transport, options: FakeDispatcherOptions = {}) {
    this.transport = transport;
    this.#o = {
      types: options.types ?? FAKE_TYPES,
      runDelayMs: options.runDelayMs ?? 5,
      waitScaleMs: options.waitScaleMs ?? 1000,
      busyReplies: options.busyReplies ?? 0,
      retryAfterMs: options.retryAfterMs ?? 100,
    };
    this.dropPushes = options.dropPushes ?? false;
    this.#watchViews = options.watchViews;
    this.#ignoreWatches = options.ignoreWatches ?? 0;
    this.#busyLeft = this.#o.busyReplies;
    const t = transport;
    t.handle('ping', () => {
      this.#count('ping');
      return {
        component: 'dispatcher',
        version: '0.0.0-fake',
        uptimeMs: Date.now() - this.#started,
        pid: process.pid,
      };
    });
    t.handle('submit', async ({ tasks, notify }, ctx) => {
      this.#count('submit');
      this.#concurrentSubmits++;
      this.maxConcurrentSubmits = Math.max(this.maxConcurrentSubmits, this.#concurrentSubmits);
      try {
        // A commit takes a moment; it lets concurrent batches overlap.
        await new Promise((r) => setTimeout(r, 5));
        if (this.#busyLeft > 0) {
          this.#busyLeft--;
          this.submits.push({ at: Date.now(), size: tasks.length, busy: true });
          throw new BusyError('queue full', this.#o.retryAfterMs);
        }
        this.submits.push({ at: Date.now(), size: tasks.length, busy: false });
        return {
          results: tasks.map((spec) => {
            if (!Object.hasOwn(this.#o.types, spec.type)) {
              return {
                error: { code: ErrorCode.UNKNOWN_TYPE, message: `no worker serves type "${spec.type}"` },
              };
            }
            if (spec.key !== undefined) {
              const known = this.#keys.get(spec.key);
              if (known !== undefined) {
                if (notify) this.#watch(known, ctx.peer);
                return { id: known, duplicate: true };
              }
            }
            const id = this.#nextId++;
            if (spec.key !== undefined) this.#keys.set(spec.key, id);
            const view: TaskView = {
              id,
              type: spec.type,
              status: 'queued',
              payload: spec.payload,
              priority: spec.priority ?? 0,
              attempts: 0,
              maxAttempts: spec.maxAttempts ?? 3,
              timeoutMs: spec.timeoutMs ?? 30_000,
              createdAt: Date.now(),
            };
            if (spec.key !== undefined) view.key = spec.key;
            this.tasks.set(id, view);
            if (notify) this.#watch(id, ctx.peer);
            this.#schedule(view);
            return { id };
          }),
        };
      } finally {
        this.#concurrentSubmits--;
      }
    });
    t.handle('watch', ({ ids }, ctx) => {
      this.#count('watch');
      if (this.#ignoreWatches > 0) {
        this.#ignoreWatches--;
        return new Promise<never>(() => {});
      }
      const finished: TaskView[] = [];
      const missing: number[] = [];
      for (const id of ids) {
        const v = this.tasks.get(id);
        if (!v) missing.push(id);
        else if (isEnded(v)) finished.push(this.#public(v));
        else this.#watch(id, ctx.peer);
      }
      const most = this.#watchViews;
      if (most !== undefined && finished.length > most) {
        for (const v of finished.slice(most)) this.#pushTo([ctx.peer], v);
        return { finished: finished.slice(0, most), missing };
      }
      return { finished, missing };
    });
    t.handle('get-result', async ({ ids, waitMs, payload }) => {
      this.#count('get-result');
      const deadline = Date.now() + (waitMs ?? 0);
      while (
        Date.now() < deadline &&
        !ids.every((id) => !this.tasks.has(id) || isEnded(this.tasks.get(id)!))
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const tasks: TaskView[] = [];
      const missing: number[] = [];
      for (const id of ids) {
        const v = this.tasks.get(id);
        if (v) tasks.push(this.#public(v, payload === true));
        else missing.push(id);
      }
      return { tasks, missing };
    });
    t.handle('cancel', ({ id }) => {
      this.#count('cancel');
      const v = this.#get(id);
      if (!isEnded(v))
        this.#end(v, 'cancelled', undefined, { code: ErrorCode.CANCELLED, message: 'cancelled by a client' });
      return { task: this.#public(v) };
    });
    t.handle('retry', ({ id }) => {
      this.#count('retry');
      const v = this.#get(id);
      // As the dispatcher: a retry its status does not allow changes nothing, and says so.
      if (v.status !== 'failed' && v.status !== 'cancelled') return { task: this.#public(v), changed: false };
      v.status = 'queued';
      v.attempts = 0;
      delete v.error;
      delete v.finishedAt;
      this.#schedule(v);
      return { task: this.#public(v), changed: true };
    });
    t.handle('stats', () => {
      this.#count('stats');
      const zero = () => ({ queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
      const totals = { ...zero(), throughput: 0 };
      const types: Record<
        string,
        ReturnType<typeof zero> & {
          throughput: number;
          runMs: { p50: number; p95: number };
          waitMs: { p50: number; p95: number };
        }
      > = {};
      for (const v of this.tasks.values()) {
        const s = (types[v.type] ??= {
          ...zero(),
          throughput: 0,
          runMs: { p50: 1, p95: 2 },
          waitMs: { p50: 0, p95: 1 },
        });
        s[v.status]++;
        totals[v.status]++;
      }
      return {
        types,
        workers: [
          {
            id: 'w-1',
            address: { host: '127.0.0.1', port: 6001 },
            types: Object.keys(this.#o.types),
            capacity: 4,
            inFlight: 0,
            completed: totals.succeeded,
            failed: totals.failed,
          },
        ],
        totals,
        transport: { requestsHandled: 1 },
      };
    });
  }

  count(kind: string): number {
    return this.requests.get(kind) ?? 0;
  }

  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #count(kind: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
  }

  #get(id: number): TaskView {
    const v = this.tasks.get(id);
    if (!v) throw new TaskGridError(ErrorCode.NOT_FOUND, `task ${id} does not exist`);
    return v;
  }

  #public(v: TaskView, payload = false): TaskView {
    const copy = { ...v };
    if (!payload) delete copy.payload;
    return copy;
  }

  #watch(id: number, peer: PeerAddress): void {
    const list = this.#watchers.get(id) ?? [];
    if (!list.some((p) => peerKey(p) === peerKey(peer))) list.push(peer);
    this.#watchers.set(id, list);
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  #schedule(v: TaskView): void {
    this.#later(this.#o.runDelayMs, () => {
      if (v.status !== 'queued') return;
      v.status = 'running';
      v.attempts++;
      v.startedAt = Date.now();
      const handler = this.#o.types[v.type]!;
      const extra = v.type === 'wait' ? Number(v.payload) * this.#o.waitScaleMs : 0;
      this.#later(extra, () => {
        if (v.status !== 'running') return;
        try {
          this.#end(v, 'succeeded', handler(v.payload ?? ''));
        } catch (err) {
          this.#end(v, 'failed', undefined, {
            code: ErrorCode.HANDLER_FAILED,
            message: (err as Error).message,
          });
        }
      });
    });
  }

  #end(v: TaskView, status: 'succeeded' | 'failed' | 'cancelled', result?: string, error?: WireError): void {
    v.status = status;
    v.finishedAt = Date.now();
    if (result !== undefined) v.result = result;
    if (error) v.error = error;
    const peers = this.#watchers.get(v.id) ?? [];
    this.#watchers.delete(v.id);
    this.#pushTo(peers, v);
  }

  #pushTo(peers: readonly PeerAddress[], v: TaskView): void {
    if (this.dropPushes) return;
    for (const peer of peers) {
      this.transport
        .request(peer, 'done', { tasks: [this.#public(v)] }, { timeoutMs: 2_000 })
        .catch(() => {});
    }
  }
}

function isEnded(v: TaskView): boolean {
  return v.status === 'succeeded' || v.status === 'failed' || v.status === 'cancelled';
}

/** A nameservice that knows a fixed list of instances. */
export class FakeNameservice {
  readonly instances: Instance[];
  lookups = 0;
  lists = 0;

  constructor(transport: Transport, instances: Instance[] = []) {
    this.instances = instances;
    transport.handle('lookup', ({ role, type }) => {
      this.lookups++;
      return {
        instances: this.instances.filter(
          (i) => (role === undefined || i.role === role) && (type === undefined || i.types.includes(type)),
        ),
      };
    });
    transport.handle('list', () => {
      this.lists++;
      return { instances: this.instances };
    });
    transport.handle('ping', () => ({
      component: 'nameservice',
      version: '0.0.0-fake',
      uptimeMs: 1,
      pid: process.pid,
    }));
  }
}

/** An instance record as a nameservice would report it. */
export function instance(
  id: string,
  role: Instance['role'],
  address: PeerAddress,
  types: string[] = [],
): Instance {
  const now = Date.now();
  return {
    id,
    role,
    types,
    address,
    capacity: 4,
    meta: {},
    registeredAt: now - 10_000,
    lastSeen: now,
    inFlight: 0,
  };
}

/** A fake dispatcher and nameservice on real UDP (127.0.0.1, free ports), for CLI tests. */
export async function startUdpGrid(options: FakeDispatcherOptions = {}) {
  const { createUdpTransport } = await import('../../src/transport/index.ts');
  const dispatcherEp = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const nameserviceEp = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const dispatcher = new FakeDispatcher(dispatcherEp, options);
  const nameservice = new FakeNameservice(nameserviceEp, [
    instance('dispatcher-1', 'dispatcher', dispatcherEp.address),
    instance('worker-reverse-1', 'worker', { host: '127.0.0.1', port: 6001 }, ['reverse', 'upper']),
  ]);
  // A port that was free a moment ago: nothing answers there.
  const gone = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const deadAddr = `127.0.0.1:${gone.address.port}`;
  await gone.close();
  return {
    dispatcher,
    nameservice,
    dispatcherAddr: `127.0.0.1:${dispatcherEp.address.port}`,
    nameserviceAddr: `127.0.0.1:${nameserviceEp.address.port}`,
    deadAddr,
    async close() {
      dispatcher.close();
      await dispatcherEp.close();
      await nameserviceEp.close();
    },
  };
}
