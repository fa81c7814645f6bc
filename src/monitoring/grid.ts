/**
 * What the monitoring service needs of a grid ({@link GridSource}), and its implementation over
 * the protocol ({@link ProtocolGrid}): a TaskGridClient for the dispatcher's requests and a
 * Directory subscribed to the nameservices, sharing one UDP socket. Monitoring reads the grid
 * only this way, never through the components' files or memory; tests pass an in-memory source.
 */
import {
  TaskGridClient,
  type PingReply,
  type StatsReply,
  type TasksPage,
  type TasksQuery,
} from '../client/index.ts';
import type { ClientTuning } from '../client/options.ts';
import { ErrorCode, TaskGridError } from '../errors.ts';
import { authFailureLog, silentLogger, type Logger } from '../log.ts';
import { Directory, type DirectoryChange, type DirectoryOptions } from '../nameservice/directory.ts';
import type { Instance, TaskSpec, TaskView } from '../protocol/messages.ts';
import { createUdpTransport, type Endpoint } from '../transport/index.ts';
import type { PeerAddress } from '../transport/types.ts';

/**
 * The grid as monitoring sees it. Every method that talks to a component rejects with a
 * TaskGridError carrying a stable code (TG_ERR_UNREACHABLE when the component does not answer,
 * TG_ERR_NOT_FOUND for an unknown task, the dispatcher's code when it refuses).
 */
export interface GridSource {
  /** The dispatcher's counters per type and per worker. */
  stats(): Promise<StatsReply>;
  /** A page of tasks, newest first. */
  tasks(query: TasksQuery): Promise<TasksPage>;
  /** One task with its result, and its payload unless `payload` is false. */
  task(id: number, options?: { payload?: boolean }): Promise<TaskView>;
  /** Submits one task; resolves once the dispatcher committed it. */
  submit(spec: TaskSpec): Promise<{ id: number; duplicate: boolean }>;
  /** As TaskGridClient.cancel: rejects with TG_ERR_CONFLICT for a task ended otherwise. */
  cancel(id: number): Promise<TaskView>;
  /** As TaskGridClient.retry: rejects with TG_ERR_CONFLICT unless the task failed or was cancelled. */
  retry(id: number): Promise<TaskView>;
  /** Every live instance, asked of the nameservices now. */
  listInstances(): Promise<Instance[]>;
  /** Every live instance from the subscription's cached view: no network. */
  instances(): Instance[];
  /** True while the cached view is synced with at least one nameservice. */
  synced(): boolean;
  /** Calls `listener` after each change of the cached view; returns the function that removes it. */
  onInstancesChange(listener: (change: DirectoryChange) => void): () => void;
  /** The nameservices monitoring subscribes to. */
  nameservers(): readonly PeerAddress[];
  /** The dispatcher's address (looked up at the nameservices unless configured). */
  dispatcherAddress(): Promise<PeerAddress>;
  /** Pings any component. */
  ping(address: PeerAddress, timeoutMs: number): Promise<PingReply>;
  /** The counters of monitoring's own transport. */
  transportCounters(): Readonly<Record<string, number>>;
}

/** Options of {@link ProtocolGrid.open}. */
export interface ProtocolGridOptions {
  nameservers: readonly PeerAddress[];
  /** A fixed dispatcher address; default: looked up at the nameservices. */
  dispatcher?: PeerAddress | undefined;
  /** Cluster secret (TASKGRID_SECRET). */
  secret?: string | undefined;
  /** Address the UDP socket binds (port: any free one). */
  bindHost: string;
  /** Host the nameservices send `changes` to: this socket as they reach it. */
  advertiseHost: string;
  /** Port the nameservices send changes to (TASKGRID_ADVERTISE host:port); default: the bound port. */
  advertisePort?: number | undefined;
  datagramBudget?: number | undefined;
  maxMessageBytes?: number | undefined;
  logger?: Logger;
  /** Client timeouts; monitoring answers HTTP requests, so it gives up sooner than the CLI. */
  client?: ClientTuning;
  /** Directory timings (TTL, renewal, ...). */
  directory?: Partial<Omit<DirectoryOptions, 'transport' | 'nameservers' | 'self' | 'logger'>>;
}

/** Client timeouts of monitoring: an HTTP caller waits seconds, not a minute. */
export const MONITORING_CLIENT_TUNING: ClientTuning = {
  requestTimeoutMs: 3_000,
  submitTimeoutMs: 5_000,
  lookupTimeoutMs: 2_000,
  busyGiveUpMs: 2_000,
};

/** A {@link GridSource} over the protocol: one UDP socket, a client and a Directory. */
export class ProtocolGrid implements GridSource {
  readonly #transport: Endpoint;
  readonly #client: TaskGridClient;
  readonly #directory: Directory;
  readonly #nameservers: readonly PeerAddress[];
  readonly #log: Logger;
  #closed = false;

