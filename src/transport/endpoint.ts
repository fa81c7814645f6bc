/**
 * The reliable endpoint: protocol v1 request/response over any DatagramLink.
 *
 * - Requests are retransmitted with exponential backoff and jitter; the first timeout adapts to
 *   the measured round trip per peer (RFC 6298, Karn's rule). At the deadline: TG_ERR_TIMEOUT.
 * - A request's handler runs at most once per (peer, message id); duplicates are answered from
 *   a bounded, expiring cache of replies.
 * - Messages larger than one datagram are fragmented, sent under a window, acknowledged
 *   selectively (cumulative + bitmap) and only lost fragments are re-sent.
 * - Small messages to one peer produced in the same turn of the event loop share a datagram.
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
import { DatagramSigner, ReplayFilter, TRAILER_BYTES } from '../protocol/auth.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../protocol/envelope.ts';
import {
  ACK_HEADER_BYTES,
  AckStatus,
  decodeFrame,
  encodeAckFrame,
  encodeFragFrame,
  encodeMsgFrame,
  encodeProbeFrame,
  FRAG_HEADER_BYTES,
  FrameType,
  HEADER_BYTES,
  looksLikeFrame,
  MAX_MSG_ENTRY_BYTES,
  MSG_ENTRY_HEADER_BYTES,
  type Frame,
  type FramedMessage,
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
  type ReplyBody,
  type RequestBody,
  type RequestKind,
} from '../protocol/messages.ts';
import { Reassembler } from '../protocol/reassembly.ts';
import { FifoCache } from '../protocol/fifo-cache.ts';
import { RttEstimator } from './rtt.ts';
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
  datagramBudget?: number;
  maxMessageBytes?: number;
  requestTimeoutMs?: number;
  initialRtoMs?: number;
  minRtoMs?: number;
  maxRtoMs?: number;
  jitter?: number;
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
}

interface Pending {
  id: number;
  kind: RequestKind;
  peer: PeerAddress;
  peerKey: string;
  bytes: Buffer;
  fragmented: boolean;
  attempts: number;
  /** When each transmission went out (index = transmission number - 1). */
  sentAt: number[];
  resolve: (body: unknown) => void;
  reject: (err: unknown) => void;
  retryTimer: TimerEntry | undefined;
  deadlineTimer: TimerEntry | undefined;
  transfer: OutTransfer | undefined;
  onAbort: (() => void) | undefined;
  signal: AbortSignal | undefined;
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

interface Seen {
  key: string;
  /** Encoded reply envelope, once the handler finished. */
  reply: Buffer | undefined;
  replyId: number;
  /** Transmission number of the latest copy of the request, echoed in the reply. */
  tx: number;
}

interface OutQueue {
  peer: PeerAddress;
  msgs: FramedMessage[];
  size: number;
}

const DEFAULT_DEDUP_MAX_BYTES = 64 * 1024 * 1024;
const SWEEP_INTERVAL_MS = 1_000;

