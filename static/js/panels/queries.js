// The query list: each query's color, text, progress per datasource and
// errors, with "Load more", "Retry" and "Remove", and a "Live" toggle with a
// badge counting the records appended since. Items are built once and
// updated in place, so an open color picker or a hovered button survives the
// stream of results.

import { PAGE } from "../searches.js";

export function queriesPanel({ store, searches, $ }) {
  const items = new Map(); // query id → {item, color, text, detail, more, again}

  function queryItem(query) {
    let parts = items.get(query.id);
    if (parts) return parts;
    const item = document.createElement("li");
    item.dataset.query = query.id;
    const head = document.createElement("div");
    head.className = "head";
    const color = document.createElement("input");
    color.type = "color";
    color.title = "Change this query's color";
    color.addEventListener("input", () => searches.recolor(query, color.value));
    const text = document.createElement("span");
    text.className = "text";
    // Live: a toggle, and a badge with the count of appended records.
    const live = document.createElement("button");
    live.type = "button";
    live.className = "live-toggle";
    live.textContent = "Live";
    live.setAttribute("aria-pressed", "false");
    live.addEventListener("click", () => searches.setLive(query, !query.live));
    const badge = document.createElement("span");
    badge.className = "live-badge";
    badge.setAttribute("role", "status");
    badge.hidden = true;
    head.append(color, text, live, badge);
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
    const more = button("Load more", "more", `Fetch the next ${PAGE} results of each datasource`, () => searches.loadMore(query));
    const again = button("Retry", "retry", "Ask the datasources that failed again", () => searches.retry(query));
    button("Remove", "remove danger", "Remove this query and its nodes", () => searches.remove(query));
    item.append(head, detail, actions);
    parts = { item, color, text, detail, more, again, live, badge };
    items.set(query.id, parts);
    return parts;
  }

  return function render() {
    const queries = store.session.queries;
    const list = $("queries");
    $("queries-empty").hidden = queries.length > 0;
    const enabled = store.enabledIds();
    const present = new Set(queries.map((q) => q.id));
    for (const [id, parts] of items) {
      if (!present.has(id)) { parts.item.remove(); items.delete(id); }
    }
    queries.forEach((query, index) => {
      const { item, color, text, detail, more, again, live: liveToggle, badge } = queryItem(query);
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
        const name = store.datasourceName(ds);
        if (source.error) errors.push(`${name}: ${source.error}`);
        else if (source.total !== null) counts.push(`${name} ${source.loaded.toLocaleString()} of ${source.total.toLocaleString()}`);
        else if (source.loading) counts.push(`${name} …`);
      }
      detail.textContent = counts.join(" · ") || (enabled.length ? "" : "Enable a datasource to run this query.");
      for (const message of errors) {
        const line = document.createElement("span");
        line.className = "error";
        line.textContent = message;
        detail.append(line);
      }
      more.disabled = loading || !sources.some(([, s]) => !s.error && s.total !== null && s.loaded < s.total);
      liveToggle.setAttribute("aria-pressed", String(query.live));
      liveToggle.title = query.live ? "Stop following new records" : "Follow new records as they arrive";
      item.dataset.live = query.live ? (query.liveModes ? "on" : "starting") : "off";
      badge.hidden = !query.live;
      badge.textContent = query.liveModes ? `● live +${query.appended.toLocaleString()}` : "● live…";
      const modes = Object.entries(query.liveModes ?? {}).map(([ds, m]) =>
        `${store.datasourceName(ds)}: ${m.mode === "poll" ? `polled every ${m.interval_ms / 1000} s` : "pushed"}`);
      const cannot = [...query.liveErrors].map(([ds, why]) => `${ds ? store.datasourceName(ds) + ": " : ""}${why}`);
      badge.title = [`${query.appended} new records appended`, ...modes, ...cannot].join("\n");
      again.hidden = !errors.length;
    });
  };
}
