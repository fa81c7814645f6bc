/**
 * Logging: pino, one logger per component, created by the process entry point and injected.
 * Libraries never create loggers of their own; `silentLogger` is the default for tests.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  component: string;
  level?: string;
  /** Writable file descriptor or path; default stdout. */
  destination?: number | string;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.component,
      level: options.level ?? 'info',
      base: { component: options.component, pid: process.pid },
    },
    pino.destination({ dest: options.destination ?? 1, sync: false }),
  );
}

/**
 * Stops a logger's output for good: its destination (stdout, a pipe from a supervisor that is
 * gone) can no longer take anything. Pino does the same by itself on EPIPE, but only once an
 * asynchronous write has failed; a process exiting before that would retry its final flush
 * forever (sonic-boom retries every write error but EAGAIN's in its synchronous flush).
 */
export function muteOutput(logger: Logger): void {
  logger.level = 'silent';
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
    Record<string, unknown> | undefined;
  if (!stream) return;
  stream.write = () => true;
  stream.flushSync = () => {};
  stream.end = () => {};
}

/** A logger that writes nothing. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Shortest time between two log lines about one peer's datagrams that failed authentication. */
export const AUTH_LOG_INTERVAL_MS = 60_000;
/** Most such lines in one interval, whatever the number of peers (a flood of forged sources). */
export const AUTH_LOG_LINES = 10;

const AUTH_REASONS = {
  unsigned: 'not signed, and this component has a secret (TASKGRID_SECRET)',
  'bad-signature': 'signed with another secret, or altered (TASKGRID_SECRET differs)',
  signed: 'signed, and this component has no secret (TASKGRID_SECRET is set there, not here)',
} as const;

/**
 * The endpoint's `onAuthFailure` hook for a component: a warning with code TG_ERR_AUTH naming
 * the peer and why, at once for a peer's first dropped datagram, then at most once a minute per
 * peer with the count dropped since; at most {@link AUTH_LOG_LINES} lines a minute in all (the
 * line after a quiet spell counts what went unlogged from other peers). Nothing is answered to
 * the peer, so this line is where a grid whose secrets differ shows it.
 */
export function authFailureLog(
  logger: Logger,
  now: () => number = Date.now,
): (peer: { host: string; port: number }, reason: keyof typeof AUTH_REASONS) => void {
  const peers = new Map<string, { loggedAt: number; dropped: number }>();
  let windowStart = -Infinity;
  let lines = 0;
  let unlogged = 0;
  return (peer, reason) => {
    const key = `${peer.host}:${peer.port}`;
    const t = now();
    const seen = peers.get(key);
    if (seen && t - seen.loggedAt < AUTH_LOG_INTERVAL_MS) {
      seen.dropped++;
      return;
    }
    if (t - windowStart >= AUTH_LOG_INTERVAL_MS) {
      windowStart = t;
      lines = 0;
      // Peers not heard from for an interval are logged afresh anyway: forget them.
      for (const [k, p] of peers) if (t - p.loggedAt >= AUTH_LOG_INTERVAL_MS) peers.delete(k);
    }
    if (lines >= AUTH_LOG_LINES) {
      unlogged++;
      return;
    }
    lines++;
    const dropped = (seen?.dropped ?? 0) + 1;
    peers.set(key, { loggedAt: t, dropped: 0 });
    const others = unlogged;
    unlogged = 0;
    logger.warn(
      { code: 'TG_ERR_AUTH', peer: key, reason, dropped, ...(others > 0 && { othersUnlogged: others }) },
      `dropped ${dropped === 1 ? 'a datagram' : `${dropped} datagrams`} from ${key} that failed authentication: ${AUTH_REASONS[reason]}` +
        (others > 0 ? ` (and ${others} from other peers, not logged one by one)` : ''),
    );
  };
}
