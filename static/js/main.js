// The explorer: wires the connection, the side panel (datasources, fields,
// queries), the graph, the timeline and the records table together.

import { Connection } from "./connection.js";
import * as store from "./store.js";
import { GraphView } from "./graph.js";
import { buildModel, recordsOfNodes } from "./model.js";
import { drawHistogram } from "./histogram.js";
import { drawRecords, drawDetails, recordsCaption } from "./records.js";
import { guessIcon, iconUrl, ICON_NAMES } from "./icons.js";

const PAGE = 200;        // results per datasource per "load more"
const MAX_REPLAY = 2000; // a restored query re-fetches at most this many per datasource
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
  "#f032e6", "#9a6324", "#800000", "#469990", "#000075", "#808000"];
const FRIENDLY = {
  bad_query: "the query could not be understood",
  datasource_failed: "the datasource failed or could not be reached",
  datasource_unauthorized: "the server's credentials for the datasource were refused",
  timeout: "the datasource took too long to answer",
  too_many_requests: "too many searches are running at once; try again in a moment",
  unknown_datasource: "the server does not offer this datasource (any more)",
};

const $ = (id) => document.getElementById(id);
const saved = store.load();
const app = {
  datasources: [],        // [{id, name, type}] from INITIAL_STATE_RECEIVE
  fields: new Map(),      // datasource id → [{path, type}]
  fieldErrors: new Map(), // datasource id → message
  queries: saved.queries.map((q) => newQuery(q)),
  requests: new Map(),    // request-id → {query, datasources}
  selection: [],
  connected: false,
};
let requestSeq = 0;

function newQuery({ id, text, color, pages = 1 }) {
  // sources: datasource id → {total, loaded, loading, error, took}
  return { id, text, color, pages, sources: new Map(), records: new Map(), requests: new Set() };
}

function persist() {
  saved.queries = app.queries.map(({ id, text, color, pages }) => ({ id, text, color, pages }));
  store.save(saved);
}

function datasourceName(id) {
  return app.datasources.find((ds) => ds.id === id)?.name ?? id;
}

function enabledIds() {
  return app.datasources.map((ds) => ds.id).filter((id) => saved.enabled.includes(id));
}

function toast(text) {
  const element = $("toast");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { element.hidden = true; }, 6000);
}

function explain(error) {
  const why = FRIENDLY[error.code];
  return why ? `${why}: ${error.message}` : error.message;
}

// ---------------------------------------------------------------- connection

const token = new URLSearchParams(location.search).get("token") ?? localStorage.getItem("tributary.token");
if (token) {
  localStorage.setItem("tributary.token", token);
  // Keep the token out of the address bar (and out of screenshots and shared links).
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);
}
const connection = new Connection(token);

connection.addEventListener("status", ({ detail }) => {
  $("connection").dataset.state = detail.state;
  $("connection-text").textContent = detail.text;
  app.connected = detail.state === "open";
  renderEmptyState();
});

connection.addEventListener("message", ({ detail: message }) => {
  switch (message.type) {
    case "INITIAL_STATE_RECEIVE": return onInitialState(message.state);
    case "FIELDS_RECEIVE": return onFields(message.fields);
    case "ITEMS_RECEIVE": return onItems(message);
    case "REQUEST_COMPLETED": return onCompleted(message);
    case "ERROR": return onError(message);
    case "SHUTDOWN_NOTICE":
      $("connection-text").textContent = "The server is restarting; reconnecting when it is back…";
      return;
    default: // Messages this page does not know are ignored, as the protocol asks.
  }
});

function onInitialState(state) {
  app.datasources = state?.datasources ?? [];
  // Requests of the previous connection died with it: pick up where they stopped.
  app.requests.clear();
  for (const query of app.queries) {
    query.requests.clear();
    for (const source of query.sources.values()) source.loading = false;
  }
  requestFields(enabledIds());
  for (const query of app.queries) fetchMissing(query);
  renderDatasources();
  renderQueries();
}

function onFields(fields) {
  if (!fields) return;
  app.fields.set(fields.server, fields.fields ?? []);
  app.fieldErrors.delete(fields.server);
  renderFields();
}

function onItems(message) {
  const request = app.requests.get(message["request-id"]);
  const items = message.items;
  if (!request || !items) return; // an answer to a removed query
  const query = request.query;
  const source = sourceOf(query, items.server);
  source.total = items.total;
  for (const result of items.results ?? []) {
    query.records.set(`${items.server}\u0000${result.id}`, {
      ds: items.server, id: result.id, fields: result.fields, highlight: result.highlight,
    });
  }
  source.loaded += (items.results ?? []).length;
  scheduleRender();
}

