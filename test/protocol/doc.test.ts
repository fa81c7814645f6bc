/**
 * docs/PROTOCOL.md against the code: every request and notification kind has its row in the
 * message table, naming every field its schemas have (the schemas are strict: a field the doc
 * leaves out is one an implementer from the doc would get refused for), and every error code is
 * documented.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { ErrorCode } from '../../src/errors.ts';
import { notifications, requests } from '../../src/protocol/messages.ts';
import { ROOT } from '../support/process.ts';

const doc = readFileSync(join(ROOT, 'docs/PROTOCOL.md'), 'utf8');

function row(kind: string): string {
  const line = doc.split('\n').find((l) => l.startsWith(`| \`${kind}\` |`));
  assert.ok(line, `PROTOCOL.md has no table row for "${kind}"`);
  return line;
}

function fields(schema: z.ZodType): string[] {
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

for (const [kind, { req, res }] of Object.entries(requests) as [string, { req: z.ZodType; res: z.ZodType }][]) {
  test(`PROTOCOL.md documents every field of request "${kind}" and of its reply`, () => {
    const text = row(kind);
    for (const f of [...fields(req), ...fields(res)]) assert.match(text, new RegExp(`\\b${f}\\b`), `${kind}: ${f}`);
  });
}

for (const [kind, schema] of Object.entries(notifications) as [string, z.ZodType][]) {
  test(`PROTOCOL.md documents every field of notification "${kind}"`, () => {
    const text = row(kind);
    for (const f of fields(schema)) assert.match(text, new RegExp(`\\b${f}\\b`), `${kind}: ${f}`);
  });
}

test('PROTOCOL.md lists every error code', () => {
  for (const code of Object.values(ErrorCode)) assert.ok(doc.includes(`\`${code}\``), code);
});
