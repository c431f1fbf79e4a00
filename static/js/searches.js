import { keyFor, linkIndex, splitKey } from "./model.js";

// What the page asks the server: fields of the enabled datasources, each
// query's results, page by page, and expansions from selected nodes. Answers go into the store and the graph
// model as they stream in; after a reconnection whatever is missing is
// asked again.

export const PAGE = 200;        // results per datasource per "load more"
export const MAX_REPLAY = 2000; // a restored query re-fetches at most this many per datasource
export const NODE_CAP = 500;    // nodes a query shows until "show all"
export const ASK_ABOVE = 500;   // loading more new records than this asks first
export const EXPAND_SIZE = 10;  // new values per field an expansion asks each datasource for, unless set
export const EXPAND_MAX = 1000; // the most the server gives per field
export const LINK_AT_MOST = 1000; // values whose links to each other one request asks for
const EXCLUDE_BYTES = 48 * 1024; // values already drawn, sent as not new: a frame is at most 64 KiB
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
  const text = whatIsWrong.raw(message);
  const parse = text.match(/^cannot parse query ".*": (.*)$/s);
  return parse ? parse[1] : text;
}
/** The message without the datasource it came from. */
whatIsWrong.raw = (message = "") => message.replace(/^datasource `[^`]*`: /, "");

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
  query.between = Boolean(saved.between);
  query.fields = saved.fields ?? null;
  query.options = saved.options ?? { size: EXPAND_SIZE, mode: "count" };
  // Saved expansions keep what they found: each connection one record.
  (saved.connections ?? []).forEach(([ds, from, to, count, via = null]) => {
    addConnection(query, { ds, count, nodeKeys: [from, to], via });
  });
  for (const [ds, found] of Object.entries(saved.found ?? {})) {
    Object.assign(sourceOf(query, ds), {
      total: found.total, loaded: found.total, sampled: found.sampled ?? null, method: found.method, perField: found.perField ?? null,
    });
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

/** A connection an expansion found, as one of its records; returns its key. */
function addConnection(query, { ds, count, nodeKeys, via }) {
  query.connections = (query.connections ?? 0) + 1;
  const record = {
    ds, id: `connection-${query.connections}`, fields: {}, count, nodeKeys, via,
    // Links between values already drawn add no values of their own.
    linkOnly: query.between,
  };
  const key = `${ds}\u0000${record.id}`;
  query.records.set(key, record);
  return [key, record];
}

function sourceOf(query, ds) {
  let source = query.sources.get(ds);
  if (!source) {
    source = { total: null, loaded: 0, loading: false, error: null, took: null };
    query.sources.set(ds, source);
  }
  return source;
}

/**
 * Per field of an expansion: how many new values are drawn (`shown`) of how
 * many there are (`of`; null where the datasource cannot tell), after one
 * more answer (the server's `available` counts what is left beyond the
 * values drawn before), and whether more may be asked for.
 */
function countPerField(before, query, message) {
  const perField = { ...(before ?? {}) };
  for (const field of query.fields ?? []) {
    const now = perField[field] ?? { shown: 0, of: 0 };
    const added = (message.vertices ?? []).filter((v) => v.field === field).length;
    const left = message.available?.[field];
    const shown = now.shown + added;
    perField[field] = left === undefined
      ? { shown, of: null, more: added >= query.options.size }
      : { shown, of: now.shown + left, more: now.shown + left > shown };
  }
  return perField;
}

/** An expansion as saved: what it was asked from and what it found. */
function savedExpansion(query) {
  const connections = [...query.records.values()].map((r) => [r.ds, r.nodeKeys[0], r.nodeKeys[1], r.count, r.via]);
  const found = {};
  for (const [ds, source] of query.sources) {
    if (source.total !== null) found[ds] = { total: source.total, sampled: source.sampled, method: source.method, perField: source.perField };
  }
  return {
    id: query.id, text: query.text, color: query.color, kind: "expansion", keys: query.keys, connections, found,
    between: query.between, fields: query.fields, options: query.options,
  };
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
      if (message.type === "ITEMS_RECEIVE" && message.items) {
        if (request.sweep) for (const r of message.items.results ?? []) request.sweep.seen.add(`${message.items.server}\u0000${r.id}`);
        this.onItems(query, message.items);
      } else if (message.type === "ERROR") this.onError(query, request, message.error ?? {});
      else if (message.type === "REQUEST_COMPLETED") {
        const outcome = message.datasources?.[request.sweep?.ds];
        if (request.sweep && outcome && !outcome.error) this.sweepStale(query, request.sweep);
        this.onCompleted(query, message.datasources ?? {});
      }
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
    // Records of this datasource that its answer no longer holds (the
    // server lost them) leave the query once the answer is complete.
    request.sweep = { ds, seen: new Set() };
    source.loaded = 0;
    source.loading = true;
    query.requests.add(request);
    this.readItems(query, request);
  }

  /** Drops the records of `sweep.ds` the reloaded answer did not hold. */
  sweepStale(query, { ds, seen }) {
    let dropped = 0;
    for (const [key, record] of [...query.records]) {
      if (record.ds !== ds || seen.has(key)) continue;
      query.records.delete(key);
      this.model.remove(query, key);
      dropped += 1;
    }
    if (dropped) this.store.changed("results");
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
    // A datasource that cannot be reached is said once, in the datasource
    // list, not under every query.
    if (error.code === "datasource_failed") {
      for (const ds of ids) this.store.session.unreachable.set(ds, error.message ?? "");
      this.store.changed("datasources");
    }
    // Refused by every datasource as written, or not parsed at all (the
    // same parser serves every datasource, so one datasource down does not
    // hide it): the query itself is wrong. Said once, in words; it is not
    // kept for the next visit.
    const enabled = this.store.enabledIds().map((ds) => query.sources.get(ds));
    const unparsed = error.code === "bad_query" && /^cannot parse query /.test(whatIsWrong.raw(error.message));
    if (error.code === "bad_query" && enabled.length && (unparsed || enabled.every((s) => s?.errorCode === "bad_query"))) {
      query.invalid = whatIsWrong(error.message);
      this.saveQueries();
    }
    this.store.changed("queries");
  }

  onCompleted(query, outcomes) {
    for (const [id, outcome] of Object.entries(outcomes)) {
      // Answered: reachable again.
      if (!outcome.error && this.store.session.unreachable.delete(id)) this.store.changed("datasources");
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
  expand(keys, color, options = {}) {
    const datasources = this.store.enabledIds();
    const fields = Object.keys(this.store.saved.nodeFields);
    if (!keys.length || !datasources.length || !fields.length) return null;
    const labels = keys.map((key) => splitKey(key).value);
    const text = `expand ${labels.slice(0, 3).join(", ")}${labels.length > 3 ? ` and ${labels.length - 3} more` : ""}`;
    const query = newQuery({ id: this.store.saved.nextQueryId++, text, color, pages: 0, kind: "expansion" });
    Object.assign(query, {
      keys: [...keys], between: false, fields,
      options: { size: Math.max(1, Math.min(EXPAND_MAX, options.size ?? EXPAND_SIZE)), mode: options.mode === "significant" ? "significant" : "count" },
    });
    if (!this.askExpansion(query, datasources)) return null;
    this.queries.push(query);
    this.store.changed("saved", "queries");
    return query;
  }

  /** The next values of an expansion: as many again per field, those drawn left out. */
  expandMore(query) {
    const datasources = this.store.enabledIds().filter((ds) => {
      const perField = query.sources.get(ds)?.perField;
      return perField && Object.values(perField).some(({ more }) => more);
    });
    if (!datasources.length || query.between) return false;
    return this.askExpansion(query, datasources);
  }

  /**
   * The links between `keys` (values already drawn) in every enabled
   * datasource: records holding two of them, as an entry of the query
   * list that adds links, not nodes.
   */
  linkBetween(keys, color) {
    const datasources = this.store.enabledIds();
    if (keys.length < 2 || !datasources.length) return null;
    const asked = keys.slice(0, LINK_AT_MOST);
    const text = `links between ${asked.length.toLocaleString()} values`;
    const query = newQuery({ id: this.store.saved.nextQueryId++, text, color, pages: 0, kind: "expansion" });
    Object.assign(query, { keys: asked, between: true, fields: null, options: null });
    if (!this.askExpansion(query, datasources)) return null;
    this.queries.push(query);
    this.store.changed("saved", "queries");
    return query;
  }

  /** Sends the EXPAND_REQUEST of `query` to `datasources`; false when not connected. */
  askExpansion(query, datasources) {
    const values = query.keys.map(splitKey);
    const message = { type: "EXPAND_REQUEST", datasources, values };
    if (query.between) message.between = true;
    else {
      Object.assign(message, { fields: query.fields, size: query.options.size, mode: query.options.mode, exclude: this.drawnValues() });
    }
    // Links the user accepted go with it; the server's own it knows.
    if (this.store.saved.links?.length) message.links = this.store.saved.links;
    const request = this.client.request(message);
    if (!request) return false;
    request.datasources = datasources;
    query.requests.add(request);
    for (const ds of datasources) sourceOf(query, ds).loading = true;
    this.readExpansion(query, request, query.keys);
    return true;
  }

  /** Values drawn already, which are not new; a link's node is one value of each of its fields. */
  drawnValues() {
    const links = this.store.session.links;
    const enabled = new Set(this.store.enabledIds());
    const exclude = [];
    let bytes = 0;
    for (const key of this.model.nodes.keys()) {
      const { field, value } = splitKey(key);
      const link = links.byName.get(field);
      const fields = link ? [...new Set(link.fields.filter((f) => enabled.has(f.datasource)).map((f) => f.field))] : [field];
      for (const f of fields) {
        bytes += f.length + value.length + 24; // {"field":"…","value":"…"},
        if (bytes > EXCLUDE_BYTES) return exclude;
        exclude.push({ field: f, value });
      }
    }
    return exclude;
  }

  async readExpansion(query, request, keys) {
    const links = this.store.session.links;
    const selected = new Map(keys.map((key) => {
      const { field, value } = splitKey(key);
      return [`${field}\u0000${value}`, key];
    }));
    const keyOf = (ds, { field, value }) => selected.get(`${field}\u0000${value}`) ?? keyFor(ds, field, value, links);
    for await (const message of request) {
      if (message.type === "EXPAND_RECEIVE") {
        const ds = message.server;
        const source = sourceOf(query, ds);
        // Values drawn already (past what `exclude` could carry) are not new.
        const fresh = (message.vertices ?? []).filter((v) => !this.model.nodes.has(keyOf(ds, v)));
        for (const connection of message.connections ?? []) {
          const [recordKey, record] = addConnection(query, {
            ds, count: connection.doc_count,
            nodeKeys: [keyOf(ds, connection.from), keyOf(ds, connection.to)],
            via: connection.via ?? null, // the link that carried the selection here
          });
          this.model.add(query, recordKey, record);
        }
        const found = query.between ? (message.connections?.length ?? 0) : fresh.length;
        source.total = (source.total ?? 0) + found;
        source.loaded = source.total;
        source.method = message.method;
        source.sampled = message.sampled ?? null;
        if (!query.between) source.perField = countPerField(source.perField, query, { ...message, vertices: fresh });
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

  /** Asks an unreachable datasource again: its fields, and every query. */
  retryDatasource(ds) {
    this.store.session.unreachable.delete(ds);
    this.store.session.fieldErrors.delete(ds);
    this.requestFields([ds]);
    for (const query of this.queries) {
      const source = query.sources.get(ds);
      if (source?.error) source.error = null;
      this.fetchMissing(query);
    }
    this.store.changed("datasources", "fields", "queries");
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
