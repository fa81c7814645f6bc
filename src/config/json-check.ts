/**
 * A JSON checker for hand-edited files: it finds where the text stops being JSON (by line and
 * column, which Node 20's JSON.parse often does not say) and every key repeated within one object
 * (which JSON.parse silently resolves to the last one, hiding a typo). It builds no values: parse
 * the text with JSON.parse once it passes.
 */

/** A place in the text, 1-based, columns counted in UTF-16 code units as editors mostly do. */
export interface TextPosition {
  readonly line: number;
  readonly column: number;
}

/** One problem, where it is and what it is. */
export interface JsonProblem extends TextPosition {
  readonly message: string;
}

/** What {@link checkJson} found: at most one syntax error (checking stops there) and every duplicate key. */
export interface JsonCheck {
  readonly syntaxError: JsonProblem | undefined;
  readonly duplicateKeys: readonly JsonProblem[];
}

/** Deeper nesting than this is reported rather than recursed into, so hostile input cannot exhaust the stack. */
const MAX_DEPTH = 512;

/** The line and column of `offset` in `text`. */
export function positionAt(text: string, offset: number): TextPosition {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

class SyntaxProblem extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERAL = /true|false|null/y;

/**
 * Checks `text` as strict JSON (RFC 8259, no byte-order mark).
 *
 * @example checkJson('{"a": 1,}').syntaxError // { line: 1, column: 9, message: 'trailing comma before "}"' }
 */
export function checkJson(text: string): JsonCheck {
  const duplicates: { offset: number; message: string }[] = [];
  let i = 0;

  const describe = (at: number): string => {
    if (at >= text.length) return 'the end of the file';
    const ch = text[at] ?? '';
    return /[\x20-\x7e]/.test(ch)
      ? `"${ch}"`
      : `character U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  };
  const unexpected = (expected: string): never => {
    throw new SyntaxProblem(i, `expected ${expected}, found ${describe(i)}`);
  };
  const skipSpace = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };

  /** Reads a string at `i` and returns its decoded value. */
  const readString = (): string => {
    const start = i;
    i++;
    for (;;) {
      if (i >= text.length) throw new SyntaxProblem(start, 'string is not closed');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20)
        throw new SyntaxProblem(i, 'control character in a string (write it as an escape such as \\n)');
      if (c === 0x5c) {
        const next = text[i + 1] ?? '';
        if (next === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6)))
            throw new SyntaxProblem(i, 'bad \\u escape in a string');
          i += 6;
          continue;
        }
        if (!'"\\/bfnrt'.includes(next) || next === '')
          throw new SyntaxProblem(i, `bad escape "\\${next}" in a string`);
        i += 2;
        continue;
      }
      i++;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };

  const readValue = (depth: number): void => {
    skipSpace();
    const ch = text[i];
    if (ch === '{') return readObject(depth + 1);
    if (ch === '[') return readArray(depth + 1);
    if (ch === '"') {
      readString();
      return;
    }
    for (const pattern of [NUMBER, LITERAL]) {
      pattern.lastIndex = i;
      const match = pattern.exec(text);
      if (match !== null) {
        i += match[0].length;
        return;
      }
    }
    if (ch === "'") throw new SyntaxProblem(i, 'strings take double quotes in JSON');
    unexpected('a value');
  };

  const readObject = (depth: number): void => {
    if (depth > MAX_DEPTH) throw new SyntaxProblem(i, `nested deeper than ${MAX_DEPTH} levels`);
    i++;
    const keys = new Map<string, number>();
    skipSpace();
    if (text[i] === '}') {
      i++;
      return;
    }
    for (;;) {
      skipSpace();
      if (text[i] !== '"') {
        if (text[i] === "'") throw new SyntaxProblem(i, 'property names take double quotes in JSON');
        unexpected('a property name in double quotes');
      }
      const keyAt = i;
      const key = readString();
      const first = keys.get(key);
      if (first === undefined) keys.set(key, keyAt);
      else {
        const p = positionAt(text, first);
        duplicates.push({
          offset: keyAt,
          message: `duplicate key ${JSON.stringify(key)} (first at line ${p.line}, column ${p.column})`,
        });
      }
      skipSpace();
      if (text[i] !== ':') unexpected('":" after a property name');
      i++;
      readValue(depth);
      skipSpace();
      if (text[i] === '}') {
        i++;
        return;
      }
      if (text[i] !== ',') unexpected('"," or "}" after a property value');
      const comma = i;
      i++;
      skipSpace();
      if (text[i] === '}') throw new SyntaxProblem(comma, 'trailing comma before "}"');
    }
  };

  const readArray = (depth: number): void => {
    if (depth > MAX_DEPTH) throw new SyntaxProblem(i, `nested deeper than ${MAX_DEPTH} levels`);
    i++;
    skipSpace();
    if (text[i] === ']') {
      i++;
      return;
    }
    for (;;) {
      readValue(depth);
      skipSpace();
      if (text[i] === ']') {
        i++;
        return;
      }
      if (text[i] !== ',') unexpected('"," or "]" after an array element');
      const comma = i;
      i++;
      skipSpace();
      if (text[i] === ']') throw new SyntaxProblem(comma, 'trailing comma before "]"');
    }
  };

  const at = (offset: number, message: string): JsonProblem => ({ ...positionAt(text, offset), message });
  let syntaxError: JsonProblem | undefined;
  try {
    if (text.charCodeAt(0) === 0xfeff) throw new SyntaxProblem(0, 'byte-order mark before the JSON');
    skipSpace();
    if (i >= text.length) throw new SyntaxProblem(i, 'the file is empty');
    readValue(0);
    skipSpace();
    if (i < text.length) throw new SyntaxProblem(i, `unexpected ${describe(i)} after the JSON value`);
  } catch (error) {
    if (!(error instanceof SyntaxProblem)) throw error;
    syntaxError = at(error.offset, error.message);
  }
  return { syntaxError, duplicateKeys: duplicates.map((d) => at(d.offset, d.message)) };
}
