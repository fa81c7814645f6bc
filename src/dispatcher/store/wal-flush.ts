/**
 * Background flushing of a SQLite WAL file.
 *
 * With `synchronous = NORMAL` a commit writes its pages to the WAL without syncing it; the
 * checkpoint that follows every 1,000 pages syncs the WAL first, and so waits for all of those
 * writes to reach the disk at once: 6-8 ms of the event loop every 160 sequential tasks on this
 * project's machines, the largest part of the round trip's p99 (docs/PERFORMANCE.md). This
 * flushes the WAL every few commits with `fdatasync` on libuv's thread pool, off the event
 * loop, so that the checkpoint finds little left to sync. It only adds syncs: what SQLite
 * syncs, and when, does not change, nor does what a crash can lose.
 *
 * The file is opened read-only, separately from SQLite, once it exists (SQLite creates it at
 * the first commit). In exclusive locking mode SQLite keeps that file, and its inode, for as
 * long as it holds the database (a checkpoint rewinds or truncates it; only closing deletes
 * it), and it takes no lock on it, so this descriptor can neither release nor see a lock.
 */
import { closeSync, fdatasync, openSync } from 'node:fs';

export class WalFlusher {
  readonly #path: string;
  readonly #every: number;
  #fd: number | undefined;
  #commits = 0;
  #inFlight = false;
  #closed = false;

  /** `walPath`: the WAL file (the database's path and `-wal`); `everyCommits` > 0. */
  constructor(walPath: string, everyCommits: number) {
    this.#path = walPath;
    this.#every = Math.max(1, Math.floor(everyCommits));
  }

  /** Whether the WAL file is open here (for tests). */
  get open(): boolean {
    return this.#fd !== undefined;
  }

  /** Called after each commit: every `everyCommits` commits, one flush if none is running. */
  committed(): void {
    if (this.#closed || ++this.#commits < this.#every || this.#inFlight) return;
    this.#commits = 0;
    if (this.#fd === undefined) {
      try {
        this.#fd = openSync(this.#path, 'r');
      } catch {
        return; // not created yet, or unreadable: SQLite's own syncs still happen
      }
    }
    this.#inFlight = true;
    fdatasync(this.#fd, (err) => {
      this.#inFlight = false;
      // A failed flush costs nothing but its benefit: open the file afresh next time.
      if (err || this.#closed) this.#release();
    });
  }

  /** Closes the file, after the flush in flight if any (its descriptor must stay valid until then). */
  close(): void {
    this.#closed = true;
    if (!this.#inFlight) this.#release();
  }

  #release(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      // already gone: nothing to release
    }
  }
}
