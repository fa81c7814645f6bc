/**
 * Who waits for which task, and ended tasks that arrived before anyone asked. A `done` push
 * can beat the `wait` call that wants it (run() submits, and the task may end before the
 * submit's reply has even been processed), so pushed tasks are kept for a while.
 * Pure bookkeeping: no I/O, no timers.
 */
import { FifoCache } from '../protocol/fifo-cache.ts';
import type { TaskStatus, TaskView } from '../protocol/messages.ts';

const FINAL: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/** True when the task has ended: succeeded, failed or cancelled. */
export function isFinal(view: Pick<TaskView, 'status'>): boolean {
  return FINAL.has(view.status);
}

/** One party waiting for one or more tasks. */
export interface CompletionListener {
  onTask(view: TaskView): void;
  onError(id: number, err: Error): void;
  /** When the wait began (the client's clock): polls leave alone tasks awaited for less than a poll interval. */
  readonly since?: number;
}

/** Which awaited tasks a poll should ask about; see {@link Completions.due}. */
export interface DueTasks {
  /** Ids with a listener waiting since `cutoff` or earlier. */
  ids: number[];
  /** The earliest start, after `cutoff`, of the waits left out; undefined when none was. */
  nextSince: number | undefined;
}

export class Completions {
  /** One listener as it is (the common case: no Set per awaited task), several in a Set. */
  readonly #waiters = new Map<number, CompletionListener | Set<CompletionListener>>();
  readonly #recent: FifoCache<TaskView>;
  readonly #now: () => number;

  constructor(limits: { maxEntries: number; maxBytes: number }, now: () => number) {
    this.#recent = new FifoCache(limits.maxEntries, limits.maxBytes);
    this.#now = now;
  }

  /**
   * Records an ended task: its listeners hear of it now, or a later {@link take} finds it. With
   * `keep` false (a poll's answer, which only ever asks about awaited tasks), a task nobody
   * awaits any more is not kept: its waits have already ended, from a push.
   */
  settle(view: TaskView, keep = true): void {
    if (!isFinal(view)) return;
    const listeners = this.#waiters.get(view.id);
    if (listeners) {
      this.#waiters.delete(view.id);
      if (listeners instanceof Set) for (const l of listeners) l.onTask(view);
      else listeners.onTask(view);
      return;
    }
    if (!keep) return;
    const bytes = (view.result?.length ?? 0) + (view.payload?.length ?? 0) + 256;
    this.#recent.set(String(view.id), view, this.#now(), bytes);
  }

  /** Tells the listeners of `id` that it will never end (unknown to the dispatcher, say). */
  fail(id: number, err: Error): void {
    const listeners = this.#waiters.get(id);
    if (!listeners) return;
    this.#waiters.delete(id);
    if (listeners instanceof Set) for (const l of listeners) l.onError(id, err);
    else listeners.onError(id, err);
  }

  /** An ended task that was pushed before anyone waited for it; it stays for other waits. */
  take(id: number): TaskView | undefined {
    return this.#recent.size === 0 ? undefined : this.#recent.get(String(id));
  }

  listen(id: number, listener: CompletionListener): void {
    const current = this.#waiters.get(id);
    if (current === undefined) this.#waiters.set(id, listener);
    else if (current instanceof Set) current.add(listener);
    else if (current !== listener) this.#waiters.set(id, new Set([current, listener]));
  }

  unlisten(id: number, listener: CompletionListener): void {
    const current = this.#waiters.get(id);
    if (current === undefined) return;
    if (current instanceof Set) {
      current.delete(listener);
      if (current.size === 0) this.#waiters.delete(id);
    } else if (current === listener) {
      this.#waiters.delete(id);
    }
  }

  /** Ids somebody waits for. */
  waiting(): number[] {
    return [...this.#waiters.keys()];
  }

  /**
   * Ids somebody has waited for since `cutoff` or earlier (a listener without `since` counts as
   * waiting for ever), and when the earliest of the other waits began.
   */
  due(cutoff: number): DueTasks {
    const ids: number[] = [];
    let nextSince: number | undefined;
    const young = (l: CompletionListener): boolean => {
      if (l.since === undefined || l.since <= cutoff) return false;
      if (nextSince === undefined || l.since < nextSince) nextSince = l.since;
      return true;
    };
    for (const [id, listeners] of this.#waiters) {
      let due = false;
      if (listeners instanceof Set) {
        for (const l of listeners) if (!young(l)) due = true;
      } else {
        due = !young(listeners);
      }
      if (due) ids.push(id);
    }
    return { ids, nextSince };
  }

  /** Whether somebody waits for `id`. */
  isAwaited(id: number): boolean {
    return this.#waiters.has(id);
  }

  get waitingCount(): number {
    return this.#waiters.size;
  }

  clear(): void {
    this.#waiters.clear();
    this.#recent.clear();
  }
}
