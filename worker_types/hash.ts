/**
 * Task type `hash`: the SHA-256 digest of the payload's UTF-8 bytes, as 64 lowercase hex digits:
 * "abc" -> "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".
 */
import { createHash } from 'node:crypto';
import type { HandlerContext } from '../src/worker/handler-api.ts';

/** SHA-256 of `payload` as UTF-8, in hex. */
export function handle(payload: string, _ctx?: HandlerContext): string {
  return createHash('sha256').update(payload, 'utf8').digest('hex');
}