function onCompleted(message) {
  app.fieldRequests?.delete(message["request-id"]);
  const request = app.requests.get(message["request-id"]);
  if (!request) return;
  app.requests.delete(message["request-id"]);
  request.query.requests.delete(message["request-id"]);
  for (const [id, outcome] of Object.entries(message.datasources ?? {})) {
    const source = sourceOf(request.query, id);
    source.loading = false;
    source.took = outcome.took_ms;
    if (outcome.total !== null && outcome.total !== undefined) source.total = outcome.total;
    if (outcome.error) source.error ??= outcome.error;
  }
  scheduleRender();
}

function onError(message) {
  const error = message.error ?? {};
  const id = message["request-id"];
  if (id && app.fieldRequests?.has(id)) {
    app.fieldErrors.set(error.datasource ?? app.fieldRequests.get(id), explain(error));
    renderFields();
    return;
  }
  const request = app.requests.get(id);
  if (!request) {
    toast(`The server says: ${explain(error)}`);
    return;
  }
  const ids = error.datasource ? [error.datasource] : request.datasources;
  for (const ds of ids) {
    const source = sourceOf(request.query, ds);
    source.error = explain(error);
    // A request-level error (no datasource) ends the request: no REQUEST_COMPLETED follows.
    if (!error.datasource) source.loading = false;
  }
  if (!error.datasource) {
    app.requests.delete(id);
    request.query.requests.delete(id);
  }
  renderQueries();
}

// ---------------------------------------------------------------- requests

function requestFields(ids) {
  app.fieldRequests ??= new Map();
  for (const ds of ids) {
    const id = `f.${++requestSeq}`;
    app.fieldRequests.set(id, ds);
    connection.send({ type: "FIELDS_REQUEST", datasources: [ds], "request-id": id });
  }
}

function sourceOf(query, ds) {
  let source = query.sources.get(ds);
  if (!source) {
    source = { total: null, loaded: 0, loading: false, error: null, took: null };
    query.sources.set(ds, source);
  }
  return source;
}

/** Asks each enabled datasource for whatever `query` still lacks of its `pages`. */
function fetchMissing(query) {
  const groups = new Map(); // "from,size" → [datasource]
  for (const ds of enabledIds()) {
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
    const id = `q${query.id}.${++requestSeq}`;
    const sent = connection.send({
      type: "ITEMS_REQUEST", datasources, query: query.text, from, size, color: query.color, "request-id": id,
    });
    if (!sent) continue; // not connected: fetched again once the connection is back
    app.requests.set(id, { query, datasources });
    query.requests.add(id);
    for (const ds of datasources) sourceOf(query, ds).loading = true;
  }
  renderQueries();
}

function addQuery(text, color) {
  const query = newQuery({ id: saved.nextQueryId++, text, color });
  app.queries.push(query);
  persist();
  fetchMissing(query);
  renderEmptyState();
  suggestColor();
}

function removeQuery(query) {
  for (const id of query.requests) {
    connection.send({ type: "CANCEL_REQUEST", "request-id": id });
    app.requests.delete(id);
  }
  app.queries = app.queries.filter((q) => q !== query);
  persist();
  scheduleRender();
}

function loadMore(query) {
  query.pages += 1;
  persist();
  fetchMissing(query);
}

function retry(query) {
  for (const source of query.sources.values()) source.error = null;
  fetchMissing(query);
}

function setDatasourceEnabled(id, enabled) {
  saved.enabled = enabled ? [...new Set([...saved.enabled, id])] : saved.enabled.filter((ds) => ds !== id);
  store.save(saved);
  if (enabled) {
    requestFields([id]);
    for (const query of app.queries) fetchMissing(query);
  } else {
    // A disabled datasource's results leave the graph; enabling it again fetches them anew.
    for (const query of app.queries) {
      for (const requestId of [...query.requests]) {
        if (app.requests.get(requestId)?.datasources.includes(id)) {
          connection.send({ type: "CANCEL_REQUEST", "request-id": requestId });
          app.requests.delete(requestId);
          query.requests.delete(requestId);
        }
      }
      query.sources.delete(id);
      for (const [key, record] of query.records) if (record.ds === id) query.records.delete(key);
    }
    app.fields.delete(id);
  }
  renderFields();
  scheduleRender();
}

