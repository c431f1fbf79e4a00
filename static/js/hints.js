// Why a query may have found nothing, in words: a field no enabled
// datasource has (with the nearest that exists), a word where a field holds
// numbers, a date that cannot be. Read from the query's `field:value`
// terms and the fields the datasources list. No DOM here.

const NUMBER_TYPES = new Set(["long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"]);
// `field:value`, `field:"a phrase"`, `field:[a TO b]`, `field:>5`; not inside quotes.
const TERM = /"(?:[^"\\]|\\.)*"|(?<![\w.\\])([A-Za-z_@][\w.@-]*(?:\\.[\w.@-]*)*)\s*:\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|[^\s()]+)/g;

/** Edit distance, for "did you mean". */
function distance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = here;
    }
  }
  return row[b.length];
}

/** The field most like `name`: one it ends (`screen_name` → `user.screen_name`) or a near spelling. */
function nearest(name, paths) {
  const lower = name.toLowerCase();
  const suffix = paths.find((p) => p.toLowerCase().endsWith(`.${lower}`));
  if (suffix) return suffix;
  let best = null;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const path of paths) {
    const d = distance(lower, path.toLowerCase());
    if (d < bestDistance) { best = path; bestDistance = d; }
  }
  return best;
}

/** Whether `text` is a calendar date that exists (`2024-02-30` does not). */
function realDate(text) {
  const match = text.match(/^(\d{4})-(\d{2})(?:-(\d{2}))?(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/);
  if (!match) return null; // not written as a date: not judged here
  const [, year, month, day = "01", hour = "00", minute = "00", second = "00"] = match;
  const date = new Date(Date.UTC(+year, +month - 1, +day, +hour, +minute, +second));
  return date.getUTCFullYear() === +year && date.getUTCMonth() === +month - 1 && date.getUTCDate() === +day
    && +hour < 24 && +minute < 60 && +second < 60;
}

/**
 * Hints for `text`: `fields` is a Map path → {types: Set} of the enabled
 * datasources' fields. Returns sentences, each once.
 */
export function queryHints(text, fields) {
  if (!fields.size) return [];
  const paths = [...fields.keys()];
  const hints = new Set();
  for (const match of text.matchAll(TERM)) {
    if (!match[1]) continue; // a quoted phrase
    const field = match[1].replace(/\\(.)/g, "$1");
    let value = match[2];
    if (field.startsWith("_") || field.includes("*")) continue; // _exists_, _id, field patterns
    const known = fields.get(field);
    if (!known) {
      const like = nearest(field, paths);
      hints.add(`No enabled datasource has a field \`${field}\`${like ? ` — did you mean \`${like}\`?` : "."}`);
      continue;
    }
    value = value.replace(/^[<>]=?/, "");
    if (/^["[{]/.test(value) || /[*?]/.test(value) || value.startsWith("/")) continue; // phrases, ranges, patterns
    const types = [...known.types];
    if (types.every((t) => NUMBER_TYPES.has(t)) && !Number.isFinite(Number(value))) {
      hints.add(`\`${field}\` holds numbers: \`${value}\` is not one, so nothing can match it.`);
    } else if (types.every((t) => t === "date") && !/^now/.test(value) && realDate(value) === false) {
      hints.add(`\`${value}\` is not a date that exists, so no \`${field}\` can match it.`);
    }
  }
  return [...hints];
}
