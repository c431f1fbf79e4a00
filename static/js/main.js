// The explorer's composition: the store, the protocol client, the searches
// and the graph model, and the panels that draw them. Each panel redraws
// when a topic it shows changes, at most once per animation frame.

import { TributaryClient } from "./client.js";
import { Store, persist, clearSaved, writeSaved } from "./store.js";
import { EXPAND_MAX, EXPAND_SIZE, LINK_AT_MOST, MAX_REPLAY, PAGE, Searches } from "./searches.js";

const EXPAND_ASK_ABOVE = 150; // new nodes an expansion may add before it asks first
import { GraphModel, linkIndex, formsOf, splitKey, withMerged, withMerges } from "./model.js";
import { evidenceOf, fileName, investigation, readInvestigation, restoreEvidence } from "./investigation.js";
import { stash, takeStash } from "./stash.js";
import { GraphView, writeLayout } from "./graph.js";
import { datasourceHealth, datasourcesPanel } from "./panels/datasources.js";
import { fieldsPanel, linkSuggestions } from "./panels/fields.js";
import { queriesPanel } from "./panels/queries.js";
import { recordsPanel } from "./panels/records.js";
import { timelinePanel } from "./panels/timeline.js";
import { legendPanel } from "./panels/legend.js";
import { circular, concentric, groupedByQuery } from "./layouts.js";
import { graphData, svgToPng, toGexf, toGraphml, toJson, toSvg } from "./exports.js";

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

let legend = null; // the legend panel, once the page's parts exist
const view = new GraphView($("graph"), $("box"), {
  onSelect: (keys) => {
    session.selection = keys;
    legend?.selectionChanged();
    store.changed("selection");
  },
});
session.graph = () => view.graph;
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
  const drawn = withMerges(
    model.view(session.queries, new Set(saved.deleted), { minLinks: saved.minLinks ?? 0 }),
    saved.merges, saved.nodes,
  );
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
  expandFrom(withMerged(session.selection, saved.merges));
}

