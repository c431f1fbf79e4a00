import { keyFor, linkIndex, splitKey } from "./model.js";

// What the page asks the server: fields of the enabled datasources, each
// query's results, page by page, and expansions from selected nodes. Answers go into the store and the graph
// model as they stream in; after a reconnection whatever is missing is
// asked again.

export const PAGE = 200;        // results per datasource per "load more"
const MAX_REPLAY = 2000;        // a restored query re-fetches at most this many per datasource
export const NODE_CAP = 500;    // nodes a query shows until "show all"
export const ASK_ABOVE = 500;   // loading more new records than this asks first
export const EXPAND_SIZE = 10;  // new values per field an expansion asks each datasource for
const EXCLUDE_AT_MOST = 400;    // values already drawn, sent as not new (a frame is at most 64 KiB)
const FRIENDLY = {
  bad_query: "the query could not be understood",
  datasource_failed: "the datasource failed or could not be reached",
  datasource_unauthorized: "the server's credentials for the datasource were refused",
  timeout: "the datasource took too long to answer",
  too_many_requests: "too many searches are running at once; try again in a moment",
  live_unsupported: "this datasource cannot follow new records",
  unknown_datasource: "the server does not offer this datasource (any more)",
};

export function explain(error) {
  const why = FRIENDLY[error.code];
  return why ? `${why}: ${error.message}` : error.message;
}

/** What is wrong with a query the server refused (`bad_query`), in words:
 * `missing closing parenthesis at character 8`, without the datasource's
 * name or the query repeated. */
