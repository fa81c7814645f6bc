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

/** `{"k":<kind>,"id":` as text and as bytes, by kind: kinds are few, so each is made once. */
const prefixes = new Map<string, Buffer>();
const MAX_CACHED_PREFIXES = 256;
const RE_PART = Buffer.from(',"re":', 'latin1');
const BODY_PART = Buffer.from(',"b":', 'latin1');
const CLOSE = 0x7d; // '}'

/** The bytes that start every envelope of `kind`: `{"k":<kind as JSON>,"id":`. */
export function envelopePrefix(kind: string): Buffer {
  let prefix = prefixes.get(kind);
  if (prefix === undefined) {
    prefix = Buffer.from(`{"k":${JSON.stringify(kind)},"id":`, 'utf8');
    if (prefixes.size < MAX_CACHED_PREFIXES) prefixes.set(kind, prefix);
  }
  return prefix;
}

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

function writeDigits(buf: Buffer, off: number, n: number): number {
  const end = off + digits(n);
  let p = end;
  while (n >= 10) {
    const q = Math.floor(n / 10);
    buf[--p] = 0x30 + (n - q * 10);
    n = q;
  }
  buf[p - 1] = 0x30 + n;
  return end;
}

/**
 * Size in bytes of the envelope that writeEnvelope would write. With `exact` false the body is
 * not measured but bounded (3 bytes per UTF-16 unit), which is cheap and enough to know that a
 * short message fits a datagram.
 */
export function envelopeSize(
  prefix: Buffer,
  id: number,
  re: number | undefined,
  body: string | undefined,
  exact: boolean,
): number {
  let n = prefix.length + digits(id) + 1;
  if (re !== undefined) n += RE_PART.length + digits(re);
  if (body !== undefined) n += BODY_PART.length + (exact ? Buffer.byteLength(body, 'utf8') : body.length * 3);
  return n;
}

/**
 * Writes the envelope `{"k":…,"id":…,"re":…,"b":…}` into `buf` at `off` from its parts (the
 * kind's prefix from envelopePrefix, the ids, and the body already as JSON text, or undefined
 * to leave `b` out, as JSON.stringify does) and returns where it ends. The bytes are exactly
 * those of `JSON.stringify({k, id, re, b})`; no string is built for the whole envelope. `buf`
 * must have room (see envelopeSize).
 */
export function writeEnvelope(
  buf: Buffer,
  off: number,
  prefix: Buffer,
  id: number,
  re: number | undefined,
  body: string | undefined,
): number {
  off += prefix.copy(buf, off);
  off = writeDigits(buf, off, id);
  if (re !== undefined) {
    off += RE_PART.copy(buf, off);
    off = writeDigits(buf, off, re);
  }
  if (body !== undefined) {
    off += BODY_PART.copy(buf, off);
    off += buf.write(body, off, 'utf8');
  }
  buf[off] = CLOSE;
  return off + 1;
}

/**
 * The JSON text of an envelope, as `JSON.stringify({k, id, re, b})` would give it (a body that
 * stringifies to nothing is left out, as there).
 */
export function envelopeJson(k: string, id: number, b: unknown, re?: number): string {
  const body = JSON.stringify(b) as string | undefined;
  const prefix = envelopePrefix(k);
  const buf = Buffer.allocUnsafe(envelopeSize(prefix, id, re, body, true));
  return buf.toString('utf8', 0, writeEnvelope(buf, 0, prefix, id, re, body));
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/** Parses and checks the envelope's shape (not its body). Throws ProtocolError. */
export function decodeEnvelope(bytes: Buffer): Envelope {
  const env = parseEnvelope(bytes.toString('utf8'));
  const out: Envelope = { k: env.k, id: env.id, b: env.b };
  if (env.re !== undefined) out.re = env.re;
  return out;
}

/**
 * Parses envelope JSON text and checks its shape (not its body); throws ProtocolError. The
 * parsed object itself is returned (other fields, if any, are ignored by every reader).
 */
export function parseEnvelope(json: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(json);
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
  if (v.re !== undefined && !isU32(v.re))
    throw new ProtocolError('reply id "re" is not an unsigned 32-bit integer');
  if (!('b' in v)) throw new ProtocolError('message body "b" is missing');
  return v as unknown as Envelope;
}