function peerKeyOf(p: PeerAddress): string {
  return `${p.host}:${p.port}`;
}

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
  readonly #o: Required<Omit<EndpointOptions, 'secret' | 'clock' | 'random' | 'onHandlerError' | 'allowUnsignedRaw'>>;
  readonly #onHandlerError: EndpointOptions['onHandlerError'];
  readonly #counters = newCounters();
  readonly #handlers = new Map<string, RequestHandler<RequestKind>>();
  readonly #notifyHandlers = new Map<string, NotificationHandler<NotificationKind>>();
  #rawHandler: RawHandler | undefined;
  readonly #pending = new Map<number, Pending>();
  readonly #transfers = new Map<number, OutTransfer>();
  readonly #seen: FifoCache<Seen>;
  readonly #reassembler: Reassembler;
  readonly #rtt = new Map<string, RttEstimator>();
  readonly #outbox = new Map<string, OutQueue>();
  #flushScheduled = false;
  #nextId: number;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #msgFrameBudget: number;
  readonly #fragData: number;
  readonly #ackBitmapBytes: number;

  constructor(link: DatagramLink, options: EndpointOptions = {}) {
    this.#link = link;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#timers = new TimerQueue(this.#clock);
    this.#o = {
      datagramBudget: options.datagramBudget ?? LIMITS.datagramBudget,
      maxMessageBytes: options.maxMessageBytes ?? LIMITS.maxMessageBytes,
      requestTimeoutMs: options.requestTimeoutMs ?? TIMING.requestTimeoutMs,
      initialRtoMs: options.initialRtoMs ?? TIMING.initialRtoMs,
      minRtoMs: options.minRtoMs ?? TIMING.minRtoMs,
      maxRtoMs: options.maxRtoMs ?? TIMING.maxRtoMs,
      jitter: options.jitter ?? TIMING.jitter,
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
    if (options.secret) {
      this.#signer = new DatagramSigner(options.secret, this.#o.authWindowMs);
      this.#replay = new ReplayFilter(this.#o.replayCacheEntries, this.#o.authWindowMs);
    }
    this.#allowUnsignedRaw = options.allowUnsignedRaw ?? false;
    this.#onHandlerError = options.onHandlerError;
    const trailer = this.#signer ? TRAILER_BYTES : 0;
    this.#msgFrameBudget = budget - trailer;
    this.#fragData = budget - trailer - FRAG_HEADER_BYTES;
    this.#ackBitmapBytes = budget - trailer - ACK_HEADER_BYTES;
    this.#reassembler = new Reassembler({
      maxMessages: this.#o.reassemblyMaxMessages,
      maxBytes: this.#o.reassemblyMaxBytes,
      ttlMs: this.#o.reassemblyTtlMs,
      maxMessageBytes: this.#o.maxMessageBytes,
    });
    this.#seen = new FifoCache<Seen>(this.#o.dedupMaxEntries, this.#o.dedupMaxBytes);
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
    return this.#rtt.get(peerKeyOf(peer))?.rtoMs ?? this.#o.initialRtoMs;
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
    options: RequestOptions = {},
  ): Promise<ReplyBody<K>> {
    if (this.#closed) return Promise.reject(new TaskGridError(ErrorCode.CLOSED, 'transport is closed'));
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
    const id = this.#takeId();
    const bytes = encodeEnvelope({ k: kind, id, b: body });
    if (bytes.length > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      return Promise.reject(new TooLargeError(bytes.length, this.#o.maxMessageBytes, `${kind} request`));
    }
    return new Promise<ReplyBody<K>>((resolve, reject) => {
      const p: Pending = {
        id,
        kind,
        peer,
        peerKey: peerKeyOf(peer),
        bytes,
        fragmented: !this.#fitsOneDatagram(bytes),
        attempts: 0,
        sentAt: [],
        resolve: resolve as (b: unknown) => void,
        reject,
        retryTimer: undefined,
        deadlineTimer: undefined,
        transfer: undefined,
        onAbort: undefined,
        signal: options.signal,
      };
      this.#pending.set(id, p);
      this.#counters.requestsSent++;
      const timeoutMs = options.timeoutMs ?? this.#o.requestTimeoutMs;
      p.deadlineTimer = this.#timers.schedule(timeoutMs, () => {
        this.#counters.timeouts++;
        this.#settle(p, new TimeoutError(`no reply to ${kind} from ${p.peerKey} within ${timeoutMs} ms`));
      });
      if (options.signal) {
        const signal = options.signal;
        p.onAbort = () => this.#settle(p, abortError(signal));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#transmit(p);
    });
  }

  notify<K extends NotificationKind>(peer: PeerAddress, kind: K, body: NotificationBody<K>): void {
    if (this.#closed) return;
    const id = this.#takeId();
    const bytes = encodeEnvelope({ k: kind, id, b: body });
    if (bytes.length > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      throw new TooLargeError(bytes.length, this.#o.maxMessageBytes, `${kind} notification`);
    }
    this.#counters.notificationsOut++;
    this.#sendMessage(peer, bytes, id);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of [...this.#pending.values()]) {
      this.#settle(p, new TaskGridError(ErrorCode.CLOSED, `transport closed before ${p.kind} was answered`));
    }
    // Replies already produced still go out.
    this.#flushAll();
    this.#timers.close();
    clearInterval(this.#sweeper);
    this.#transfers.clear();
    this.#seen.clear();
    await this.#link.close();
  }

  // ---- sending -------------------------------------------------------------------------

  #takeId(): number {
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0;
    return id;
  }

  #fitsOneDatagram(bytes: Buffer): boolean {
    return (
      HEADER_BYTES + MSG_ENTRY_HEADER_BYTES + bytes.length <= this.#msgFrameBudget &&
      bytes.length <= MAX_MSG_ENTRY_BYTES
    );
  }

  #rttFor(peerKey: string): RttEstimator {
    let r = this.#rtt.get(peerKey);
    if (!r) {
      r = new RttEstimator({ initialMs: this.#o.initialRtoMs, minMs: this.#o.minRtoMs, maxMs: this.#o.maxRtoMs });
      this.#rtt.set(peerKey, r);
    }
    return r;
  }

  #retransmitDelay(peerKey: string, attempt: number): number {
    const base = this.#rttFor(peerKey).rtoMs * 2 ** Math.max(0, attempt - 1);
    const capped = Math.min(base, this.#o.maxRtoMs);
    return capped * (1 + this.#o.jitter * this.#random());
  }

  #transmit(p: Pending): void {
    if (this.#closed || !this.#pending.has(p.id)) return;
    p.attempts++;
    p.sentAt.push(this.#clock.now());
    if (p.attempts > 1) {
      this.#counters.retransmits++;
      this.#rttFor(p.peerKey).backoff(this.#clock.now());
    }
    if (!p.fragmented) {
      this.#enqueue(p.peer, p.bytes, p.attempts);
    } else if (!p.transfer || p.transfer.failed) {
      p.transfer = this.#startTransfer(p.peer, p.id, p.bytes);
    } else if (p.transfer.done) {
      // The peer has the whole request; ask it (cheaply) to repeat its reply.
      this.#sendFrame(encodeProbeFrame(p.id, p.transfer.frames.length, 0), p.peer);
    }
    p.retryTimer = this.#timers.schedule(this.#retransmitDelay(p.peerKey, p.attempts), () => this.#transmit(p));
  }

  #settle(p: Pending, err: unknown, body?: unknown): void {
    if (!this.#pending.delete(p.id)) return;
    this.#timers.cancel(p.retryTimer);
    this.#timers.cancel(p.deadlineTimer);
    if (p.transfer && !p.transfer.done) this.#endTransfer(p.transfer, false);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
    if (err !== undefined) p.reject(err);
    else p.resolve(body);
  }

  /** Sends an encoded envelope: coalesced when small, fragmented when not. */
  #sendMessage(peer: PeerAddress, bytes: Buffer, transferId: number, tx = 0): void {
    if (this.#fitsOneDatagram(bytes)) this.#enqueue(peer, bytes, tx);
    else this.#startTransfer(peer, transferId, bytes);
  }

  #enqueue(peer: PeerAddress, bytes: Buffer, tx: number): void {
    this.#counters.messagesOut++;
    const key = peerKeyOf(peer);
    let q = this.#outbox.get(key);
    if (!q) {
      q = { peer, msgs: [], size: HEADER_BYTES };
      this.#outbox.set(key, q);
    }
    if (q.size + MSG_ENTRY_HEADER_BYTES + bytes.length > this.#msgFrameBudget) this.#flushQueue(q);
    q.msgs.push({ bytes, tx });
    q.size += MSG_ENTRY_HEADER_BYTES + bytes.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flushAll());
    }
  }

  #flushAll(): void {
    this.#flushScheduled = false;
    for (const q of this.#outbox.values()) this.#flushQueue(q);
    this.#outbox.clear();
  }

  #flushQueue(q: OutQueue): void {
    if (q.msgs.length === 0) return;
    const frame = encodeMsgFrame(q.msgs);
    q.msgs = [];
    q.size = HEADER_BYTES;
    this.#sendFrame(frame, q.peer);
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
    const delay = Math.min(this.#o.maxRtoMs, this.#rttFor(peerKeyOf(t.peer)).rtoMs * t.backoff);
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

  #onDatagram(data: Buffer, from: PeerAddress): void {
    if (this.#closed) return;
    this.#counters.datagramsIn++;
    this.#counters.bytesIn += data.length;
    if (!looksLikeFrame(data)) {
      if (this.#rawHandler && (!this.#signer || this.#allowUnsignedRaw)) {
        this.#counters.rawIn++;
        try {
          // The adapter says whether the datagram was well formed; bad legacy input counts as bad v1 input does.
          if (this.#rawHandler(data, from) === false) this.#counters.malformed++;
        } catch (err) {
          this.#counters.handlerErrors++;
          this.#onHandlerError?.(err, { peer: from, kind: 'raw', id: 0 });
        }
      } else if (this.#signer) {
        this.#counters.authFailures++;
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
        else this.#counters.authFailures++;
        return;
      }
      if (!this.#replay!.check(v.mac, now)) {
        this.#counters.replays++;
        return;
      }
      frameBytes = v.frame;
    } else if (((data[4] ?? 0) & 1) !== 0) {
      // Signed by a peer with a secret this endpoint does not have: a misconfigured grid.
      this.#counters.authFailures++;
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(frameBytes);
    } catch {
      this.#counters.malformed++;
      return;
    }
    const peerKey = peerKeyOf(from);
    switch (frame.type) {
      case FrameType.MSG:
        for (const m of frame.messages) this.#onMessage(m.bytes, m.tx, from, peerKey);
        break;
      case FrameType.FRAG:
        this.#onFragment(frame, from, peerKey);
        break;
      case FrameType.FRAG_ACK:
        this.#onAck(frame, from);
        break;
      case FrameType.PROBE:
        this.#onProbe(frame, from, peerKey);
        break;
    }
  }

  #onFragment(f: Extract<Frame, { type: typeof FrameType.FRAG }>, from: PeerAddress, peerKey: string): void {
    this.#counters.fragmentsIn++;
    const key = `${peerKey}#${f.msgId}`;
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
        this.#onMessage(out.message, 0, from, peerKey);
        return;
    }
  }

  #onProbe(f: Extract<Frame, { type: typeof FrameType.PROBE }>, from: PeerAddress, peerKey: string): void {
    const key = `${peerKey}#${f.msgId}`;
    const seen = this.#seen.get(key);
    if (seen?.reply) this.#resendReply(seen, from);
    this.#sendAck(key, f.msgId, f.count, from, f.token);
  }

  #sendAck(key: string, msgId: number, count: number, to: PeerAddress, echo = 0): void {
    const s = this.#reassembler.ackState(key, count, this.#ackBitmapBytes);
    this.#sendFrame(encodeAckFrame(msgId, s.count, s.status, s.below, echo, s.bitmap), to);
  }

  #onMessage(bytes: Buffer, tx: number, from: PeerAddress, peerKey: string): void {
    let env: Envelope;
    try {
      env = decodeEnvelope(bytes);
    } catch {
      this.#counters.malformed++;
      return;
    }
    this.#counters.messagesIn++;
    if (env.re !== undefined) this.#onReply(env, env.re, tx, from);
    else this.#onRequestOrNotification(env, tx, from, peerKey);
  }

  #onReply(env: Envelope, re: number, tx: number, from: PeerAddress): void {
    const p = this.#pending.get(re);
    if (!p || p.peer.port !== from.port) {
      this.#counters.lateReplies++;
      return;
    }
    this.#counters.repliesReceived++;
    // The echoed transmission number says which copy was answered: an unambiguous sample.
    const sentAt = tx > 0 ? p.sentAt[tx - 1] : p.attempts === 1 && !p.fragmented ? p.sentAt[0] : undefined;
    if (sentAt !== undefined) this.#rttFor(p.peerKey).sample(this.#clock.now() - sentAt);
    switch (env.k) {
      case ReplyKind.OK: {
        const parsed = requests[p.kind].res.safeParse(env.b);
        if (parsed.success) this.#settle(p, undefined, parsed.data);
        else {
          this.#counters.malformed++;
          this.#settle(
            p,
            new RemoteError(ErrorCode.BAD_MESSAGE, `invalid ${p.kind} reply from ${p.peerKey}: ${summarize(parsed.error)}`),
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

  #onRequestOrNotification(env: Envelope, tx: number, from: PeerAddress, peerKey: string): void {
    const key = `${peerKey}#${env.id}`;
    const seen = this.#seen.get(key);
    if (seen) {
      this.#counters.duplicates++;
      seen.tx = tx;
      if (seen.reply) this.#resendReply(seen, from);
      return;
    }
    const entry: Seen = { key, reply: undefined, replyId: 0, tx };
    this.#seen.set(key, entry, this.#clock.now());

    if (isNotificationKind(env.k)) {
      const handler = this.#notifyHandlers.get(env.k);
      const parsed = notifications[env.k].safeParse(env.b);
      if (!parsed.success) {
        this.#counters.malformed++;
        return;
      }
      this.#counters.notificationsIn++;
      try {
        handler?.(parsed.data, { peer: from });
      } catch (err) {
        this.#counters.handlerErrors++;
        this.#onHandlerError?.(err, { peer: from, kind: env.k, id: env.id });
      }
      return;
    }
    if (!isRequestKind(env.k)) {
      this.#counters.malformed++;
      this.#reply(entry, env.id, from, ReplyKind.ERROR, {
        code: ErrorCode.UNKNOWN_KIND,
        message: `unknown message kind "${env.k.slice(0, 64)}"`,
      });
      return;
    }
    const kind = env.k;
    const handler = this.#handlers.get(kind);
    if (!handler) {
      this.#reply(entry, env.id, from, ReplyKind.ERROR, {
        code: ErrorCode.UNKNOWN_KIND,
        message: `this component does not serve "${kind}" requests`,
      });
      return;
    }
    const parsed = requests[kind].req.safeParse(env.b);
    if (!parsed.success) {
      this.#counters.malformed++;
      this.#reply(entry, env.id, from, ReplyKind.ERROR, {
        code: ErrorCode.BAD_MESSAGE,
        message: `invalid ${kind} request: ${summarize(parsed.error)}`,
      });
      return;
    }
    this.#counters.requestsHandled++;
    const ctx: RequestContext = { peer: from, kind, id: env.id };
    let result: unknown;
    try {
      result = handler(parsed.data, ctx);
    } catch (err) {
      this.#replyError(entry, env.id, from, err, ctx);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (body) => this.#reply(entry, env.id, from, ReplyKind.OK, body),
        (err: unknown) => this.#replyError(entry, env.id, from, err, ctx),
      );
    } else {
      this.#reply(entry, env.id, from, ReplyKind.OK, result);
    }
  }

  #replyError(entry: Seen, re: number, to: PeerAddress, err: unknown, ctx: RequestContext): void {
    if (err instanceof BusyError) {
      this.#counters.busyReplies++;
      this.#reply(entry, re, to, ReplyKind.BUSY, { message: err.message, retryAfterMs: err.retryAfterMs });
      return;
    }
    this.#counters.errorReplies++;
    if (err instanceof TaskGridError) {
      this.#reply(entry, re, to, ReplyKind.ERROR, { code: err.code, message: err.message.slice(0, 4096) });
      return;
    }
    this.#counters.handlerErrors++;
    this.#onHandlerError?.(err, ctx);
    this.#reply(entry, re, to, ReplyKind.ERROR, {
      code: ErrorCode.INTERNAL,
      message: `internal error while handling ${ctx.kind}`,
    });
  }

  #reply(entry: Seen, re: number, to: PeerAddress, kind: ReplyKind, body: unknown): void {
    if (this.#closed) return;
    const id = this.#takeId();
    let bytes = encodeEnvelope({ k: kind, id, re, b: body });
    if (bytes.length > this.#o.maxMessageBytes) {
      this.#counters.tooLarge++;
      const err = new TooLargeError(bytes.length, this.#o.maxMessageBytes, 'reply');
      bytes = encodeEnvelope({ k: ReplyKind.ERROR, id, re, b: err.toJSON() });
    }
    entry.reply = bytes;
    entry.replyId = id;
    this.#seen.resize(entry.key, bytes.length);
    this.#sendMessage(to, bytes, id, entry.tx);
  }

  #resendReply(seen: Seen, to: PeerAddress): void {
    const reply = seen.reply!;
    if (this.#fitsOneDatagram(reply)) this.#enqueue(to, reply, seen.tx);
    else if (!this.#transfers.has(seen.replyId)) this.#startTransfer(to, seen.replyId, reply);
  }

  #startSweep(): void {
    // A plain interval, unref'd: housekeeping must not keep a process alive.
    this.#sweeper = setInterval(() => {
      const now = this.#clock.now();
      this.#seen.evict(now - this.#o.dedupTtlMs);
      this.#reassembler.expire(now);
    }, SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new TaskGridError(ErrorCode.CANCELLED, 'request aborted');
}