export function whatIsWrong(message = "") {
  const text = message.replace(/^datasource `[^`]*`: /, "");
  const parse = text.match(/^cannot parse query ".*": (.*)$/s);
  return parse ? parse[1] : text;
}

/** Notes a live datasource's position, when the message carries one. */
function keepPosition(query, ds, carrier) {
  if (Number.isInteger(carrier?.offset) && typeof carrier?.epoch === "string") {
    query.livePositions.set(ds, { offset: carrier.offset, epoch: carrier.epoch });
  }
}

/** A query, or an expansion (`kind: "expansion"`) with what it found. */
function newQuery(saved) {
  const query = newSearch(saved);
  if (saved.kind !== "expansion") return query;
  query.kind = "expansion";
  query.keys = saved.keys ?? [];
  // Saved expansions keep what they found: each connection one record.
  (saved.connections ?? []).forEach(([ds, from, to, count, via = null], i) => {
    const record = { ds, id: `connection-${i + 1}`, fields: {}, count, nodeKeys: [from, to], via };
    query.records.set(`${ds}\u0000${record.id}`, record);
  });
  for (const [ds, found] of Object.entries(saved.found ?? {})) {
    Object.assign(sourceOf(query, ds), { total: found.total, loaded: found.total, sampled: found.sampled ?? null, method: found.method });
  }
  return query;
}

function newSearch({ id, text, color, pages = 1, live = false, showAll = false }) {
  // sources: datasource id → {total, loaded, loading, error, took}
  // live: the user wants new records as they arrive; liveRequest follows
  // them, liveModes (datasource → {mode, interval_ms}) says how, appended
  // counts what arrived, liveErrors (datasource → message) what cannot follow.
  return {
    id, text, color, pages, sources: new Map(), records: new Map(), requests: new Set(),
    showAll, cap: showAll ? Infinity : NODE_CAP,
    live, liveRequest: null, liveModes: null, appended: 0, liveErrors: new Map(),
    // Where each datasource's live records stand (offset, epoch): a live
    // request asked again after a reconnect resumes from there.
    livePositions: new Map(),
  };
}

function sourceOf(query, ds) {
  let source = query.sources.get(ds);
  if (!source) {
    source = { total: null, loaded: 0, loading: false, error: null, took: null };
    query.sources.set(ds, source);
  }
  return source;
}

/** An expansion as saved: what it was asked from and what it found. */
function savedExpansion(query) {
  const connections = [...query.records.values()].map((r) => [r.ds, r.nodeKeys[0], r.nodeKeys[1], r.count, r.via]);
  const found = {};
  for (const [ds, source] of query.sources) {
    if (source.total !== null) found[ds] = { total: source.total, sampled: source.sampled, method: source.method };
  }
  return { id: query.id, text: query.text, color: query.color, kind: "expansion", keys: query.keys, connections, found };
}

export class Searches {
  constructor(store, client, model) {
    this.store = store;
    this.client = client;
    this.model = model;
    store.session.queries = store.saved.queries.map((q) => newQuery(q));
    client.onReady((datasources) => this.onReady(datasources));
    client.addEventListener("datasources", (event) => this.onDatasourcesChanged(event.detail));
  }

  get queries() {
    return this.store.session.queries;
  }

  saveQueries() {
    // A query the server could not understand is not asked again on reload.
    this.store.saved.queries = this.queries
      .filter((q) => !q.invalid)
      .map((q) => (q.kind === "expansion" ? savedExpansion(q) : {
        id: q.id, text: q.text, color: q.color, pages: q.pages, live: q.live, showAll: q.showAll,
      }));
    this.store.changed("saved", "queries");
  }

  onReady(datasources) {
    this.store.session.datasources = datasources;
    this.store.session.serverLinks = this.client.links ?? [];
    this.store.session.links = linkIndex([...this.store.session.serverLinks, ...(this.store.saved.links ?? [])]);
    // The requests of the previous connection died with it: pick up where they stopped.
    for (const query of this.queries) {
      query.requests.clear();
      for (const source of query.sources.values()) source.loading = false;
    }
    this.requestFields(this.store.enabledIds());
    for (const query of this.queries) {
      this.fetchMissing(query);
      if (query.live) this.startLive(query, { resume: true });
    }
    this.store.changed("datasources", "queries");
  }

  /** The server's datasources changed while connected: enabled ones that
   * are new get their fields and catch up with every query. */
  onDatasourcesChanged(datasources) {
    const before = new Set(this.store.session.datasources.map((ds) => ds.id));
    this.store.session.datasources = datasources;
    const added = this.store.enabledIds().filter((id) => !before.has(id));
    if (added.length) {
      this.requestFields(added);
      for (const query of this.queries) this.fetchMissing(query);
    }
    this.store.changed("datasources", "queries");
  }

  requestFields(ids) {
    for (const ds of ids) {
      const request = this.client.request({ type: "FIELDS_REQUEST", datasources: [ds] });
      if (request) this.readFields(ds, request);
    }
  }

  async readFields(ds, request) {
    const { fields, fieldErrors } = this.store.session;
    for await (const message of request) {
      if (message.type === "FIELDS_RECEIVE" && message.fields) {
        fields.set(message.fields.server, message.fields.fields ?? []);
        fieldErrors.delete(message.fields.server);
      } else if (message.type === "ERROR") {
        fieldErrors.set(message.error?.datasource ?? ds, explain(message.error ?? {}));
      }
      this.store.changed("fields");
    }
  }

  /** Asks each enabled datasource for whatever `query` still lacks of its `pages`. */
  fetchMissing(query) {
    if (query.kind === "expansion") return;
    const groups = new Map(); // "from,size" → [datasource]
    for (const ds of this.store.enabledIds()) {
      const source = sourceOf(query, ds);
      if (source.loading || source.error) continue;
      const want = Math.min(query.pages * PAGE, source.total ?? Infinity, Math.max(MAX_REPLAY, source.loaded + PAGE));
      if (source.loaded >= want) continue;
      const key = `${source.loaded},${want - source.loaded}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(ds);
    }
    for (const [key, datasources] of groups) {
      const [from, size] = key.split(",").map(Number);
      const request = this.client.request({
        type: "ITEMS_REQUEST", datasources, query: query.text, from, size, color: query.color,
      });
      if (!request) continue; // not connected: fetched again once the connection is back
      request.datasources = datasources;
      query.requests.add(request);
      for (const ds of datasources) sourceOf(query, ds).loading = true;
      this.readItems(query, request);
    }
    this.store.changed("queries");
  }

  async readItems(query, request) {
    for await (const message of request) {
      if (message.type === "ITEMS_RECEIVE" && message.items) this.onItems(query, message.items);
      else if (message.type === "ERROR") this.onError(query, request, message.error ?? {});
      else if (message.type === "REQUEST_COMPLETED") this.onCompleted(query, message.datasources ?? {});
      else if (message.type === "DISCONNECTED") {
        for (const ds of request.datasources) sourceOf(query, ds).loading = false;
      }
    }
    query.requests.delete(request);
    this.store.changed("queries");
  }

  /** Makes a query live (new matching records grow the graph) or not. */
  setLive(query, live) {
    query.live = live;
    this.saveQueries();
    if (live) this.startLive(query);
    else this.stopLive(query);
    this.store.changed("queries");
  }

  /** Follows the query's new records on the enabled datasources: a live
   * ITEMS_REQUEST of an empty page. With `resume` (after a reconnect) each
   * datasource takes up from the last position received, so the records
   * published meanwhile arrive too. */
  startLive(query, { resume = false } = {}) {
    this.stopLive(query);
    const datasources = this.store.enabledIds();
    if (!datasources.length) return;
    const message = {
      type: "ITEMS_REQUEST", datasources, query: query.text, from: 0, size: 0, color: query.color, live: true,
    };
    const positions = datasources.filter((ds) => query.livePositions.has(ds));
    if (resume && positions.length) {
      message.resume = Object.fromEntries(positions.map((ds) => [ds, query.livePositions.get(ds)]));
    } else {
      query.livePositions.clear();
    }
    const request = this.client.request(message);
    if (!request) return; // not connected: started again once the connection is back
    request.datasources = datasources;
    query.liveRequest = request;
    query.liveErrors = new Map();
    this.readLive(query, request);
  }

  /** Asks one datasource for the records of `query` again, from the first. */
  reload(query, ds) {
    const source = sourceOf(query, ds);
    const size = Math.max(PAGE, source.loaded);
    const request = this.client.request({
      type: "ITEMS_REQUEST", datasources: [ds], query: query.text, from: 0, size, color: query.color,
    });
    if (!request) return;
    request.datasources = [ds];
    source.loaded = 0;
    source.loading = true;
    query.requests.add(request);
    this.readItems(query, request);
  }

  stopLive(query) {
    if (query.liveRequest) this.client.cancel(query.liveRequest);
    query.liveRequest = null;
    query.liveModes = null;
  }

  async readLive(query, request) {
    for await (const message of request) {
      if (message.type === "ITEMS_RECEIVE" && message.items?.append) {
        query.appended += message.items.results?.length ?? 0;
        this.onItems(query, message.items);
        keepPosition(query, message.items.server, message.items);
      } else if (message.type === "LIVE_STARTED") {
        query.liveModes = message.datasources ?? {};
        for (const [ds, mode] of Object.entries(query.liveModes)) {
          keepPosition(query, ds, mode);
          // What was published while away is gone from the server's
          // history: ask for the query's records again.
          if (mode.recovered === false) this.reload(query, ds);
        }
        this.store.changed("queries");
      } else if (message.type === "ERROR") {
        const error = message.error ?? {};
        query.liveErrors.set(error.datasource ?? "", explain(error));
        this.store.changed("queries");
      }
    }
    if (query.liveRequest === request) {
      query.liveRequest = null;
      query.liveModes = null;
      this.store.changed("queries");
    }
  }

  onItems(query, items) {
    const source = sourceOf(query, items.server);
    source.total = items.total;
    const results = items.results ?? [];
    for (const result of results) {
      const key = `${items.server}\u0000${result.id}`;
      const record = { ds: items.server, id: result.id, fields: result.fields, highlight: result.highlight };
      query.records.set(key, record);
      this.model.add(query, key, record);
    }
    source.loaded += results.length;
    this.store.changed("results");
  }

  onError(query, request, error) {
    const ids = error.datasource ? [error.datasource] : request.datasources;
    for (const ds of ids) {
      const source = sourceOf(query, ds);
      source.error = explain(error);
      source.errorCode = error.code;
      // An error about the whole request ends it.
      if (!error.datasource) source.loading = false;
    }
    // Refused by every datasource as written: the query itself is wrong.
    // Said once, in words; it is not kept for the next visit.
    const enabled = this.store.enabledIds().map((ds) => query.sources.get(ds));
    if (error.code === "bad_query" && enabled.length && enabled.every((s) => s?.errorCode === "bad_query")) {
      query.invalid = whatIsWrong(error.message);
      this.saveQueries();
    }
    this.store.changed("queries");
  }

  onCompleted(query, outcomes) {
    for (const [id, outcome] of Object.entries(outcomes)) {
      const source = sourceOf(query, id);
      source.loading = false;
      source.took = outcome.took_ms;
      if (outcome.total !== null && outcome.total !== undefined) source.total = outcome.total;
      if (outcome.error) source.error ??= outcome.error;
    }
    this.store.changed("results");
  }

  add(text, color) {
    const upTo = this.store.enabledIds().length * PAGE;
    if (upTo > ASK_ABOVE && !confirm(`This query may load up to ${upTo.toLocaleString()} records (${PAGE} from each datasource). Run it?`)) return false;
    const query = newQuery({ id: this.store.saved.nextQueryId++, text, color });
    this.queries.push(query);
    this.saveQueries();
    this.fetchMissing(query);
    return true;
  }

  /**
   * Expands from the nodes `keys` through every enabled datasource
   * (EXPAND_REQUEST): the values next to them, in the chosen node fields
   * and, through the server's links, in fields of other datasources. What
   * comes back is an "expansion" entry of the query list, colored `color`:
   * each connection a link between a selected node and a new one. Returns
   * the entry, or null when there is nothing to ask or no connection.
   */
  expand(keys, color) {
    const datasources = this.store.enabledIds();
    const fields = Object.keys(this.store.saved.nodeFields);
    if (!keys.length || !datasources.length || !fields.length) return null;
    const links = this.store.session.links;
    const values = keys.map(splitKey);
    // Values drawn already are not new; a link's node is one value of each of its fields.
    const exclude = [];
    for (const key of this.model.nodes.keys()) {
      if (exclude.length >= EXCLUDE_AT_MOST) break;
      const { field, value } = splitKey(key);
      const link = links.byName.get(field);
      for (const f of link ? link.fields : [{ field }]) exclude.push({ field: f.field, value });
    }
    const message = {
      type: "EXPAND_REQUEST", datasources, values, fields, size: EXPAND_SIZE, exclude: exclude.slice(0, EXCLUDE_AT_MOST),
    };
    // Links the user accepted go with it; the server's own it knows.
    if (this.store.saved.links?.length) message.links = this.store.saved.links;
    const request = this.client.request(message);
    if (!request) return null;
    const labels = values.map((v) => v.value);
    const text = `expand ${labels.slice(0, 3).join(", ")}${labels.length > 3 ? ` and ${labels.length - 3} more` : ""}`;
    const query = newQuery({ id: this.store.saved.nextQueryId++, text, color, pages: 0 });
    query.kind = "expansion";
    query.keys = [...keys];
    request.datasources = datasources;
    query.requests.add(request);
    for (const ds of datasources) sourceOf(query, ds).loading = true;
    this.queries.push(query);
    this.readExpansion(query, request, keys);
    this.store.changed("saved", "queries");
    return query;
  }

  async readExpansion(query, request, keys) {
    const links = this.store.session.links;
    const selected = new Map(keys.map((key) => {
      const { field, value } = splitKey(key);
      return [`${field}\u0000${value}`, key];
    }));
    let connections = 0;
    for await (const message of request) {
      if (message.type === "EXPAND_RECEIVE") {
        const ds = message.server;
        const source = sourceOf(query, ds);
        for (const connection of message.connections ?? []) {
          const { from, to } = connection;
          const fromKey = selected.get(`${from.field}\u0000${from.value}`) ?? keyFor(ds, from.field, from.value, links);
          const record = {
            ds, id: `connection-${++connections}`, fields: {}, count: connection.doc_count,
            nodeKeys: [fromKey, keyFor(ds, to.field, to.value, links)],
            via: connection.via ?? null, // the link that carried the selection here
          };
          const recordKey = `${ds}\u0000${record.id}`;
          query.records.set(recordKey, record);
          this.model.add(query, recordKey, record);
        }
        source.total = message.vertices?.length ?? 0;
        source.loaded = source.total;
        source.method = message.method;
        source.sampled = message.sampled ?? null;
        this.store.changed("results");
      } else if (message.type === "ERROR") {
        this.onError(query, request, message.error ?? {});
      } else if (message.type === "REQUEST_COMPLETED") {
        this.onCompleted(query, message.datasources ?? {});
      } else if (message.type === "DISCONNECTED") {
        for (const ds of request.datasources) sourceOf(query, ds).loading = false;
      }
    }
    query.requests.delete(request);
    // Kept with the other queries: it survives a reload and goes into a saved investigation.
    this.saveQueries();
  }

  /** Accepts a suggested link: its fields' values become one node, and
   * expansions follow it. */
  acceptLink(suggestion) {
    const saved = this.store.saved;
    const name = suggestion.fields.map((f) => f.field).join("/");
    saved.links = [...(saved.links ?? []), { name, lowercase: true, fields: suggestion.fields }];
    this.store.session.links = linkIndex([...(this.store.session.serverLinks ?? []), ...saved.links]);
    this.store.changed("saved", "results", "links");
  }

  /** Says no to a suggested link; it is not offered again. */
  dismissLink(suggestion) {
    const saved = this.store.saved;
    const [a, b] = suggestion.fields;
    saved.dismissedLinks = [...(saved.dismissedLinks ?? []), `${a.datasource}:${a.field}|${b.datasource}:${b.field}`];
    this.store.changed("saved", "links");
  }

  remove(query) {
    for (const request of query.requests) this.client.cancel(request);
    this.stopLive(query);
    this.model.removeQuery(query);
    this.store.session.queries = this.queries.filter((q) => q !== query);
    this.saveQueries();
    this.store.changed("results");
  }

  recolor(query, color) {
    query.color = color;
    this.saveQueries();
    this.store.changed("results");
  }

  loadMore(query) {
    // Many new records at once make a graph nobody can read: ask first.
    let coming = 0;
    for (const ds of this.store.enabledIds()) {
      const source = query.sources.get(ds);
      if (source && !source.error && source.total !== null) coming += Math.max(0, Math.min(PAGE, source.total - source.loaded));
    }
    if (coming > ASK_ABOVE && !confirm(`Load ${coming.toLocaleString()} more records? A graph this large gets hard to read.`)) return;
    query.pages += 1;
    this.saveQueries();
    this.fetchMissing(query);
  }

  /** Shows every node of a query, past its cap. */
  showAll(query) {
    query.showAll = true;
    query.cap = Infinity;
    this.saveQueries();
    this.store.changed("results");
  }

  retry(query) {
    for (const source of query.sources.values()) source.error = null;
    this.fetchMissing(query);
  }

  setDatasourceEnabled(id, enabled) {
    const saved = this.store.saved;
    saved.enabled = enabled ? [...new Set([...saved.enabled, id])] : saved.enabled.filter((ds) => ds !== id);
    this.store.changed("saved");
    if (enabled) {
      this.requestFields([id]);
      for (const query of this.queries) this.fetchMissing(query);
    } else {
      // A disabled datasource's results leave the graph; enabling it again fetches them anew.
      for (const query of this.queries) {
        for (const request of [...query.requests]) {
          if (request.datasources.includes(id)) {
            this.client.cancel(request);
            query.requests.delete(request);
            for (const ds of request.datasources) sourceOf(query, ds).loading = false;
          }
        }
        query.sources.delete(id);
        for (const [key, record] of query.records) {
          if (record.ds !== id) continue;
          query.records.delete(key);
          this.model.remove(query, key);
        }
      }
      this.store.session.fields.delete(id);
      // Other datasources of a canceled request are asked again on their own.
      for (const query of this.queries) this.fetchMissing(query);
    }
    // Live queries follow the datasources enabled now.
    for (const query of this.queries) if (query.live) this.startLive(query);
    this.store.changed("fields", "results");
  }

  cancelAll() {
    for (const query of this.queries) {
      for (const request of query.requests) this.client.cancel(request);
      this.stopLive(query);
    }
  }
}
