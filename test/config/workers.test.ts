import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, ErrorCode } from '../../src/errors.ts';
import { checkJson } from '../../src/config/json-check.ts';
import {
  activeTypes,
  findTypeModule,
  loadWorkersFile,
  parseWorkers,
  type WorkerTypeEntry,
} from '../../src/config/workers.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'workers');
const TYPES = join(FIXTURES, 'types');
const fixture = (name: string) => loadWorkersFile(join(FIXTURES, name), { typesDir: TYPES });

/** Every type in this list has a module; the others do not. */
const parse = (text: string, known: readonly string[] = ['alpha', 'beta', 'gamma', 'sum', 'hash']) =>
  parseWorkers(text, { moduleExists: (name) => known.includes(name) });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.code, ErrorCode.CONFIG);
    return error;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

const entry = (fields: Record<string, unknown>) =>
  JSON.stringify({ active: true, description: 'd', ...fields });

test('the default workers.json loads with its five task types, all active', () => {
  const entries = loadWorkersFile(join(ROOT, 'workers.json'), { typesDir: join(ROOT, 'worker_types') });
  assert.deepEqual(
    entries.map((e) => e.name),
    ['reverse', 'sum', 'hash', 'upper', 'wait'],
  );
  assert.equal(activeTypes(entries).length, 5);
  for (const e of entries) {
    assert.ok(e.description.length > 0, `${e.name} has a description`);
    assert.ok(e.replicas >= 1 && e.concurrency >= 1, e.name);
  }
  const wait = entries.find((e) => e.name === 'wait');
  const busiest = Math.max(...entries.filter((e) => e.name !== 'wait').map((e) => e.concurrency));
  assert.ok(wait !== undefined && wait.concurrency > busiest, 'wait, mostly idle, runs more tasks at once');
});

test('an array file and a TaskGrid+ {"workers": [...]} file give the same entries', () => {
  const expected: WorkerTypeEntry[] = [
    {
      name: 'alpha',
      active: true,
      description: 'The TypeScript one.',
      replicas: 3,
      concurrency: 8,
      timeoutMs: undefined,
      maxAttempts: undefined,
      inline: false,
    },
    {
      name: 'beta',
      active: false,
      description: 'The JavaScript one, switched off.',
      replicas: 1,
      concurrency: 4,
      timeoutMs: undefined,
      maxAttempts: undefined,
      inline: false,
    },
    {
      name: 'gamma',
      active: true,
      description: 'The ES module one.',
      replicas: 1,
      concurrency: 4,
      timeoutMs: 5000,
      maxAttempts: 2,
      inline: true,
    },
  ];
  assert.deepEqual(fixture('array.json'), expected);
  assert.deepEqual(fixture('legacy.json'), expected);
});

test('a type module may be .ts, .js or .mjs', () => {
  assert.equal(findTypeModule(TYPES, 'alpha'), join(TYPES, 'alpha.ts'));
  assert.equal(findTypeModule(TYPES, 'beta'), join(TYPES, 'beta.js'));
  assert.equal(findTypeModule(TYPES, 'gamma'), join(TYPES, 'gamma.mjs'));
  assert.equal(findTypeModule(TYPES, 'delta'), undefined);
});

test('activeTypes keeps only the active entries', () => {
  assert.deepEqual(
    activeTypes(fixture('array.json')).map((e) => e.name),
    ['alpha', 'gamma'],
  );
});

test('a duplicate name names both entries', () => {
  const error = configError(() =>
    parse(`[${entry({ name: 'sum' })}, ${entry({ name: 'hash' })}, ${entry({ name: 'sum' })}]`),
  );
  assert.equal(error.message, 'workers.json: entry 3 ("sum"): duplicate name, also entry 1');
});

