/**
 * An example datasource: the records of an NDJSON file (one JSON object a
 * line, with an `id`), searched with the query tributary parsed for it.
 *
 *   TRIBUTARY_URL=ws://127.0.0.1:8080/ws/services TRIBUTARY_TOKEN=… \
 *     node dist/examples/ndjson-datasource.js records.ndjson --id people
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";

import { DatasourceSpec, Field, Result, serve } from "../src/index.js";

/** Field types as Elasticsearch's dynamic mapping gives them, for FIELDS. */
function inferFields(records: Record<string, unknown>[]): Field[] {
  const types = new Map<string, string>();
  const visit = (value: unknown, path: string) => {
    if (value === null || value === undefined || types.has(path)) return;
    if (Array.isArray(value)) return value.forEach((v) => visit(v, path));
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value as object)) visit(v, path ? `${path}.${k}` : k);
      return;
    }
    types.set(path, typeof value === "boolean" ? "boolean" : typeof value === "number"
      ? (Number.isInteger(value) ? "long" : "float") : "text");
  };
  for (const record of records) for (const [k, v] of Object.entries(record)) if (k !== "id") visit(v, k);
  return Array.from(types, ([path, type]) => ({ path, type }));
}

export function ndjsonDatasource(file: string, id: string, name?: string): DatasourceSpec {
  const records = readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const results: Result[] = records.map(({ id: recordId, ...fields }) => ({ id: String(recordId), fields }));
  return {
    id,
    name,
    fields: inferFields(records),
    search(request) {
      // Types as the dynamic mapping infers them from the values (strings
      // are text with a `.keyword`): pass no declared fields.
      const match = request.matcher([]);
      const hits = results.filter((r) => match(r.fields));
      return { total: hits.length, results: hits.slice(request.from, request.from + request.size) };
    },
    health() {
      return { ok: true, message: `${records.length} records` };
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) {
    console.error("usage: ndjson-datasource.js FILE [--id ID] [--name NAME]");
    process.exit(2);
  }
  const option = (flag: string) => (rest.includes(flag) ? rest[rest.indexOf(flag) + 1] : undefined);
  const id = option("--id") ?? basename(file).replace(/\.[^.]*$/, "");
  serve(ndjsonDatasource(file, id, option("--name"))).done.catch((error) => {
    console.error(`tributary-plugin: ${error.message}`);
    process.exit(1);
  });
}
