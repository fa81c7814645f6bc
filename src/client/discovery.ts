/**
 * Finding the dispatcher: a configured address, or a lookup of role `dispatcher` at the
 * nameservices (the nameservice's own lookupOnce). The answer is cached until a request to it goes unanswered, so that a
 * dispatcher restarted at another address is found again without restarting the client.
 */
import { ErrorCode, TaskGridError } from '../errors.ts';
import { lookupOnce } from '../nameservice/directory.ts';
import type { Instance } from '../protocol/messages.ts';
import type { PeerAddress, Transport } from '../transport/types.ts';

/** `host:port`, with brackets around an IPv6 host. */
export function formatAddress(a: PeerAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function describe(err: unknown): string {
  if (err instanceof TaskGridError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Every live instance, from every nameservice at once, merged: registrations go to all of
 * them, so each may know a different subset; an instance known to several is reported once,
 * as the nameservice that saw it last knows it.
 *
 * @throws TaskGridError TG_ERR_UNREACHABLE when no nameservice answered.
 */
export async function listInstances(
  transport: Transport,
  nameservers: readonly PeerAddress[],
  timeoutMs: number,
): Promise<Instance[]> {
  return merge(
    await askAll(nameservers, timeoutMs, (ns) => transport.request(ns, 'list', {}, { timeoutMs })),
  );
}

async function askAll(
  nameservers: readonly PeerAddress[],
  timeoutMs: number,
  ask: (ns: PeerAddress) => Promise<{ instances: Instance[] }>,
): Promise<Instance[][]> {
  if (nameservers.length === 0)
    throw new TaskGridError(ErrorCode.UNREACHABLE, 'no nameservice address is configured');
  const settled = await Promise.allSettled(nameservers.map(ask));
  const answers: Instance[][] = [];
  const failures: string[] = [];
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') answers.push(s.value.instances);
    else failures.push(`${formatAddress(nameservers[i]!)}: ${describe(s.reason)}`);
  });
  if (answers.length === 0) {
    throw new TaskGridError(
      ErrorCode.UNREACHABLE,
      `no nameservice answered within ${timeoutMs} ms (${failures.join('; ')})`,
    );
  }
  return answers;
}

function merge(answers: Instance[][]): Instance[] {
  const byId = new Map<string, Instance>();
  for (const list of answers) {
    for (const inst of list) {
      const known = byId.get(inst.id);
      if (!known || inst.lastSeen > known.lastSeen) byId.set(inst.id, inst);
    }
  }
  return [...byId.values()];
}

/** Pause between lookups while the nameservice knows no dispatcher. */
const LOOKUP_RETRY_MS = 250;

/** Options of a {@link DispatcherLocator}. */
export interface LocatorOptions {
  /** A fixed dispatcher address: no lookup. */
  dispatcher?: PeerAddress | undefined;
  nameservers: readonly PeerAddress[];
  lookupTimeoutMs: number;
}

/** Where the dispatcher is; one lookup at a time, shared by concurrent callers. */
export class DispatcherLocator {
  readonly #transport: Transport;
  readonly #o: LocatorOptions;
  #cached: PeerAddress | undefined;
  #inflight: Promise<PeerAddress> | undefined;

  constructor(transport: Transport, options: LocatorOptions) {
    this.#transport = transport;
    this.#o = options;
    this.#cached = options.dispatcher;
  }

  /**
   * The dispatcher's address.
   *
   * @throws TaskGridError TG_ERR_UNREACHABLE when no nameservice answers or none knows a dispatcher.
   */
  get(): Promise<PeerAddress> {
    if (this.#cached) return Promise.resolve(this.#cached);
    this.#inflight ??= this.#lookup().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** Forgets `address` after it went unanswered, unless it was configured (then there is nothing else to try). */
  invalidate(address: PeerAddress): void {
    if (this.#o.dispatcher) return;
    if (this.#cached && this.#cached.host === address.host && this.#cached.port === address.port) {
      this.#cached = undefined;
    }
  }

  async #lookup(): Promise<PeerAddress> {
    const { nameservers, lookupTimeoutMs } = this.#o;
    const deadline = Date.now() + lookupTimeoutMs;
    let best: Instance | undefined;
    for (;;) {
      const found = await lookupOnce(
        this.#transport,
        nameservers,
        { role: 'dispatcher' },
        Math.max(1, deadline - Date.now()),
      );
      // Several dispatchers only share work once the store is shared; until then the one heard
      // from most recently is the best guess at the live one.
      best = found.sort((a, b) => b.lastSeen - a.lastSeen)[0];
      // A nameservice that just restarted knows no dispatcher until its next heartbeat (about
      // a second): ask again until the lookup's time is up rather than failing at once.
      if (best || Date.now() + LOOKUP_RETRY_MS >= deadline) break;
      await new Promise((r) => setTimeout(r, LOOKUP_RETRY_MS));
    }
    if (!best) {
      throw new TaskGridError(
        ErrorCode.UNREACHABLE,
        `no dispatcher is registered with the nameservice at ${nameservers.map(formatAddress).join(', ')}`,
      );
    }
    this.#cached = { host: best.address.host, port: best.address.port };
    return this.#cached;
  }
}
