/**
 * Task type `upper`: the payload in upper case by Unicode's default (locale-independent)
 * mapping, so the result does not depend on the host's locale: "openai" -> "OPENAI", and "i"
 * becomes "I" even on a Turkish host. Some characters grow ("ß" -> "SS").
 */
import type { HandlerContext } from '../src/worker/handler-api.ts';

/** Upper-cases `payload` (locale-independent). */
export function handle(payload: string, _ctx?: HandlerContext): string {
  return payload.toUpperCase();
}
