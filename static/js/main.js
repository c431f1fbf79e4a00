// The explorer's composition: the store, the protocol client, the searches
// and the graph model, and the panels that draw them. Each panel redraws
// when a topic it shows changes, at most once per animation frame.

import { TributaryClient } from "./client.js";
import { Store, persist, clearSaved } from "./store.js";
import { Searches } from "./searches.js";
import { GraphModel } from "./model.js";
import { GraphView } from "./graph.js";
import { datasourceHealth, datasourcesPanel } from "./panels/datasources.js";
import { fieldsPanel } from "./panels/fields.js";
import { queriesPanel } from "./panels/queries.js";
import { recordsPanel } from "./panels/records.js";
import { timelinePanel } from "./panels/timeline.js";

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
  "#f032e6", "#9a6324", "#800000", "#469990", "#000075", "#808000"];

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
  model.setFields(Object.keys(saved.nodeFields), session.queries);
  view.update(model.view(session.queries, new Set(saved.deleted)), saved.nodeFields);
  renderGraphStats();
}

function renderGraphStats() {
  const { order, size } = view.graph;
  const selected = session.selection.length;
  $("graph-stats").textContent = order ? `${order} nodes · ${size} links${selected ? ` · ${selected} selected` : ""}` : "";
  $("delete-selected").disabled = !selected;
  $("restore-deleted").hidden = !saved.deleted.length;
}

// Drawn in the same frame as the datasources it announces.
function renderConnection() {
  $("connection").dataset.state = session.connection.state;
  $("connection-text").textContent = session.connection.text;
}

function renderEmptyState() {
  let text = "";
  if (view.graph.order) text = ""; // a graph says enough
  else if (!session.connected && !session.datasources.length) text = "Connecting to the server…";
  else if (!store.enabledIds().length) text = "Start by enabling a datasource on the left.";
  else if (!Object.keys(saved.nodeFields).length) text = "Now tick one or more fields on the left: their values become the nodes of the graph.";
  else if (!session.queries.length) text = "Type a query in the search box above and press Enter — a word such as bitcoin, a field such as user.screen_name:annad0, or * for everything.";
  else {
    const loading = session.queries.some((q) => [...q.sources.values()].some((s) => s.loading));
    text = loading ? "Searching…" : "None of the results has a value in the chosen fields. Try another query, load more, or tick other fields.";
  }
  $("graph-empty").textContent = text;
}

const context = { store, searches, $ };
// Each panel and the topics it shows.
const panels = [
  [datasourcesPanel(context), ["datasources", "connection", "saved"]],
  [datasourceHealth(context), ["health"]],
  [renderConnection, ["connection"]],
  [fieldsPanel(context), ["fields", "datasources", "nodeFields"]],
  [queriesPanel(context), ["queries", "results", "datasources", "fields"]],
  [renderGraph, ["results", "nodeFields", "deleted", "datasources", "fields"]],
  [recordsPanel(context), ["results", "selection", "columns", "nodeFields", "fields", "deleted"]],
  [timelinePanel(context), ["results", "timeline", "queries"]],
  [renderGraphStats, ["selection"]],
  [renderEmptyState, ["connection", "datasources", "fields", "nodeFields", "queries", "results"]],
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
  if (!session.selection.length) return;
  saved.deleted = [...new Set([...saved.deleted, ...session.selection])];
  view.setSelection([]);
  store.changed("saved", "deleted");
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("query-input").value.trim();
  if (!text) return;
  if (!store.enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  searches.add(text, $("query-color").value);
  $("query-input").value = "";
  suggestColor();
});
$("graph-search").addEventListener("input", (event) => {
  const found = view.search(event.target.value);
  $("graph-stats").textContent = found === null ? "" : `${found} matching nodes`;
  if (found === null) renderGraphStats();
});
$("layout-toggle").addEventListener("click", () => view.toggleLayout());
$("fit").addEventListener("click", () => view.fit());
$("zoom-in").addEventListener("click", () => view.renderer.getCamera().animatedZoom({ duration: 200 }));
$("zoom-out").addEventListener("click", () => view.renderer.getCamera().animatedUnzoom({ duration: 200 }));
$("delete-selected").addEventListener("click", () => deleteSelection());
$("restore-deleted").addEventListener("click", () => { saved.deleted = []; store.changed("saved", "deleted"); });
$("help-button").addEventListener("click", () => $("help").showModal());
$("clear-all").addEventListener("click", () => {
  if (!confirm("Forget the enabled datasources, chosen fields and all queries?")) return;
  searches.cancelAll();
  clearSaved();
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
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

// A handle for the browser tests and for poking around in the console.
window.tributary = { app: session, saved, view, store, client, model };

suggestColor();
store.changed("datasources", "queries", "connection");
client.connect();