  /**
   * Binds the socket and subscribes to the nameservices. Resolves at once even when no
   * nameservice answers yet: the Directory keeps trying in the background.
   */
  static async open(options: ProtocolGridOptions): Promise<ProtocolGrid> {
    const transport = await createUdpTransport({
      host: options.bindHost,
      port: 0,
      secret: options.secret,
      ...(options.datagramBudget !== undefined && { datagramBudget: options.datagramBudget }),
      ...(options.maxMessageBytes !== undefined && { maxMessageBytes: options.maxMessageBytes }),
      ...(options.logger && { onAuthFailure: authFailureLog(options.logger) }),
    });
    const client = await TaskGridClient.connect({
      transport,
      nameservers: options.nameservers,
      dispatcher: options.dispatcher,
      ...MONITORING_CLIENT_TUNING,
      ...options.client,
      ...(options.logger && { logger: options.logger }),
    });
    const directory = new Directory({
      ...options.directory,
      transport,
      nameservers: options.nameservers,
      self: { host: options.advertiseHost, port: options.advertisePort ?? transport.address.port },
      ...(options.logger && { logger: options.logger }),
    });
    const grid = new ProtocolGrid(transport, client, directory, options);
    directory.start().catch((err: unknown) => {
      if (err instanceof TaskGridError && err.code === ErrorCode.CLOSED) return; // stopped before it synced
      grid.#log.warn({ err }, 'no nameservice answered the subscription yet; still trying');
    });
    return grid;
  }

  private constructor(
    transport: Endpoint,
    client: TaskGridClient,
    directory: Directory,
    options: ProtocolGridOptions,
  ) {
    this.#transport = transport;
    this.#client = client;
    this.#directory = directory;
    this.#nameservers = [...options.nameservers];
    this.#log = options.logger ?? silentLogger();
  }

  /** The UDP socket's address. */
  get address(): PeerAddress {
    return this.#transport.address;
  }

  stats(): Promise<StatsReply> {
    return this.#client.stats();
  }

  tasks(query: TasksQuery): Promise<TasksPage> {
    return this.#client.tasks(query);
  }

  task(id: number, options: { payload?: boolean } = {}): Promise<TaskView> {
    return this.#client.result(id, { payload: options.payload ?? true });
  }

  async submit(spec: TaskSpec): Promise<{ id: number; duplicate: boolean }> {
    // submitMany, unlike submit, says whether a keyed task was a duplicate.
    const [outcome] = await this.#client.submitMany([spec]);
    if (!outcome) throw new TaskGridError(ErrorCode.INTERNAL, 'the client returned no outcome');
    if (!outcome.ok) throw new TaskGridError(outcome.error.code, outcome.error.message);
    return { id: outcome.id, duplicate: outcome.duplicate };
  }

  cancel(id: number): Promise<TaskView> {
    return this.#client.cancel(id);
  }

  retry(id: number): Promise<TaskView> {
    return this.#client.retry(id);
  }

  listInstances(): Promise<Instance[]> {
    return this.#client.workers();
  }

  instances(): Instance[] {
    return this.#directory.instances();
  }

  synced(): boolean {
    return this.#directory.status().some((s) => s.synced);
  }

  onInstancesChange(listener: (change: DirectoryChange) => void): () => void {
    return this.#directory.onChange(listener);
  }

  nameservers(): readonly PeerAddress[] {
    return this.#nameservers;
  }

  dispatcherAddress(): Promise<PeerAddress> {
    return this.#client.dispatcher();
  }

  ping(address: PeerAddress, timeoutMs: number): Promise<PingReply> {
    return this.#transport.request(address, 'ping', {}, { timeoutMs }).catch((err: unknown) => {
      if (err instanceof TaskGridError && err.code === ErrorCode.TIMEOUT) {
        throw new TaskGridError(ErrorCode.UNREACHABLE, `no answer to ping within ${timeoutMs} ms`, {
          cause: err,
        });
      }
      throw err;
    });
  }

  transportCounters(): Readonly<Record<string, number>> {
    return { ...this.#transport.counters() };
  }

  /** Ends the subscription, the client and the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#directory.close();
    await this.#client.close();
    await this.#transport.close();
  }
}

/** True for TG_ERR_TOO_LARGE: a request or reply above the maximum message size. */
export function isTooLarge(err: unknown): boolean {
  return err instanceof TaskGridError && err.code === ErrorCode.TOO_LARGE;
}

/**
 * A page of tasks that fits one message. Pages carry payloads, so a page of large tasks can
 * exceed the maximum message size (the dispatcher then answers TG_ERR_TOO_LARGE): the page is
 * asked again for half as many tasks, down to one. The page may hold fewer tasks than asked;
 * its `nextCursor` continues right after them. A single task whose payload and result together
 * exceed a message comes without its payload (a result always fits one: the worker sent it in
 * one), named in `payloadOmitted`, as `GET /api/tasks/{id}` does. Resolves with the limit that
 * worked.
 *
 * @throws TaskGridError TG_ERR_TOO_LARGE when even one task without its payload does not fit.
 */
export async function fittingTasksPage(
  grid: GridSource,
  query: TasksQuery & { limit: number },
): Promise<{ page: TasksPage; limit: number; payloadOmitted?: number[] }> {
  let limit = query.limit;
  for (;;) {
    try {
      return { page: await grid.tasks({ ...query, limit }), limit };
    } catch (err) {
      if (!isTooLarge(err)) throw err;
      if (limit <= 1) {
        const page = await grid.tasks({ ...query, limit: 1, payload: false });
        return { page, limit: 1, payloadOmitted: page.tasks.map((t) => t.id) };
      }
      limit = Math.max(1, Math.floor(limit / 2));
    }
  }
}
