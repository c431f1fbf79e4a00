// The conformance kit's query vectors (plugins/conformance/vectors):
// `evaluate` gives each parsed query the total tributary's embedded
// datasource gives, or refuses it in words — never another total.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { analyze, evaluate, Unsupported } from "../src/index.js";
import { QueryError } from "../src/query.js";

const vectors = fileURLToPath(new URL("../../../conformance/vectors/", import.meta.url));

test("the kit's query vectors give tributary's totals", () => {
  const records = readFileSync(`${vectors}records.ndjson`, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const queries = JSON.parse(readFileSync(`${vectors}queries.json`, "utf8"));
  const wrong: string[] = [];
  for (const vector of queries) {
    let total: number | null;
    try {
      const match = evaluate(vector.parsed);
      total = records.filter((r: Record<string, unknown>) => match(r)).length;
    } catch (error) {
      assert.ok(!(error instanceof Unsupported), `${vector.query}: ${(error as Error).message}`);
      assert.ok(error instanceof QueryError, String(error));
      total = null;
    }
    if (total !== vector.total) wrong.push(`\`${vector.query}\`: ${total}, tributary ${vector.total}`);
  }
  assert.deepEqual(wrong, []);
  assert.ok(queries.length >= 80);
});

test("words as the standard analyzer makes them", () => {
  assert.deepEqual(analyze("Mail Vera.Meijer@tyrell.example thread-08-0 1,000 ΟΔΥΣΣΕΑΣ İstanbul"),
    ["mail", "vera.meijer", "tyrell.example", "thread", "08", "0", "1,000", "οδυσσεασ", "istanbul"]);
});

test("constructs it does not evaluate are refused by name", () => {
  const regex = { version: 1, query: { type: "regex", field: "name", pattern: "a.*" } };
  assert.throws(() => evaluate(regex), /regular expressions/);
  const fuzzy = { version: 1, query: { type: "fuzzy", field: null, text: "ada", edits: 1 } };
  assert.throws(() => evaluate(fuzzy), /fuzzy terms/);
  assert.throws(() => evaluate({ version: 1, error: "cannot parse query \"(a\"" }), /cannot parse/);
});
