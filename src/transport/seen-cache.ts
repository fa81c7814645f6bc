/**
 * The duplicate cache's bookkeeping: every request seen, by (peer, message id), with its reply
 * once produced, bounded in entries, bytes and age across all peers.
 *
 * It is built for a receiver that turns over 100,000 entries a second without the garbage
 * collector noticing:
 * - Entries are numbered in the order they were added and stored in a ring of typed arrays
 *   (struct of arrays), not as one object each: an object per entry that lives for 100,000
 *   requests is promoted and marked by every collection, and a JavaScript Map of that many
 *   entries turning over one in, one out costs microseconds per request in cache misses and
 *   rehashing. Only the reply body (a string) and its buffers are references.
 * - Entries leave strictly in insertion order (by age, count or bytes), so the live entries are
 *   always the numbers head..tail-1 and an entry number says at once whether it is still held.
 * - The index from (peer number, message id) to entry number is an open-addressing hash table
 *   (linear probing, deletion by backward shift, no tombstones), hashed with a per-cache random
 *   seed so that chosen ids cannot build long probe chains.
 * Both grow by doubling, up to what the entry bound needs.
 */

const MIN_RING = 1024;

function mix(x: number): number {
  // murmur3's 32-bit finalizer
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

function pow2AtLeast(n: number): number {
  let p = MIN_RING;
  while (p < n && p < 2 ** 30) p *= 2;
  return p;
}

export class SeenCache {
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #seed: number;
  readonly #maxRing: number;
  // The ring, by entry number & mask: sender, message id, first seen, bytes counted, the
  // reply's id and transmission number, and the reply itself.
  #ringMask = MIN_RING - 1;
  #peer = new Int32Array(MIN_RING);
  #id = new Uint32Array(MIN_RING);
  #at = new Float64Array(MIN_RING);
  #bytesOf = new Float64Array(MIN_RING);
  #replyId = new Uint32Array(MIN_RING);
  #tx = new Uint8Array(MIN_RING);
  #prefix: (Buffer | undefined)[] = new Array<Buffer | undefined>(MIN_RING).fill(undefined);
  #body: (string | undefined)[] = new Array<string | undefined>(MIN_RING).fill(undefined);
  #whole: (Buffer | undefined)[] = new Array<Buffer | undefined>(MIN_RING).fill(undefined);
  /** Entry numbers head..tail-1 are held. */
  #head = 0;
  #tail = 0;
  #bytes = 0;
  /** Entries per peer number. */
  readonly #perPeer: number[] = [];
  // The index: peer number (0 = empty slot), message id, entry number.
  #indexMask = 2 * MIN_RING - 1;
  #keyPeer = new Int32Array(2 * MIN_RING);
  #keyId = new Uint32Array(2 * MIN_RING);
  #entry = new Float64Array(2 * MIN_RING);

  /** `seed`: any 32-bit number, random per cache, so that hash collisions cannot be chosen. */
  constructor(maxEntries: number, maxBytes = Infinity, seed = (Math.random() * 0x100000000) >>> 0) {
    this.#maxEntries = Math.max(1, maxEntries);
    this.#maxBytes = maxBytes;
    this.#seed = seed >>> 0;
    this.#maxRing = pow2AtLeast(this.#maxEntries);
  }

  /** Entries held. */
  get size(): number {
    return this.#tail - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held for a peer number. */
  countFor(peer: number): number {
    return this.#perPeer[peer] ?? 0;
  }

  /** True while entry `n` is held. */
  has(n: number): boolean {
    return n >= this.#head && n < this.#tail;
  }

  /** The entry number of the request from peer number `peer` (>= 1) with message id `id`, or -1. */
  find(peer: number, id: number): number {
    const keyPeer = this.#keyPeer;
    const keyId = this.#keyId;
    const mask = this.#indexMask;
    for (let i = this.#home(peer, id); keyPeer[i] !== 0; i = (i + 1) & mask) {
      if (keyPeer[i] === peer && keyId[i] === id) return this.#entry[i]!;
    }
    return -1;
  }

  /**
   * Adds the request (peer, id), which must not be held, first seen at `at` in transmission
   * `tx`; evicts the oldest while over a bound. Returns its entry number.
   */
  add(peer: number, id: number, at: number, tx: number): number {
    while (this.size >= this.#maxEntries) this.#evictOldest();
    if (this.size > this.#ringMask && this.#ringMask + 1 < this.#maxRing) this.#grow();
    const n = this.#tail++;
    const s = n & this.#ringMask;
    this.#peer[s] = peer;
    this.#id[s] = id;
    this.#at[s] = at;
    this.#bytesOf[s] = 0;
    this.#replyId[s] = 0;
    this.#tx[s] = tx;
    this.#index(peer, id, n);
    this.#perPeer[peer] = (this.#perPeer[peer] ?? 0) + 1;
    return n;
  }

  /** The request's message id (entry held). */
  id(n: number): number {
    return this.#id[n & this.#ringMask]!;
  }

  /** Transmission number of the latest copy of the request, echoed in its reply; 0 once evicted. */
  tx(n: number): number {
    return this.has(n) ? this.#tx[n & this.#ringMask]! : 0;
  }

  setTx(n: number, tx: number): void {
    if (this.has(n)) this.#tx[n & this.#ringMask] = tx;
  }

  /**
   * Records the reply of entry `n` (nothing once evicted): its kind's envelope prefix and body
   * as JSON text (undefined: no body), or the whole encoded envelope when it travels in
   * fragments; its message id and size in bytes (counted against the byte bound).
   */
  setReply(
    n: number,
    prefix: Buffer,
    body: string | undefined,
    whole: Buffer | undefined,
    replyId: number,
    bytes: number,
  ): void {
    if (!this.has(n)) return;
    const s = n & this.#ringMask;
    this.#prefix[s] = prefix;
    this.#body[s] = body;
    this.#whole[s] = whole;
    this.#replyId[s] = replyId;
    this.#bytes += bytes - this.#bytesOf[s]!;
    this.#bytesOf[s] = bytes;
    while (this.#bytes > this.#maxBytes && this.size > 0) this.#evictOldest();
  }

  /** True when entry `n` is held and its reply was recorded. */
  hasReply(n: number): boolean {
    return this.has(n) && this.#prefix[n & this.#ringMask] !== undefined;
  }

  replyPrefix(n: number): Buffer | undefined {
    return this.has(n) ? this.#prefix[n & this.#ringMask] : undefined;
  }

  replyBody(n: number): string | undefined {
    return this.has(n) ? this.#body[n & this.#ringMask] : undefined;
  }

  /** The whole reply when it travels in fragments. */
  replyWhole(n: number): Buffer | undefined {
    return this.has(n) ? this.#whole[n & this.#ringMask] : undefined;
  }

  replyId(n: number): number {
    return this.has(n) ? this.#replyId[n & this.#ringMask]! : 0;
  }

  /** Removes entries first seen before `cutoff`, and the oldest while over a bound. */
  evict(cutoff: number): void {
    while (this.size > 0) {
      const over = this.size > this.#maxEntries || this.#bytes > this.#maxBytes;
      if (!over && this.#at[this.#head & this.#ringMask]! >= cutoff) break;
      this.#evictOldest();
    }
  }

  /** Forgets every entry. */
  clear(): void {
    while (this.size > 0) this.#evictOldest();
  }

  #home(peer: number, id: number): number {
    return mix(id ^ this.#seed ^ Math.imul(peer, 0x9e3779b1)) & this.#indexMask;
  }

  #index(peer: number, id: number, n: number): void {
    const keyPeer = this.#keyPeer;
    const mask = this.#indexMask;
    let i = this.#home(peer, id);
    while (keyPeer[i] !== 0) i = (i + 1) & mask;
    keyPeer[i] = peer;
    this.#keyId[i] = id;
    this.#entry[i] = n;
  }

  #evictOldest(): void {
    const n = this.#head++;
    const s = n & this.#ringMask;
    const peer = this.#peer[s]!;
    this.#unindex(peer, this.#id[s]!, n);
    this.#perPeer[peer]!--;
    this.#bytes -= this.#bytesOf[s]!;
    this.#prefix[s] = undefined;
    this.#body[s] = undefined;
    this.#whole[s] = undefined;
  }

  #unindex(peer: number, id: number, n: number): void {
    const keyPeer = this.#keyPeer;
    const keyId = this.#keyId;
    const entry = this.#entry;
    const mask = this.#indexMask;
    let i = this.#home(peer, id);
    while (entry[i] !== n || keyPeer[i] === 0) {
      if (keyPeer[i] === 0) return; // not indexed (cannot happen)
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later slots of the probe run into the hole when their home
    // allows it, so that no lookup ever stops early at a false empty slot.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (keyPeer[j] === 0) break;
      const home = this.#home(keyPeer[j]!, keyId[j]!);
      const blocked = i <= j ? i < home && home <= j : i < home || home <= j;
      if (blocked) continue;
      keyPeer[i] = keyPeer[j]!;
      keyId[i] = keyId[j]!;
      entry[i] = entry[j]!;
      i = j;
    }
    keyPeer[i] = 0;
  }

  #grow(): void {
    const oldMask = this.#ringMask;
    const cap = (oldMask + 1) * 2;
    const mask = cap - 1;
    const peer = new Int32Array(cap);
    const id = new Uint32Array(cap);
    const at = new Float64Array(cap);
    const bytesOf = new Float64Array(cap);
    const replyId = new Uint32Array(cap);
    const tx = new Uint8Array(cap);
    const prefix = new Array<Buffer | undefined>(cap).fill(undefined);
    const body = new Array<string | undefined>(cap).fill(undefined);
    const whole = new Array<Buffer | undefined>(cap).fill(undefined);
    // Held entries are consecutive numbers, fewer than the old capacity: their new places differ.
    for (let n = this.#head; n < this.#tail; n++) {
      const a = n & oldMask;
      const b = n & mask;
      peer[b] = this.#peer[a]!;
      id[b] = this.#id[a]!;
      at[b] = this.#at[a]!;
      bytesOf[b] = this.#bytesOf[a]!;
      replyId[b] = this.#replyId[a]!;
      tx[b] = this.#tx[a]!;
      prefix[b] = this.#prefix[a];
      body[b] = this.#body[a];
      whole[b] = this.#whole[a];
    }
    this.#ringMask = mask;
    this.#peer = peer;
    this.#id = id;
    this.#at = at;
    this.#bytesOf = bytesOf;
    this.#replyId = replyId;
    this.#tx = tx;
    this.#prefix = prefix;
    this.#body = body;
    this.#whole = whole;
    // The index at twice the ring's size keeps probe runs short (load at most one half).
    this.#indexMask = 2 * cap - 1;
    this.#keyPeer = new Int32Array(2 * cap);
    this.#keyId = new Uint32Array(2 * cap);
    this.#entry = new Float64Array(2 * cap);
    for (let n = this.#head; n < this.#tail; n++) {
      const b = n & mask;
      this.#index(peer[b]!, id[b]!, n);
    }
  }
}
