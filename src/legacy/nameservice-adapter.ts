/**
 * TaskGrid+ messages on the nameservice's port: REGISTER_WORKER, HEARTBEAT, DEREGISTER_WORKER,
 * LOOKUP_WORKER and LIST_WORKERS.
 *
 * A TaskGrid+ worker becomes an ordinary instance of the registry (role `worker`, the sender's
 * IP with port 6000, capacity 1, `meta.protocol = "taskgrid+"`), so that the dispatcher's
 * Directory sees it and v1 lookups list it. Its lease is TaskGrid+'s: 30 s from the last
 * REGISTER_WORKER or HEARTBEAT from its IP. TaskGrid+ workers register once, at start; a
 * HEARTBEAT that names its type therefore registers it again when the registration is gone
 * (lapsed, or a restarted nameservice), which TaskGrid+ could not do.
 */
import { silentLogger, type Logger } from '../log.ts';
import type { Instance, ParsedRequest, Role } from '../protocol/messages.ts';
import type { PeerAddress, Transport } from '../transport/types.ts';
import { LegacyServer, route, type LegacyCounters } from './server.ts';
import {
  encodeReply,
  fitList,
  formatAddress,
  isLegacyInstance,
  LEGACY,
  LegacyText,
  nameserviceMessages as m,
} from './wire.ts';

/**
 * What the adapter needs of the registry: registrations made in-process, under a lease of the
 * adapter's choosing. The Nameservice (src/nameservice/nameservice.ts) provides it.
 */
export interface LegacyRegistry {
  /** Registers (or replaces) an instance under a lease of `ttlMs`; returns its id. */
  registerLocal(body: ParsedRequest<'register'>, ttlMs: number): string;
  /** Renews an instance's lease for `ttlMs`; false when it is not registered (lapsed or removed). */
  renewLocal(id: string, ttlMs: number): boolean;
  /** Removes an instance; false when it was not registered. */
  deregisterLocal(id: string): boolean;
  /** Live instances, of a type and/or role. */
  instances(filter?: { type?: string; role?: Role }): Instance[];
}

export interface LegacyNameserviceOptions {
  /** The nameservice's transport (same port as protocol v1). */
  transport: Transport;
  registry: LegacyRegistry;
  logger?: Logger;
  /** Lease of a TaskGrid+ registration; default 30 s as in TaskGrid+. */
  leaseTtlMs?: number;
  /** Port TaskGrid+ workers listen on; default 6000. */
  workerPort?: number;
  /** Largest reply; default 4096 bytes. */
  maxDatagramBytes?: number;
}

/** Serves TaskGrid+'s nameservice messages on a v1 nameservice. */
export class LegacyNameservice {
  readonly #server: LegacyServer;
  readonly #registry: LegacyRegistry;
  readonly #log: Logger;
  readonly #ttlMs: number;
  readonly #workerPort: number;

  constructor(options: LegacyNameserviceOptions) {
    this.#registry = options.registry;
    this.#log = options.logger ?? silentLogger();
    this.#ttlMs = options.leaseTtlMs ?? LEGACY.leaseTtlMs;
    this.#workerPort = options.workerPort ?? LEGACY.workerPort;
    this.#server = new LegacyServer({
      transport: options.transport,
      component: 'nameservice',
      logger: this.#log,
      maxDatagramBytes: options.maxDatagramBytes,
      unknownTypeText: LegacyText.unknownMessageType,
      routes: {
        REGISTER_WORKER: route(m.REGISTER_WORKER, (d, from) => {
          const address = this.#register(d.type, from, d.address);
          return { message: `Registered ${d.type} at ${address}` };
        }),
        HEARTBEAT: route(m.HEARTBEAT, (d, from) => ({
          message: `Heartbeat received, updated ${this.#heartbeat(from, d.type, d.address)} entries`,
        })),
        DEREGISTER_WORKER: route(m.DEREGISTER_WORKER, (_d, from) => ({
          message: `Deregistered ${this.#deregister(from)} entries`,
        })),
        LOOKUP_WORKER: route(m.LOOKUP_WORKER, (d) => this.#lookup(d.type)),
        LIST_WORKERS: route(m.LIST_WORKERS, () => this.#list()),
      },
    });
  }

