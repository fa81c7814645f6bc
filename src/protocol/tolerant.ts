/**
 * Reading a reply from a newer peer. Every message schema is strict, so that a request with a
 * misspelt field is refused at once. A reply is different: a dispatcher upgraded before its
 * clients adds optional fields to its replies (a task view's `progressMessage`, a type's
 * `oldestQueuedMs`), and an older client must still read the rest. `parseIgnoringUnknownKeys`
 * gives the strict parse's answer, except that fields the schema does not know are dropped from
 * objects when they are the only problem. Anything else wrong still fails, naming the field.
 */
import type { z } from 'zod';

/** At most this many rounds of dropping: zod reports every unknown key of a message at once. */
const MAX_ROUNDS = 3;

/**
 * `schema.safeParse(value)`, with unknown keys dropped from a copy of `value` when they are all
 * the parse found wrong. The result says which were dropped (as `path.key`), for logs.
 */
export function parseIgnoringUnknownKeys<S extends z.ZodType>(
  schema: S,
  value: unknown,
): { result: z.ZodSafeParseResult<z.output<S>>; dropped: string[] } {
  let result = schema.safeParse(value);
  const dropped: string[] = [];
  let copy: unknown;
  for (let round = 0; round < MAX_ROUNDS && !result.success; round++) {
    const issues = result.error.issues;
    if (!issues.every((i) => i.code === 'unrecognized_keys')) break;
    copy ??= structuredClone(value);
    for (const issue of issues) {
      let node: unknown = copy;
      for (const step of issue.path) node = (node as Record<PropertyKey, unknown>)[step];
      for (const key of issue.keys) {
        delete (node as Record<string, unknown>)[key];
        dropped.push([...issue.path, key].join('.'));
      }
    }
    result = schema.safeParse(copy);
  }
  return { result, dropped };
}
