/**
 * The parsed query tributary sends with every SEARCH (docs/protocol.md,
 * "The parsed query"), evaluated against records in memory as tributary's
 * embedded datasource evaluates it, for the constructs this package can
 * evaluate exactly; any other construct is refused with {@link Unsupported},
 * naming it: never a silently different answer. The same rules as the
 * Python package's `tributary_plugin.query.evaluate`; both pass the
 * conformance kit's query vectors.
 */

export const TREE_VERSION = 1;

/** `{"version": 1, "query": NODE}`, or `{"version": 1, "error": "…"}`. */
export interface Tree {
  version: number;
  query?: Node;
  error?: string;
}

export type Node = { type: string; [key: string]: any };
export type Record_ = Record<string, unknown>;
export type Matcher = (record: Record_) => boolean;
type Test = ((values: unknown[]) => boolean) | null;

/** A query tributary could not parse, or one this package does not evaluate. */
export class QueryError extends Error {
  kind = "bad_query";
}
/** A construct this package does not evaluate exactly: the search is refused, naming it. */
export class Unsupported extends QueryError {}

// A word as the standard analyzer makes it, for scripts written with
// spaces (Unicode's word boundaries): letters, digits and `_`, joined
// across `. ' : ·` between letters and `. ' , ;` between digits.
const STANDARD_WORD = /(?:[\p{L}\p{N}]|_|(?<=\p{L})[:·'’.](?=\p{L})|(?<=\p{Nd})[,;.'’](?=\p{Nd}))+/gu;
const DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$/;

/** Lowercased letter by letter, as Lucene's LowerCaseFilter does (`Σ` is `σ`, `İ` is `i`). */
function lower(text: string): string {
  return Array.from(text, (c) => Array.from(c.toLowerCase())[0]).join("");
}

/** The words of a text as tributary's standard analyzer makes them. */
export function analyze(text: string): string[] {
  return Array.from(text.matchAll(STANDARD_WORD), (m) => lower(m[0]));
}

/** Nested objects as dotted paths, as tributary shows fields. */
export function flatten(record: Record_, prefix = "", out: Record_ = {}): Record_ {
  for (const [key, value] of Object.entries(record)) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      flatten(value as Record_, `${prefix}${key}.`, out);
    } else out[`${prefix}${key}`] = value;
  }
  return out;
}

/**
 * A matcher for `parsed` over (flat or nested) records' fields. `fields`:
 * the declared fields, which give each field's type (others are typed by
 * their value: strings `text` with a `.keyword`, numbers, booleans).
 * Throws {@link QueryError} for a query tributary could not parse and
 * {@link Unsupported} for a construct evaluated only by tributary.
 */
export function evaluate(parsed: Tree, fields: { path: string; type: string }[] = []): Matcher {
  if (parsed.error !== undefined) throw new QueryError(parsed.error);
  if (parsed.version !== TREE_VERSION || !parsed.query) {
    throw new Unsupported(`unsupported: the query tree's version ${parsed.version} (this package reads ${TREE_VERSION})`);
  }
  const types = new Map(fields.map((f) => [f.path, f.type]));
  const compiled = new Evaluator(types).node(parsed.query);
  if (!compiled) return () => false;
  return (record) => compiled(flatten(record));
}

