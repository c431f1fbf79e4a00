// From records to a graph: every distinct value of a chosen field is a node,
// values that occur in the same record are linked. No DOM here.

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
 * The server's links between fields of different datasources
 * (`state.links` of INITIAL_STATE_RECEIVE), indexed: a value of any field of
 * a link is one node, keyed by the link's name and the value as the link
 * compares it (lowercased, then rewritten by its `replace` expressions), so
 * `anna@x` as an e-mail's sender and as a tweet's author is one node, and
 * with a rewrite that strips the domain, so is the screen name `anna`.
 */
export function linkIndex(links = []) {
  const byField = new Map(); // "ds\0field" → link
  const byName = new Map();  // link name → link
  const rewrites = new Map(); // link → [[RegExp, replacement]]
  for (const link of links) {
    byName.set(link.name, link);
    for (const { datasource, field } of link.fields ?? []) byField.set(`${datasource}\u0000${field}`, link);
    const compiled = [];
    for (const { regex, with: replacement = "" } of link.replace ?? []) {
      // The server's expressions are Rust's; the usual ones read alike here.
      // One that does not is left out: its values stay apart, nothing breaks.
      try { compiled.push([new RegExp(regex, "gu"), replacement]); } catch { /* left out */ }
    }
    rewrites.set(link, compiled);
  }
  return { byField, byName, rewrites, signature: JSON.stringify(links) };
}

const NO_LINKS = linkIndex();

/** `value` as `link` compares it. */
export function linkValue(link, value, links = NO_LINKS) {
  let out = link.lowercase ? value.toLowerCase() : value;
  for (const [regex, replacement] of links.rewrites?.get(link) ?? []) out = out.replace(regex, replacement);
  return out;
}

/** The node key of `value` of `field` in a record of datasource `ds`. */
export function keyFor(ds, field, value, links = NO_LINKS) {
  const link = links.byField.get(`${ds}\u0000${field}`);
  if (!link) return nodeKey(field, value);
  return nodeKey(link.name, linkValue(link, value, links));
}

/**
 * The values loaded records hold that are node `key` (a link's node may
 * be several: `Anna@X` and `anna@y` when the link lowercases and strips
 * the domain), each once; a plain node's value alone.
 */
export function formsOf(queries, key, links = NO_LINKS) {
  const { field, value } = splitKey(key);
  const link = links.byName.get(field);
  if (!link) return [value];
  const forms = new Set();
  for (const query of queries) {
    if (query.kind === "expansion") continue;
    for (const record of query.records.values()) {
      for (const member of link.fields ?? []) {
        if (member.datasource !== record.ds) continue;
        for (const raw of valuesOf(record, member.field)) {
          if (linkValue(link, raw, links) === value) forms.add(raw);
        }
      }
    }
  }
  if (!forms.size) forms.add(value);
  return [...forms];
}

/** The node keys of a record for the chosen fields, each once. */
export function keysOf(record, fields, links = NO_LINKS) {
  const keys = [];
  for (const field of fields) {
    for (const value of valuesOf(record, field)) {
      const key = keyFor(record.ds, field, value, links);
      if (!keys.includes(key)) keys.push(key);
    }
  }
  return keys;
}

function edgeKey(a, b) {
  return a < b ? `${a}${SEP}${SEP}${b}` : `${b}${SEP}${SEP}${a}`;
}

/**
 * The graph of the queries' records, kept up to date record by record:
 * adding or removing a record changes the counts of its nodes and links
 * instead of rebuilding the graph. Every distinct value of a chosen field is
 * a node; values that occur in the same record are linked.
 */
export class GraphModel {
  constructor() {
    this.fields = [];
    this.links = NO_LINKS;
    this.nodes = new Map();   // key → {field, label, count, byQuery: Map query id → count}
    this.edges = new Map();   // key → {source, target, count}
    this.edgeLabels = new Map(); // edge key → the link an expansion went through
    this.entries = new Map(); // query id → Map record key → {keys, linkOnly}
    this.version = 0;         // changes with every change
  }

  /** Sets the node fields and the links; a change rebuilds from `queries` ([{id, records}]). */
  setFields(fields, queries, links = NO_LINKS) {
    const same = fields.length === this.fields.length && fields.every((f, i) => f === this.fields[i]);
    if (same && links.signature === this.links.signature) return;
    this.fields = [...fields];
    this.links = links;
    this.nodes.clear();
    this.edges.clear();
    this.entries.clear();
    for (const query of queries) for (const [key, record] of query.records) this.add(query, key, record);
    this.version += 1;
  }

