/**
 * A grid on the in-memory network for the TaskGrid+ adapter tests: a nameservice and a
 * dispatcher (SQLite in memory) with their TaskGrid+ adapters, a v1 client, optional v1
 * workers, and TaskGrid+ programs that send raw JSON datagrams from a host of their own.
 */
import { Dispatcher } from '../../src/dispatcher/dispatcher.ts';
import { SqliteTaskStore } from '../../src/dispatcher/store/sqlite.ts';
import { LegacyDispatcher, LegacyNameservice } from '../../src/legacy/index.ts';
import { encodeLegacy } from '../../src/legacy/wire.ts';
import { Directory } from '../../src/nameservice/directory.ts';
import { Nameservice } from '../../src/nameservice/nameservice.ts';
import type { TypeSettings } from '../../src/dispatcher/dispatcher.ts';
import {
  Endpoint,
  MemoryNetwork,
  systemClock,
  type Clock,
  type MemoryLink,
  type PeerAddress,
} from '../../src/transport/index.ts';
import { TaskWorker } from '../../src/worker/worker.ts';
import { ROOT } from '../support/process.ts';

export const FIXTURES = `${ROOT}test/fixtures/handlers`;
const QUICK = { initialRtoMs: 20, minRtoMs: 5, maxRtoMs: 200 };

/** A reply as a TaskGrid+ program reads it, with its size. */
export interface LegacyReply {
  type: unknown;
  data: Record<string, unknown>;
  bytes: number;
}

/** A clock whose `now` the test moves; timers are real, so sweeps still run. */
export class StepClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    return systemClock.setTimeout(fn, ms);
  }
  clearTimeout(handle: unknown): void {
    systemClock.clearTimeout(handle);
  }
}

/** A TaskGrid+ program at `host`: every request from a fresh port, TASKs on port 6000. */
export class LegacyProgram {
  readonly #net: MemoryNetwork;
  readonly host: string;
  readonly #closers: (() => Promise<void>)[] = [];

  constructor(net: MemoryNetwork, host: string) {
    this.#net = net;
    this.host = host;
  }

