/**
 * A map whose entries leave in insertion order: when older than a TTL or beyond a count or
 * byte bound. Eviction walks a separate queue, not the Map: V8 leaves holes where Map
 * entries were deleted, so scanning a Map from its start after many deletions costs time
 * proportional to everything ever removed.
 */
export class FifoCache<V> {
  readonly #map = new Map<string, { value: V; at: number; bytes: number }>();
  #queue: { key: string; at: number }[] = [];
  #head = 0;
  #bytes = 0;
  readonly #maxEntries: number;
  readonly #maxBytes: number;

  readonly #onEvict: ((value: V) => void) | undefined;

  /** `onEvict` hears of each entry pushed out by a bound (not of those that aged out). */
  constructor(maxEntries: number, maxBytes = Infinity, onEvict?: (value: V) => void) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
    this.#onEvict = onEvict;
  }

  get size(): number {
    return this.#map.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get(key: string): V | undefined {
    return this.#map.get(key)?.value;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  /** Adds an entry (a key already present keeps its place in the queue). */
  set(key: string, value: V, now: number, bytes = 0): void {
    const old = this.#map.get(key);
    if (old) {
      this.#bytes += bytes - old.bytes;
      old.value = value;
      old.bytes = bytes;
    } else {
      this.#map.set(key, { value, at: now, bytes });
      this.#queue.push({ key, at: now });
      this.#bytes += bytes;
    }
    if (this.#map.size > this.#maxEntries || this.#bytes > this.#maxBytes) this.evict(-Infinity);
  }

  /** Changes the byte size counted for an entry. */
  resize(key: string, bytes: number): void {
    const e = this.#map.get(key);
    if (!e) return;
    this.#bytes += bytes - e.bytes;
    e.bytes = bytes;
    if (this.#bytes > this.#maxBytes) this.evict(-Infinity);
  }

  /**
   * Removes entries added before `cutoff`, and the oldest while over a bound (telling
   * `onEvict` of those, unless `notify` is false).
   */
  evict(cutoff: number, notify = true): void {
    const q = this.#queue;
    while (this.#head < q.length) {
      const first = q[this.#head]!;
      const over = this.#map.size > this.#maxEntries || this.#bytes > this.#maxBytes;
      if (!over && first.at >= cutoff) break;
      this.#head++;
      const e = this.#map.get(first.key);
      if (e && e.at === first.at) {
        this.#map.delete(first.key);
        this.#bytes -= e.bytes;
        if (over && notify && this.#onEvict) this.#onEvict(e.value);
      }
    }
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
  }

  clear(): void {
    this.#map.clear();
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}
