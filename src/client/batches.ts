/**
 * Splitting many tasks into `submit` requests: by count and by encoded size, keeping their
 * order. Pure.
 */

/**
 * Groups `items` (indices into the caller's task list, with each one's encoded size) into
 * consecutive batches of at most `maxCount` items and `maxBytes` bytes. An item larger than
 * `maxBytes` on its own gets a batch of its own (the transport then decides if it fits).
 */
export function planBatches(
  items: readonly { index: number; bytes: number }[],
  maxCount: number,
  maxBytes: number,
): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (const item of items) {
    if (current.length > 0 && (current.length >= maxCount || bytes + item.bytes > maxBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item.index);
    bytes += item.bytes;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** Encoded size of one task inside a `submit` body: its JSON plus a separating comma. */
export function encodedSize(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value)) + 1;
}

/** JSON text a string stands as itself in, between quotes: printable ASCII but `"` and `\\`. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * {@link encodedSize} of a flat object of strings and finite numbers (a task spec), counted
 * without building its JSON when every string is plain printable ASCII (the common case); the
 * count is then exact, as JSON text is the string itself between quotes. Anything else (an
 * escape, a non-ASCII character, a nested value) is measured by JSON.stringify.
 */
export function flatSize(value: Readonly<Record<string, unknown>>): number {
  let n = 3; // braces and the separating comma
  let fields = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) return encodedSize(value);
    const v = value[key];
    if (v === undefined) continue; // JSON.stringify leaves it out
    if (typeof v === 'string') {
      if (!PLAIN.test(v)) return encodedSize(value);
      n += v.length + 2;
    } else if (typeof v === 'number' && Number.isFinite(v)) {
      n += String(v).length;
    } else {
      return encodedSize(value);
    }
    if (!PLAIN.test(key)) return encodedSize(value);
    n += key.length + 3; // "key":
    fields++;
  }
  return fields === 0 ? n : n + fields - 1;
}