function expandFrom(keys) {
  if (!keys.length) return;
  if (!store.enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  if (!Object.keys(saved.nodeFields).length) { toast("Tick at least one field on the left: an expansion brings values of the chosen fields."); return; }
  // Each datasource brings at most `size` new values per chosen field.
  const options = expandOptions();
  const upTo = options.size * Object.keys(saved.nodeFields).length * store.enabledIds().length;
  if (upTo > EXPAND_ASK_ABOVE && !confirm(`This expansion may add up to ${upTo} new nodes (${options.size} per field and datasource). Expand?`)) return;
  const added = searches.expand(keys, unusedColor(), options);
  if (added) toast(`Expanding ${keys.length} value${keys.length === 1 ? "" : "s"}…`);
}

/** Values per field and ranking of the next expansion, as the user set them. */
function expandOptions() {
  const size = Math.max(1, Math.min(EXPAND_MAX, Math.round(Number(saved.expand?.size) || EXPAND_SIZE)));
  return { size, mode: saved.expand?.mode === "significant" ? "significant" : "count" };
}

/** The links between the selected nodes themselves, from the datasources. */
function linkSelection() {
  const keys = withMerged(session.selection, saved.merges);
  if (keys.length < 2) { toast("Select two nodes or more (shift-click, or shift-drag a box) to find the links between them."); return; }
  if (!store.enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  if (!searches.linkBetween(keys, unusedColor())) return;
  toast(keys.length > LINK_AT_MOST
    ? `Looking for links between the first ${LINK_AT_MOST.toLocaleString()} of the ${keys.length.toLocaleString()} selected values…`
    : `Looking for links between ${keys.length} values…`);
}

/** The first palette color no query has yet. */
function unusedColor() {
  const used = new Set(session.queries.map((q) => q.color));
  return PALETTE.find((c) => !used.has(c)) ?? PALETTE[session.queries.length % PALETTE.length];
}

// The node menu (right click on a node): what to do with it and the selection.
const nodeMenu = $("node-menu");
view.onNodeMenu = (key, at) => {
  nodeMenu.dataset.node = key;
  nodeMenu.hidden = false;
  // Inside the graph's area, however near its edge the node is.
  const wrap = $("graph-wrap").getBoundingClientRect();
  const x = Math.max(0, Math.min(at.x, wrap.width - nodeMenu.offsetWidth));
  const y = Math.max(0, Math.min(at.y, wrap.height - nodeMenu.offsetHeight));
  nodeMenu.style.left = `${Math.round(x)}px`;
  nodeMenu.style.top = `${Math.round(y)}px`;
  nodeMenu.querySelector("button").focus();
};
function closeNodeMenu() {
  const wasOpen = !nodeMenu.hidden;
  nodeMenu.hidden = true;
  // The keyboard goes back to where it was before the menu.
  if (wasOpen && nodeMenu.contains(document.activeElement)) (nodeMenu.returnFocus ?? document.body).focus?.();
}
/** The menu of the first selected node, from the keyboard (the ContextMenu
 * key, Shift+F10) where the node is drawn. */
function openNodeMenuFromKeyboard() {
  const key = session.selection[0];
  if (!key || !view.graph.hasNode(key)) { toast("Select a node first (click it, or press a to select all)."); return; }
  nodeMenu.returnFocus = document.activeElement;
  view.onNodeMenu(key, view.viewportPosition(key));
}
nodeMenu.addEventListener("click", (event) => {
  const action = event.target.closest("button")?.dataset.action;
  const key = nodeMenu.dataset.node;
  closeNodeMenu();
  if (!action || !key) return;
  if (action === "search") searchValue(key);
  else if (action === "expand") expandSelection();
  else if (action === "link") linkSelection();
  else if (action === "neighbours") view.selectNeighbours(session.selection.length ? session.selection : [key]);
  else if (action === "delete-others") deleteOthers();
  else if (action === "rename") describeNode(key, "label", `A name for ${splitKey(key).value} (empty: its value again)`);
  else if (action === "note") describeNode(key, "note", `A note on ${splitKey(key).value} (empty: no note)`);
  else if (action === "merge") mergeInto(key);
  else if (action === "unmerge") unmerge(key);
});

/** Sets the node's name or note (kept with the workspace). */
function describeNode(key, what, question) {
  const now = saved.nodes?.[key]?.[what] ?? "";
  const answer = prompt(question, now);
  if (answer === null) return;
  const nodes = { ...(saved.nodes ?? {}) };
  const entry = { ...(nodes[key] ?? {}) };
  if (answer.trim()) entry[what] = answer.trim();
  else delete entry[what];
  if (Object.keys(entry).length) nodes[key] = entry;
  else delete nodes[key];
  saved.nodes = nodes;
  store.changed("saved", "results", "selection");
}

/** Shows the selected nodes as `key`: several values of one thing (a
 * person's two addresses) become one node. */
function mergeInto(key) {
  const others = session.selection.filter((k) => k !== key);
  if (!others.length) { toast("Select the nodes to merge (shift-click), then right-click the one to keep."); return; }
  saved.merges = { ...(saved.merges ?? {}) };
  for (const other of others) saved.merges[other] = key;
  // Whatever was merged into those is now shown as `key` too.
  for (const [from, into] of Object.entries(saved.merges)) if (others.includes(into)) saved.merges[from] = key;
  view.setSelection([key]);
  store.changed("saved", "results");
  toast(`Merged ${others.length} node${others.length === 1 ? "" : "s"} into ${splitKey(key).value}.`);
}

/** Shows the nodes merged into `key` as themselves again. */
function unmerge(key) {
  const merged = Object.entries(saved.merges ?? {}).filter(([, into]) => into === key).map(([from]) => from);
  if (!merged.length) { toast("Nothing is merged into this node."); return; }
  saved.merges = Object.fromEntries(Object.entries(saved.merges).filter(([, into]) => into !== key));
  store.changed("saved", "results");
  toast(`Unmerged ${merged.length} node${merged.length === 1 ? "" : "s"}.`);
}

// The whole workspace as a file, and back.
$("save-investigation").addEventListener("click", () => {
  const file = investigation(saved, view.layoutState?.() ?? null, evidenceOf(session.queries, session.serverLinks ?? []));
  download(new Blob([JSON.stringify(file, null, 1)], { type: "application/json" }), fileName());
});
// A button, so the keyboard reaches it (a label around a hidden input is skipped by Tab).
$("open-investigation-button").addEventListener("click", () => $("open-investigation").click());
$("open-investigation").addEventListener("change", async (event) => {
  const file = event.target.files?.[0];
  event.target.value = "";
  if (!file) return;
  try {
    const { workspace, layout, evidence } = readInvestigation(await file.text());
    if (session.queries.length && !confirm(`Open ${file.name}? It replaces this workspace.`)) return;
    // The records go to the reloaded page through IndexedDB (too many for localStorage).
    await stash({ name: file.name, evidence });
    searches.cancelAll();
    writeSaved(workspace);
    writeLayout(layout);
    location.reload();
  } catch (error) {
    toast(`${file.name} cannot be opened: ${error.message}.`);
  }
});
nodeMenu.addEventListener("keydown", (event) => {
  const items = [...nodeMenu.querySelectorAll("button")];
  const at = items.indexOf(document.activeElement);
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    items[(at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length].focus();
  } else if (event.key === "Escape") {
    event.stopPropagation();
    closeNodeMenu();
  }
});
document.addEventListener("pointerdown", (event) => {
  if (!nodeMenu.contains(event.target)) closeNodeMenu();
  // The expansion options close when the pointer goes elsewhere.
  if (!$("expand-panel").hidden && !$("expand-panel").contains(event.target) && event.target !== $("expand-options")) {
    $("expand-panel").hidden = true;
    $("expand-options").setAttribute("aria-expanded", "false");
  }
});

/** A new query for the node's value in every enabled datasource: in its
 * field, or in each field of its link. */
function searchValue(key) {
  const { field, value } = splitKey(key);
  const link = session.links.byName.get(field);
  const fields = link ? [...new Set(link.fields.map((f) => f.field))] : [field];
  // A link that rewrites values: the forms the loaded records hold it in.
  const forms = link?.replace?.length ? formsOf(session.queries, key, session.links) : [value];
  const quoted = forms.map((form) => `"${form.replace(/[\\"]/g, "\\$&")}"`);
  const text = fields.flatMap((f) => quoted.map((q) => `${f.replace(/[ :\\/+\-!(){}\[\]^"~*?&|]/g, "\\$&")}:${q}`)).join(" OR ");
  if (!store.enabledIds().length) { toast("Enable at least one datasource on the left first."); return; }
  searches.add(text, unusedColor());
}

/** Deletes every node but the selected ones (undo brings them back). */
function deleteOthers() {
  const keep = new Set(session.selection);
  deleteNodes(view.graph.nodes().filter((key) => !keep.has(key)), " other");
}

// The selection as text, for screen readers and for reading long labels.
function renderSelectionList() {
  const list = $("selection-list");
  const keys = session.selection;
  list.hidden = keys.length === 0;
  if (!keys.length) { list.textContent = ""; return; }
  const labels = keys.slice(0, 50).map((key) => {
    const { field, value } = splitKey(key);
    const { label = value, note } = saved.nodes?.[key] ?? {};
    return `${label} (${field})${note ? ` — ${note}` : ""}`;
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
  $("link-selected").disabled = selected < 2;
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
  toast,
  // A selection made elsewhere (the timeline) is the graph's selection too.
  select: (keys) => view.setSelection(keys),
  // The records' values can be searched everywhere or expanded from.
  searchValue: (key) => searchValue(key),
  expandValue: (key) => expandFrom([key]),
};
legend = legendPanel(context);
// Each panel and the topics it shows.
const panels = [
  [datasourcesPanel(context), ["datasources", "connection", "saved"]],
  [datasourceHealth(context), ["health", "connection"]],
  [renderConnection, ["connection"]],
  [fieldsPanel(context), ["fields", "datasources", "nodeFields"]],
  [linkSuggestions(context), ["results", "nodeFields", "links", "datasources"]],
  [queriesPanel(context), ["queries", "results", "datasources", "fields"]],
  [renderGraph, ["results", "nodeFields", "deleted", "datasources", "fields"]],
  [recordsPanel(context), ["results", "selection", "columns", "nodeFields", "fields", "deleted"]],
  [timelinePanel(context), ["results", "timeline", "queries", "selection", "fields", "datasources"]],
  [renderGraphStats, ["selection", "deleted", "saved"]],
  [renderSelectionList, ["selection"]],
  [legend.render, ["queries", "results"]],
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
    // A list drawn again keeps the keyboard where it was (a ticked checkbox
    // stays focused instead of sending focus to the page).
    const focus = focusTrail(document.activeElement);
    for (const [render, shows] of panels) if (shows.some((t) => topics.has(t))) render();
    if (focus && (!document.activeElement?.isConnected || document.activeElement === document.body)) refocus(focus);
  });
});

/** A selector that finds `element` again after its list is drawn anew:
 * its list item's data attributes and its own kind. */
function focusTrail(element) {
  if (!element || element === document.body) return null;
  const item = element.closest("li, tr");
  const scope = element.closest("[id]");
  if (!item || !scope) return null;
  const data = Object.entries(item.dataset).map(([k, v]) => `[data-${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}="${CSS.escape(v)}"]`).join("");
  if (!data) return null;
  const own = `${element.tagName.toLowerCase()}${element.type ? `[type="${element.type}"]` : ""}${element.dataset.query ? `[data-query="${CSS.escape(element.dataset.query)}"]` : ""}`;
  return `#${CSS.escape(scope.id)} ${item.tagName.toLowerCase()}${data} ${own}`;
}

function refocus(selector) {
  try {
    document.querySelector(selector)?.focus();
  } catch {
    // A selector that no longer parses finds nothing to focus.
  }
}

function suggestColor() {
  $("query-color").value = unusedColor();
}

// ---------------------------------------------------------------- input

function deleteSelection() {
  if (deleteNodes(session.selection, "")) view.setSelection([]);
}

/** Deletes `keys` as one step that `u` undoes; says how many. */
function deleteNodes(keys, which) {
  const removed = keys.filter((key) => !saved.deleted.includes(key));
  if (!removed.length) return false;
  saved.deleted = [...saved.deleted, ...removed];
  saved.deletions = [...(saved.deletions ?? []), removed].slice(-50);
  store.changed("saved", "deleted");
  toast(`Removed ${removed.length}${which} node${removed.length === 1 ? "" : "s"} — press u (or Undo delete) to bring ${removed.length === 1 ? "it" : "them"} back.`);
  return true;
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

/** Lays the graph out as `kind` says, or pins or releases every node. */
function arrange(kind) {
  if (!view.graph.order) { toast("There is no graph to arrange yet."); return; }
  const queryIds = session.queries.map((q) => q.id);
  if (kind === "force") view.runLayout(30000);
  else if (kind === "circular") view.arrange(circular(view.graph));
  else if (kind === "concentric") view.arrange(concentric(view.graph, session.selection));
  else if (kind === "grouped") view.arrange(groupedByQuery(view.graph, queryIds));
  else if (kind === "pin-all") { view.pinAll(true); toast(`Pinned all ${view.graph.order} nodes.`); }
  else if (kind === "release-all") { view.pinAll(false); toast("Released every pinned node."); }
  renderGraphStats();
}

/** Offers the graph, or a picture of the view, as a file. */
async function exportGraph(kind) {
  if (!view.graph.order) { toast("There is no graph to export yet."); return; }
  const data = graphData(view.graph, session.queries, saved.nodes);
  const stamp = new Date().toISOString().slice(0, 10);
  const legendEntries = session.queries.map(({ text, color }) => ({ text, color }));
  let blob;
  if (kind === "gexf") blob = new Blob([toGexf(data)], { type: "application/gexf+xml" });
  else if (kind === "graphml") blob = new Blob([toGraphml(data)], { type: "application/graphml+xml" });
  else if (kind === "json") blob = new Blob([toJson(data)], { type: "application/json" });
  else if (kind === "svg" || kind === "png") {
    if (view.unavailable) { toast("A picture needs the drawn graph, which needs WebGL."); return; }
    const shown = view.shownInView();
    const svg = toSvg(shown, legendEntries);
    blob = kind === "svg" ? new Blob([svg], { type: "image/svg+xml" }) : await svgToPng(svg, shown.width, shown.height);
  } else return;
  download(blob, `tributary-graph-${stamp}.${kind}`);
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
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
$("arrange").addEventListener("change", (event) => {
  const kind = event.target.value;
  event.target.value = "";
  arrange(kind);
});
$("export-graph").addEventListener("change", (event) => {
  const kind = event.target.value;
  event.target.value = "";
  exportGraph(kind).catch((error) => toast(`The export failed: ${error.message}`));
});
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
$("link-selected").addEventListener("click", () => linkSelection());
$("expand-size").value = String(expandOptions().size);
$("expand-mode").value = expandOptions().mode;
$("expand-options").addEventListener("click", () => {
  const open = $("expand-panel").hidden;
  $("expand-panel").hidden = !open;
  $("expand-options").setAttribute("aria-expanded", String(open));
  if (open) $("expand-size").focus();
});
$("expand-panel").addEventListener("change", () => {
  saved.expand = { size: Number($("expand-size").value), mode: $("expand-mode").value };
  saved.expand = expandOptions();
  $("expand-size").value = String(saved.expand.size);
  store.changed("saved");
});
$("expand-panel").addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  event.stopPropagation();
  $("expand-panel").hidden = true;
  $("expand-options").setAttribute("aria-expanded", "false");
  $("expand-options").focus();
});
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
  // The node menu without a mouse: the menu key, or Shift+F10.
  if (event.key === "ContextMenu" || (event.key === "F10" && event.shiftKey)) {
    event.preventDefault();
    openNodeMenuFromKeyboard();
    return;
  }
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
    k: linkSelection,
    "?": () => $("help").showModal(),
  };
  // Arrows pan the view; with Shift they move the selected nodes (and pin them).
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (arrows[event.key] && !event.target.closest("#histogram, #records, select, #node-menu, #expand-panel")) {
    event.preventDefault();
    const [dx, dy] = arrows[event.key].map((d) => d * 40);
    if (event.shiftKey && session.selection.length) view.moveNodes(session.selection, dx / 2, dy / 2);
    else view.pan(dx, dy);
    return;
  }
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