// ---------------------------------------------------------------- rendering

const view = new GraphView($("graph"), $("box"), {
  onSelect: (keys) => { app.selection = keys; renderRecords(); renderGraphStats(); },
});
view.onLayoutChange = (running) => $("layout-toggle").setAttribute("aria-pressed", String(running));

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderGraph();
    renderQueries();
    renderHistogram();
    renderRecords();
    renderEmptyState();
  });
}

function renderGraph() {
  const model = buildModel(app.queries, Object.keys(saved.nodeFields), new Set(saved.deleted));
  view.update(model, saved.nodeFields);
  renderGraphStats();
}

function renderGraphStats() {
  const { order, size } = view.graph;
  const selected = app.selection.length;
  $("graph-stats").textContent = order ? `${order} nodes · ${size} links${selected ? ` · ${selected} selected` : ""}` : "";
  $("delete-selected").disabled = !selected;
  $("restore-deleted").hidden = !saved.deleted.length;
}

function renderDatasources() {
  const list = $("datasources");
  list.replaceChildren();
  $("datasources-empty").hidden = app.datasources.length > 0;
  if (!app.datasources.length && app.connected) $("datasources-empty").textContent = "This server offers no datasources (or none to this token).";
  for (const ds of app.datasources) {
    const item = document.createElement("li");
    item.dataset.ds = ds.id;
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = saved.enabled.includes(ds.id);
    box.addEventListener("change", () => setDatasourceEnabled(ds.id, box.checked));
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = ds.type ?? "";
    label.append(box, ds.name ?? ds.id, type);
    item.append(label);
    list.append(item);
  }
  renderFields();
}

function mergedFields() {
  const merged = new Map(); // path → {types, sources}
  for (const ds of enabledIds()) {
    for (const field of app.fields.get(ds) ?? []) {
      const entry = merged.get(field.path) ?? { types: new Set(), sources: [] };
      entry.types.add(field.type);
      entry.sources.push(datasourceName(ds));
      merged.set(field.path, entry);
    }
  }
  return merged;
}

function renderFields() {
  const list = $("fields");
  list.replaceChildren();
  const merged = mergedFields();
  const filter = $("field-filter").value.trim().toLowerCase();
  const enabled = enabledIds();
  const errors = enabled.filter((ds) => app.fieldErrors.has(ds)).map((ds) => `${datasourceName(ds)}: ${app.fieldErrors.get(ds)}`);
  const empty = $("fields-empty");
  empty.hidden = merged.size > 0 && !errors.length;
  empty.textContent = errors.length ? `Could not list fields. ${errors.join(" ")}`
    : enabled.length ? "Loading fields…" : "Enable a datasource above to see its fields.";

  const paths = [...merged.keys()].sort((a, b) => {
    const chosen = Number(b in saved.nodeFields) - Number(a in saved.nodeFields);
    return chosen || a.localeCompare(b);
  });
  for (const path of paths) {
    if (filter && !path.toLowerCase().includes(filter)) continue;
    const { types, sources } = merged.get(path);
    const typeText = [...types].join("/");
    const item = document.createElement("li");
    item.dataset.field = path;
    item.title = `${path} (${typeText}) in ${sources.join(", ")}`;

    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = path in saved.nodeFields;
    box.title = "Make this field's values nodes";
    box.addEventListener("change", () => {
      if (box.checked) saved.nodeFields[path] = guessIcon(path, [...types][0], new Set(Object.values(saved.nodeFields)));
      else delete saved.nodeFields[path];
      if (saved.columns) saved.columns = box.checked ? [...new Set([...saved.columns, path])] : saved.columns;
      store.save(saved);
      renderFields();
      scheduleRender();
    });
    const name = document.createElement("span");
    name.className = "path";
    name.textContent = path;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = typeText;
    label.append(box, name, type);
    item.append(label);

    if (path in saved.nodeFields) {
      const icon = document.createElement("button");
      icon.className = "icon";
      icon.title = "Change this field's icon";
      const img = document.createElement("img");
      img.src = iconUrl(saved.nodeFields[path]);
      img.alt = saved.nodeFields[path];
      icon.append(img);
      icon.addEventListener("click", () => {
        const next = ICON_NAMES[(ICON_NAMES.indexOf(saved.nodeFields[path]) + 1) % ICON_NAMES.length];
        saved.nodeFields[path] = next;
        store.save(saved);
        renderFields();
        scheduleRender();
      });
      item.append(icon);
    }
    if (types.has("date")) {
      const date = document.createElement("label");
      date.className = "date";
      date.title = "Use this field for the timeline";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "date-field";
      radio.checked = saved.dateField === path;
      radio.addEventListener("change", () => { saved.dateField = path; store.save(saved); renderHistogram(); });
      date.append(radio, "timeline");
      item.append(date);
    }
    list.append(item);
  }
  renderColumnPicker(merged);
}

