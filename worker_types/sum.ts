/**
 * Task type `sum`: the exact decimal sum of a list of numbers.
 *
 * Input, either:
 * - numbers separated by commas, spaces allowed around them: "1,2,3", "-1.5, 2";
 * - a JSON array of numbers and/or numeric strings: `[1, "2.5", -3]`.
 *
 * A number is an optional sign, digits with an optional fraction (".5" and "5." are fine) and
 * an optional exponent ("1e3", "2.5E-2"); the exponent's magnitude is at most 1000 so that one
 * short item cannot demand a number with billions of digits. Hex, "Infinity" and "NaN" are not
 * numbers.
 *
 * Arithmetic is exact (BigInt scaled decimals, no floating point), so "0.1,0.2" -> "0.3" and
 * "9007199254740993,1" -> "9007199254740994". The result is in plain decimal notation without
 * trailing zeros or exponent: "1e3,0.50" -> "1000.5", "-0" -> "0".
 *
 * An empty (or all-whitespace) payload, and an empty JSON array, sum to "0": the sum of no
 * numbers, the same answer for "" and "[]". An empty item between commas ("1,,2", "1,") is a
 * mistake, not a zero, and fails. Any item that is not a number fails the task permanently
 * (TG_ERR_BAD_PAYLOAD) with a message naming it: `sum: "abc" is not a number`.
 */
import { PermanentTaskError, type HandlerContext } from '../src/worker/handler-api.ts';

/** Largest exponent magnitude accepted in an item ("1e1000" is fine, "1e1001" is not). */
const MAX_EXPONENT = 1000;

const NUMBER = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** `digits * 10^-scale`. */
interface Decimal {
  digits: bigint;
  scale: number;
}

/** Sums the payload's numbers exactly; see the module comment for the accepted input. */
export function handle(payload: string, _ctx?: HandlerContext): string {
  const items = splitItems(payload);
  const values = items.map(toDecimal);
  const scale = values.reduce((max, v) => Math.max(max, v.scale), 0);
  let total = 0n;
  for (const v of values) total += v.digits * 10n ** BigInt(scale - v.scale);
  return format({ digits: total, scale });
}

/** An item as written (to name it in errors) and, for JSON string items, its decoded text. */
type Item = { kind: 'text'; text: string; position: number } | { kind: 'json'; raw: string };

function splitItems(payload: string): Item[] {
  const text = payload.trim();
  if (text === '') return [];
  if (text.startsWith('[')) return splitJsonArray(text);
  return text.split(',').map((part, i) => {
    const item = part.trim();
    if (item === '') throw bad(`item ${i + 1} is empty (between commas)`);
    return { kind: 'text', text: item, position: i + 1 };
  });
}

function splitJsonArray(text: string): Item[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw bad(`the payload starts with "[" but is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed)) throw bad('the payload starts with "[" but is not a JSON array');
  // JSON.parse turns 9007199254740993 into ...992; the items' source text keeps every digit.
  const raws = topLevelElements(text);
  return raws.map((raw) => ({ kind: 'json', raw }));
}

/**
 * The source text of each element of a JSON array that JSON.parse has already accepted, so
 * only strings (which may hold "," and "]") and nesting need tracking.
 */
function topLevelElements(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let inString = false;
  let start = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        const last = text.slice(start, i).trim();
        if (last !== '' || out.length > 0) out.push(last);
        break;
      }
    } else if (c === ',' && depth === 1) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  return out;
}

function toDecimal(item: Item): Decimal {
  if (item.kind === 'text') return parseNumber(item.text, JSON.stringify(clip(item.text)));
  if (item.raw.startsWith('"')) {
    const decoded = JSON.parse(item.raw) as string;
    return parseNumber(decoded.trim(), JSON.stringify(clip(decoded)));
  }
  return parseNumber(item.raw, clip(item.raw));
}

/** Parses `text`; `shown` is how errors name the item. */
function parseNumber(text: string, shown: string): Decimal {
  const m = NUMBER.exec(text);
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = m ?? [];
  if (!m || whole + fraction === '') throw bad(`${shown} is not a number`);
  const exp = Number(exponent);
  if (Math.abs(exp) > MAX_EXPONENT) {
    throw bad(`${shown} has an exponent out of range (at most ±${MAX_EXPONENT})`);
  }
  let digits = BigInt(whole + fraction);
  if (sign === '-') digits = -digits;
  const scale = fraction.length - exp;
  return scale >= 0 ? { digits, scale } : { digits: digits * 10n ** BigInt(-scale), scale: 0 };
}

function format({ digits, scale }: Decimal): string {
  const negative = digits < 0n;
  let abs = (negative ? -digits : digits).toString();
  if (scale > 0) {
    abs = abs.padStart(scale + 1, '0');
    const whole = abs.slice(0, abs.length - scale);
    const fraction = abs.slice(abs.length - scale).replace(/0+$/, '');
    abs = fraction === '' ? whole : `${whole}.${fraction}`;
  }
  return negative && abs !== '0' ? `-${abs}` : abs;
}

function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 60)}…` : text;
}

function bad(what: string): PermanentTaskError {
  return new PermanentTaskError(`sum: ${what}`);
}