test('names differing only in case are duplicates, since files and DNS names would clash', () => {
  const error = configError(() =>
    parse(`[${entry({ name: 'sum' })}, ${entry({ name: 'Sum' })}]`, ['sum', 'Sum']),
  );
  assert.equal(
    error.message,
    'workers.json: entry 2 ("Sum"): duplicate name, also entry 1 ("sum"; names may not differ only in case)',
  );
});

test('a type without a module in worker_types/ names the entry and the files looked for', () => {
  const error = configError(() => parse(`[${entry({ name: 'sum' })}, ${entry({ name: 'nope' })}]`));
  assert.equal(
    error.message,
    'workers.json: entry 2 ("nope"): no module for it in worker_types/ (expected nope.ts, nope.js or nope.mjs)',
  );
});

const badFields: readonly [string, Record<string, unknown>, string][] = [
  ['replicas', { replicas: 0 }, 'entry 1 ("sum"): replicas 0 is not valid (expected an integer 1-1000)'],
  ['replicas', { replicas: '2' }, 'entry 1 ("sum"): replicas "2" is not valid (expected an integer 1-1000)'],
  [
    'concurrency',
    { concurrency: 2.5 },
    'entry 1 ("sum"): concurrency 2.5 is not valid (expected an integer 1-10000)',
  ],
  ['concurrency', { concurrency: -1 }, 'entry 1 ("sum"): concurrency -1 is not valid'],
  [
    'timeoutMs',
    { timeoutMs: 0 },
    'entry 1 ("sum"): timeoutMs 0 is not valid (expected an integer number of milliseconds',
  ],
  [
    'maxAttempts',
    { maxAttempts: 1000 },
    'entry 1 ("sum"): maxAttempts 1000 is not valid (expected an integer 1-100)',
  ],
  ['active', { active: 'yes' }, 'entry 1 ("sum"): active "yes" is not valid (expected true or false)'],
  ['description', { description: 7 }, 'entry 1 ("sum"): description 7 is not valid (expected a string'],
  ['inline', { inline: 'true' }, 'entry 1 ("sum"): inline "true" is not valid (expected true or false)'],
  ['an unknown field', { replica: 2 }, 'entry 1 ("sum"): unknown field "replica" (did you mean "replicas"?)'],
  [
    'an unknown field',
    { colour: 'red' },
    'entry 1 ("sum"): unknown field "colour" (known fields: name, active,',
  ],
];

for (const [field, fields, message] of badFields) {
  test(`a bad ${field === 'an unknown field' ? '' : 'value of '}${field} names the entry and the field: ${JSON.stringify(fields)}`, () => {
    const error = configError(() => parse(`[${entry({ name: 'sum', ...fields })}]`));
    assert.ok(error.message.startsWith(`workers.json: ${message}`), error.message);
  });
}

test('a missing required field is named with what it expects', () => {
  const error = configError(() => parse('[{"name": "sum", "description": "d"}]'));
  assert.equal(
    error.message,
    'workers.json: entry 1 ("sum"): missing field "active" (expected true or false)',
  );
});

