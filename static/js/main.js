// The explorer's composition: the store, the protocol client, the searches
// and the graph model, and the panels that draw them. Each panel redraws
// when a topic it shows changes, at most once per animation frame.

import { TributaryClient } from "./client.js";
import { Store, persist, clearSaved } from "./store.js";
import { Searches } from "./searches.js";
import { GraphModel, splitKey } from "./model.js";
import { GraphView } from "./graph.js";
import { datasourceHealth, datasourcesPanel } from "./panels/datasources.js";
import { fieldsPanel } from "./panels/fields.js";
import { queriesPanel } from "./panels/queries.js";
import { recordsPanel } from "./panels/records.js";
import { timelinePanel } from "./panels/timeline.js";

// Okabe and Ito's palette: told apart with every common form of color blindness.
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- the parts

const token = new URLSearchParams(location.search).get("token") ?? localStorage.getItem("tributary.token");
if (token) {
  localStorage.setItem("tributary.token", token);
  // Keep the token out of the address bar (and out of screenshots and shared links).
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);
}
const store = new Store();
persist(store);
const client = new TributaryClient(token);
const model = new GraphModel();
const searches = new Searches(store, client, model);
const { saved, session } = store;

const view = new GraphView($("graph"), $("box"), {
  onSelect: (keys) => { session.selection = keys; store.changed("selection"); },
});
view.onLayoutChange = (running) => $("layout-toggle").setAttribute("aria-pressed", String(running));
// Without a drawn graph its layout and camera buttons have nothing to do.
if (view.unavailable) for (const id of ["layout-toggle", "zoom-in", "zoom-out", "fit"]) $(id).hidden = true;

function toast(text) {
  const element = $("toast");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { element.hidden = true; }, 6000);
}

client.addEventListener("status", ({ detail }) => {
  session.connection = detail;
  session.connected = detail.state === "open";
  store.changed("connection");
});
client.addEventListener("notice", () => {
  session.connection = { ...session.connection, text: "The server is restarting; reconnecting when it is back…" };
  store.changed("connection");
});
client.addEventListener("channel", ({ detail }) => {
  const colon = detail.channel.indexOf(":");
  const [kind, id] = [detail.channel.slice(0, colon), detail.channel.slice(colon + 1)];
  const health = { ...(session.health.get(id) ?? {}) };
  if (kind === "status") health.ok = detail.value === true;
  else if (kind === "latency") health.latencyMs = detail.value;
  else return;
  session.health.set(id, health);
  store.changed("health");
});
client.addEventListener("unrouted", ({ detail }) => {
  toast(`The server says: ${detail.error?.message ?? "an error"}`);
});

// ---------------------------------------------------------------- drawing

function renderGraph() {
  model.setFields(Object.keys(saved.nodeFields), session.queries, session.links);
  const drawn = model.view(session.queries, new Set(saved.deleted), { minLinks: saved.minLinks ?? 0 });
  view.update(drawn, iconsWithLinks());
  // Each query's nodes left out by its cap, for its "show all".
  const hidden = [...drawn.hidden].filter(([, n]) => n > 0).map(([id, n]) => `${id}:${n}`).join();
  if (hidden !== (session.hiddenKey ?? "")) {
    session.hiddenKey = hidden;
    session.hidden = drawn.hidden;
    store.changed("queries");
  }
  renderGraphStats();
}

/** The icon of each node field, and of each link: that of its first field
 * chosen as a node field (its values are nodes under the link's name). */
function iconsWithLinks() {
  const icons = { ...saved.nodeFields };
  for (const link of session.links.byName.values()) {
    const chosen = (link.fields ?? []).find(({ field }) => saved.nodeFields[field]);
    if (chosen) icons[link.name] = saved.nodeFields[chosen.field];
  }
  return icons;
}

/** Expands from the selected nodes: the values next to them in every
 * enabled datasource, added as an "expansion" entry of the query list. */
function expandSelection() {
  if (!session.selection.length) return;
  const used = new Set(session.queries.map((q) => q.color));
  const color = PALETTE.find((c) => !used.has(c)) ?? PALETTE[session.queries.length % PALETTE.length];
  const added = searches.expand(session.selection, color);
  if (added) toast(`Expanding ${session.selection.length} node${session.selection.length === 1 ? "" : "s"}…`);
}

// The legend: which color is which query, on the graph itself.
function renderLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  for (const query of session.queries) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = query.color;
    item.append(swatch, query.text);
    legend.append(item);
  }
  legend.hidden = session.queries.length === 0;
}

