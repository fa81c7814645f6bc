/**
 * Task type `wait`: waits the payload's number of seconds, then returns "waited <n>s":
 * "2" -> "waited 2s" after two seconds, "0.25" -> "waited 0.25s".
 *
 * The payload is a non-negative decimal number (exponents allowed: "1e-3"); anything else
 * (negative, "NaN", "Infinity", hex, words) fails the task permanently (TG_ERR_BAD_PAYLOAD).
 * The wait reports its progress as it goes and stops at once when the task is cancelled or
 * times out (the context's signal), rejecting with the signal's reason.
 */
import { PermanentTaskError, type HandlerContext } from '../src/worker/handler-api.ts';

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Progress is reported about this many times per wait, but at most every 1 s and at least every 100 ms apart. */
const PROGRESS_STEPS = 20;
const MIN_TICK_MS = 100;
const MAX_TICK_MS = 1000;

/** Waits `payload` seconds; see the module comment. */
export async function handle(payload: string, ctx: HandlerContext): Promise<string> {
  const text = payload.trim();
  const shown = JSON.stringify(text.length > 64 ? `${text.slice(0, 60)}…` : text);
  if (!DECIMAL.test(text)) throw new PermanentTaskError(`wait: ${shown} is not a number of seconds`);
  const seconds = Number(text);
  if (!Number.isFinite(seconds)) throw new PermanentTaskError(`wait: ${shown} seconds is out of range`);
  if (seconds < 0) {
    throw new PermanentTaskError(`wait: ${shown} is negative; expected a non-negative number of seconds`);
  }
  await sleep(seconds * 1000, ctx);
  return `waited ${String(seconds)}s`;
}

function sleep(totalMs: number, ctx: HandlerContext): Promise<void> {
  const { signal } = ctx;
  // One long timer would be simpler, but setTimeout caps at 2^31-1 ms (about 24.8 days) and
  // progress needs ticks anyway; ticking also keeps a wait that long correct.
  const tickMs = Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, totalMs / PROGRESS_STEPS));
  const end = performance.now() + totalMs;
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const tick = (): void => {
      const left = end - performance.now();
      if (left <= 0) {
        signal.removeEventListener('abort', onAbort);
        ctx.progress(1);
        resolve();
        return;
      }
      ctx.progress((totalMs - left) / totalMs);
      timer = setTimeout(tick, Math.min(left, tickMs));
    };
    tick();
  });
}
