/**
 * The reliable endpoint: protocol v1 request/response over any DatagramLink.
 *
 * - Requests are retransmitted with exponential backoff and jitter; the first timeout adapts to
 *   the measured round trip per peer (RFC 6298, with samples made unambiguous by the echoed
 *   transmission number). At the deadline: TG_ERR_TIMEOUT.
 * - Requests in flight to one peer are limited by a congestion window (AIMD); the rest wait in a
 *   local queue, so that a burst of requests does not inflate the round trip past the
 *   retransmission timeout and set off a spiral of spurious retransmissions.
 * - A request's handler runs at most once per (peer, message id); duplicates are answered from
 *   a bounded, expiring cache of replies.
 * - Messages larger than one datagram are fragmented, sent under a window, acknowledged
 *   selectively (cumulative + bitmap) and only lost fragments are re-sent.
 * - Small messages to one peer produced in the same turn of the event loop share a datagram;
 *   their JSON is written straight into it.
 * - With a secret, every datagram is signed and checked (HMAC-SHA256 + timestamp + replay filter).
 * - Bad input never throws and never reaches a handler: it is counted, and answered with an
 *   error reply where the request could be identified.
 */
import type { z } from 'zod';
import {
  BusyError,
  ErrorCode,
  isErrorCode,
  RemoteError,
  TaskGridError,
  TimeoutError,
  TooLargeError,
} from '../errors.ts';
import { defaultDatagramBudget } from '../protocol/address.ts';
import { DatagramSigner, ReplayFilter, TRAILER_BYTES } from '../protocol/auth.ts';
import {
  envelopePrefix,
  envelopeSize,
  parseEnvelope,
  writeEnvelope,
  type Envelope,
} from '../protocol/envelope.ts';
import { fastCheck } from '../protocol/fast-check.ts';
import { parseIgnoringUnknownKeys } from '../protocol/tolerant.ts';
import {
  ACK_HEADER_BYTES,
  AckStatus,
  decodeFrame,
  encodeAckFrame,
  encodeFragFrame,
  encodeProbeFrame,
  FRAG_HEADER_BYTES,
  FrameType,
  HEADER_BYTES,
  looksLikeFrame,
  MAX_MSG_ENTRY_BYTES,
  MSG_ENTRY_HEADER_BYTES,
  MsgFrameReader,
  writeMsgEntryHeader,
  writeMsgFrameHeader,
  type Frame,
} from '../protocol/frame.ts';
import { LIMITS, TIMING } from '../protocol/limits.ts';
import {
  BusyReplyBody,
  ErrorReplyBody,
  isNotificationKind,
  isRequestKind,
  notifications,
  ReplyKind,
  requests,
  type NotificationBody,
  type NotificationKind,
  type ParsedRequest,
  type ReplyBody,
  type RequestBody,
  type RequestKind,
} from '../protocol/messages.ts';
import { Reassembler } from '../protocol/reassembly.ts';
import { RttEstimator } from './rtt.ts';
import { SeenCache } from './seen-cache.ts';
import { TimerQueue, type TimerEntry } from './timer-queue.ts';
import {
  newCounters,
  systemClock,
  type Clock,
  type DatagramLink,
  type NotificationHandler,
  type PeerAddress,
  type RawHandler,
  type RequestContext,
  type RequestHandler,
  type RequestOptions,
  type Transport,
  type TransportCounters,
} from './types.ts';

/** Tunables of an endpoint; every one has a default in protocol/limits.ts. */
export interface EndpointOptions {
  /** Cluster secret: sign and check every datagram. */
  secret?: string | undefined;
  /** With a secret, still pass unsigned non-v1 datagrams (TaskGrid+ JSON) to the raw handler. */
  allowUnsignedRaw?: boolean;
  clock?: Clock;
  random?: () => number;
  /**
   * Largest datagram sent, headers and signature included. Default: {@link LIMITS.datagramBudget},
   * or {@link LIMITS.loopbackDatagramBudget} when the link is bound to a loopback address.
   */
  datagramBudget?: number | undefined;
  maxMessageBytes?: number;
  requestTimeoutMs?: number;
  initialRtoMs?: number;
  minRtoMs?: number;
  maxRtoMs?: number;
  jitter?: number;
  /** Requests in flight to one peer at first; the window then adapts (AIMD). */
  initialWindow?: number;
  /** Floor of the per-peer window. */
  minWindow?: number;
  /** Ceiling of the per-peer window; requests beyond it wait in a local queue. */
  maxWindow?: number;
  dedupTtlMs?: number;
  dedupMaxEntries?: number;
  dedupMaxBytes?: number;
  reassemblyTtlMs?: number;
  reassemblyMaxMessages?: number;
  reassemblyMaxBytes?: number;
  fragmentWindow?: number;
  fragmentAckEvery?: number;
  authWindowMs?: number;
  replayCacheEntries?: number;
  /** Called when a handler throws something that is not a TaskGridError (a bug). */
  onHandlerError?: (err: unknown, ctx: { peer: PeerAddress; kind: string; id: number }) => void;
  /**
   * Called for each datagram dropped because it failed authentication (counted in
   * `authFailures`): `unsigned` (this endpoint has a secret, the datagram no signature),
   * `bad-signature` (signed with another secret, or altered), `signed` (signed, and this
   * endpoint has no secret). Nothing is answered: components log it (TG_ERR_AUTH).
   */
  onAuthFailure?: (peer: PeerAddress, reason: AuthFailure) => void;
}

/** Why a datagram failed authentication; see {@link EndpointOptions.onAuthFailure}. */
export type AuthFailure = 'unsigned' | 'bad-signature' | 'signed';

/** Where a request is in its life. */
const QUEUED = 0;
const SENT = 1;
const DONE = 2;

/**
 * A request awaiting its reply; it is also its own timer entry (retransmission or deadline).
 *
 * Settled requests are kept in a small pool and reused. Requests in flight live across a few
 * young-generation collections under load, so V8 decides that objects made at this site
 * survive and allocates every later one straight into the old generation (allocation-site
 * pretenuring), where only full collections free them: measured, that doubled the client's
 * time per request. A reused object is never allocated.
 */
class Pending implements TimerEntry {
  at = 0;
  index = -1;
  id = 0;
  kind: RequestKind = 'ping';
  /** The envelope's parts (its kind's prefix and the body as JSON text), written into each copy sent. */
  prefix: Buffer = EMPTY;
  body: string | undefined = undefined;
  /** The whole envelope when it travels in fragments. */
  bytes: Buffer | undefined = undefined;
  state: typeof QUEUED | typeof SENT | typeof DONE = DONE;
  /** Holds a slot of the peer's window: from its first transmission to its reply or first timeout. */
  windowed = false;
  /** Was given a window slot once (so no waiting queue refers to it any more). */
  admitted = false;
  /** Listed in the endpoint's due list (see #onRequestTimer). */
  due = false;
  /** Order of its first transmission among the peer's requests (for one window cut per round). */
  seq = 0;
  attempts = 0;
  firstSentAt = 0;
  /** When each transmission went out (index = transmission number - 1); kept from the second on. */
  sentAt: number[] | undefined = undefined;
  resolve: (body: unknown) => void = noop;
  reject: (err: unknown) => void = noop;
  /** Clock time at which the request fails with TG_ERR_TIMEOUT. */
  deadlineAt = 0;
  timeoutMs = 0;
  transfer: OutTransfer | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  signal: AbortSignal | undefined = undefined;

