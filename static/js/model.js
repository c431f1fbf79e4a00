// From records to a graph: every distinct value of a chosen field is a node,
// values that occur in the same record are linked. Pure functions, no DOM.

const SEP = "\u241f"; // between field and value in a node key; never typed by anyone

export function nodeKey(field, value) {
  return `${field}${SEP}${value}`;
}

export function splitKey(key) {
  const at = key.indexOf(SEP);
  return { field: key.slice(0, at), value: key.slice(at + 1) };
}

/** The scalar values of `field` in a record, as strings (arrays give one per element). */
export function valuesOf(record, field) {
  const raw = record.fields?.[field];
  const list = Array.isArray(raw) ? raw : [raw];
  const out = [];
  for (const value of list) {
    if (value === null || value === undefined || value === "" || typeof value === "object") continue;
    out.push(String(value));
  }
  return out;
}

/**
 * The graph of the given queries' records.
 * queries: [{id, color, records: Map}], fields: [path], deleted: Set of node keys.
 * Returns {nodes: Map key → {field, label, colors, count}, edges: Map key → {source, target, count}}.
 */
export function buildModel(queries, fields, deleted) {
  const nodes = new Map();
  const edges = new Map();
  for (const query of queries) {
    for (const record of query.records.values()) {
      const keys = [];
      for (const field of fields) {
        for (const value of valuesOf(record, field)) {
          const key = nodeKey(field, value);
          if (deleted.has(key) || keys.includes(key)) continue;
          keys.push(key);
          let node = nodes.get(key);
          if (!node) {
            node = { field, label: value, colors: [], count: 0 };
            nodes.set(key, node);
          }
          node.count += 1;
          if (!node.colors.includes(query.color)) node.colors.push(query.color);
        }
      }
      for (let i = 0; i < keys.length; i++) {
        for (let j = i + 1; j < keys.length; j++) {
          const [source, target] = keys[i] < keys[j] ? [keys[i], keys[j]] : [keys[j], keys[i]];
          const key = `${source}${SEP}${SEP}${target}`;
          const edge = edges.get(key);
          if (edge) edge.count += 1;
          else edges.set(key, { source, target, count: 1 });
        }
      }
    }
  }
  return { nodes, edges };
}

/**
 * The records holding any of the given node keys, each once, with the
 * queries that found it: [{record, queries: [query]}].
 */
export function recordsOfNodes(queries, keys) {
  const wanted = new Map(); // field → Set of values
  for (const key of keys) {
    const { field, value } = splitKey(key);
    if (!wanted.has(field)) wanted.set(field, new Set());
    wanted.get(field).add(value);
  }
  const found = new Map();
  for (const query of queries) {
    for (const [recordKey, record] of query.records) {
      let hit = false;
      for (const [field, values] of wanted) {
        if (valuesOf(record, field).some((value) => values.has(value))) { hit = true; break; }
      }
      if (!hit) continue;
      const entry = found.get(recordKey);
      if (entry) entry.queries.push(query);
      else found.set(recordKey, { record, queries: [query] });
    }
  }
  return [...found.values()];
}