// Query list items are built once and updated in place, so an open color
// picker or a hovered button survives the stream of results.
const queryItems = new Map(); // query id → {item, color, text, detail, more, retry}

function queryItem(query) {
  let parts = queryItems.get(query.id);
  if (parts) return parts;
  const item = document.createElement("li");
  item.dataset.query = query.id;
  const head = document.createElement("div");
  head.className = "head";
  const color = document.createElement("input");
  color.type = "color";
  color.title = "Change this query's color";
  color.addEventListener("input", () => { query.color = color.value; persist(); scheduleRender(); });
  const text = document.createElement("span");
  text.className = "text";
  head.append(color, text);
  const detail = document.createElement("div");
  detail.className = "sources";
  const actions = document.createElement("div");
  actions.className = "actions";
  const button = (label, className, title, onClick) => {
    const element = document.createElement("button");
    element.textContent = label;
    element.className = className;
    element.title = title;
    element.addEventListener("click", onClick);
    actions.append(element);
    return element;
  };
  const more = button("Load more", "more", `Fetch the next ${PAGE} results of each datasource`, () => loadMore(query));
  const again = button("Retry", "retry", "Ask the datasources that failed again", () => retry(query));
  button("Remove", "remove danger", "Remove this query and its nodes", () => removeQuery(query));
  item.append(head, detail, actions);
  parts = { item, color, text, detail, more, again };
  queryItems.set(query.id, parts);
  return parts;
}

function renderQueries() {
  const list = $("queries");
  $("queries-empty").hidden = app.queries.length > 0;
  const enabled = enabledIds();
  const live = new Set(app.queries.map((q) => q.id));
  for (const [id, parts] of queryItems) {
    if (!live.has(id)) { parts.item.remove(); queryItems.delete(id); }
  }
  app.queries.forEach((query, index) => {
    const { item, color, text, detail, more, again } = queryItem(query);
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
    const sources = enabled.map((ds) => [ds, query.sources.get(ds)]).filter(([, s]) => s);
    const loading = sources.some(([, s]) => s.loading);
    item.dataset.state = loading ? "loading" : "done";
    if (document.activeElement !== color) color.value = query.color;
    text.textContent = query.text;
    text.title = query.text;

    const counts = [];
    const errors = [];
    for (const [ds, source] of sources) {
      if (source.error) errors.push(`${datasourceName(ds)}: ${source.error}`);
      else if (source.total !== null) counts.push(`${datasourceName(ds)} ${source.loaded.toLocaleString()} of ${source.total.toLocaleString()}`);
      else if (source.loading) counts.push(`${datasourceName(ds)} …`);
    }
    detail.textContent = counts.join(" · ") || (enabled.length ? "" : "Enable a datasource to run this query.");
    for (const message of errors) {
      const line = document.createElement("span");
      line.className = "error";
      line.textContent = message;
      detail.append(line);
    }
    more.disabled = loading || !sources.some(([, s]) => !s.error && s.total !== null && s.loaded < s.total);
    again.hidden = !errors.length;
  });
}

function columns() {
  return saved.columns ?? Object.keys(saved.nodeFields);
}

function renderColumnPicker(merged = mergedFields()) {
  const picker = $("add-column");
  const shown = new Set(columns());
  picker.replaceChildren(new Option("+ column", ""));
  for (const path of [...merged.keys()].sort()) if (!shown.has(path)) picker.append(new Option(path, path));
}

function renderRecords() {
  const rows = app.selection.length ? recordsOfNodes(app.queries, app.selection) : [];
  drawRecords($("records"), rows, columns(), {
    datasourceName,
    onRemoveColumn: (path) => {
      saved.columns = columns().filter((c) => c !== path);
      store.save(saved);
      renderRecords();
      renderColumnPicker();
    },
    onOpen: (row) => openDetails(row.record),
  });
  $("records-count").textContent = recordsCaption(rows.length);
  $("records-empty").hidden = rows.length > 0;
}

