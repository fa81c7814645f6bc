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
    { name: options.component, level: options.level ?? 'info', base: { component: options.component, pid: process.pid } },
    pino.destination({ dest: options.destination ?? 1, sync: false }),
  );
}

/** A logger that writes nothing. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