  /** Starts answering TaskGrid+ messages on the transport. */
  start(): void {
    this.#server.start();
  }

  /** Stops answering; registrations made stay until their leases lapse. */
  close(): void {
    this.#server.close();
  }

  counters(): LegacyCounters {
    return this.#server.counters();
  }

  /** Registers the sender's IP, port 6000, for `type`; returns the address registered. */
  #register(type: string, from: PeerAddress, said: string | undefined): string {
    const address = { host: from.host, port: this.#workerPort };
    // One id per (type, IP): a worker re-registering replaces itself instead of piling up.
    const id = `${LEGACY.protocol}:${type}@${from.host}`;
    this.#registry.registerLocal(
      {
        id,
        role: 'worker',
        types: [type],
        address,
        capacity: LEGACY.workerCapacity,
        // What the worker said its address was (often a container name): shown, never used.
        meta: { protocol: LEGACY.protocol, ...(said !== undefined ? { address: said } : {}) },
      },
      this.#ttlMs,
    );
    this.#log.info({ type, address: formatAddress(address) }, 'TaskGrid+ worker registered');
    return formatAddress(address);
  }

  /** TaskGrid+ registrations made from `host` (only those: v1 instances there have their own leases). */
  #from(host: string): Instance[] {
    return this.#registry
      .instances({ role: 'worker' })
      .filter((i) => isLegacyInstance(i) && i.address.host === host && i.address.port === this.#workerPort);
  }

  #heartbeat(from: PeerAddress, type: string | undefined, said: string | undefined): number {
    const mine = this.#from(from.host);
    let updated = 0;
    for (const i of mine) if (this.#registry.renewLocal(i.id, this.#ttlMs)) updated++;
    if (type !== undefined && !mine.some((i) => i.types.includes(type))) {
      this.#register(type, from, said);
      updated++;
    }
    return updated;
  }

  #deregister(from: PeerAddress): number {
    let removed = 0;
    for (const i of this.#from(from.host)) if (this.#registry.deregisterLocal(i.id)) removed++;
    if (removed > 0) this.#log.info({ host: from.host, removed }, 'TaskGrid+ worker deregistered');
    return removed;
  }

  /**
   * The address of a live TaskGrid+ worker of the type (the freshest). v1 workers are not
   * offered: whoever asks means to send them TASK messages, which they do not read.
   */
  #lookup(type: string): { address: string } | { error: string } {
    let best: Instance | undefined;
    for (const i of this.#registry.instances({ type, role: 'worker' })) {
      if (isLegacyInstance(i) && (!best || i.lastSeen > best.lastSeen)) best = i;
    }
    return best ? { address: formatAddress(best.address) } : { error: LegacyText.noActiveWorker(type) };
  }

  /**
   * Every live worker, TaskGrid+ and v1, one entry per type and address: TaskGrid+ dashboards
   * use it to show which types are served. As many as fit in one reply, TaskGrid+ workers first.
   */
  #list(): { workers: { type: string; address: string }[] } {
    const workers = this.#registry.instances({ role: 'worker' });
    const ordered = [...workers.filter(isLegacyInstance), ...workers.filter((i) => !isLegacyInstance(i))];
    const seen = new Set<string>();
    const entries: { type: string; address: string }[] = [];
    for (const i of ordered) {
      const address = formatAddress(i.address);
      for (const type of i.types) {
        if (seen.has(`${type} ${address}`)) continue;
        seen.add(`${type} ${address}`);
        entries.push({ type, address });
      }
    }
    const fit = fitList(entries, (e) => encodeReply({ workers: e }), this.#server.maxDatagramBytes);
    return { workers: entries.slice(0, fit?.count ?? 0) };
  }
}
