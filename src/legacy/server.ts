/**
 * The part both TaskGrid+ adapters share: it takes the datagrams the transport does not read as
 * v1 frames, reads them as TaskGrid+ messages, validates each message's data against its
 * schema, runs its handler and sends the reply to the sender, never larger than a TaskGrid+
 * program reads. Bad input never reaches a handler and never throws: it is answered where a
 * TaskGrid+ program may be waiting, and counted (the transport's `malformed`, and here).
 */
import type { z } from 'zod';
import { TaskGridError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { PeerAddress, Transport } from '../transport/types.ts';
import {
  encodeReply,
  LEGACY,
  parseDatagram,
  summarizeIssues,
  tooLargeReply,
  type LegacyReplyData,
} from './wire.ts';

/** Counters of one adapter, for logs, monitoring and tests. */
export interface LegacyCounters {
  /** Valid messages handled, by TaskGrid+ type. */
  messages: Record<string, number>;
  /** Datagrams refused: not JSON, no type, unknown type, or data failing its schema. */
  malformed: number;
  repliesSent: number;
  /** Replies (or TASK messages) that did not fit in one TaskGrid+ datagram and were not sent as they were. */
  tooLarge: number;
  /** Handlers that failed unexpectedly (a bug; answered with TG_ERR_INTERNAL). */
  internalErrors: number;
}

/** What a handler answers: the reply's data, or nothing (no reply). */
export type LegacyReply = LegacyReplyData | undefined;

/** One TaskGrid+ message type: its data schema and its handler. */
export interface LegacyRoute {
  /** Validates `data`; on success, the handler bound to the parsed data. */
  bind(
    data: unknown,
    from: PeerAddress,
  ): { ok: true; run: () => Promise<LegacyReply> } | { ok: false; reason: string };
  /** Reply of a reply that would not fit; default {@link tooLargeReply}. */
  tooLarge?: ((size: number, limit: number) => LegacyReplyData) | undefined;
}

/**
 * Declares a route: `handle` only ever sees data that passed `schema`.
 *
 * @example
 * route(z.looseObject({ task_id: z.number() }), async (d) => ({ result: await find(d.task_id) }));
 */
export function route<S extends z.ZodType>(
  schema: S,
  handle: (data: z.output<S>, from: PeerAddress) => LegacyReply | Promise<LegacyReply>,
  tooLarge?: (size: number, limit: number) => LegacyReplyData,
): LegacyRoute {
  return {
    bind(data, from) {
      const parsed = schema.safeParse(data);
      if (!parsed.success) return { ok: false, reason: summarizeIssues(parsed.error) };
      return { ok: true, run: async () => handle(parsed.data, from) };
    },
    tooLarge,
  };
}

export interface LegacyServerOptions {
  transport: Transport;
  /** Component name for logs: "dispatcher" or "nameservice". */
  component: string;
  routes: Readonly<Record<string, LegacyRoute>>;
  /** The error text of an unknown type; TaskGrid+'s dispatcher and nameservice differed. */
  unknownTypeText: string;
  logger?: Logger | undefined;
  /** Largest datagram sent to a TaskGrid+ program; default {@link LEGACY.maxDatagramBytes}. */
  maxDatagramBytes?: number | undefined;
}

/** Serves TaskGrid+ messages on a transport's non-v1 datagrams. */
export class LegacyServer {
  readonly #t: Transport;
  readonly #component: string;
  readonly #routes: Readonly<Record<string, LegacyRoute>>;
  readonly #unknown: string;
  readonly #log: Logger;
  readonly maxDatagramBytes: number;
  readonly #counters: LegacyCounters = {
    messages: {},
    malformed: 0,
    repliesSent: 0,
    tooLarge: 0,
    internalErrors: 0,
  };
  #closed = false;

  constructor(options: LegacyServerOptions) {
    this.#t = options.transport;
    this.#component = options.component;
    this.#routes = options.routes;
    this.#unknown = options.unknownTypeText;
    this.#log = options.logger ?? silentLogger();
    this.maxDatagramBytes = options.maxDatagramBytes ?? LEGACY.maxDatagramBytes;
  }

  /** Installs the transport's raw handler: from now on TaskGrid+ messages are answered. */
  start(): void {
    this.#t.onRaw((data, from) => this.#onDatagram(data, from));
  }

  /** Stops answering; datagrams still arriving are ignored (the transport counts them as rawIn). */
  close(): void {
    this.#closed = true;
  }

  counters(): LegacyCounters {
    return { ...this.#counters, messages: { ...this.#counters.messages } };
  }

  /**
   * Sends `bytes` (an encoded TaskGrid+ message) as one datagram, or returns false without
   * sending when it is larger than a TaskGrid+ program reads.
   */
  sendRaw(bytes: Buffer, to: PeerAddress): boolean {
    if (bytes.length > this.maxDatagramBytes) {
      this.#counters.tooLarge++;
      return false;
    }
    if (!this.#closed) this.#t.sendRaw(bytes, to);
    return true;
  }

  /** Returns false for malformed input, which the transport then counts in `malformed`. */
  #onDatagram(bytes: Buffer, from: PeerAddress): boolean {
    if (this.#closed) return true;
    const parsed = parseDatagram(bytes);
    if (!parsed.ok) {
      this.#counters.malformed++;
      this.#log.debug({ peer: from, reason: parsed.reason }, 'malformed TaskGrid+ datagram');
      if (parsed.answerable) this.#reply(from, { error: this.#unknown });
      return false;
    }
    const r = Object.hasOwn(this.#routes, parsed.type) ? this.#routes[parsed.type] : undefined;
    if (!r) {
      this.#counters.malformed++;
      this.#reply(from, { error: this.#unknown });
      return false;
    }
    const bound = r.bind(parsed.data, from);
    if (!bound.ok) {
      this.#counters.malformed++;
      this.#reply(from, { error: `Invalid ${parsed.type}: ${bound.reason}` });
      return false;
    }
    this.#counters.messages[parsed.type] = (this.#counters.messages[parsed.type] ?? 0) + 1;
    bound.run().then(
      (reply) => {
        if (reply) this.#reply(from, reply, r.tooLarge, parsed.type);
      },
      (err: unknown) => this.#reply(from, this.#errorReply(err, parsed.type, from)),
    );
    return true;
  }

  #errorReply(err: unknown, type: string, from: PeerAddress): LegacyReplyData {
    if (err instanceof TaskGridError) return { error: `${err.message} (${err.code})` };
    this.#counters.internalErrors++;
    this.#log.error({ err, type, peer: from }, `TaskGrid+ ${type} failed in the ${this.#component}`);
    return { error: `Internal error while handling ${type} (TG_ERR_INTERNAL)` };
  }

  #reply(
    to: PeerAddress,
    data: LegacyReplyData,
    tooLarge?: (size: number, limit: number) => LegacyReplyData,
    what = 'TaskGrid+',
  ): void {
    if (this.#closed) return;
    let bytes = encodeReply(data);
    if (bytes.length > this.maxDatagramBytes) {
      // Never truncated: a cut JSON text is garbage to the reader. An error that fits instead.
      this.#counters.tooLarge++;
      const fallback = (tooLarge ?? ((s, l) => tooLargeReply(`${what} reply`, s, l)))(
        bytes.length,
        this.maxDatagramBytes,
      );
      bytes = encodeReply(fallback);
      if (bytes.length > this.maxDatagramBytes) return;
    }
    this.#counters.repliesSent++;
    this.#t.sendRaw(bytes, to);
  }
}

/** What a component does with TaskGrid+ messages under a configuration. */
export interface LegacyPolicy {
  /** Whether TaskGrid+ messages are served at all. */
  readonly serve: boolean;
  /** Whether unsigned (TaskGrid+) datagrams pass a transport that has a secret. */
  readonly allowUnsigned: boolean;
  /** A line for the startup log, with its level. */
  readonly log: { readonly level: 'warn' | 'info'; readonly message: string } | undefined;
}

/**
 * TaskGrid+ messages cannot be signed: without a cluster secret they are served; with one,
 * only when `allowLegacy` (TASKGRID_ALLOW_LEGACY=1) says so, and then loudly.
 */
export function legacyPolicy(config: {
  readonly secret: string | undefined;
  readonly allowLegacy: boolean;
}): LegacyPolicy {
  if (!config.secret) return { serve: true, allowUnsigned: false, log: undefined };
  if (config.allowLegacy) {
    return {
      serve: true,
      allowUnsigned: true,
      log: {
        level: 'warn',
        message:
          'TASKGRID_ALLOW_LEGACY=1 with a cluster secret: unsigned TaskGrid+ messages are accepted on this port; anyone who can reach it can submit tasks, register workers and return results without the secret',
      },
    };
  }
  return {
    serve: false,
    allowUnsigned: false,
    log: {
      level: 'info',
      message:
        'TaskGrid+ messages are refused: a cluster secret is set and they cannot be signed (TASKGRID_ALLOW_LEGACY=1 accepts them)',
    },
  };
}