test('an invalid name is named and explained', () => {
  const error = configError(() => parse(`[${entry({ name: 'no spaces' })}]`));
  assert.match(
    error.message,
    /^workers\.json: entry 1 \("no spaces"\): name "no spaces" is not valid \(expected a string of 1-64 letters/,
  );
});

test('an entry that is not an object is named by its position', () => {
  const error = configError(() => parse('[42]'));
  assert.match(error.message, /^workers\.json: entry 1: is a number \(expected an object like/);
});

test('several problems are reported together, one line each', () => {
  const error = configError(() => fixture('many-problems.json'));
  assert.deepEqual(error.message.split('\n'), [
    'many-problems.json: 8 problems:',
    '  - entry 2 ("beta"): unknown field "replica" (did you mean "replicas"?)',
    '  - entry 2 ("beta"): active "yes" is not valid (expected true or false)',
    '  - entry 3 ("alpha"): duplicate name, also entry 1',
    '  - entry 4 ("delta"): replicas 0 is not valid (expected an integer 1-1000)',
    '  - entry 4 ("delta"): concurrency 1.5 is not valid (expected an integer 1-10000)',
    '  - entry 4 ("delta"): no module for it in types/ (expected delta.ts, delta.js or delta.mjs)',
    '  - entry 5: is a string (expected an object like {"name": "sum", "active": true, "description": "..."})',
    '  - entry 6: missing field "name" (expected a string of 1-64 letters, digits, "_", "-" or ".", starting with a letter or digit)',
  ]);
});

test('bad JSON is reported with its line and column', () => {
  // Inline rather than a fixture file: a formatter would "fix" a .json file with a trailing comma.
  const text =
    '[\n  { "name": "sum", "active": true, "description": "x" },\n  { "name": "hash", "active": true, },\n]\n';
  const error = configError(() => parse(text));
  assert.equal(error.message, 'workers.json: not valid JSON at line 3, column 35: trailing comma before "}"');
});

test('a key repeated inside an entry is reported, not silently overwritten', () => {
  const error = configError(() =>
    parse('[\n  {"name": "sum", "active": true, "active": false, "description": "d"}\n]'),
  );
  assert.equal(
    error.message,
    'workers.json: line 2, column 35: duplicate key "active" (first at line 2, column 19)',
  );
});

test('a document that is neither an array nor {"workers": [...]} is refused', () => {
  assert.match(
    configError(() => parse('"sum"')).message,
    /^workers\.json: is a string \(expected an array of task types/,
  );
  assert.match(
    configError(() => parse('{"workers": 3}')).message,
    /"workers" is a number \(expected an array/,
  );
  assert.match(
    configError(() => parse(`{"workers": [${entry({ name: 'sum' })}], "version": 2}`)).message,
    /unknown top-level field "version" \(expected only "workers"\)/,
  );
  assert.match(configError(() => parse('[]')).message, /lists no task types/);
});

test('a byte-order mark before the JSON is tolerated', () => {
  assert.equal(parse(`\uFEFF[${entry({ name: 'sum' })}]`).length, 1);
});

test('a file that cannot be read is named in the error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'taskgrid-workers-'));
  try {
    const error = configError(() => loadWorkersFile(join(dir, 'workers.json'), { typesDir: TYPES }));
    assert.match(error.message, /^workers\.json: cannot read .*workers\.json \(ENOENT\)$/);
    writeFileSync(join(dir, 'mine.json'), `[${entry({ name: 'alpha' })}]`);
    assert.equal(loadWorkersFile(join(dir, 'mine.json'), { typesDir: TYPES, source: 'grid.json' }).length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the JSON checker locates syntax errors that JSON.parse leaves without a position', () => {
  assert.deepEqual(checkJson('{"a": tru}').syntaxError, {
    line: 1,
    column: 7,
    message: 'expected a value, found "t"',
  });
  assert.deepEqual(checkJson('[1,\n 2').syntaxError, {
    line: 2,
    column: 3,
    message: 'expected "," or "]" after an array element, found the end of the file',
  });
  assert.deepEqual(checkJson("{'a': 1}").syntaxError?.message, 'property names take double quotes in JSON');
  assert.deepEqual(checkJson('"tab\there"').syntaxError?.column, 5);
  assert.deepEqual(checkJson('[1] x').syntaxError?.message, 'unexpected "x" after the JSON value');
  assert.equal(
    checkJson('['.repeat(600) + ']'.repeat(600)).syntaxError?.message,
    'nested deeper than 512 levels',
  );
});

test('the JSON checker accepts what JSON.parse accepts', () => {
  for (const text of [
    '{}',
    '[]',
    '0',
    '-1.5e+3',
    '"\\u00e9\\n"',
    'null',
    ' {"a": [true, false, {"b": null}]} ',
  ]) {
    JSON.parse(text);
    assert.deepEqual(checkJson(text), { syntaxError: undefined, duplicateKeys: [] }, text);
  }
});
