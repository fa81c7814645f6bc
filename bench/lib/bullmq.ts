/**
 * BullMQ's side of the benchmark: a producer here (Queue + QueueEvents) and worker processes
 * of bench/bullmq-worker.ts on a private redis-server (bench/lib/redis.ts), doing the same
 * `reverse` work with the same payloads and counts as TaskGrid's side.
 */
import { Queue, QueueEvents } from 'bullmq';
import { handle as reverse } from '../../worker_types/reverse.ts';
import { startTs, type Child } from '../../test/support/process.ts';
import type { RedisServer } from './redis.ts';
import { roundTripPayload, throughputPayload } from './taskgrid.ts';

/** Jobs a BullMQ worker process runs at once. */
export const BULLMQ_CONCURRENCY = 50;
/** Jobs per addBulk call and calls in flight: as TaskGrid's client batches its submits. */
const BATCH = 500;
const BATCHES_IN_FLIGHT = 4;

interface Completed {
  jobId: string;
  returnvalue: unknown;
}

/** One queue on one Redis, its event listener and its worker processes. */
export class BullmqSide {
  readonly workers: Child[] = [];
  readonly #queue: Queue;
  readonly #events: QueueEvents;
  readonly #name: string;
  readonly #port: number;
  /** The highest job id added so far (BullMQ numbers jobs 1, 2, ... per queue). */
  #lastId = 0;

  private constructor(redis: RedisServer, name: string, eventsMaxLen: number) {
    const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
    this.#name = name;
    this.#port = redis.port;
    // The producer counts completions from the events stream; BullMQ trims it to 10,000 by
    // default, which a producer busy adding jobs can fall behind.
    this.#queue = new Queue(name, { connection, streams: { events: { maxLen: eventsMaxLen } } });
    this.#events = new QueueEvents(name, { connection });
  }

  /** A fresh queue `name` (Redis flushed first) with `eventsMaxLen` events kept. */
  static async open(redis: RedisServer, name: string, eventsMaxLen: number): Promise<BullmqSide> {
    await redis.flush();
    const side = new BullmqSide(redis, name, eventsMaxLen);
    await Promise.all([side.#queue.waitUntilReady(), side.#events.waitUntilReady()]);
    return side;
  }

  /** Starts `n` more worker processes (in parallel) and resolves once each is connected. */
  async addWorkers(n: number, concurrency = BULLMQ_CONCURRENCY): Promise<void> {
    const started = Array.from({ length: n }, () =>
      startTs('bench/bullmq-worker.ts', [String(this.#port), this.#name, String(concurrency)]),
    );
    this.workers.push(...started);
    await Promise.all(started.map((w) => w.nextJson((v: { msg?: string }) => v.msg === 'ready', 60_000)));
  }

  /**
   * `n` reverse jobs added in batches, then waited for: jobs a second from the first add to
   * the last completion seen by this producer. Fails unless every job completed with the
   * reversed payload.
   */
  async throughput(n: number): Promise<number> {
    const payloads = Array.from({ length: n }, (_, i) => throughputPayload(i));
    const completed: Completed[] = [];
    let failed = 0;
    let resolveAll!: () => void;
    let rejectAll!: (err: Error) => void;
    const all = new Promise<void>((resolve, reject) => {
      resolveAll = resolve;
      rejectAll = reject;
    });
    all.catch(() => {}); // awaited below, after the adds; not unhandled meanwhile
    // A completion the producer never sees would hang the phase: give up after a minute
    // without any.
    let seen = -1;
    const stall = setInterval(() => {
      if (completed.length === seen)
        rejectAll(new Error(`BullMQ: ${seen} of ${n} completions seen, none for 60 s`));
      seen = completed.length;
    }, 60_000);
    // Jobs added before this phase may still report their completion (a round trip's
    // waitUntilFinished can resolve from the job's state before its event is read).
    const before = this.#lastId;
    const onCompleted = (c: Completed) => {
      if (Number(c.jobId) > before && completed.push(c) >= n) resolveAll();
    };
    const onFailed = () => {
      failed++;
      resolveAll();
    };
    this.#events.on('completed', onCompleted);
    this.#events.on('failed', onFailed);
    try {
      const ids: string[] = [];
      const t0 = process.hrtime.bigint();
      let next = 0;
      const lane = async () => {
        for (let start = next; start < n; start = next) {
          next += BATCH;
          const jobs = await this.#queue.addBulk(
            payloads.slice(start, start + BATCH).map((payload) => ({ name: 'reverse', data: { payload } })),
          );
          jobs.forEach((job, k) => (ids[start + k] = job.id!));
          this.#lastId = Math.max(this.#lastId, Number(jobs.at(-1)?.id));
        }
      };
      await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, lane));
      await all;
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (failed > 0) throw new Error(`${failed} BullMQ jobs failed`);
      const expected = new Map(ids.map((id, i) => [id, reverse(payloads[i]!)]));
      const wrong = completed.filter((c) => expected.get(c.jobId) !== c.returnvalue).length;
      if (wrong > 0 || completed.length !== n) {
        throw new Error(
          `${wrong} of ${completed.length} BullMQ completions were not this phase's reversed payloads`,
        );
      }
      return n / seconds;
    } finally {
      clearInterval(stall);
      this.#events.off('completed', onCompleted);
      this.#events.off('failed', onFailed);
    }
  }

  /** `n` sequential `queue.add` + `job.waitUntilFinished`: microseconds each. */
  async roundTrips(n: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const payload = roundTripPayload(i);
      const t0 = process.hrtime.bigint();
      const job = await this.#queue.add('reverse', { payload });
      this.#lastId = Math.max(this.#lastId, Number(job.id));
      const result: unknown = await job.waitUntilFinished(this.#events, 60_000);
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (result !== reverse(payload)) throw new Error(`BullMQ reversed ${payload} as ${String(result)}`);
    }
    return times;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop(5_000)));
    await this.#events.close();
    await this.#queue.close();
  }
}
