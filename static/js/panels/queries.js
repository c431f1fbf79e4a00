// The query list: each query's color, text, progress per datasource and
// errors, with "Load more", "Retry" and "Remove", and a "Live" toggle with a
// badge counting the records appended since. Items are built once and
// updated in place, so an open color picker or a hovered button survives the
// stream of results.

import { PAGE } from "../searches.js";
import { queryHints } from "../hints.js";
import { mergedFields } from "./fields.js";

/** `Emails or Tweets`, `Emails, Tweets or People`. */
function either(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}

/** `to: 10 of 34 · cc: 3 of 3`: an expansion's values per field, drawn of found. */
function fieldCounts(source) {
  const fields = Object.entries(source.perField ?? {}).filter(([, f]) => f.shown > 0 || f.of);
  if (!fields.length) return null;
  return fields.map(([field, { shown, of, more }]) => {
    if (of === null) return `${field}: ${shown.toLocaleString()}${more ? "+" : ""}`;
    return shown < of ? `${field}: top ${shown.toLocaleString()} of ${of.toLocaleString()}` : `${field}: ${shown.toLocaleString()}`;
  }).join(", ");
}

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
    color.setAttribute("aria-label", `Color of the query ${query.text}`);
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
    const more = button("Load more", "more", `Fetch the next ${PAGE} results of each datasource`, () => {
      if (query.kind === "expansion") searches.expandMore(query);
      else searches.loadMore(query);
    });
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
      // Typed while offline (or asked again after a reconnect): it runs
      // once the connection is back.
      const waiting = !store.session.connected && !loading
        && enabled.some((ds) => { const s = query.sources.get(ds); return !s || (!s.error && s.total === null); });
      item.dataset.state = loading ? "loading" : waiting ? "waiting" : query.invalid ? "invalid" : "done";
      if (document.activeElement !== color) color.value = query.color;
      text.textContent = query.text;
      text.title = query.text;

      const counts = [];
      const errors = [];
      for (const [ds, source] of sources) {
        const name = store.datasourceName(ds);
        // Unreachable is said once, in the datasource list.
        if (source.error && source.errorCode === "datasource_failed") counts.push(`${name} unreachable`);
        else if (source.error) errors.push(`${name}: ${source.error}`);
        else if (query.kind === "expansion" && source.total !== null) {
          const sample = source.sampled ? ` (from a sample of ${source.sampled.toLocaleString()} records)` : "";
          if (query.between) counts.push(`${name} ${source.total.toLocaleString()} link${source.total === 1 ? "" : "s"}${sample}`);
          else counts.push(`${name} ${fieldCounts(source) ?? `${source.total.toLocaleString()} new value${source.total === 1 ? "" : "s"}`}${sample}`);
        } else if (source.total !== null) counts.push(`${name} ${source.loaded.toLocaleString()} of ${source.total.toLocaleString()}`);
        else if (source.loading) counts.push(`${name} …`);
      }
      const answered = sources.length > 0 && !loading && !errors.length
        && sources.every(([, s]) => s.total === 0);
      if (query.invalid) {
        // One message for the query, whatever the number of datasources.
        detail.textContent = "";
        const line = document.createElement("span");
        line.className = "error";
        line.textContent = `This query cannot be understood: ${query.invalid}. Fix it in the search box and press Enter.`;
        detail.append(line);
        errors.length = 0;
      } else if (waiting) {
        detail.textContent = "Waiting for the connection…";
      } else if (answered) {
        const where = either(sources.map(([ds]) => store.datasourceName(ds)));
        const values = `${query.keys?.length ?? 0} selected value${query.keys?.length === 1 ? "" : "s"}`;
        detail.textContent = query.kind !== "expansion" ? `No records match \`${query.text}\` in ${where}.`
          : query.between ? `No records of ${where} hold two of the ${values}.`
            : `No new values next to the ${values} in ${where}: every value found is drawn already, or no record holds them.`;
      } else {
        detail.textContent = counts.join(" · ") || (enabled.length ? "" : "Enable a datasource to run this query.");
      }
      const hidden = store.session.hidden?.get(query.id) ?? 0;
      if (hidden > 0) {
        const note = document.createElement("span");
        note.className = "capped";
        note.append(`${hidden.toLocaleString()} more nodes not shown · `);
        const all = document.createElement("button");
        all.type = "button";
        all.className = "link show-all";
        all.textContent = "show all";
        all.addEventListener("click", () => searches.showAll(query));
        note.append(all);
        detail.append(note);
      }
      // Why it may have found nothing: a field no datasource has, a word
      // for a number, a date that cannot be.
      if (!loading && !waiting && !query.invalid && query.kind !== "expansion") {
        for (const hint of queryHints(query.text, mergedFields(store))) {
          const line = document.createElement("span");
          line.className = "hint-line";
          line.textContent = hint;
          detail.append(line);
        }
      }
      for (const message of errors) {
        const line = document.createElement("span");
        line.className = "error";
        line.textContent = message;
        detail.append(line);
      }
      // An expansion is what it found, and more of it ("More"); nothing to follow.
      const expansion = query.kind === "expansion";
      const moreValues = sources.some(([, s]) => Object.values(s.perField ?? {}).some((f) => f.more));
      more.disabled = loading || (expansion ? !moreValues : !sources.some(([, s]) => !s.error && s.total !== null && s.loaded < s.total));
      item.dataset.kind = expansion ? "expansion" : "query";
      more.hidden = Boolean(query.invalid) || (expansion && (query.between || !moreValues));
      more.textContent = expansion ? "More" : "Load more";
      more.title = expansion ? `The next ${query.options?.size ?? ""} values of each field, past those drawn` : `Fetch the next ${PAGE} results of each datasource`;
      liveToggle.hidden = Boolean(query.invalid) || expansion;
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
