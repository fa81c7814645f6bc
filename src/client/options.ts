/**
 * The client's tunables and their defaults, in one place. Tests and the CLI shorten them by
 * passing options; nothing here reads the environment.
 */
import { DEFAULTS } from '../config/env.ts';
import type { Logger } from '../log.ts';
import type { Clock, PeerAddress, Transport } from '../transport/types.ts';

/** Defaults of every client timeout and limit. */
export const CLIENT_DEFAULTS = {
  /** Deadline of one request to the dispatcher (the transport retransmits within it). */
  requestTimeoutMs: 5_000,
  /** Deadline of a `submit` batch: it includes the dispatcher's store commit. */
  submitTimeoutMs: 10_000,
  /** Deadline of one lookup at the nameservices. */
  lookupTimeoutMs: 2_000,
  /** How long `wait` and `run` wait for tasks to end when the caller gives no timeout. */
  waitTimeoutMs: 300_000,
  /**
   * While waiting, how often finished tasks are also polled (with `watch`), so that a
   * `done` push that never arrives (dispatcher restart, push given up) cannot hang a wait.
   */
  reconcileIntervalMs: 2_000,
  /** While polls keep finding nothing the pushes missed, the pause between them doubles up to this. */
  maxReconcileIntervalMs: 30_000,
  /** Most tasks in one `submit` request. */
  batchSize: 500,
  /**
   * Most encoded bytes of the tasks of one `submit` request; well under the transport's
   * maximum message size so that one batch never hits TG_ERR_TOO_LARGE.
   */
  maxBatchBytes: 256 * 1024,
  /** `submit` requests in flight at once during `submitMany`. */
  batchesInFlight: 4,
  /** A batch refused as BUSY for this long in total is reported as TG_ERR_BUSY. */
  busyGiveUpMs: 60_000,
  /** Shortest pause before re-sending a batch refused as BUSY (when retry-after is 0). */
  busyMinPauseMs: 50,
  /** Ended tasks pushed by the dispatcher that are kept until a `wait` asks for them. */
  recentDoneEntries: 10_000,
  /** Most bytes of results held by those kept tasks. */
  recentDoneBytes: 32 * 1024 * 1024,
  /**
   * Ids per `watch` request. Its reply carries the views of the tasks already ended, a few
   * hundred bytes each: 5,000 of them exceeded the 1 MiB message limit (TG_ERR_TOO_LARGE).
   */
  watchChunk: 1_000,
} as const;

/** The nameservice the client asks when none is given (the grid's default). */
export const DEFAULT_NAMESERVERS: readonly PeerAddress[] = [
  { host: DEFAULTS.nameserviceHost, port: DEFAULTS.nameservicePort },
];

/** Overridable timeouts and limits of a {@link TaskGridClient}; see {@link CLIENT_DEFAULTS}. */
export type ClientTuning = { -readonly [K in keyof typeof CLIENT_DEFAULTS]?: number };

/** Options of {@link TaskGridClient.connect}. */
export interface ClientOptions extends ClientTuning {
  /** Nameservices to find the dispatcher at (all are asked); default 127.0.0.1:5001. */
  nameservers?: readonly PeerAddress[];
  /** The dispatcher's address: skips the nameservice lookup. */
  dispatcher?: PeerAddress | undefined;
  /** Cluster secret (TASKGRID_SECRET): sign and check every datagram. */
  secret?: string | undefined;
  /**
   * Address to bind the client's UDP socket to (port: any free one). Default: 127.0.0.1 when
   * every address given is a loopback one, else every interface (`0.0.0.0`, or `::` for IPv6),
   * since the dispatcher's answers and pushes must reach the client.
   */
  bindHost?: string | undefined;
  /** Datagram budget and maximum message size of the client's own transport. */
  datagramBudget?: number | undefined;
  maxMessageBytes?: number | undefined;
  /**
   * A transport to use instead of a UDP socket of the client's own (tests pass one over the
   * in-memory network). The client installs its `done` handler on it and does not close it.
   */
  transport?: Transport;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
}

/** Every tuning value, defaults filled in. */
export type ResolvedTuning = { -readonly [K in keyof typeof CLIENT_DEFAULTS]: number };

/** The defaults overlaid with the values `options` gives. */
export function resolveTuning(options: ClientTuning): ResolvedTuning {
  const out = { ...CLIENT_DEFAULTS } as ResolvedTuning;
  for (const key of Object.keys(CLIENT_DEFAULTS) as (keyof ResolvedTuning)[]) {
    const value = options[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