function glob(pattern: string, text: string): boolean {
  const regex = new RegExp(`^${pattern.split("*").map(escapeRegex).join(".*")}$`, "s");
  return regex.test(text);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const WHOLE = new Set(["long", "integer", "short", "byte"]);
const DECIMAL = new Set(["double", "float"]);

class Evaluator {
  constructor(private types: Map<string, string>) {}

  node(node: Node): Matcher | null {
    switch (node.type) {
      case "all":
        return () => true;
      case "boost":
        return this.node(node.query);
      case "bool":
        return this.bool(node.clauses);
      case "exists":
        return this.exists(node.field);
      case "regex":
        throw new Unsupported(`unsupported: regular expressions (/${node.pattern}/)`);
      case "fuzzy":
        if (node.edits !== 0) throw new Unsupported(`unsupported: fuzzy terms (${node.text}~${node.edits})`);
        return this.perField(node.field, (kind) => this.term(kind, node.text, null));
      case "term":
        return this.perField(node.field, (kind) => this.term(kind, node.text, null));
      case "phrase":
        return this.perField(node.field, (kind) => this.term(kind, node.text, node.slop));
      case "prefix":
        return this.perField(node.field, (kind) => this.pattern(kind, `${escapeRegex(node.text)}.*`));
      case "wildcard":
        return this.perField(node.field, (kind) => this.pattern(kind, wildcard(node.pattern)));
      case "range":
        return this.perField(node.field, (kind) => this.range(kind, node));
      default:
        throw new Unsupported(`unsupported: query nodes of type ${JSON.stringify(node.type)}`);
    }
  }

  bool(clauses: { occur: string; query: Node }[]): Matcher | null {
    const must: Matcher[] = [], should: Matcher[] = [], mustNot: Matcher[] = [];
    for (const clause of clauses) {
      const matcher = this.node(clause.query);
      if (!matcher) continue; // nothing to search for: the clause is dropped, as Lucene does
      ({ must, should, must_not: mustNot } as Record<string, Matcher[]>)[clause.occur].push(matcher);
    }
    if (!must.length && !should.length && !mustNot.length) return null;
    return (record) => {
      if (mustNot.some((m) => m(record))) return false;
      if (must.length) return must.every((m) => m(record));
      return !should.length || should.some((m) => m(record));
    };
  }

  /** [path, type, values] of the fields a leaf looks at in a record. */
  typedFields(record: Record_, field: string | null): [string, string, unknown[]][] {
    const out: [string, string, unknown[]][] = [];
    for (const [path, value] of Object.entries(record)) {
      const values = (Array.isArray(value) ? value : [value]).filter((v) => v !== null && v !== undefined);
      const kinds = [this.typeOf(path, values)];
      if (kinds[0] === "text" && !this.types.has(path)) kinds.push("keyword"); // a dynamic string's `.keyword`
      for (const kind of kinds) {
        const name = kind === "keyword" && kinds.length === 2 ? `${path}.keyword` : path;
        if (field === null && kinds.length === 2 && name.endsWith(".keyword")) continue; // multi-fields are not in the default field
        if (field === null || field === "*" || field === name || (field.includes("*") && glob(field, name))) {
          out.push([name, kind, values]);
        }
      }
    }
    return out;
  }

  typeOf(path: string, values: unknown[]): string {
    const declared = this.types.get(path);
    if (declared) return declared;
    const first = values[0];
    if (typeof first === "boolean") return "boolean";
    if (typeof first === "number") return Number.isInteger(first) && !String(first).includes(".") ? "long" : "float";
    if (typeof first === "string" && ((DATE.test(first) && !/^\d+$/.test(first)) || /^\d{4}$/.test(first))) return "date";
    return "text";
  }

  perField(field: string | null, leaf: (kind: string) => Test): Matcher {
    const cache = new Map<string, Test>();
    const test = (path: string, kind: string): Test => {
      const key = `${path}\u0000${kind}`;
      if (!cache.has(key)) cache.set(key, leaf(kind));
      return cache.get(key) ?? null;
    };
    return (record) => this.typedFields(record, field).some(([path, kind, values]) => {
      const check = test(path, kind);
      return check !== null && check(values);
    });
  }

  exists(field: string): Matcher {
    return (record) =>
      Object.entries(record).some(([path, value]) => {
        const names = [path, `${path}.keyword`];
        const hit = names.some((n) => n === field || glob(field, n) || n.startsWith(`${field}.`));
        return hit && value !== null && value !== "" && !(Array.isArray(value) && value.length === 0);
      });
  }

  term(kind: string, text: string, slop: number | null): Test {
    if (kind === "text") {
      const wanted = analyze(text);
      if (!wanted.length) return null;
      if (slop === null) return (values) => values.some((v) => analyze(String(v)).some((w) => wanted.includes(w)));
      if (wanted.length === 1) return (values) => values.some((v) => analyze(String(v)).includes(wanted[0]));
      if (slop < 0) return () => false;
      if (slop > 0) throw new Unsupported(`unsupported: sloppy phrases ("${text}"~${slop})`);
      const n = wanted.length;
      return (values) =>
        values.some((v) => {
          const words = analyze(String(v));
          for (let i = 0; i + n <= words.length; i++) if (wanted.every((w, j) => words[i + j] === w)) return true;
          return false;
        });
    }
    if (kind === "keyword") return (values) => values.some((v) => String(v) === text);
    if (WHOLE.has(kind)) {
      const number = whole(text);
      return (values) => number !== null && values.some((v) => typeof v === "number" && v === number);
    }
    if (DECIMAL.has(kind)) {
      const number = decimal(text, kind);
      return (values) => number !== null && values.some((v) => decimalOf(v, kind) === number);
    }
    if (kind === "boolean") {
      if (text !== "true" && text !== "false") return () => false;
      return (values) => values.some((v) => v === (text === "true"));
    }
    if (kind === "date") {
      const span = dateSpan(text);
      return (values) => values.some((v) => inSpan(dateMs(v), span));
    }
    return () => false;
  }

  pattern(kind: string, pattern: string): Test {
    if (kind === "text") {
      const regex = new RegExp(`^(?:${lower(pattern)})$`, "su");
      return (values) => values.some((v) => analyze(String(v)).some((w) => regex.test(w)));
    }
    if (kind === "keyword") {
      const regex = new RegExp(`^(?:${pattern})$`, "su");
      return (values) => values.some((v) => regex.test(String(v)));
    }
    return () => false;
  }

  range(kind: string, node: Node): Test {
    const { lower: low_, upper: high_, include_lower: lowIn, include_upper: highIn } = node as unknown as {
      lower: string | null; upper: string | null; include_lower: boolean; include_upper: boolean;
    };
    const between = (x: number | string, low: number | string | null, high: number | string | null) =>
      !(low !== null && (x < low || (x === low && !lowIn))) && !(high !== null && (x > high || (x === high && !highIn)));
    if (WHOLE.has(kind) || DECIMAL.has(kind)) {
      const read = (t: string | null): number | null | undefined => {
        if (t === null) return null;
        if (t.trim() !== t || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return undefined;
        return DECIMAL.has(kind) ? decimal(t, kind) ?? undefined : Number(t);
      };
      const low = read(low_), high = read(high_);
      if (low === undefined || high === undefined) return () => false;
      return (values) =>
        values.some((v) => {
          const x = DECIMAL.has(kind) ? decimalOf(v, kind) : typeof v === "number" ? v : null;
          return x !== null && between(x, low, high);
        });
    }
    if (kind === "date") {
      const lowSpan = low_ === null ? null : dateSpan(low_);
      const highSpan = high_ === null ? null : dateSpan(high_);
      if ((low_ !== null && !lowSpan) || (high_ !== null && !highSpan)) return () => false;
      const low = lowSpan ? lowSpan[lowIn ? 0 : 1] : null;
      const high = highSpan ? highSpan[highIn ? 1 : 0] : null;
      return (values) =>
        values.some((v) => {
          const ms = dateMs(v);
          if (ms === null) return false;
          if (low !== null && (lowIn ? ms < low : ms <= low)) return false;
          if (high !== null && (highIn ? ms > high : ms >= high)) return false;
          return true;
        });
    }
    if (kind === "text" || kind === "keyword") {
      const norm = kind === "text" ? lower : (s: string) => s;
      const low = low_ === null ? null : bytes(norm(low_));
      const high = high_ === null ? null : bytes(norm(high_));
      return (values) =>
        values.some((v) =>
          (kind === "text" ? analyze(String(v)) : [String(v)]).some((t) => {
            const b = bytes(t);
            return !(low !== null && (b < low || (b === low && !lowIn))) && !(high !== null && (b > high || (b === high && !highIn)));
          }),
        );
    }
    if (kind === "boolean") throw new Unsupported("unsupported: ranges on booleans");
    return () => false;
  }
}

/** A string whose comparison is byte order (as Lucene compares terms). */
function bytes(text: string): string {
  return Buffer.from(text, "utf8").toString("latin1");
}

function wildcard(pattern: string): string {
  let out = "";
  let escaped = false;
  for (const c of pattern) {
    if (escaped) {
      out += escapeRegex(c);
      escaped = false;
    } else if (c === "\\") escaped = true;
    else if (c === "*") out += ".*";
    else if (c === "?") out += ".";
    else out += escapeRegex(c);
  }
  return out;
}

/** A query's whole number as Elasticsearch reads it: no spaces, `1e2` is 100, a decimal matches nothing. */
function whole(text: string): number | null {
  if (text.trim() !== text || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return null;
  const value = Number(text);
  return Number.isInteger(value) ? value : null;
}

function decimal(text: string, kind: string): number | null {
  const stripped = text.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?$/.test(stripped)) return null;
  const value = Number(stripped.replace(/[fFdD]$/, ""));
  if (!Number.isFinite(value)) return null;
  return kind === "float" ? Math.fround(value) : value;
}

function decimalOf(value: unknown, kind: string): number | null {
  if (typeof value !== "number") return null;
  return kind === "float" ? Math.fround(value) : value;
}

function dateMs(value: unknown): number | null {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value === "string") {
    const span = dateSpan(value);
    return span ? span[0] : null;
  }
  return null;
}

/** The first and last millisecond a date (`strict_date_optional_time`, or epoch milliseconds) covers. */
function dateSpan(text: string): [number, number] | null {
  if (text.startsWith("now") || text.includes("||")) throw new Unsupported(`unsupported: date math (${text})`);
  if (/^-?\d+$/.test(text) && text.replace("-", "").length !== 4) return [Number(text), Number(text)];
  const m = DATE.exec(text);
  if (!m) return null;
  const [, year, month, day, hour, minute, second, fraction, zone] = m;
  let offsetMin = 0;
  if (zone && zone !== "Z") {
    const digits = zone.slice(1).replace(":", "");
    offsetMin = (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || 0)) * (zone[0] === "+" ? 1 : -1);
  }
  const y = Number(year), mo = Number(month ?? 1), d = Number(day ?? 1);
  const h = Number(hour ?? 0), mi = Number(minute ?? 0), s = Number(second ?? 0);
  const ms = Number((fraction ?? "0").padEnd(3, "0").slice(0, 3));
  if (mo < 1 || mo > 12 || d < 1 || d > new Date(Date.UTC(y, mo, 0)).getUTCDate() || h > 23 || mi > 59 || s > 59) return null;
  const first = Date.UTC(y, mo - 1, d, h, mi, s, ms) - offsetMin * 60_000;
  if (fraction !== undefined && fraction.length >= 3) return [first, first];
  if (second !== undefined) return [first, first + 999];
  if (minute !== undefined) return [first, first + 60_000 - 1];
  if (hour !== undefined) return [first, first + 3_600_000 - 1];
  if (day !== undefined) return [first, first + 86_400_000 - 1];
  if (month !== undefined) return [first, Date.UTC(y, mo, 1) - offsetMin * 60_000 - 1];
  return [first, Date.UTC(y + 1, 0, 1) - offsetMin * 60_000 - 1];
}

function inSpan(ms: number | null, span: [number, number] | null): boolean {
  return ms !== null && span !== null && span[0] <= ms && ms <= span[1];
}
