/**
 * Datagram authentication: with a cluster secret, every datagram ends with a trailer of an
 * 8-byte timestamp (ms since the epoch, big-endian) and an HMAC-SHA256 over everything before
 * the MAC. Receivers drop datagrams without a valid MAC, with a timestamp outside the window,
 * or whose MAC they have seen before (an exact replay). Pure computation; the caller supplies
 * the clock.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { FifoCache } from './fifo-cache.ts';
import { FLAG_SIGNED, HEADER_BYTES } from './frame.ts';

export const MAC_BYTES = 32;
export const TRAILER_BYTES = 8 + MAC_BYTES;

export type VerifyResult =
  | { ok: true; frame: Buffer; mac: Buffer; /** The sender's timestamp, ms since the epoch. */ ts: number }
  | { ok: false; reason: 'unsigned' | 'bad-mac' | 'stale' | 'truncated' };

export class DatagramSigner {
  readonly #key: Buffer;
  readonly #windowMs: number;

  constructor(secret: string | Buffer, windowMs: number) {
    this.#key = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    this.#windowMs = windowMs;
  }

  /** Returns a copy of `frame` with the signed flag set and the trailer appended. */
  sign(frame: Buffer, nowMs: number): Buffer {
    const out = Buffer.allocUnsafe(frame.length + TRAILER_BYTES);
    frame.copy(out, 0);
    return out.subarray(0, this.signInPlace(out, frame.length, nowMs));
  }

  /**
   * Signs the frame in `buf[0, length)` in place: sets the signed flag and writes the trailer
   * after it (`buf` must have TRAILER_BYTES of room). Returns the signed datagram's length.
   */
  signInPlace(buf: Buffer, length: number, nowMs: number): number {
    if (buf.length < length + TRAILER_BYTES) throw new RangeError('no room for the signature trailer');
    buf[4] = (buf[4] ?? 0) | FLAG_SIGNED;
    buf.writeBigUInt64BE(BigInt(Math.floor(nowMs)), length);
    const mac = createHmac('sha256', this.#key)
      .update(buf.subarray(0, length + 8))
      .digest();
    mac.copy(buf, length + 8);
    return length + TRAILER_BYTES;
  }

  /** Checks a datagram's trailer; on success returns the frame without it (flag cleared). */
  verify(datagram: Buffer, nowMs: number): VerifyResult {
    if (datagram.length < HEADER_BYTES) return { ok: false, reason: 'truncated' };
    if (((datagram[4] ?? 0) & FLAG_SIGNED) === 0) return { ok: false, reason: 'unsigned' };
    if (datagram.length < HEADER_BYTES + TRAILER_BYTES) return { ok: false, reason: 'truncated' };
    const macAt = datagram.length - MAC_BYTES;
    const expected = createHmac('sha256', this.#key).update(datagram.subarray(0, macAt)).digest();
    const mac = datagram.subarray(macAt);
    if (!timingSafeEqual(expected, mac)) return { ok: false, reason: 'bad-mac' };
    const ts = Number(datagram.readBigUInt64BE(macAt - 8));
    if (Math.abs(nowMs - ts) > this.#windowMs) return { ok: false, reason: 'stale' };
    const frame = Buffer.from(datagram.subarray(0, macAt - 8));
    frame[4] = (frame[4] ?? 0) & ~FLAG_SIGNED;
    return { ok: true, frame, mac: Buffer.from(mac), ts };
  }
}

/**
 * Remembers recently seen MACs to drop exact replays inside the time window. Bounded: the
 * oldest entries go first when it is full. A datagram it can no longer prove fresh is refused:
 * once an entry is evicted before its time window ended, every datagram signed at or before
 * that entry's timestamp counts as a replay (so under a signing rate beyond what the cache
 * covers, the effective window shrinks to what it remembers; nothing old slips through).
 * Legitimate senders are unaffected: every transmission, re-sends included, is signed afresh.
 */
export class ReplayFilter {
  readonly #windowMs: number;
  readonly #seen: FifoCache<number>;
  /** Datagrams signed at or before this (ms) are refused: the cache forgot some of them. */
  #floorTs = -Infinity;

  constructor(maxEntries: number, windowMs: number) {
    this.#windowMs = windowMs;
    this.#seen = new FifoCache<number>(maxEntries, Infinity, (ts) => {
      if (ts > this.#floorTs) this.#floorTs = ts;
    });
  }

  /**
   * Records the MAC of a datagram signed at `ts`; returns false when it was already seen, or
   * is older than what the filter still remembers.
   */
  check(mac: Buffer, ts: number, nowMs: number): boolean {
    if (ts <= this.#floorTs) return false;
    const key = mac.toString('latin1');
    if (this.#seen.has(key)) return false;
    // Entries past twice the window go by age: a datagram that old is stale anyway.
    this.#seen.evict(nowMs - 2 * this.#windowMs, false);
    this.#seen.set(key, ts, nowMs);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }
}
