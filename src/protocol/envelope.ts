/**
 * The JSON envelope every v1 message travels in: `{"k": kind, "id": n, "re"?: n, "b": body}`.
 * `id` is chosen by the sender (unique per sender for the dedup window); `re` marks a reply
 * and names the request it answers. The protocol version is in the frame header.
 */
import { ProtocolError } from '../errors.ts';

export interface Envelope {
  /** Message kind: a request or notification kind, or `ok` / `error` / `busy` for replies. */
  k: string;
  /** Sender-chosen message id, an unsigned 32-bit integer. */
  id: number;
  /** For replies: the id of the request answered. */
  re?: number;
  /** The body, validated by the kind's schema on receipt. */
  b: unknown;
}

const MAX_KIND = 64;

export function encodeEnvelope(env: Envelope): Buffer {
  return Buffer.from(JSON.stringify(env), 'utf8');
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/** Parses and checks the envelope's shape (not its body). Throws ProtocolError. */
export function decodeEnvelope(bytes: Buffer): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ProtocolError('message is not valid JSON', { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('message is not a JSON object');
  }
  const v = value as Record<string, unknown>;
  if (typeof v.k !== 'string' || v.k.length === 0 || v.k.length > MAX_KIND) {
    throw new ProtocolError('message kind "k" is missing or not a short string');
  }
  if (!isU32(v.id)) throw new ProtocolError('message id "id" is missing or not an unsigned 32-bit integer');
  if (v.re !== undefined && !isU32(v.re)) throw new ProtocolError('reply id "re" is not an unsigned 32-bit integer');
  if (!('b' in v)) throw new ProtocolError('message body "b" is missing');
  const env: Envelope = { k: v.k, id: v.id, b: v.b };
  if (v.re !== undefined) env.re = v.re;
  return env;
}