  /**
   * Sends `type`/`data` (or raw bytes) and resolves with the first datagram back, or undefined
   * when none came within `timeoutMs`.
   */
  async ask(
    to: PeerAddress,
    type: string | Buffer,
    data?: unknown,
    timeoutMs = 3_000,
  ): Promise<LegacyReply | undefined> {
    const link = this.#net.link(this.host);
    try {
      const reply = new Promise<LegacyReply | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), timeoutMs);
        link.onDatagram((bytes) => {
          clearTimeout(timer);
          const v = JSON.parse(bytes.toString('utf8')) as { type: unknown; data: Record<string, unknown> };
          resolve({ type: v.type, data: v.data, bytes: bytes.length });
        });
      });
      link.send(typeof type === 'string' ? encodeLegacy(type, data) : type, to);
      return await reply;
    } finally {
      await link.close();
    }
  }

  /** Like {@link ask}, but a missing reply fails the test. */
  async must(to: PeerAddress, type: string, data?: unknown): Promise<LegacyReply> {
    const r = await this.ask(to, type, data);
    if (!r) throw new Error(`no reply to ${type} from ${to.host}:${to.port}`);
    return r;
  }

  /** Listens on this host's port 6000, as TaskGrid+ workers did. */
  listen(): WorkerInbox {
    const inbox = new WorkerInbox(this.#net.link(this.host, 6000));
    this.#closers.push(() => inbox.close());
    return inbox;
  }

  async close(): Promise<void> {
    for (const c of this.#closers) await c();
  }
}

/** The datagrams a TaskGrid+ worker received on port 6000, in order. */
export class WorkerInbox {
  readonly #link: MemoryLink;
  readonly received: { type: unknown; data: Record<string, unknown>; bytes: number }[] = [];
  #waiters: (() => void)[] = [];

  constructor(link: MemoryLink) {
    this.#link = link;
    link.onDatagram((bytes) => {
      const v = JSON.parse(bytes.toString('utf8')) as { type: unknown; data: Record<string, unknown> };
      this.received.push({ ...v, bytes: bytes.length });
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f();
    });
  }

  /** Resolves with the `n`-th datagram (1-based) once it arrived; fails after `timeoutMs`. */
  async nth(
    n: number,
    timeoutMs = 5_000,
  ): Promise<{ type: unknown; data: Record<string, unknown>; bytes: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < n) {
      if (Date.now() > deadline)
        throw new Error(`datagram ${n} did not arrive within ${timeoutMs} ms (got ${this.received.length})`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.received[n - 1]!;
  }

  close(): Promise<void> {
    return this.#link.close();
  }
}

export interface LegacyGridOptions {
  /** Whether the dispatcher gets its TaskGrid+ adapter (default true). */
  legacyDispatcher?: boolean;
  types?: ReadonlyMap<string, TypeSettings>;
  leaseGraceMs?: number;
  nsClock?: Clock;
  legacyTtlMs?: number;
}

/** Nameservice and dispatcher with their TaskGrid+ adapters, a v1 client, and v1 workers on demand. */
export class LegacyGrid {
  readonly net = new MemoryNetwork();
  readonly ns: Nameservice;
  readonly nsT: Endpoint;
  readonly legacyNs: LegacyNameservice;
  readonly dT: Endpoint;
  readonly store: SqliteTaskStore;
  readonly directory: Directory;
  readonly dispatcher: Dispatcher;
  readonly legacyD: LegacyDispatcher | undefined;
  readonly client: Endpoint;
  readonly nsAddr = { host: 'ns', port: 5001 };
  readonly dAddr = { host: 'dispatcher', port: 4000 };
  readonly ready: Promise<void>;
  readonly #closers: (() => Promise<void> | void)[] = [];
  #n = 0;

  constructor(options: LegacyGridOptions = {}) {
    this.nsT = new Endpoint(this.net.link('ns', 5001), QUICK);
    this.ns = new Nameservice({
      transport: this.nsT,
      heartbeatMs: 100,
      leaseTtlMs: 600,
      sweepMs: 20,
      ...(options.nsClock ? { clock: options.nsClock } : {}),
    });
    this.legacyNs = new LegacyNameservice({
      transport: this.nsT,
      registry: this.ns,
      ...(options.legacyTtlMs !== undefined ? { leaseTtlMs: options.legacyTtlMs } : {}),
    });
    this.legacyNs.start();
    this.dT = new Endpoint(this.net.link('dispatcher', 4000), QUICK);
    this.store = new SqliteTaskStore({
      path: ':memory:',
      retry: { baseMs: 20, factor: 2, maxMs: 100, jitter: 0 },
    });
    this.directory = new Directory({
      transport: this.dT,
      nameservers: [this.nsAddr],
      self: this.dAddr,
      ttlMs: 2_000,
    });
    this.legacyD =
      options.legacyDispatcher === false
        ? undefined
        : new LegacyDispatcher({ transport: this.dT, store: this.store, directory: this.directory });
    this.dispatcher = new Dispatcher({
      transport: this.dT,
      store: this.store,
      directory: this.directory,
      types:
        options.types ??
        new Map([
          ['echo', {}],
          ['plus', {}],
        ]),
      leaseGraceMs: options.leaseGraceMs ?? 300,
      ...(this.legacyD ? { legacy: this.legacyD } : {}),
    });
    this.client = new Endpoint(this.net.link('client', 7000), QUICK);
    this.#closers.push(
      () => this.client.close(),
      () => this.legacyD?.close(),
      () => this.dispatcher.close(),
      () => this.directory.close(),
      () => this.dT.close(),
      () => this.store.close(),
      () => this.legacyNs.close(),
      () => this.ns.close(),
      () => this.nsT.close(),
    );
    this.ready = this.directory.start().then(async () => {
      await this.dispatcher.start();
      this.legacyD?.start(this.dispatcher);
    });
  }

  /** A TaskGrid+ program on its own host. */
  program(host: string): LegacyProgram {
    const p = new LegacyProgram(this.net, host);
    this.#closers.unshift(() => p.close());
    return p;
  }

  /** A v1 worker running the fixture handlers. */
  async v1Worker(types: string[]): Promise<TaskWorker> {
    const t = new Endpoint(this.net.link(`v1-worker-${++this.#n}`, 6000), QUICK);
    const w = new TaskWorker({
      transport: t,
      nameservers: [this.nsAddr],
      types,
      typesDir: FIXTURES,
      concurrency: 2,
      advertise: t.address,
      heartbeatMs: 100,
      drainTimeoutMs: 1_000,
    });
    await w.start();
    this.#closers.unshift(async () => {
      await w.stop().catch(() => {});
      await t.close();
    });
    return w;
  }

  /** Polls the dispatcher's view until `pred` holds for some worker instance. */
  async untilDirectory(
    pred: (types: string[], meta: Record<string, string>) => boolean,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (!this.directory.instances({ role: 'worker' }).some((i) => pred(i.types, i.meta))) {
      if (Date.now() > deadline) throw new Error(`the dispatcher's directory never showed ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    for (const c of this.#closers) await c();
  }
}