  constructor(
    readonly fn: (entry: TimerEntry) => void,
    public peer: Peer,
  ) {}

  get fragmented(): boolean {
    return this.bytes !== undefined;
  }

  /** Drops what a settled request refers to, before it waits in the pool. */
  clear(): void {
    this.body = undefined;
    this.bytes = undefined;
    this.sentAt = undefined;
    this.resolve = noop;
    this.reject = noop;
    this.transfer = undefined;
    this.onAbort = undefined;
    this.signal = undefined;
  }
}

const EMPTY = Buffer.alloc(0);
const noop = (): void => {};
/** Settled requests kept for reuse, per endpoint. */
const PENDING_POOL = 1024;

/**
 * What the endpoint keeps per remote address: the round-trip estimate, the congestion window
 * and its queue, the datagram being filled, and the requests seen from it. Found by port, then
 * host, without building a string per message.
 */
interface Peer {
  readonly addr: PeerAddress;
  /** `host:port`, for messages. */
  readonly key: string;
  /** Another peer on the same port (a different host). */
  next: Peer | undefined;
  rtt: RttEstimator | undefined;
  /** The MSG frame being filled (a piece of the endpoint's slab), its slab and offset there. */
  frame: Buffer | undefined;
  frameSlab: Buffer | undefined;
  frameAt: number;
  /** Bytes of `frame` used so far. */
  used: number;
  /** Listed for the next flush. */
  dirty: boolean;
  /** Requests to this peer not yet settled (queued or sent). */
  pending: number;
  /** Congestion window, in requests, and slow-start threshold. */
  cwnd: number;
  ssthresh: number;
  /** Requests holding a window slot. */
  inFlight: number;
  /** First transmissions so far, and their count when the window was last cut. */
  sendSeq: number;
  cutSeq: number;
  /** Requests waiting for a window slot, oldest first from `waitHead`. */
  waiting: (Pending | undefined)[];
  waitHead: number;
  /** The peer's number in the duplicate cache (0: none yet), which holds the requests seen from it. */
  num: number;
  lastUsed: number;
}

interface OutTransfer {
  msgId: number;
  peer: PeerAddress;
  frames: Buffer[];
  acked: Uint8Array;
  ackedCount: number;
  sentAt: Float64Array;
  /** Order of each fragment's latest transmission, to tell lost fragments from late ones. */
  sentSeq: Float64Array;
  seq: number;
  /** Transmission order when the last probe went out; its answer settles everything older. */
  probeSeq: number;
  probeToken: number;
  next: number;
  inFlight: number;
  timer: TimerEntry | undefined;
  backoff: number;
  deadlineAt: number;
  done: boolean;
  failed: boolean;
}

const DEFAULT_DEDUP_MAX_BYTES = 64 * 1024 * 1024;
const SWEEP_INTERVAL_MS = 1_000;
/** A peer we sent requests to keeps its round-trip estimate this long after its last use. */
const PEER_IDLE_MS = 60_000;
/**
 * Traffic this sparse leaves at the end of the current task (once its microtasks have drained)
 * instead of the end of the event loop's turn: a request when at most this many are in flight
 * to its peer, a reply when its request came in a datagram of at most this many messages.
 * Heavier traffic waits for the turn's end, so that everything read in one I/O phase shares
 * datagrams.
 */
const SPARSE = 4;
/** Outgoing MSG frames are cut from slabs of this size (one ArrayBuffer per many datagrams). */
const SLAB_BYTES = 64 * 1024;
/**
 * Bytes a new MSG frame takes from the slab; it grows to the datagram budget when a message
 * needs more. Frames are cut back to back, and a flushed frame gives its unused tail back only
 * when no frame was cut after it. A frame that took the whole budget at once (60,000 bytes on
 * loopback) would strand that much slab whenever a flush carries frames to two peers (a `done`
 * push to a client and the reply to a worker's results), and at a thousand round trips a
 * second the fresh slabs set off garbage collections for external memory.
 */
const FRAME_RESERVE = 4096;