function openDetails(record) {
  $("details-title").textContent = `Record ${record.id}`;
  drawDetails($("details-fields"), record, datasourceName);
  $("details").hidden = false;
}

function renderHistogram() {
  const field = saved.dateField;
  const count = drawHistogram($("histogram"), app.queries, field);
  $("histogram-field").textContent = field ? `${field}${count ? "" : " — no dates in the results yet"}` : "pick a date field's “timeline” on the left";
}

function renderEmptyState() {
  let text = "";
  if (view.graph.order) text = ""; // a graph says enough
  else if (!app.connected && !app.datasources.length) text = "Connecting to the server…";
  else if (!enabledIds().length) text = "Start by enabling a datasource on the left.";
  else if (!Object.keys(saved.nodeFields).length) text = "Now tick one or more fields on the left: their values become the nodes of the graph.";
  else if (!app.queries.length) text = "Type a query in the search box above and press Enter — a word such as bitcoin, a field such as user.screen_name:annad0, or * for everything.";
  else {
    const loading = app.queries.some((q) => [...q.sources.values()].some((s) => s.loading));
    text = loading ? "Searching…" : "None of the results has a value in the chosen fields. Try another query, load more, or tick other fields.";
  }
  $("graph-empty").textContent = text;
}

function suggestColor() {
  const used = new Set(app.queries.map((q) => q.color));
  $("query-color").value = PALETTE.find((c) => !used.has(c)) ?? PALETTE[app.queries.length % PALETTE.length];
}

// ---------------------------------------------------------------- input

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("query-input").value.trim();
  if (!text) return;
  if (!enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  addQuery(text, $("query-color").value);
  $("query-input").value = "";
});
$("field-filter").addEventListener("input", () => renderFields());
$("graph-search").addEventListener("input", (event) => {
  const found = view.search(event.target.value);
  $("graph-stats").textContent = found === null ? "" : `${found} matching nodes`;
  if (found === null) renderGraphStats();
});
$("add-column").addEventListener("change", (event) => {
  if (!event.target.value) return;
  saved.columns = [...columns(), event.target.value];
  store.save(saved);
  renderRecords();
  renderColumnPicker();
});
$("layout-toggle").addEventListener("click", () => view.toggleLayout());
$("fit").addEventListener("click", () => view.fit());
$("zoom-in").addEventListener("click", () => view.renderer.getCamera().animatedZoom({ duration: 200 }));
$("zoom-out").addEventListener("click", () => view.renderer.getCamera().animatedUnzoom({ duration: 200 }));
$("delete-selected").addEventListener("click", () => deleteSelection());
$("restore-deleted").addEventListener("click", () => { saved.deleted = []; store.save(saved); scheduleRender(); });
$("details-close").addEventListener("click", () => { $("details").hidden = true; });
$("help-button").addEventListener("click", () => $("help").showModal());
$("clear-all").addEventListener("click", () => {
  if (!confirm("Forget the enabled datasources, chosen fields and all queries?")) return;
  for (const query of app.queries) for (const id of query.requests) connection.send({ type: "CANCEL_REQUEST", "request-id": id });
  store.clear();
  location.reload();
});

function deleteSelection() {
  if (!app.selection.length) return;
  saved.deleted = [...new Set([...saved.deleted, ...app.selection])];
  store.save(saved);
  view.setSelection([]);
  scheduleRender();
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select");
  if (event.key === "Escape") {
    if (typing) event.target.blur();
    $("details").hidden = true;
    if (view.searchText) { $("graph-search").value = ""; view.search(""); renderGraphStats(); }
    view.setSelection([]);
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    "/": () => $("query-input").focus(),
    g: () => $("graph-search").focus(),
    f: () => view.fit(),
    "+": () => view.renderer.getCamera().animatedZoom({ duration: 200 }),
    "=": () => view.renderer.getCamera().animatedZoom({ duration: 200 }),
    "-": () => view.renderer.getCamera().animatedUnzoom({ duration: 200 }),
    l: () => view.toggleLayout(),
    a: () => view.selectAll(),
    Delete: deleteSelection,
    Backspace: deleteSelection,
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});
new ResizeObserver(() => renderHistogram()).observe($("histogram"));

// A handle for the browser tests and for poking around in the console.
window.tributary = { app, saved, view };

suggestColor();
renderDatasources();
renderQueries();
renderEmptyState();
connection.connect();
