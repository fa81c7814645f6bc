/**
 * Which clients watch which tasks, for the `done` pushes. Nearly every watched task has one
 * watcher (the client that submitted it), so one watcher is kept as a plain map entry and
 * only a task watched by several clients gets a Set: a Set per task cost an allocation each
 * and kept the collector busy at tens of thousands of tasks a second.
 */
export class Watchers {
  readonly #one = new Map<number, string>();
  readonly #many = new Map<number, Set<string>>();

  /** Tasks watched. */
  get size(): number {
    return this.#one.size + this.#many.size;
  }

  has(id: number): boolean {
    return this.#one.has(id) || this.#many.has(id);
  }

  add(id: number, peer: string): void {
    const one = this.#one.get(id);
    if (one === undefined) {
      const many = this.#many.get(id);
      if (many) many.add(peer);
      else this.#one.set(id, peer);
    } else if (one !== peer) {
      this.#one.delete(id);
      this.#many.set(id, new Set([one, peer]));
    }
  }

  /** Stops one client's watch of a task. */
  remove(id: number, peer: string): void {
    if (this.#one.get(id) === peer) {
      this.#one.delete(id);
      return;
    }
    const many = this.#many.get(id);
    if (many?.delete(peer) && many.size === 0) this.#many.delete(id);
  }

  /** Stops every watch of a task. */
  delete(id: number): void {
    if (!this.#one.delete(id)) this.#many.delete(id);
  }

  /** Stops every watch of a task and returns the watchers: one, several, or none (undefined). */
  take(id: number): string | ReadonlySet<string> | undefined {
    const one = this.#one.get(id);
    if (one !== undefined) {
      this.#one.delete(id);
      return one;
    }
    const many = this.#many.get(id);
    if (many) this.#many.delete(id);
    return many;
  }
}