// An investigation just opened: its records, as saved, before anything is
// asked of the server; and a plain word on what came back.
const opened = await takeStash();
if (opened) {
  const { records, queries } = restoreEvidence(session.queries, opened.evidence);
  // Joined into nodes as when saved, until the server says how it links fields now.
  if (Array.isArray(opened.evidence?.links)) {
    session.serverLinks = opened.evidence.links;
    session.links = linkIndex([...session.serverLinks, ...(saved.links ?? [])]);
  }
  const asked = session.queries.filter((q) => q.kind !== "expansion").length;
  if (opened.evidence) {
    notice(`Opened ${opened.name}: ${records.toLocaleString()} records of ${queries} quer${queries === 1 ? "y" : "ies"}, as saved${queries < asked ? `; ${asked - queries} other quer${asked - queries === 1 ? "y is" : "ies are"} asked of the server again` : ""}.`);
  } else {
    session.checkReplay = opened.name; // said once the queries have been asked again
  }
}

/** A note above the graph that stays until it is closed. */
function notice(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
}
$("notice-close").addEventListener("click", () => { $("notice").hidden = true; });

/** An investigation saved without its records (version 1) is rebuilt by
 * asking the server again, at most MAX_REPLAY records per datasource:
 * what did not come back is said. */
function checkReplay() {
  if (!session.checkReplay) return;
  const queries = session.queries.filter((q) => q.kind !== "expansion");
  if (!session.connected || queries.some((q) => [...q.sources.values()].some((s) => s.loading) || !q.sources.size)) return;
  const short = [];
  for (const query of queries) {
    for (const [ds, source] of query.sources) {
      const had = Math.min(query.pages * PAGE, source.total ?? 0);
      if (source.loaded < had) short.push(`${store.datasourceName(ds)} ${source.loaded.toLocaleString()} of ${had.toLocaleString()} for ${query.text}`);
    }
  }
  notice(short.length
    ? `${session.checkReplay} was saved without its records; they were asked of the server again, at most ${MAX_REPLAY.toLocaleString()} per datasource, and not all came back: ${short.join("; ")}. Load more to fetch the rest.`
    : `${session.checkReplay} was saved without its records; every query was asked of the server again and all came back.`);
  session.checkReplay = null;
}
panels.push([checkReplay, ["queries", "results", "connection"]]);


// A handle for the browser tests and for poking around in the console: set
// once the page's parts are ready (an opened investigation's records in).
window.tributary = { app: session, saved, view, store, client, model, searches };

suggestColor();
store.changed("datasources", "queries", "connection");
client.connect();
