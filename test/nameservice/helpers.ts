/**
 * A grid on the in-memory network for nameservice tests: endpoints and nameservices at chosen
 * addresses, with short intervals, closed in reverse order when the test ends.
 */
import { Nameservice, type NameserviceOptions } from '../../src/nameservice/index.ts';
import type { RequestBody } from '../../src/protocol/messages.ts';
import {
  Endpoint,
  MemoryNetwork,
  type EndpointOptions,
  type Faults,
  type PeerAddress,
} from '../../src/transport/index.ts';

/** Quick retransmission, so that loss costs milliseconds rather than seconds. */
export const QUICK: EndpointOptions = {
  initialRtoMs: 20,
  minRtoMs: 5,
  maxRtoMs: 100,
  requestTimeoutMs: 5_000,
};

/**
 * Nameservice timing for tests: heartbeats every 50 ms, leases of 600 ms (twelve heartbeats, so
 * that an event-loop stall of a loaded machine in the one process running both sides does not
 * lapse a lease that heartbeats keep).
 */
export const FAST_NS = { heartbeatMs: 50, leaseTtlMs: 600, sweepMs: 20, changesTimeoutMs: 1_000 } as const;

export interface RunningNameservice {
  ns: Nameservice;
  transport: Endpoint;
  address: PeerAddress;
  /** Closes the nameservice and its transport (a crash, as far as peers can tell). */
  stop: () => Promise<void>;
}

export class Grid {
  readonly net: MemoryNetwork;
  readonly #closers: (() => unknown)[] = [];

  constructor(faults: Partial<Faults> = {}) {
    this.net = new MemoryNetwork(faults);
  }

  endpoint(host: string, port?: number, options: EndpointOptions = QUICK): Endpoint {
    const e = new Endpoint(this.net.link(host, port), options);
    this.defer(() => e.close());
    return e;
  }

  nameservice(
    host = 'ns',
    port = 5001,
    options: Omit<NameserviceOptions, 'transport'> = FAST_NS,
    endpoint: EndpointOptions = QUICK,
  ): RunningNameservice {
    const transport = new Endpoint(this.net.link(host, port), endpoint);
    const ns = new Nameservice({ transport, ...options });
    const stop = async () => {
      ns.close();
      await transport.close();
    };
    this.defer(stop);
    return { ns, transport, address: transport.address, stop };
  }

  /** Runs `fn` when the grid closes (last registered, first run). */
  defer(fn: () => unknown): void {
    this.#closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.#closers.reverse()) await fn();
    this.#closers.length = 0;
  }
}

/** Wraps a test body in a fresh grid that is closed whatever happens. */
export function withGrid(fn: (g: Grid) => Promise<void>, faults: Partial<Faults> = {}): () => Promise<void> {
  return async () => {
    const g = new Grid(faults);
    try {
      await fn(g);
    } finally {
      await g.close();
    }
  };
}

/** Polls local state (never the network) until `pred` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(pred: () => boolean, what: string, timeoutMs = 3_000): Promise<number> {
  const started = Date.now();
  while (!pred()) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(2);
  }
  return Date.now() - started;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A register body for a worker at `address`. */
export function workerAt(
  address: PeerAddress,
  types: string[],
  extra: Partial<RequestBody<'register'>> = {},
): RequestBody<'register'> {
  return {
    role: 'worker',
    types,
    address: { host: address.host, port: address.port },
    capacity: 4,
    ...extra,
  };
}
