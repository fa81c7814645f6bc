/**
 * Small pieces shared by the nameservice and its two client-side agents: address checks and
 * keys, retry backoff, error classification and clock-driven one-shot timers.
 */
import { isIP } from 'node:net';
import { ErrorCode, TaskGridError } from '../errors.ts';
import type { Clock, PeerAddress } from '../transport/types.ts';

/** `host:port`, the key of an address in maps. */
export function addressKey(a: PeerAddress): string {
  return `${a.host}:${a.port}`;
}

const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Hosts that name every interface of the sender: nobody else can send to them. */
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

/**
 * Why `a` cannot be sent to by other components, or undefined when it can. The schema has
 * already bounded its length and port; this checks what a schema cannot say.
 */
export function addressProblem(a: PeerAddress): string | undefined {
  const host = a.host;
  if (host.startsWith('[') || host.endsWith(']')) {
    return `host "${host}" must be given without brackets`;
  }
  const ipVersion = isIP(host);
  if (ipVersion !== 0) {
    if (WILDCARD_HOSTS.has(host)) {
      return `host ${host} is a wildcard bind address; register the address other components reach this instance at`;
    }
    return undefined;
  }
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((label) => HOST_LABEL.test(label))) {
    return `host "${host.slice(0, 64)}" is neither an IP address nor a host name`;
  }
  return undefined;
}

/** Throws TG_ERR_BAD_REQUEST when `a` cannot be sent to (see {@link addressProblem}). */
export function checkAddress(a: PeerAddress, what: string): void {
  const problem = addressProblem(a);
  if (problem) throw new TaskGridError(ErrorCode.BAD_REQUEST, `${what}: ${problem}`);
}

/** The stable code of an error, or undefined when it is not a TaskGridError. */
export function codeOf(err: unknown): string | undefined {
  return err instanceof TaskGridError ? err.code : undefined;
}

/**
 * Codes that say the request itself is wrong: retrying it unchanged cannot succeed, so the
 * caller hears of it instead of waiting for a timeout.
 */
export function isRefusal(err: unknown): boolean {
  const code = codeOf(err);
  return code === ErrorCode.BAD_REQUEST || code === ErrorCode.BAD_MESSAGE || code === ErrorCode.TOO_LARGE;
}

/** Exponential backoff with up to 25% jitter: `baseMs * 2^failures`, capped at `maxMs`. */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random: () => number): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.min(failures, 30));
  return Math.round(raw * (0.75 + 0.25 * random()));
}

/** One re-armable timer on an injected clock. */
export class OneShot {
  readonly #clock: Clock;
  #handle: unknown = undefined;
  #armed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get armed(): boolean {
    return this.#armed;
  }

  /** Runs `fn` after `ms`, replacing whatever was scheduled before. */
  arm(ms: number, fn: () => void): void {
    this.cancel();
    this.#armed = true;
    this.#handle = this.#clock.setTimeout(
      () => {
        this.#armed = false;
        this.#handle = undefined;
        fn();
      },
      Math.max(0, ms),
    );
  }

  cancel(): void {
    if (!this.#armed) return;
    this.#clock.clearTimeout(this.#handle);
    this.#armed = false;
    this.#handle = undefined;
  }
}

/**
 * Resolves with `promise`, or with `fallback` after `ms` on `clock`, whichever comes first;
 * for shutdown steps that must not hang.
 */
export function within<T>(clock: Clock, ms: number, promise: Promise<T>, fallback: T): Promise<T> {
  return new Promise<T>((resolve) => {
    const handle = clock.setTimeout(() => resolve(fallback), ms);
    promise.then(
      (v) => {
        clock.clearTimeout(handle);
        resolve(v);
      },
      () => {
        clock.clearTimeout(handle);
        resolve(fallback);
      },
    );
  });
}