  add(query, recordKey, record) {
    let entries = this.entries.get(query.id);
    if (!entries) this.entries.set(query.id, (entries = new Map()));
    if (entries.has(recordKey)) return;
    // An expansion's connection names its two nodes itself.
    const keys = record.nodeKeys ?? keysOf(record, this.fields, this.links);
    // A link found between values already drawn adds the link alone: its
    // nodes stay the queries' that found them.
    const linkOnly = Boolean(record.linkOnly);
    entries.set(recordKey, { keys, linkOnly });
    if (record.via && keys.length === 2) this.edgeLabels.set(edgeKey(keys[0], keys[1]), record.via);
    this.count(query.id, keys, 1, linkOnly);
  }

  remove(query, recordKey) {
    const entries = this.entries.get(query.id);
    const entry = entries?.get(recordKey);
    if (!entry) return;
    entries.delete(recordKey);
    this.count(query.id, entry.keys, -1, entry.linkOnly);
  }

  removeQuery(query) {
    const entries = this.entries.get(query.id);
    if (!entries) return;
    for (const { keys, linkOnly } of entries.values()) this.count(query.id, keys, -1, linkOnly);
    this.entries.delete(query.id);
  }

  count(queryId, keys, delta, linkOnly = false) {
    this.version += 1;
    for (const key of linkOnly ? [] : keys) {
      let node = this.nodes.get(key);
      if (!node) {
        const { field, value } = splitKey(key);
        node = { field, label: value, count: 0, byQuery: new Map() };
        this.nodes.set(key, node);
      }
      node.count += delta;
      const inQuery = (node.byQuery.get(queryId) ?? 0) + delta;
      if (inQuery > 0) node.byQuery.set(queryId, inQuery);
      else node.byQuery.delete(queryId);
      if (node.count <= 0) this.nodes.delete(key);
    }
    for (let i = 0; i < keys.length; i++) {
      for (let j = i + 1; j < keys.length; j++) {
        const key = edgeKey(keys[i], keys[j]);
        let edge = this.edges.get(key);
        if (!edge) {
          const [source, target] = keys[i] < keys[j] ? [keys[i], keys[j]] : [keys[j], keys[i]];
          edge = { source, target, count: 0 };
          this.edges.set(key, edge);
        }
        edge.count += delta;
        if (edge.count <= 0) this.edges.delete(key);
      }
    }
  }

  /**
   * What the graph view draws: the nodes not deleted, each with the colors
   * of the queries that found it (in the queries' order) and how many of
   * each query's records hold it (`shares`, the pie's slices), and the links
   * between them. queries: [{id, color, cap}]: each query shows at most
   * `cap` of its nodes (those most of its records hold; `Infinity`: all);
   * deleted: Set of node keys; minLinks: nodes with fewer links are left out.
   * `hidden`: per query id, how many of its nodes the cap left out.
   */
  view(queries, deleted, { minLinks = 0 } = {}) {
    // Each query's nodes, most held first, up to its cap.
    const kept = new Set();
    const hidden = new Map();
    for (const query of queries) {
      const cap = query.cap ?? Infinity;
      const mine = [];
      for (const [key, node] of this.nodes) {
        if (!deleted.has(key) && node.byQuery.has(query.id)) mine.push([key, node.byQuery.get(query.id)]);
      }
      if (mine.length > cap) mine.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
      for (const [key] of mine.slice(0, cap)) kept.add(key);
      hidden.set(query.id, Math.max(0, mine.length - cap));
    }
    const edges = new Map();
    const degree = new Map();
    for (const [key, edge] of this.edges) {
      if (kept.has(edge.source) && kept.has(edge.target)) {
        const label = this.edgeLabels.get(key);
        edges.set(key, label ? { ...edge, label } : edge);
        degree.set(edge.source, (degree.get(edge.source) ?? 0) + 1);
        degree.set(edge.target, (degree.get(edge.target) ?? 0) + 1);
      }
    }
    const nodes = new Map();
    for (const key of kept) {
      if ((degree.get(key) ?? 0) < minLinks) continue;
      const node = this.nodes.get(key);
      const colors = [];
      const shares = [];
      const found = []; // ids of the queries that found it, for selection by query
      for (const query of queries) {
        const held = node.byQuery.get(query.id);
        if (!held) continue;
        found.push(query.id);
        const at = colors.indexOf(query.color);
        if (at >= 0) shares[at] += held;
        else { colors.push(query.color); shares.push(held); }
      }
      nodes.set(key, { field: node.field, label: node.label, colors, shares, queries: found, count: node.count });
    }
    if (minLinks > 0) {
      for (const [key, edge] of edges) if (!nodes.has(edge.source) || !nodes.has(edge.target)) edges.delete(key);
    }
    return { nodes, edges, hidden };
  }
}