// The selection as text, for screen readers and for reading long labels.
function renderSelectionList() {
  const list = $("selection-list");
  const keys = session.selection;
  list.hidden = keys.length === 0;
  if (!keys.length) { list.textContent = ""; return; }
  const labels = keys.slice(0, 50).map((key) => {
    const { field, value } = splitKey(key);
    return `${value} (${field})`;
  });
  list.textContent = `Selected: ${labels.join(", ")}${keys.length > 50 ? `, and ${keys.length - 50} more` : ""}`;
}

function renderGraphStats() {
  const { order, size } = view.graph;
  const selected = session.selection.length;
  $("graph-stats").textContent = order ? `${order} nodes · ${size} links${selected ? ` · ${selected} selected` : ""}` : "";
  $("delete-selected").disabled = !selected;
  $("pin-selected").disabled = !selected;
  $("expand-selected").disabled = !selected;
  $("pin-selected").textContent = selected && session.selection.every((key) => view.memory?.pinned.has(key)) ? "Unpin" : "Pin";
  $("undo-delete").hidden = !saved.deletions?.length;
  $("restore-deleted").hidden = !saved.deleted.length;
}

// Drawn in the same frame as the datasources it announces. Offline, the
// chip counts down to the next attempt and offers one at once; why it is
// offline is its tooltip.
function renderConnection() {
  const { state, text, reason, retryAt } = session.connection;
  $("connection").dataset.state = state;
  $("connection").title = reason ? `Offline: ${reason}` : "Connection to the server";
  let shown = text;
  if (state === "closed" && retryAt) {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    shown = `Offline — retrying in ${seconds} s ·`;
  }
  $("connection-text").textContent = shown;
  $("connection-retry").hidden = state !== "closed";
  clearTimeout(renderConnection.tick);
  if (state === "closed") renderConnection.tick = setTimeout(renderConnection, 1000);
}
$("connection-retry").addEventListener("click", () => client.retryNow());

function renderEmptyState() {
  let text = "";
  if (view.unavailable) {
    text = `The graph needs WebGL, which this browser does not offer (${view.unavailable}). `
      + "Turn on hardware acceleration or WebGL and reload; meanwhile the datasources, the queries and the records table work.";
  } else if (view.graph.order) text = ""; // a graph says enough
  else if (!session.connected && !session.datasources.length) {
    const { state, reason } = session.connection;
    text = state === "closed" && reason ? `Cannot connect to the server: ${reason}.` : "Connecting to the server…";
  }
  else if (!store.enabledIds().length) text = "Start by enabling a datasource on the left.";
  else if (!Object.keys(saved.nodeFields).length) text = "Now tick one or more fields on the left: their values become the nodes of the graph.";
  else if (!session.queries.length) text = "Type a query in the search box above and press Enter — a word such as bitcoin, a field such as user.screen_name:annad0, or * for everything.";
  else {
    const loading = session.queries.some((q) => [...q.sources.values()].some((s) => s.loading));
    const found = session.queries.some((q) => q.records.size > 0);
    if (loading) text = "Searching…";
    else if (!session.connected) text = "Waiting for the connection to run the queries…";
    else if (!found) text = "No records match the queries. Try another query, or enable more datasources.";
    else text = "None of the results has a value in the chosen fields. Try another query, load more, or tick other fields.";
  }
  $("graph-empty").textContent = text;
}

// A query the server could not understand comes back to the search box for
// fixing (unless something else is being typed there), the cursor where the
// problem is.
function returnInvalidQueries() {
  for (const query of session.queries) {
    if (!query.invalid || query.returned) continue;
    query.returned = true;
    const input = $("query-input");
    if (input.value.trim()) continue;
    input.value = query.text;
    input.focus();
    const at = Number(query.invalid.match(/at character (\d+)/)?.[1]);
    if (at) input.setSelectionRange(Math.max(0, at - 1), Math.min(query.text.length, at));
  }
}

const context = {
  store, searches, $, graphless: Boolean(view.unavailable),
  // A selection made elsewhere (the timeline) is the graph's selection too.
  select: (keys) => view.setSelection(keys),
};
// Each panel and the topics it shows.
const panels = [
  [datasourcesPanel(context), ["datasources", "connection", "saved"]],
  [datasourceHealth(context), ["health"]],
  [renderConnection, ["connection"]],
  [fieldsPanel(context), ["fields", "datasources", "nodeFields"]],
  [queriesPanel(context), ["queries", "results", "datasources", "fields"]],
  [renderGraph, ["results", "nodeFields", "deleted", "datasources", "fields"]],
  [recordsPanel(context), ["results", "selection", "columns", "nodeFields", "fields", "deleted"]],
  [timelinePanel(context), ["results", "timeline", "queries", "selection", "fields", "datasources"]],
  [renderGraphStats, ["selection", "deleted", "saved"]],
  [renderSelectionList, ["selection"]],
  [renderLegend, ["queries", "results"]],
  [renderEmptyState, ["connection", "datasources", "fields", "nodeFields", "queries", "results"]],
  [returnInvalidQueries, ["queries"]],
];

