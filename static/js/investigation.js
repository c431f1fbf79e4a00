// An investigation: the whole workspace as one JSON file, to keep or to hand
// to a colleague — what this browser keeps between visits (datasources,
// fields and icons, queries with their colors and live state, expansions
// with what they found, deleted nodes, names, notes and merges of nodes),
// the layout (node positions, pins, the camera) and the evidence: every
// record each query had loaded, so the file reopens as the same graph
// whatever the server holds by then. Loading one replaces the workspace and
// reloads the page. Version 1 files (no records) are read too: their
// queries are asked of the server again. No DOM here.

export const FORMAT = "tributary.investigation";
export const VERSION = 2;

/** The file's content for `workspace` (the store's `saved`), `layout` and
 * `evidence` (see `evidenceOf`). */
export function investigation(workspace, layout, evidence = null) {
  return { format: FORMAT, version: VERSION, savedAt: new Date().toISOString(), workspace, layout, evidence };
}

/**
 * The records of each query (not of expansions, whose connections the
 * workspace keeps): `{links, queries: {[query id]: {sources: {ds: {total}},
 * records: [[ds, id, fields]]}}}`, with the server's links between fields,
 * by which the records' values are joined into nodes.
 */
export function evidenceOf(queries, links = []) {
  const out = {};
  for (const query of queries) {
    if (query.kind === "expansion" || !query.records.size) continue;
    const sources = {};
    for (const [ds, source] of query.sources) if (source.total !== null) sources[ds] = { total: source.total };
    out[query.id] = { sources, records: [...query.records.values()].map((r) => [r.ds, r.id, r.fields]) };
  }
  return { links, queries: out };
}

/**
 * Puts the saved records back into the page's queries (as the searches
 * hold them); returns how many records and queries were restored.
 */
export function restoreEvidence(queries, evidence) {
  let records = 0;
  let restored = 0;
  for (const query of queries) {
    const saved = evidence?.queries?.[query.id];
    if (!saved || query.kind === "expansion" || !Array.isArray(saved.records)) continue;
    restored += 1;
    const loaded = new Map();
    for (const entry of saved.records) {
      if (!Array.isArray(entry)) continue;
      const [ds, id, fields] = entry;
      if (typeof ds !== "string" || id === undefined || !fields || typeof fields !== "object") continue;
      query.records.set(`${ds}\u0000${id}`, { ds, id, fields });
      loaded.set(ds, (loaded.get(ds) ?? 0) + 1);
      records += 1;
    }
    for (const [ds, count] of loaded) {
      const total = Number(saved.sources?.[ds]?.total);
      query.sources.set(ds, {
        total: Number.isFinite(total) ? Math.max(total, count) : count, loaded: count,
        loading: false, error: null, took: null, fromFile: true,
      });
    }
  }
  return { records, queries: restored };
}

/** The workspace and layout in a file's text; an Error says what is wrong. */
export function readInvestigation(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error("the file is not JSON");
  }
  if (data?.format !== FORMAT) throw new Error("the file is not a tributary investigation");
  if (data.version !== 1 && data.version !== VERSION) throw new Error(`it is version ${data.version}; this page reads versions 1 and ${VERSION}`);
  const workspace = data.workspace;
  const complete = workspace && typeof workspace === "object" && Array.isArray(workspace.queries)
    && Array.isArray(workspace.enabled) && workspace.nodeFields && typeof workspace.nodeFields === "object";
  if (!complete) throw new Error("the workspace in the file is incomplete");
  const layout = data.layout && typeof data.layout === "object" ? data.layout : null;
  const evidence = data.evidence && typeof data.evidence === "object" ? data.evidence : null;
  return { workspace, layout, evidence };
}

/** A name for the file: `tributary-investigation-2026-11-24.json`. */
export function fileName(now = new Date()) {
  return `tributary-investigation-${now.toISOString().slice(0, 10)}.json`;
}
