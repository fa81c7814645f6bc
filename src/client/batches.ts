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