let pending = new Set();
store.subscribe((topics) => {
  const first = pending.size === 0;
  for (const topic of topics) pending.add(topic);
  if (!first) return;
  requestAnimationFrame(() => {
    const topics = pending;
    pending = new Set();
    for (const [render, shows] of panels) if (shows.some((t) => topics.has(t))) render();
  });
});

function suggestColor() {
  const used = new Set(session.queries.map((q) => q.color));
  $("query-color").value = PALETTE.find((c) => !used.has(c)) ?? PALETTE[session.queries.length % PALETTE.length];
}

// ---------------------------------------------------------------- input

function deleteSelection() {
  const removed = session.selection.filter((key) => !saved.deleted.includes(key));
  if (!removed.length) return;
  saved.deleted = [...saved.deleted, ...removed];
  saved.deletions = [...(saved.deletions ?? []), removed].slice(-50);
  view.setSelection([]);
  store.changed("saved", "deleted");
  toast(`Removed ${removed.length} node${removed.length === 1 ? "" : "s"} — press u (or Undo delete) to bring ${removed.length === 1 ? "it" : "them"} back.`);
}

/** Brings back the nodes of the last delete. */
function undoDelete() {
  const last = saved.deletions?.at(-1);
  if (!last) return;
  saved.deletions = saved.deletions.slice(0, -1);
  const back = new Set(last);
  saved.deleted = saved.deleted.filter((key) => !back.has(key));
  store.changed("saved", "deleted");
  toast(`Restored ${last.length} node${last.length === 1 ? "" : "s"}.`);
}

function togglePins() {
  if (!session.selection.length) return;
  const pinned = view.togglePins(session.selection);
  toast(`${pinned ? "Pinned" : "Unpinned"} ${session.selection.length} node${session.selection.length === 1 ? "" : "s"}.`);
  renderGraphStats();
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("query-input").value.trim();
  if (!text) return;
  if (!store.enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  if (!searches.add(text, $("query-color").value)) return;
  $("query-input").value = "";
  suggestColor();
});
$("graph-search").addEventListener("input", (event) => {
  const found = view.search(event.target.value);
  $("graph-stats").textContent = found === null ? "" : `${found} matching nodes`;
  if (found === null) renderGraphStats();
});
$("layout-toggle").addEventListener("click", () => view.toggleLayout());
$("min-links").value = String(saved.minLinks ?? 0);
$("min-links").addEventListener("change", (event) => {
  saved.minLinks = Math.max(0, Math.min(99, Number(event.target.value) || 0));
  store.changed("saved", "results");
});
$("fit").addEventListener("click", () => view.fit());
$("zoom-in").addEventListener("click", () => view.renderer.getCamera().animatedZoom({ duration: 200 }));
$("zoom-out").addEventListener("click", () => view.renderer.getCamera().animatedUnzoom({ duration: 200 }));
$("delete-selected").addEventListener("click", () => deleteSelection());
$("restore-deleted").addEventListener("click", () => { saved.deleted = []; saved.deletions = []; store.changed("saved", "deleted"); });
$("undo-delete").addEventListener("click", () => undoDelete());
$("pin-selected").addEventListener("click", () => togglePins());
$("expand-selected").addEventListener("click", () => expandSelection());
$("help-button").addEventListener("click", () => $("help").showModal());
// On a narrow screen the side panel is a drawer.
$("drawer-toggle").addEventListener("click", () => {
  const open = document.body.classList.toggle("drawer-open");
  $("drawer-toggle").setAttribute("aria-expanded", String(open));
});
$("clear-all").addEventListener("click", () => {
  if (!confirm("Forget the enabled datasources, chosen fields and all queries?")) return;
  searches.cancelAll();
  clearSaved();
  view.forgetLayout?.();
  location.reload();
});

document.addEventListener("keydown", (event) => {
  // Shortcuts work everywhere but in text: a ticked checkbox keeps them.
  const typing = event.target.closest("input:not([type=checkbox]):not([type=radio]):not([type=color]), textarea, select");
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
    u: undoDelete,
    p: togglePins,
    e: expandSelection,
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

// A handle for the browser tests and for poking around in the console.
window.tributary = { app: session, saved, view, store, client, model, searches };

suggestColor();
store.changed("datasources", "queries", "connection");
client.connect();