/**
 * Links worth suggesting: pairs of chosen fields of different datasources
 * whose values (lowercased) overlap in the loaded records — at least
 * `least` shared values and a fifth of the smaller field's — not linked
 * yet (`links`) nor dismissed (`dismissed`: "ds:field|ds:field" strings).
 * [{fields: [{datasource, field}, …], shared, sample}], most shared first.
 */
export function suggestLinks(queries, fields, links = NO_LINKS, dismissed = [], least = 3) {
  const values = new Map(); // "ds\0field" → Set of lowercased values
  for (const query of queries) {
    if (query.kind === "expansion") continue;
    for (const record of query.records.values()) {
      for (const field of fields) {
        for (const value of valuesOf(record, field)) {
          const key = `${record.ds}\u0000${field}`;
          if (!values.has(key)) values.set(key, new Set());
          values.get(key).add(value.toLowerCase());
        }
      }
    }
  }
  const linkOf = (key) => links.byField.get(key)?.name;
  const keys = [...values.keys()].sort();
  const found = [];
  for (let i = 0; i < keys.length; i++) {
    for (let j = i + 1; j < keys.length; j++) {
      const [a, b] = [keys[i], keys[j]];
      const [dsA, fieldA] = a.split("\u0000");
      const [dsB, fieldB] = b.split("\u0000");
      if (dsA === dsB) continue;
      if (linkOf(a) && linkOf(a) === linkOf(b)) continue;
      if (dismissed.includes(`${dsA}:${fieldA}|${dsB}:${fieldB}`)) continue;
      const [small, large] = values.get(a).size <= values.get(b).size ? [values.get(a), values.get(b)] : [values.get(b), values.get(a)];
      const shared = [...small].filter((v) => large.has(v));
      if (shared.length < least || shared.length < small.size / 5) continue;
      found.push({
        fields: [{ datasource: dsA, field: fieldA }, { datasource: dsB, field: fieldB }],
        shared: shared.length,
        sample: shared.slice(0, 3),
      });
    }
  }
  return found.sort((x, y) => y.shared - x.shared);
}

/** Where `key` is shown: the node it was merged into (following merges of
 * merges), or itself. */
export function mergedInto(key, merges = {}) {
  let at = key;
  const seen = new Set();
  while (merges[at] && !seen.has(at)) {
    seen.add(at);
    at = merges[at];
  }
  return at;
}

/** `keys` and every node key merged into one of them. */
export function withMerged(keys, merges = {}) {
  const wanted = new Set(keys);
  const all = new Set(keys);
  for (const key of Object.keys(merges)) if (wanted.has(mergedInto(key, merges))) all.add(key);
  return [...all];
}

/**
 * The drawn graph (`GraphModel.view`) with the user's merges and names:
 * nodes merged into another are shown as that one (their counts and query
 * shares added, their links moved over, "(+n)" on the label), and a node
 * the user renamed carries its name. `names`: key → {label}.
 */
