/**
 * Compiled pre-checks for the message schemas. `compileCheck(schema)` turns a zod schema into a
 * plain predicate that accepts a value only when the schema would accept it as it is (no
 * transform, no default), so the value can be used as the parsed result. It never accepts what
 * zod rejects; for anything it is unsure of (a construct or check it does not know, a
 * `__proto__` key, an odd prototype) it answers false, and the caller runs zod's safeParse,
 * which decides and words the error. Validation is therefore never skipped, only made cheap
 * for the common, valid message: zod builds a copy of every value it parses, with a result
 * object per node, which cost more than the rest of a small request's path.
 *
 * Supported: object (strict or stripping unknown keys is NOT supported: only strict), array,
 * string, number, boolean, literal, enum (of strings), optional, union, discriminated union,
 * record with a string key schema; checks on length, regex (no g/y flag), bounds and safe
 * integers. tests/protocol/fast-check.test.ts holds it to zod on every message schema.
 */
import type { z } from 'zod';

export type Check = (value: unknown) => boolean;

/** The parts of zod 4's internal definitions read here (they are not part of zod's typed API). */
interface Def {
  type: string;
  checks?: { _zod: { def: CheckDef } }[];
  shape?: Record<string, Schema>;
  catchall?: Schema;
  element?: Schema;
  innerType?: Schema;
  options?: Schema[];
  keyType?: Schema;
  valueType?: Schema;
  entries?: Record<string, unknown>;
  values?: unknown[];
  coerce?: boolean;
  mode?: string;
}

interface CheckDef {
  check: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  value?: number | bigint;
  inclusive?: boolean;
  pattern?: RegExp;
}

interface Schema {
  _zod: { def: Def; values?: Set<unknown> };
}

const never: Check = () => false;

/** Keys that could reach a prototype rather than an own property: left to zod. */
function suspicious(key: string): boolean {
  return key === '__proto__' || key in Object.prototype;
}

