/**
 * The transport's contracts: a `DatagramLink` moves raw datagrams (real UDP or the in-memory
 * network), and a `Transport` turns a link into reliable, validated request/response.
 * Components depend on `Transport` only and get it injected.
 */
import type {
  NotificationBody,
  NotificationKind,
  ParsedRequest,
  ReplyBody,
  RequestBody,
  RequestKind,
} from '../protocol/messages.ts';

/** A peer's address: an IP (v4 or v6) or host name, and a UDP port. */
export interface PeerAddress {
  host: string;
  port: number;
}

/** Moves datagrams; knows nothing of frames or messages. */
export interface DatagramLink {
  /** The address the link is bound to (port 0 resolved to the real port). */
  readonly local: PeerAddress;
  /** Sends one datagram; never throws (failures are counted by the link and reported via onError). */
  send(data: Buffer, to: PeerAddress): void;
  /** Installs the one receiver of incoming datagrams. */
  onDatagram(cb: (data: Buffer, from: PeerAddress) => void): void;
  /** Installs the one receiver of send and socket errors (ICMP unreachable and the like). */
  onError(cb: (err: Error) => void): void;
  close(): Promise<void>;
}

/** What a request handler learns about the request besides its body. */
export interface RequestContext {
  peer: PeerAddress;
  kind: RequestKind;
  id: number;
}

export type RequestHandler<K extends RequestKind> = (
  body: ParsedRequest<K>,
  ctx: RequestContext,
) => ReplyBody<K> | Promise<ReplyBody<K>>;

export type NotificationHandler<K extends NotificationKind> = (
  body: NotificationBody<K>,
  ctx: { peer: PeerAddress },
) => void;

/**
 * A datagram that is not a v1 frame (TaskGrid+ JSON), for the legacy adapter. Returning
 * `false` says the datagram was malformed: the endpoint counts it in `malformed`, as it does
 * bad v1 input.
 */
export type RawHandler = (data: Buffer, from: PeerAddress) => boolean | void;

export interface RequestOptions {
  /** Milliseconds until the request fails with TG_ERR_TIMEOUT. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Reliable request/response and one-way notifications over datagrams. */
export interface Transport {
  /** The local address (with the real port when bound to port 0). */
  readonly address: PeerAddress;
  /**
   * Sends a request and resolves with the peer's `ok` reply body. Rejects with a
   * TaskGridError: TG_ERR_TIMEOUT at the deadline, TG_ERR_BUSY (BusyError) on a busy reply,
   * the peer's code on an error reply, TG_ERR_TOO_LARGE before sending an oversized message.
   *
   * @example
   * const { instances } = await transport.request(ns, 'lookup', { type: 'reverse' });
   */
  request<K extends RequestKind>(
    peer: PeerAddress,
    kind: K,
    body: RequestBody<K>,
    options?: RequestOptions,
  ): Promise<ReplyBody<K>>;
  /** Sends a one-way message: no reply, no retransmission. */
  notify<K extends NotificationKind>(peer: PeerAddress, kind: K, body: NotificationBody<K>): void;
  /** Installs the handler of a request kind; it runs at most once per (peer, message id). */
  handle<K extends RequestKind>(kind: K, handler: RequestHandler<K>): void;
  /** Installs the handler of a notification kind. */
  onNotification<K extends NotificationKind>(kind: K, handler: NotificationHandler<K>): void;
  /** Receives datagrams that are not v1 frames (otherwise they are counted as malformed). */
  onRaw(handler: RawHandler): void;
  /** Sends a datagram as it is (for the legacy adapter). */
  sendRaw(data: Buffer, to: PeerAddress): void;
  /** A snapshot of the transport's counters. */
  counters(): TransportCounters;
  /** Rejects pending requests with TG_ERR_CLOSED and releases the link. */
  close(): Promise<void>;
}

export interface TransportCounters {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  requestsSent: number;
  repliesReceived: number;
  requestsHandled: number;
  notificationsIn: number;
  notificationsOut: number;
  retransmits: number;
  duplicates: number;
  lateReplies: number;
  malformed: number;
  authFailures: number;
  replays: number;
  fragmentsOut: number;
  fragmentsResent: number;
  fragmentsIn: number;
  reassemblies: number;
  reassemblyRejected: number;
  timeouts: number;
  errorReplies: number;
  busyReplies: number;
  handlerErrors: number;
  sendErrors: number;
  rawIn: number;
  rawOut: number;
  tooLarge: number;
}

export function newCounters(): TransportCounters {
  return {
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    messagesIn: 0,
    messagesOut: 0,
    requestsSent: 0,
    repliesReceived: 0,
    requestsHandled: 0,
    notificationsIn: 0,
    notificationsOut: 0,
    retransmits: 0,
    duplicates: 0,
    lateReplies: 0,
    malformed: 0,
    authFailures: 0,
    replays: 0,
    fragmentsOut: 0,
    fragmentsResent: 0,
    fragmentsIn: 0,
    reassemblies: 0,
    reassemblyRejected: 0,
    timeouts: 0,
    errorReplies: 0,
    busyReplies: 0,
    handlerErrors: 0,
    sendErrors: 0,
    rawIn: 0,
    rawOut: 0,
    tooLarge: 0,
  };
}

/** Time source and timers, injected so that tests can control them. */
export interface Clock {
  /** Milliseconds; monotonic enough for timers (Date.now() by default). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