export function withMerges(drawn, merges = {}, names = {}) {
  const nodes = new Map();
  for (const [key, node] of drawn.nodes) {
    const into = mergedInto(key, merges);
    const shown = nodes.get(into);
    if (!shown) {
      nodes.set(into, {
        ...node, colors: [...node.colors], shares: [...(node.shares ?? [])], queries: [...(node.queries ?? [])], merged: into === key ? 0 : 1,
      });
      continue;
    }
    shown.count += node.count;
    for (const id of node.queries ?? []) if (!shown.queries.includes(id)) shown.queries.push(id);
    shown.merged += into === key ? 0 : 1;
    if (into === key) Object.assign(shown, { field: node.field, label: node.label });
    node.colors.forEach((color, i) => {
      const at = shown.colors.indexOf(color);
      if (at >= 0) shown.shares[at] += node.shares?.[i] ?? 1;
      else { shown.colors.push(color); shown.shares.push(node.shares?.[i] ?? 1); }
    });
  }
  for (const [key, node] of nodes) {
    if (drawn.nodes.has(key) && node.merged === 0) node.label = drawn.nodes.get(key).label;
    else if (!drawn.nodes.has(key)) Object.assign(node, { field: splitKey(key).field, label: splitKey(key).value });
    const name = names[key]?.label;
    if (name) node.label = name;
    if (node.merged) node.label = `${node.label} (+${node.merged})`;
  }
  const edges = new Map();
  for (const edge of drawn.edges.values()) {
    const [a, b] = [mergedInto(edge.source, merges), mergedInto(edge.target, merges)];
    if (a === b) continue;
    const key = edgeKey(a, b);
    const shown = edges.get(key);
    if (shown) shown.count += edge.count;
    else edges.set(key, { source: a < b ? a : b, target: a < b ? b : a, count: edge.count, label: edge.label });
  }
  return { ...drawn, nodes, edges };
}

/** How a selection by query combines the chosen queries. */
export const QUERY_SETS = {
  all: "in all of",   // found by every chosen query
  any: "in any of",   // found by at least one
  only: "only in",    // found by chosen queries and by no other
};

/**
 * The drawn nodes (`[[key, {queries: [id]}]]`) that `op` (a QUERY_SETS
 * key) picks for the chosen query ids.
 */
export function nodesOfQueries(nodes, chosen, op = "all") {
  const wanted = new Set(chosen);
  if (!wanted.size) return [];
  const picked = [];
  for (const [key, { queries = [] }] of nodes) {
    const mine = queries.filter((id) => wanted.has(id)).length;
    const ok = op === "any" ? mine > 0
      : op === "only" ? mine > 0 && mine === queries.length
        : mine === wanted.size;
    if (ok) picked.push(key);
  }
  return picked;
}

/**
 * The slices of a pie, each at least `least` of the whole so that a query
 * holding few of a node's records still shows (shares are counts).
 */
export function pieSlices(shares, least = 0.15) {
  const total = shares.reduce((sum, s) => sum + s, 0);
  if (!total || shares.length < 2) return shares.map(() => 1);
  const raised = shares.map((s) => Math.max(s / total, least));
  const sum = raised.reduce((a, b) => a + b, 0);
  return raised.map((s) => s / sum);
}

/** Every record of the queries, each once with the queries that found it
 * (the table's rows when there is no graph to select from). */
export function allRecords(queries) {
  const found = new Map();
  for (const query of queries) {
    if (query.kind === "expansion") continue;
    for (const [recordKey, record] of query.records) {
      const entry = found.get(recordKey);
      if (entry) entry.queries.push(query);
      else found.set(recordKey, { record, queries: [query] });
    }
  }
  return [...found.values()];
}

/**
 * The records holding any of the given node keys, each once, with the
 * queries that found it: [{record, queries: [query]}].
 */
export function recordsOfNodes(queries, keys, links = NO_LINKS) {
  const wanted = new Map(); // field → Set of values
  const linked = new Set(); // keys of link nodes
  for (const key of keys) {
    const { field, value } = splitKey(key);
    if (links.byName.has(field)) { linked.add(key); continue; }
    if (!wanted.has(field)) wanted.set(field, new Set());
    wanted.get(field).add(value);
  }
  const found = new Map();
  for (const query of queries) {
    // An expansion's records are its connections, not records of a datasource.
    if (query.kind === "expansion") continue;
    for (const [recordKey, record] of query.records) {
      let hit = false;
      for (const [field, values] of wanted) {
        if (valuesOf(record, field).some((value) => values.has(value))) { hit = true; break; }
      }
      if (!hit && linked.size) {
        for (const link of links.byName.values()) {
          for (const { datasource, field } of link.fields ?? []) {
            if (datasource !== record.ds) continue;
            if (valuesOf(record, field).some((value) => linked.has(keyFor(record.ds, field, value, links)))) hit = true;
          }
        }
      }
      if (!hit) continue;
      const entry = found.get(recordKey);
      if (entry) entry.queries.push(query);
      else found.set(recordKey, { record, queries: [query] });
    }
  }
  return [...found.values()];
}