function isObjectLike(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function lengthChecks(checks: CheckDef[]): Check | undefined {
  let min = 0;
  let max = Infinity;
  for (const c of checks) {
    if (c.check === 'min_length' && typeof c.minimum === 'number') min = Math.max(min, c.minimum);
    else if (c.check === 'max_length' && typeof c.maximum === 'number') max = Math.min(max, c.maximum);
    else return undefined;
  }
  return (v) => (v as { length: number }).length >= min && (v as { length: number }).length <= max;
}

function compileString(checks: CheckDef[]): Check {
  let min = 0;
  let max = Infinity;
  const patterns: RegExp[] = [];
  for (const c of checks) {
    if (c.check === 'min_length' && typeof c.minimum === 'number') min = Math.max(min, c.minimum);
    else if (c.check === 'max_length' && typeof c.maximum === 'number') max = Math.min(max, c.maximum);
    else if (
      c.check === 'string_format' &&
      c.format === 'regex' &&
      c.pattern instanceof RegExp &&
      !c.pattern.global &&
      !c.pattern.sticky
    ) {
      patterns.push(c.pattern);
    } else return never;
  }
  if (patterns.length === 0) return (v) => typeof v === 'string' && v.length >= min && v.length <= max;
  return (v) => {
    if (typeof v !== 'string' || v.length < min || v.length > max) return false;
    for (const p of patterns) if (!p.test(v)) return false;
    return true;
  };
}

function compileNumber(checks: CheckDef[]): Check {
  let safeint = false;
  let lo = -Infinity;
  let loIncl = true;
  let hi = Infinity;
  let hiIncl = true;
  for (const c of checks) {
    if (c.check === 'number_format' && c.format === 'safeint') safeint = true;
    else if (c.check === 'greater_than' && typeof c.value === 'number') {
      if (c.value > lo || (c.value === lo && !c.inclusive)) {
        lo = c.value;
        loIncl = c.inclusive === true;
      }
    } else if (c.check === 'less_than' && typeof c.value === 'number') {
      if (c.value < hi || (c.value === hi && !c.inclusive)) {
        hi = c.value;
        hiIncl = c.inclusive === true;
      }
    } else return never;
  }
  return (v) =>
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (!safeint || Number.isSafeInteger(v)) &&
    (loIncl ? v >= lo : v > lo) &&
    (hiIncl ? v <= hi : v < hi);
}

function compileObject(def: Def): Check {
  const catchall = def.catchall?._zod.def.type;
  // Only strict objects: a stripping object's output is a copy without the unknown keys.
  if (catchall !== 'never' || !def.shape) return never;
  const names = Object.keys(def.shape);
  if (names.some(suspicious)) return never;
  const fields = names.map((k) => ({ key: k, check: compileCheck(def.shape![k] as unknown as z.ZodType) }));
  const known = new Set(names);
  return (v) => {
    if (!isObjectLike(v)) return false;
    for (const k in v) if (!known.has(k) || !Object.hasOwn(v, k)) return false;
    for (const f of fields) if (!f.check(v[f.key])) return false;
    return true;
  };
}

/**
 * A predicate that accepts `value` only when `schema.safeParse(value)` would succeed with an
 * output equal to `value` itself. See the module comment.
 */
export function compileCheck(schema: z.ZodType): Check {
  const s = schema as unknown as Schema;
  const def = s._zod.def;
  if (def.coerce) return never;
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  switch (def.type) {
    case 'string':
      return compileString(checks);
    case 'number':
      return compileNumber(checks);
    case 'boolean':
      return checks.length ? never : (v) => typeof v === 'boolean';
    case 'literal': {
      if (checks.length || !def.values) return never;
      const values = def.values;
      if (
        !values.every(
          (x) =>
            typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x)),
        )
      ) {
        return never;
      }
      return (v) => values.includes(v);
    }
    case 'enum': {
      const values = Object.values(def.entries ?? {});
      if (checks.length || !values.every((x) => typeof x === 'string')) return never;
      const set = new Set(values);
      return (v) => typeof v === 'string' && set.has(v);
    }
    case 'optional': {
      if (checks.length || !def.innerType) return never;
      const inner = compileCheck(def.innerType as unknown as z.ZodType);
      return (v) => v === undefined || inner(v);
    }
    case 'array': {
      if (!def.element) return never;
      const length = lengthChecks(checks);
      if (!length) return never;
      const element = compileCheck(def.element as unknown as z.ZodType);
      return (v) => {
        if (!Array.isArray(v) || !length(v)) return false;
        for (let i = 0; i < v.length; i++) if (!element(v[i])) return false;
        return true;
      };
    }
    case 'object':
      return checks.length ? never : compileObject(def);
    case 'union': {
      if (checks.length || !def.options?.length) return never;
      const options = def.options.map((o) => compileCheck(o as unknown as z.ZodType));
      return (v) => {
        for (const o of options) if (o(v)) return true;
        return false;
      };
    }
    case 'record': {
      if (checks.length || !def.keyType || !def.valueType || def.mode === 'loose') return never;
      // Enumerated key schemas make zod check for missing keys too: left to zod.
      if (def.keyType._zod.values !== undefined || def.keyType._zod.def.type !== 'string') return never;
      const key = compileCheck(def.keyType as unknown as z.ZodType);
      const value = compileCheck(def.valueType as unknown as z.ZodType);
      return (v) => {
        if (!isObjectLike(v)) return false;
        for (const k in v) {
          if (suspicious(k) || !Object.hasOwn(v, k) || !key(k) || !value(v[k])) return false;
        }
        return true;
      };
    }
    default:
      return never;
  }
}

const compiled = new WeakMap<z.ZodType, Check>();

/** compileCheck, compiled once per schema. */
export function fastCheck(schema: z.ZodType): Check {
  let check = compiled.get(schema);
  if (check === undefined) {
    check = compileCheck(schema);
    compiled.set(schema, check);
  }
  return check;
}