function summarize(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`)
    .join('; ');
}

export class Endpoint implements Transport {
  readonly #link: DatagramLink;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #timers: TimerQueue;
  readonly #signer: DatagramSigner | undefined;
  readonly #replay: ReplayFilter | undefined;
  readonly #allowUnsignedRaw: boolean;
  readonly #o: Required<
    Omit<
      EndpointOptions,
      | 'secret'
      | 'clock'
      | 'random'
      | 'onHandlerError'
      | 'onAuthFailure'
      | 'allowUnsignedRaw'
      | 'datagramBudget'
    >
  > & { datagramBudget: number };
  readonly #onHandlerError: EndpointOptions['onHandlerError'];
  readonly #onAuthFailure: EndpointOptions['onAuthFailure'];
  readonly #counters = newCounters();
  readonly #handlers = new Map<string, RequestHandler<RequestKind>>();
  readonly #notifyHandlers = new Map<string, NotificationHandler<NotificationKind>>();
  #rawHandler: RawHandler | undefined;
  readonly #pending = new Map<number, Pending>();
  /** Settled requests for reuse (see Pending). */
  readonly #pool: Pending[] = [];
  readonly #transfers = new Map<number, OutTransfer>();
  readonly #seen: SeenCache;
  readonly #reassembler: Reassembler;
  /** Peers by port; peers on the same port with other hosts hang off `next`. */
  readonly #peers = new Map<number, Peer>();
  /** Peer numbers in the duplicate cache: the next new one, and those free again. */
  #nextNum = 1;
  readonly #freeNums: number[] = [];
  /** Peers with a frame to send at the next flush. */
  readonly #dirty: Peer[] = [];
  /** A flush is queued as a microtask / for the end of this turn (setImmediate). */
  #flushQueued = false;
  #flushScheduled = false;
  /** Requests whose timer fired, settled after the next I/O phase (see #onRequestTimer). */
  #due: Pending[] = [];
  #slab: Buffer = Buffer.alloc(0);
  #slabOff = 0;
  #nextId: number;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #msgFrameBudget: number;
  /** Largest envelope sent inside a MSG frame; larger ones travel in fragments. */
  readonly #maxInline: number;
  readonly #fragData: number;
  readonly #ackBitmapBytes: number;

  constructor(link: DatagramLink, options: EndpointOptions = {}) {
    this.#link = link;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#timers = new TimerQueue(this.#clock);
    this.#o = {
      datagramBudget: options.datagramBudget ?? defaultDatagramBudget(link.local.host),
      maxMessageBytes: options.maxMessageBytes ?? LIMITS.maxMessageBytes,
      requestTimeoutMs: options.requestTimeoutMs ?? TIMING.requestTimeoutMs,
      initialRtoMs: options.initialRtoMs ?? TIMING.initialRtoMs,
      minRtoMs: options.minRtoMs ?? TIMING.minRtoMs,
      maxRtoMs: options.maxRtoMs ?? TIMING.maxRtoMs,
      jitter: options.jitter ?? TIMING.jitter,
      initialWindow: options.initialWindow ?? TIMING.initialWindow,
      minWindow: options.minWindow ?? TIMING.minWindow,
      maxWindow: options.maxWindow ?? TIMING.maxWindow,
      dedupTtlMs: options.dedupTtlMs ?? TIMING.dedupTtlMs,
      dedupMaxEntries: options.dedupMaxEntries ?? TIMING.dedupMaxEntries,
      dedupMaxBytes: options.dedupMaxBytes ?? DEFAULT_DEDUP_MAX_BYTES,
      reassemblyTtlMs: options.reassemblyTtlMs ?? TIMING.reassemblyTtlMs,
      reassemblyMaxMessages: options.reassemblyMaxMessages ?? TIMING.reassemblyMaxMessages,
      reassemblyMaxBytes: options.reassemblyMaxBytes ?? TIMING.reassemblyMaxBytes,
      fragmentWindow: options.fragmentWindow ?? TIMING.fragmentWindow,
      fragmentAckEvery: options.fragmentAckEvery ?? TIMING.fragmentAckEvery,
      authWindowMs: options.authWindowMs ?? TIMING.authWindowMs,
      replayCacheEntries: options.replayCacheEntries ?? TIMING.replayCacheEntries,
    };
    const budget = this.#o.datagramBudget;
    if (!Number.isInteger(budget) || budget < LIMITS.minDatagramBudget || budget > LIMITS.maxDatagramBudget) {
      throw new TaskGridError(
        ErrorCode.CONFIG,
        `datagram budget ${budget} is outside ${LIMITS.minDatagramBudget}..${LIMITS.maxDatagramBudget} bytes`,
      );
    }
    const { minWindow, initialWindow, maxWindow } = this.#o;
    if (!(minWindow >= 1 && minWindow <= initialWindow && initialWindow <= maxWindow)) {
      throw new TaskGridError(
        ErrorCode.CONFIG,
        `request windows must satisfy 1 <= min (${minWindow}) <= initial (${initialWindow}) <= max (${maxWindow})`,
      );
    }
    if (options.secret) {
      this.#signer = new DatagramSigner(options.secret, this.#o.authWindowMs);
      this.#replay = new ReplayFilter(this.#o.replayCacheEntries, this.#o.authWindowMs);
    }
    this.#allowUnsignedRaw = options.allowUnsignedRaw ?? false;
    this.#onHandlerError = options.onHandlerError;
    this.#onAuthFailure = options.onAuthFailure;
    const trailer = this.#signer ? TRAILER_BYTES : 0;
    this.#msgFrameBudget = budget - trailer;
    this.#maxInline = Math.min(
      this.#msgFrameBudget - HEADER_BYTES - MSG_ENTRY_HEADER_BYTES,
      MAX_MSG_ENTRY_BYTES,
      this.#o.maxMessageBytes,
    );
    this.#fragData = budget - trailer - FRAG_HEADER_BYTES;
    this.#ackBitmapBytes = budget - trailer - ACK_HEADER_BYTES;
    this.#reassembler = new Reassembler({
      maxMessages: this.#o.reassemblyMaxMessages,
      maxBytes: this.#o.reassemblyMaxBytes,
      ttlMs: this.#o.reassemblyTtlMs,
      maxMessageBytes: this.#o.maxMessageBytes,
    });
    this.#seen = new SeenCache(this.#o.dedupMaxEntries, this.#o.dedupMaxBytes);
    this.#nextId = Math.floor(this.#random() * 0xffffffff) >>> 0;
    link.onDatagram((data, from) => this.#onDatagram(data, from));
    link.onError(() => {
      this.#counters.sendErrors++;
    });
    this.#startSweep();
  }

  get address(): PeerAddress {
    return this.#link.local;
  }

  /** True when datagrams are signed and checked. */
  get authenticated(): boolean {
    return this.#signer !== undefined;
  }

  counters(): TransportCounters {
    return { ...this.#counters };
  }

  /** Current retransmission timeout towards a peer (for diagnostics and tests). */
  rtoFor(peer: PeerAddress): number {
    return this.#findPeer(peer.host, peer.port)?.rtt?.rtoMs ?? this.#o.initialRtoMs;
  }

  /** Current request window towards a peer, and how many requests hold a slot or wait (for diagnostics and tests). */
  windowFor(peer: PeerAddress): { window: number; inFlight: number; queued: number } {
    const p = this.#findPeer(peer.host, peer.port);
    if (!p) return { window: this.#o.initialWindow, inFlight: 0, queued: 0 };
    let queued = 0;
    for (let i = p.waitHead; i < p.waiting.length; i++) if (p.waiting[i]?.state === QUEUED) queued++;
    return { window: Math.floor(p.cwnd), inFlight: p.inFlight, queued };
  }

  handle<K extends RequestKind>(kind: K, handler: RequestHandler<K>): void {
    this.#handlers.set(kind, handler);
  }

  onNotification<K extends NotificationKind>(kind: K, handler: NotificationHandler<K>): void {
    this.#notifyHandlers.set(kind, handler);
  }

  onRaw(handler: RawHandler): void {
    this.#rawHandler = handler;
  }

  sendRaw(data: Buffer, to: PeerAddress): void {
    if (this.#closed) return;
    this.#counters.rawOut++;
    this.#counters.datagramsOut++;
    this.#counters.bytesOut += data.length;
    this.#link.send(data, to);
  }

  request<K extends RequestKind>(
    peer: PeerAddress,
    kind: K,
    body: RequestBody<K>,
    options?: RequestOptions,
  ): Promise<ReplyBody<K>> {
    if (this.#closed) return Promise.reject(new TaskGridError(ErrorCode.CLOSED, 'transport is closed'));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const id = this.#takeId();
    const prefix = envelopePrefix(kind);
    const json = JSON.stringify(body) as string | undefined;
    const size = this.#outsizeOf(prefix, id, undefined, json);
    if (size > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      return Promise.reject(new TooLargeError(size, this.#o.maxMessageBytes, `${kind} request`));
    }
    let resolve!: (body: unknown) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<ReplyBody<K>>((res, rej) => {
      resolve = res as (body: unknown) => void;
      reject = rej;
    });
    const timeoutMs = options?.timeoutMs ?? this.#o.requestTimeoutMs;
    const now = this.#clock.now();
    const target = this.#peerFor(peer.host, peer.port);
    const p = this.#pool.pop() ?? new Pending(this.#onRequestTimer, target);
    p.peer = target;
    p.id = id;
    p.kind = kind;
    p.prefix = prefix;
    p.body = json;
    p.bytes = size === 0 ? undefined : this.#encodeWhole(size, prefix, id, undefined, json);
    p.state = QUEUED;
    p.windowed = false;
    p.admitted = false;
    p.seq = 0;
    p.attempts = 0;
    p.firstSentAt = 0;
    p.resolve = resolve;
    p.reject = reject;
    p.deadlineAt = now + timeoutMs;
    p.timeoutMs = timeoutMs;
    p.signal = signal;
    this.#pending.set(id, p);
    target.pending++;
    target.lastUsed = now;
    this.#counters.requestsSent++;
    if (signal) {
      p.onAbort = () => this.#settle(p, abortError(signal));
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    if (target.inFlight < target.cwnd && target.waitHead === target.waiting.length) {
      this.#admit(p);
    } else {
      target.waiting.push(p);
      this.#timers.scheduleAt(p, p.deadlineAt);
    }
    return promise;
  }

  notify<K extends NotificationKind>(peer: PeerAddress, kind: K, body: NotificationBody<K>): void {
    if (this.#closed) return;
    const id = this.#takeId();
    const prefix = envelopePrefix(kind);
    const json = JSON.stringify(body) as string | undefined;
    const size = this.#outsizeOf(prefix, id, undefined, json);
    if (size > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      throw new TooLargeError(size, this.#o.maxMessageBytes, `${kind} notification`);
    }
    this.#counters.notificationsOut++;
    if (size === 0) this.#enqueue(this.#peerFor(peer.host, peer.port), prefix, id, undefined, json, 0, false);
    else this.#startTransfer(peer, id, this.#encodeWhole(size, prefix, id, undefined, json));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of [...this.#pending.values()]) {
      this.#settle(p, new TaskGridError(ErrorCode.CLOSED, `transport closed before ${p.kind} was answered`));
    }
    // Replies already produced still go out.
    this.#flushDirty();
    this.#timers.close();
    clearInterval(this.#sweeper);
    this.#transfers.clear();
    this.#seen.clear();
    this.#peers.clear();
    this.#freeNums.length = 0;
    await this.#link.close();
  }

  // ---- peers -----------------------------------------------------------------------------

  #findPeer(host: string, port: number): Peer | undefined {
    for (let p = this.#peers.get(port); p !== undefined; p = p.next) if (p.addr.host === host) return p;
    return undefined;
  }

  #peerFor(host: string, port: number): Peer {
    const first = this.#peers.get(port);
    for (let p = first; p !== undefined; p = p.next) if (p.addr.host === host) return p;
    const peer: Peer = {
      addr: { host, port },
      key: `${host}:${port}`,
      next: first,
      rtt: undefined,
      frame: undefined,
      frameSlab: undefined,
      frameAt: 0,
      used: 0,
      dirty: false,
      pending: 0,
      cwnd: this.#o.initialWindow,
      ssthresh: Infinity,
      inFlight: 0,
      sendSeq: 0,
      cutSeq: 0,
      waiting: [],
      waitHead: 0,
      num: 0,
      lastUsed: this.#clock.now(),
    };
    this.#peers.set(port, peer);
    return peer;
  }

  #rttOf(peer: Peer): RttEstimator {
    return (peer.rtt ??= new RttEstimator({
      initialMs: this.#o.initialRtoMs,
      minMs: this.#o.minRtoMs,
      maxMs: this.#o.maxRtoMs,
    }));
  }

  /** Drops peers that hold nothing; those we sent requests to keep their estimates a while. */
  #sweepPeers(now: number): void {
    for (const [port, first] of this.#peers) {
      let head: Peer | undefined;
      let tail: Peer | undefined;
      for (let p: Peer | undefined = first; p !== undefined; p = p.next) {
        const idle =
          p.pending === 0 &&
          !p.dirty &&
          (p.num === 0 || this.#seen.countFor(p.num) === 0) &&
          (p.rtt === undefined || now - p.lastUsed > PEER_IDLE_MS);
        if (idle) {
          if (p.num !== 0) this.#freeNums.push(p.num);
          continue;
        }
        if (tail) tail.next = p;
        else head = p;
        tail = p;
      }
      if (tail) tail.next = undefined;
      if (head === undefined) this.#peers.delete(port);
      else if (head !== first) this.#peers.set(port, head);
    }
  }

  // ---- sending -------------------------------------------------------------------------

  #takeId(): number {
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0;
    return id;
  }

  /**
   * 0 when the envelope fits inside one MSG frame, else its size in bytes (to fragment it, or
   * to refuse it). A short body is bounded rather than measured.
   */
  #outsizeOf(prefix: Buffer, id: number, re: number | undefined, body: string | undefined): number {
    if (envelopeSize(prefix, id, re, body, false) <= this.#maxInline) return 0;
    const n = envelopeSize(prefix, id, re, body, true);
    return n <= this.#maxInline ? 0 : n;
  }

  /** The whole envelope as bytes, for a message that travels in fragments. */
  #encodeWhole(
    size: number,
    prefix: Buffer,
    id: number,
    re: number | undefined,
    body: string | undefined,
  ): Buffer {
    const bytes = Buffer.allocUnsafe(size);
    writeEnvelope(bytes, 0, prefix, id, re, body);
    return bytes;
  }

  /** Gives a queued request a window slot and sends it. */
  #admit(p: Pending): void {
    const peer = p.peer;
    p.state = SENT;
    p.windowed = true;
    p.admitted = true;
    p.seq = ++peer.sendSeq;
    peer.inFlight++;
    this.#transmit(p);
  }

  /** Sends waiting requests while the peer's window has room. */
  #admitWaiting(peer: Peer): void {
    const q = peer.waiting;
    while (peer.inFlight < peer.cwnd && peer.waitHead < q.length && !this.#closed) {
      const p = q[peer.waitHead]!;
      q[peer.waitHead++] = undefined;
      if (p.state === QUEUED) this.#admit(p);
    }
    if (peer.waitHead === q.length) {
      q.length = 0;
      peer.waitHead = 0;
    } else if (peer.waitHead > 1024 && peer.waitHead * 2 > q.length) {
      peer.waiting = q.slice(peer.waitHead);
      peer.waitHead = 0;
    }
  }

  /**
   * A request gives its slot back: on its reply, or at its first retransmission timeout (lost,
   * or slow to answer: either way it no longer says anything about the path, and a request
   * that waits long for its answer, a long poll, must not hold a slot). A timeout cuts the
   * window in half, once per round of requests, down to its floor.
   */
  #release(p: Pending, lost: boolean): void {
    const peer = p.peer;
    p.windowed = false;
    peer.inFlight--;
    if (lost && p.seq > peer.cutSeq) {
      peer.ssthresh = Math.max(this.#o.minWindow, peer.cwnd / 2);
      peer.cwnd = peer.ssthresh;
      peer.cutSeq = peer.sendSeq;
    }
    if (peer.waitHead < peer.waiting.length) this.#admitWaiting(peer);
  }

  /** A reply to a first transmission: the window grows (slow start, then additive increase). */
  #grow(peer: Peer): void {
    peer.cwnd += peer.cwnd < peer.ssthresh ? 1 : 1 / peer.cwnd;
    if (peer.cwnd > this.#o.maxWindow) peer.cwnd = this.#o.maxWindow;
  }

  #transmit(p: Pending): void {
    if (this.#closed || p.state !== SENT) return;
    p.attempts++;
    const now = this.#clock.now();
    const rtt = this.#rttOf(p.peer);
    if (p.attempts === 1) {
      p.firstSentAt = now;
    } else {
      (p.sentAt ??= [p.firstSentAt]).push(now);
      this.#counters.retransmits++;
      rtt.backoff(now);
    }
    if (!p.fragmented) {
      const sparse = p.attempts === 1 && p.peer.inFlight <= SPARSE;
      this.#enqueue(p.peer, p.prefix, p.id, undefined, p.body, p.attempts, sparse);
    } else if (!p.transfer || p.transfer.failed) {
      p.transfer = this.#startTransfer(p.peer.addr, p.id, p.bytes!);
    } else if (p.transfer.done) {
      // The peer has the whole request; ask it (cheaply) to repeat its reply.
      this.#sendFrame(encodeProbeFrame(p.id, p.transfer.frames.length, 0), p.peer.addr);
    }
    const backedOff = Math.min(rtt.rtoMs * 2 ** (p.attempts - 1), this.#o.maxRtoMs);
    const retryAt = now + backedOff * (1 + this.#o.jitter * this.#random());
    this.#timers.scheduleAt(p, Math.min(retryAt, p.deadlineAt));
  }

  /** A request's timer: its next retransmission, or its deadline. One shared function, no closure per request. */
  readonly #onRequestTimer = (e: TimerEntry): void => {
    // Decided after the event loop's next I/O phase, not now: timers run before I/O, so after a
    // pause (a GC, a busy turn) replies already waiting in the socket buffer would otherwise
    // count as lost, and every request in flight would be re-sent for nothing.
    const p = e as Pending;
    p.due = true;
    this.#due.push(p);
    if (this.#due.length === 1) setImmediate(this.#runDue);
  };

  readonly #runDue = (): void => {
    const due = this.#due;
    this.#due = [];
    const now = this.#clock.now();
    for (const p of due) p.due = false;
    for (const p of due) {
      if (p.state === DONE || p.index >= 0) continue;
      if (now >= p.deadlineAt) {
        this.#counters.timeouts++;
        this.#settle(
          p,
          new TimeoutError(`no reply to ${p.kind} from ${p.peer.key} within ${p.timeoutMs} ms`),
        );
      } else if (p.state === QUEUED) {
        // Still waiting for a window slot (a clock that stepped back): wait for the deadline again.
        this.#timers.scheduleAt(p, p.deadlineAt);
      } else {
        if (p.windowed) this.#release(p, true);
        this.#transmit(p);
      }
    }
    // Retransmissions leave in this turn rather than the next.
    this.#flushDirty();
  };

  #settle(p: Pending, err: unknown, body?: unknown): void {
    if (p.state === DONE) return;
    p.state = DONE;
    this.#pending.delete(p.id);
    this.#timers.cancel(p);
    const peer = p.peer;
    peer.pending--;
    peer.lastUsed = this.#clock.now();
    if (p.windowed) this.#release(p, false);
    if (p.transfer && !p.transfer.done) this.#endTransfer(p.transfer, false);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
    const { resolve, reject } = p;
    // Reused only when nothing refers to it any more: no waiting queue (it was admitted) and
    // no due list.
    if (p.admitted && !p.due && this.#pool.length < PENDING_POOL) {
      p.clear();
      this.#pool.push(p);
    }
    if (err !== undefined) reject(err);
    else resolve(body);
  }

  /**
   * Appends a message that fits one MSG frame to the peer's frame, written in place. The frame
   * leaves at the end of this turn of the event loop, or of the current task when `sparse`
   * (see SPARSE), or now when the next message would not fit. Returns the message's size in
   * bytes.
   */
  #enqueue(
    peer: Peer,
    prefix: Buffer,
    id: number,
    re: number | undefined,
    body: string | undefined,
    tx: number,
    sparse: boolean,
  ): number {
    this.#counters.messagesOut++;
    let frame = peer.frame;
    let off = peer.used;
    if (frame !== undefined) {
      const free = this.#msgFrameBudget - off - MSG_ENTRY_HEADER_BYTES;
      if (
        envelopeSize(prefix, id, re, body, false) > free &&
        envelopeSize(prefix, id, re, body, true) > free
      ) {
        this.#flushPeer(peer);
        frame = undefined;
      }
    }
    if (frame === undefined) {
      frame = this.#newFrame(peer);
      off = peer.used;
    }
    const start = off + MSG_ENTRY_HEADER_BYTES;
    // The message fits the budget; the frame's share of the slab may still have to grow.
    const room = frame.length - (this.#signer ? TRAILER_BYTES : 0) - start;
    if (envelopeSize(prefix, id, re, body, false) > room && envelopeSize(prefix, id, re, body, true) > room) {
      frame = this.#growFrame(peer, frame);
    }
    const end = writeEnvelope(frame, start, prefix, id, re, body);
    const len = end - start;
    writeMsgEntryHeader(frame, off, len, tx);
    peer.used = end;
    if (!peer.dirty) {
      peer.dirty = true;
      this.#dirty.push(peer);
    }
    if (sparse) {
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(this.#flushAtTaskEnd);
      }
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushAtTurnEnd);
    }
    return len;
  }

  /** Starts a MSG frame for the peer in the slab (FRAME_RESERVE bytes of it at first). */
  #newFrame(peer: Peer): Buffer {
    const frame = this.#cutFrame(peer, Math.min(FRAME_RESERVE, this.#o.datagramBudget));
    peer.used = writeMsgFrameHeader(frame);
    return frame;
  }

  /**
   * Gives the peer's open frame the whole datagram budget (with room for a signature trailer):
   * in place when it is the last frame cut and the slab has room, else by moving what it holds.
   */
  #growFrame(peer: Peer, frame: Buffer): Buffer {
    const size = this.#o.datagramBudget;
    const slab = this.#slab;
    if (
      peer.frameSlab === slab &&
      this.#slabOff === peer.frameAt + frame.length &&
      peer.frameAt + size <= slab.length
    ) {
      const grown = slab.subarray(peer.frameAt, peer.frameAt + size);
      this.#slabOff = peer.frameAt + size;
      peer.frame = grown;
      return grown;
    }
    const moved = this.#cutFrame(peer, size);
    frame.copy(moved, 0, 0, peer.used);
    return moved;
  }

  /** Cuts `size` bytes from the slab (a new slab when they do not fit) as the peer's frame. */
  #cutFrame(peer: Peer, size: number): Buffer {
    if (this.#slabOff + size > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, 4 * this.#o.datagramBudget));
      this.#slabOff = 0;
    }
    const frame = this.#slab.subarray(this.#slabOff, this.#slabOff + size);
    peer.frame = frame;
    peer.frameSlab = this.#slab;
    peer.frameAt = this.#slabOff;
    this.#slabOff += size;
    return frame;
  }

  #flushPeer(peer: Peer): void {
    const frame = peer.frame;
    if (frame === undefined) return;
    peer.frame = undefined;
    let len = peer.used;
    // Give the slab back what the frame did not use, unless a later frame was cut after it.
    const end = peer.frameAt + len + (this.#signer ? TRAILER_BYTES : 0);
    if (peer.frameSlab === this.#slab && this.#slabOff === peer.frameAt + frame.length) this.#slabOff = end;
    peer.frameSlab = undefined;
    if (this.#signer) len = this.#signer.signInPlace(frame, len, Date.now());
    this.#counters.datagramsOut++;
    this.#counters.bytesOut += len;
    this.#link.send(frame.subarray(0, len), peer.addr);
  }

  /**
   * Queued as a microtask: a tick queued from a microtask runs once the whole microtask queue
   * has drained, so the frame leaves after every promise continuation of this task, carrying
   * what they send too (a reply and the request its continuation makes, say), not before them.
   */
  readonly #flushAtTaskEnd = (): void => {
    process.nextTick(this.#flushNow);
  };

  readonly #flushNow = (): void => {
    this.#flushQueued = false;
    this.#flushDirty();
  };

  readonly #flushAtTurnEnd = (): void => {
    this.#flushScheduled = false;
    this.#flushDirty();
  };

  #flushDirty(): void {
    const dirty = this.#dirty;
    for (let i = 0; i < dirty.length; i++) {
      const peer = dirty[i]!;
      peer.dirty = false;
      this.#flushPeer(peer);
    }
    dirty.length = 0;
  }

  #sendFrame(frame: Buffer, peer: PeerAddress): void {
    const datagram = this.#signer ? this.#signer.sign(frame, Date.now()) : frame;
    this.#counters.datagramsOut++;
    this.#counters.bytesOut += datagram.length;
    this.#link.send(datagram, peer);
  }

  // ---- large messages --------------------------------------------------------------------

  #startTransfer(peer: PeerAddress, msgId: number, bytes: Buffer): OutTransfer {
    const existing = this.#transfers.get(msgId);
    if (existing && !existing.done) return existing;
    const count = Math.ceil(bytes.length / this.#fragData);
    const frames: Buffer[] = new Array<Buffer>(count);
    for (let i = 0; i < count; i++) {
      const data = bytes.subarray(i * this.#fragData, Math.min(bytes.length, (i + 1) * this.#fragData));
      frames[i] = encodeFragFrame(msgId, i, count, bytes.length, data);
    }
    const t: OutTransfer = {
      msgId,
      peer,
      frames,
      acked: new Uint8Array(count),
      ackedCount: 0,
      sentAt: new Float64Array(count),
      sentSeq: new Float64Array(count),
      seq: 0,
      probeSeq: 0,
      probeToken: 0,
      next: 0,
      inFlight: 0,
      timer: undefined,
      backoff: 1,
      deadlineAt: this.#clock.now() + Math.max(this.#o.requestTimeoutMs, this.#o.reassemblyTtlMs),
      done: false,
      failed: false,
    };
    this.#transfers.set(msgId, t);
    this.#counters.messagesOut++;
    this.#pump(t);
    return t;
  }

  #sendFragment(t: OutTransfer, i: number): void {
    if (t.sentAt[i] !== 0) this.#counters.fragmentsResent++;
    else t.inFlight++;
    t.sentAt[i] = this.#clock.now() || 1;
    t.sentSeq[i] = ++t.seq;
    this.#counters.fragmentsOut++;
    this.#sendFrame(t.frames[i]!, t.peer);
  }

  #pump(t: OutTransfer): void {
    while (t.next < t.frames.length && t.inFlight < this.#o.fragmentWindow) {
      this.#sendFragment(t, t.next++);
    }
    this.#armTransfer(t);
  }

  #armTransfer(t: OutTransfer): void {
    this.#timers.cancel(t.timer);
    const delay = Math.min(
      this.#o.maxRtoMs,
      this.#rttOf(this.#peerFor(t.peer.host, t.peer.port)).rtoMs * t.backoff,
    );
    t.timer = this.#timers.schedule(delay, () => this.#onTransferTimer(t));
  }

  #onTransferTimer(t: OutTransfer): void {
    if (t.done) return;
    if (this.#clock.now() > t.deadlineAt) {
      this.#endTransfer(t, false);
      return;
    }
    // No acknowledgement in time: ask the receiver what it has rather than re-sending blindly.
    t.backoff = Math.min(t.backoff * 2, 64);
    t.probeSeq = t.seq;
    t.probeToken = (t.probeToken % 0xfffffff0) + 1;
    this.#sendFrame(encodeProbeFrame(t.msgId, t.frames.length, t.probeToken), t.peer);
    this.#armTransfer(t);
  }

  #onAck(f: Extract<Frame, { type: typeof FrameType.FRAG_ACK }>, from: PeerAddress): void {
    const t = this.#transfers.get(f.msgId);
    if (!t || t.done || t.peer.port !== from.port || f.count !== t.frames.length) return;
    t.backoff = 1;
    if (f.status === AckStatus.COMPLETE) {
      this.#endTransfer(t, true);
      return;
    }
    if (f.status === AckStatus.UNKNOWN) {
      // The receiver lost (or never had) the message: start over.
      t.acked.fill(0);
      t.ackedCount = 0;
      t.sentAt.fill(0);
      t.sentSeq.fill(0);
      t.next = 0;
      t.inFlight = 0;
      this.#pump(t);
      return;
    }
    // The latest transmission this ack newly confirms: anything sent before it and still
    // missing was lost (datagrams mostly arrive in order), so only those are re-sent.
    let newest = 0;
    for (let i = 0; i < f.below; i++) if (this.#markAcked(t, i)) newest = Math.max(newest, t.sentSeq[i]!);
    const span = Math.min(f.bitmap.length * 8, t.frames.length - f.below);
    for (let b = 0; b < span; b++) {
      if (((f.bitmap[b >> 3] ?? 0) >> (b & 7)) & 1 && this.#markAcked(t, f.below + b)) {
        newest = Math.max(newest, t.sentSeq[f.below + b]!);
      }
    }
    if (t.ackedCount === t.frames.length) {
      this.#endTransfer(t, true);
      return;
    }
    // A lost tail confirms nothing newer: it is re-sent after a timeout, when the receiver's
    // answer to the probe shows what is still missing.
    let settled = newest;
    if (f.echo !== 0 && f.echo === t.probeToken) {
      settled = Math.max(settled, t.probeSeq + 1);
      t.probeSeq = 0;
    }
    for (let i = f.below; i < t.next; i++) {
      if (t.acked[i] === 0 && t.sentAt[i] !== 0 && t.sentSeq[i]! < settled) this.#sendFragment(t, i);
    }
    this.#pump(t);
  }

  /** Returns true when fragment `i` was not acknowledged before. */
  #markAcked(t: OutTransfer, i: number): boolean {
    if (t.acked[i] === 1) return false;
    t.acked[i] = 1;
    t.ackedCount++;
    if (t.sentAt[i] !== 0) t.inFlight--;
    return true;
  }

  #endTransfer(t: OutTransfer, ok: boolean): void {
    t.done = ok;
    t.failed = !ok;
    if (!ok) t.done = true;
    this.#timers.cancel(t.timer);
    this.#transfers.delete(t.msgId);
  }

  // ---- receiving -------------------------------------------------------------------------

  #authFailed(from: PeerAddress, reason: AuthFailure): void {
    this.#counters.authFailures++;
    try {
      this.#onAuthFailure?.(from, reason);
    } catch {
      // a logging hook must not stop the receive path
    }
  }

  #onDatagram(data: Buffer, from: PeerAddress): void {
    if (this.#closed) return;
    this.#counters.datagramsIn++;
    this.#counters.bytesIn += data.length;
    if (!looksLikeFrame(data)) {
      if (this.#rawHandler && (!this.#signer || this.#allowUnsignedRaw)) {
        this.#counters.rawIn++;
        try {
          if (this.#rawHandler(data, from) === false) this.#counters.malformed++;
        } catch (err) {
          this.#counters.handlerErrors++;
          this.#onHandlerError?.(err, { peer: from, kind: 'raw', id: 0 });
        }
      } else if (this.#signer) {
        this.#authFailed(from, 'unsigned');
      } else {
        this.#counters.malformed++;
      }
      return;
    }
    let frameBytes = data;
    if (this.#signer) {
      const now = Date.now();
      const v = this.#signer.verify(data, now);
      if (!v.ok) {
        if (v.reason === 'stale') this.#counters.replays++;
        else this.#authFailed(from, v.reason === 'unsigned' ? 'unsigned' : 'bad-signature');
        return;
      }
      if (!this.#replay!.check(v.mac, v.ts, now)) {
        this.#counters.replays++;
        return;
      }
      frameBytes = v.frame;
    } else if (((data[4] ?? 0) & 1) !== 0) {
      // Signed by a peer with a secret this endpoint does not have: a misconfigured grid.
      this.#authFailed(from, 'signed');
      return;
    }
    if (frameBytes[3] === FrameType.MSG) {
      // The common case, read in place: no object or Buffer per message.
      const reader = new MsgFrameReader();
      try {
        reader.reset(frameBytes);
      } catch {
        this.#counters.malformed++;
        return;
      }
      let peer: Peer | undefined;
      const sparse = reader.count <= SPARSE;
      while (reader.next() && !this.#closed) {
        peer = this.#onMessage(
          frameBytes.toString('utf8', reader.start, reader.end),
          reader.tx,
          from,
          peer,
          sparse,
        );
      }
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(frameBytes);
    } catch {
      this.#counters.malformed++;
      return;
    }
    switch (frame.type) {
      case FrameType.MSG:
        // Decoded above; a MSG frame never gets here.
        break;
      case FrameType.FRAG:
        this.#onFragment(frame, from);
        break;
      case FrameType.FRAG_ACK:
        this.#onAck(frame, from);
        break;
      case FrameType.PROBE:
        this.#onProbe(frame, from);
        break;
    }
  }

  #onFragment(f: Extract<Frame, { type: typeof FrameType.FRAG }>, from: PeerAddress): void {
    this.#counters.fragmentsIn++;
    const key = `${from.host}:${from.port}#${f.msgId}`;
    const out = this.#reassembler.add(
      key,
      f.index,
      f.count,
      f.total,
      f.data,
      this.#clock.now(),
      this.#o.fragmentAckEvery,
    );
    switch (out.kind) {
      case 'partial':
        if (out.ackDue) this.#sendAck(key, f.msgId, f.count, from);
        return;
      case 'duplicate':
      case 'already-complete':
        this.#sendAck(key, f.msgId, f.count, from);
        return;
      case 'rejected':
        this.#counters.reassemblyRejected++;
        return;
      case 'complete':
        this.#counters.reassemblies++;
        this.#sendAck(key, f.msgId, f.count, from);
        this.#onMessage(out.message.toString('utf8'), 0, from, undefined, true);
        return;
    }
  }

  #onProbe(f: Extract<Frame, { type: typeof FrameType.PROBE }>, from: PeerAddress): void {
    const key = `${from.host}:${from.port}#${f.msgId}`;
    const peer = this.#findPeer(from.host, from.port);
    const seen = peer && peer.num !== 0 ? this.#seen.find(peer.num, f.msgId) : -1;
    if (peer && this.#seen.hasReply(seen)) this.#resendReply(seen, peer, true);
    this.#sendAck(key, f.msgId, f.count, from, f.token);
  }

  #sendAck(key: string, msgId: number, count: number, to: PeerAddress, echo = 0): void {
    const s = this.#reassembler.ackState(key, count, this.#ackBitmapBytes);
    this.#sendFrame(encodeAckFrame(msgId, s.count, s.status, s.below, echo, s.bitmap), to);
  }

  /** Handles one message; returns the sender's peer record when it was needed (found once per datagram). */
  #onMessage(
    json: string,
    tx: number,
    from: PeerAddress,
    peer: Peer | undefined,
    sparse: boolean,
  ): Peer | undefined {
    let env: Envelope;
    try {
      env = parseEnvelope(json);
    } catch {
      this.#counters.malformed++;
      return peer;
    }
    this.#counters.messagesIn++;
    if (env.re !== undefined) {
      this.#onReply(env, env.re, tx, from);
      return peer;
    }
    peer ??= this.#peerFor(from.host, from.port);
    this.#onRequestOrNotification(env, tx, from, peer, sparse);
    return peer;
  }

  #onReply(env: Envelope, re: number, tx: number, from: PeerAddress): void {
    const p = this.#pending.get(re);
    if (p === undefined || p.state !== SENT || p.peer.addr.port !== from.port) {
      this.#counters.lateReplies++;
      return;
    }
    this.#counters.repliesReceived++;
    // The echoed transmission number says which copy was answered: an unambiguous sample.
    const sentAt =
      tx === 1
        ? p.firstSentAt
        : tx > 1
          ? p.sentAt?.[tx - 1]
          : p.attempts === 1 && !p.fragmented
            ? p.firstSentAt
            : undefined;
    if (sentAt !== undefined) this.#rttOf(p.peer).sample(this.#clock.now() - sentAt);
    if (p.windowed) this.#grow(p.peer);
    switch (env.k) {
      case ReplyKind.OK: {
        const schema = requests[p.kind].res;
        // The compiled check accepts only what the schema accepts as it is; anything else goes to zod.
        if (fastCheck(schema)(env.b)) {
          this.#settle(p, undefined, env.b);
          return;
        }
        // A newer peer's reply may carry optional fields this version does not know: read the
        // rest (docs/PROTOCOL.md, "Versions"). Requests stay strict.
        const { result: parsed } = parseIgnoringUnknownKeys(schema, env.b);
        if (parsed.success) this.#settle(p, undefined, parsed.data);
        else {
          this.#counters.malformed++;
          this.#settle(
            p,
            new RemoteError(
              ErrorCode.BAD_MESSAGE,
              `invalid ${p.kind} reply from ${p.peer.key}: ${summarize(parsed.error)}`,
            ),
          );
        }
        return;
      }
      case ReplyKind.ERROR: {
        const parsed = ErrorReplyBody.safeParse(env.b);
        const code = parsed.success && isErrorCode(parsed.data.code) ? parsed.data.code : ErrorCode.INTERNAL;
        const message = parsed.success ? parsed.data.message : 'malformed error reply';
        this.#settle(p, new RemoteError(code, message));
        return;
      }
      case ReplyKind.BUSY: {
        const parsed = BusyReplyBody.safeParse(env.b);
        this.#settle(
          p,
          parsed.success
            ? new BusyError(parsed.data.message, parsed.data.retryAfterMs)
            : new BusyError('peer is busy', this.#o.maxRtoMs),
        );
        return;
      }
      default:
        this.#counters.malformed++;
        this.#settle(p, new RemoteError(ErrorCode.BAD_MESSAGE, `unknown reply kind "${env.k}"`));
    }
  }

  #onRequestOrNotification(env: Envelope, tx: number, from: PeerAddress, peer: Peer, sparse: boolean): void {
    if (peer.num === 0) peer.num = this.#freeNums.pop() ?? this.#nextNum++;
    const seen = this.#seen.find(peer.num, env.id);
    if (seen >= 0) {
      this.#counters.duplicates++;
      this.#seen.setTx(seen, tx);
      if (this.#seen.hasReply(seen)) this.#resendReply(seen, peer, sparse);
      return;
    }
    // The request's entry number in the duplicate cache; its reply is recorded there.
    const entry = this.#seen.add(peer.num, env.id, this.#clock.now(), tx);

    if (isNotificationKind(env.k)) {
      const handler = this.#notifyHandlers.get(env.k);
      const schema = notifications[env.k];
      let body = env.b as NotificationBody<NotificationKind>;
      if (!fastCheck(schema)(body)) {
        const parsed = schema.safeParse(env.b);
        if (!parsed.success) {
          this.#counters.malformed++;
          return;
        }
        body = parsed.data;
      }
      this.#counters.notificationsIn++;
      try {
        handler?.(body, { peer: from });
      } catch (err) {
        this.#counters.handlerErrors++;
        this.#onHandlerError?.(err, { peer: from, kind: env.k, id: env.id });
      }
      return;
    }
    if (!isRequestKind(env.k)) {
      this.#counters.malformed++;
      this.#reply(entry, env.id, peer, sparse, ReplyKind.ERROR, {
        code: ErrorCode.UNKNOWN_KIND,
        message: `unknown message kind "${env.k.slice(0, 64)}"`,
      });
      return;
    }
    const kind = env.k;
    const handler = this.#handlers.get(kind);
    if (!handler) {
      this.#reply(entry, env.id, peer, sparse, ReplyKind.ERROR, {
        code: ErrorCode.UNKNOWN_KIND,
        message: `this component does not serve "${kind}" requests`,
      });
      return;
    }
    const schema = requests[kind].req;
    let body = env.b as ParsedRequest<RequestKind>;
    if (!fastCheck(schema)(body)) {
      const parsed = schema.safeParse(env.b);
      if (!parsed.success) {
        this.#counters.malformed++;
        this.#reply(entry, env.id, peer, sparse, ReplyKind.ERROR, {
          code: ErrorCode.BAD_MESSAGE,
          message: `invalid ${kind} request: ${summarize(parsed.error)}`,
        });
        return;
      }
      body = parsed.data;
    }
    this.#counters.requestsHandled++;
    const ctx: RequestContext = { peer: from, kind, id: env.id };
    let result: unknown;
    try {
      result = handler(body, ctx);
    } catch (err) {
      this.#replyError(entry, env.id, peer, sparse, err, ctx);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (body) => this.#reply(entry, env.id, peer, sparse, ReplyKind.OK, body),
        (err: unknown) => this.#replyError(entry, env.id, peer, sparse, err, ctx),
      );
    } else {
      this.#reply(entry, env.id, peer, sparse, ReplyKind.OK, result);
    }
  }

  #replyError(entry: number, re: number, to: Peer, sparse: boolean, err: unknown, ctx: RequestContext): void {
    if (err instanceof BusyError) {
      this.#counters.busyReplies++;
      this.#reply(entry, re, to, sparse, ReplyKind.BUSY, {
        message: err.message,
        retryAfterMs: err.retryAfterMs,
      });
      return;
    }
    this.#counters.errorReplies++;
    if (err instanceof TaskGridError) {
      this.#reply(entry, re, to, sparse, ReplyKind.ERROR, {
        code: err.code,
        message: err.message.slice(0, 4096),
      });
      return;
    }
    this.#counters.handlerErrors++;
    this.#onHandlerError?.(err, ctx);
    this.#reply(entry, re, to, sparse, ReplyKind.ERROR, {
      code: ErrorCode.INTERNAL,
      message: `internal error while handling ${ctx.kind}`,
    });
  }

  #reply(entry: number, re: number, to: Peer, sparse: boolean, kind: ReplyKind, body: unknown): void {
    if (this.#closed) return;
    const id = this.#takeId();
    let prefix = envelopePrefix(kind);
    let json = JSON.stringify(body) as string | undefined;
    let size = this.#outsizeOf(prefix, id, re, json);
    if (size > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      const err = new TooLargeError(size, this.#o.maxMessageBytes, 'reply');
      prefix = envelopePrefix(ReplyKind.ERROR);
      json = JSON.stringify(err.toJSON());
      size = this.#outsizeOf(prefix, id, re, json);
    }
    if (size === 0) {
      const bytes = this.#enqueue(to, prefix, id, re, json, this.#seen.tx(entry), sparse);
      this.#seen.setReply(entry, prefix, json, undefined, id, bytes);
    } else {
      const whole = this.#encodeWhole(size, prefix, id, re, json);
      this.#seen.setReply(entry, prefix, undefined, whole, id, whole.length);
      this.#startTransfer(to.addr, id, whole);
    }
  }

  /** Sends the recorded reply of duplicate-cache entry `n` again. */
  #resendReply(n: number, to: Peer, sparse: boolean): void {
    const whole = this.#seen.replyWhole(n);
    const replyId = this.#seen.replyId(n);
    if (whole === undefined) {
      this.#enqueue(
        to,
        this.#seen.replyPrefix(n)!,
        replyId,
        this.#seen.id(n),
        this.#seen.replyBody(n),
        this.#seen.tx(n),
        sparse,
      );
    } else if (!this.#transfers.has(replyId)) {
      this.#startTransfer(to.addr, replyId, whole);
    }
  }

  #startSweep(): void {
    // A plain interval, unref'd: housekeeping must not keep a process alive.
    this.#sweeper = setInterval(() => {
      const now = this.#clock.now();
      this.#seen.evict(now - this.#o.dedupTtlMs);
      this.#reassembler.expire(now);
      this.#sweepPeers(now);
    }, SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new TaskGridError(ErrorCode.CANCELLED, 'request aborted');
}
