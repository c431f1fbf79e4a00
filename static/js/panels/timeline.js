// The timeline panel: records per hour, day or week, each datasource's
// records by its own date field; dragging across it selects the nodes of
// the records in that time range, and the selection's records are shown
// over the bars.

import { drawHistogram } from "./histogram.js";
import { keysOf, mergedInto, recordsOfNodes, withMerged } from "../model.js";

export function timelinePanel({ store, $, select }) {
  let range = null; // [from, to] of the last drawing, ms
  let bins = 0; // bars of the last drawing
  let size = null; // the histogram's {width, height}, as last observed
  let cursor = null; // [first, last] bar chosen from the keyboard

  function render() {
    const fields = store.timelineFields();
    const { queries, selection } = store.session;
    const selected = selection.length
      ? new Set(recordsOfNodes(queries, withMerged(selection, store.saved.merges), store.session.links).map(({ record }) => `${record.ds}\u0000${record.id}`))
      : null;
    const drawn = drawHistogram($("histogram"), queries, (ds) => fields.get(ds), selected, size, cursor);
    range = drawn.range;
    bins = drawn.bins ?? 0;
    if (cursor && cursor.some((bar) => bar >= bins)) cursor = null;
    $("histogram-field").textContent = fields.size
      ? [...fields].map(([ds, path]) => `${store.datasourceName(ds)}: ${path}`).join(" · ")
        + (drawn.count ? " — drag to select a time range" : " — no dates in the results yet")
      : "no date field in the enabled datasources";
  }

  // A drag across the bars selects the nodes of the records in that range.
  const histogram = $("histogram");
  let from = null;
  const timeAt = (event) => {
    if (!range) return null;
    const box = histogram.getBoundingClientRect();
    const share = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    return range[0] + share * (range[1] - range[0]);
  };
  histogram.addEventListener("pointerdown", (event) => {
    from = timeAt(event);
    if (from !== null) histogram.setPointerCapture(event.pointerId);
  });
  histogram.addEventListener("pointerup", (event) => {
    const to = timeAt(event);
    if (from === null || to === null) return;
    const [low, high] = from < to ? [from, to] : [to, from];
    from = null;
    selectRange(low, high);
  });

  // The keyboard: arrows choose a bar, Shift+arrows widen the choice, Home
  // and End go to either end, Enter (or Space) selects the nodes of its
  // records, as a drag does.
  histogram.tabIndex = 0;
  histogram.setAttribute("role", "application");
  histogram.setAttribute("aria-roledescription", "timeline");
  histogram.setAttribute("aria-label", "Timeline: arrow keys choose a period, Shift and arrows widen it, Enter selects its records' nodes");
  histogram.addEventListener("keydown", (event) => {
    if (!range || !bins) return;
    const [a, b] = cursor ?? [0, 0];
    const to = (bar) => Math.max(0, Math.min(bins - 1, bar));
    let next = null;
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const step = event.key === "ArrowRight" ? 1 : -1;
      next = event.shiftKey ? [a, to(b + step)] : cursor ? [to(b + step), to(b + step)] : [0, 0];
    } else if (event.key === "Home") next = event.shiftKey ? [a, 0] : [0, 0];
    else if (event.key === "End") next = event.shiftKey ? [a, bins - 1] : [bins - 1, bins - 1];
    else if ((event.key === "Enter" || event.key === " ") && cursor) {
      event.preventDefault();
      event.stopPropagation();
      const width = (range[1] - range[0]) / bins;
      const [first, last] = [Math.min(a, b), Math.max(a, b)];
      selectRange(range[0] + first * width, range[0] + (last + 1) * width - 1);
      return;
    }
    if (!next) return;
    event.preventDefault();
    event.stopPropagation();
    cursor = next;
    const width = (range[1] - range[0]) / bins;
    const day = (at) => new Date(at).toISOString().slice(0, 10);
    const [first, last] = [Math.min(...cursor), Math.max(...cursor)];
    $("timeline-status").textContent = `From ${day(range[0] + first * width)} to ${day(range[0] + (last + 1) * width - 1)}: Enter selects its records' nodes.`;
    render();
  });

  /** Selects the nodes of the records dated from `low` to `high` (ms). */
  function selectRange(low, high) {
    const fields = store.timelineFields();
    const nodeFields = Object.keys(store.saved.nodeFields);
    const keys = new Set();
    for (const query of store.session.queries) {
      for (const record of query.records.values()) {
        const field = fields.get(record.ds);
        const raw = field ? record.fields?.[field] : undefined;
        const inside = (Array.isArray(raw) ? raw : [raw]).some((value) => {
          const time = typeof value === "number" ? value : Date.parse(value);
          return time >= low && time <= high;
        });
        if (inside) for (const key of keysOf(record, nodeFields, store.session.links)) keys.add(mergedInto(key, store.saved.merges));
      }
    }
    select([...keys]);
  }
  // Redrawn in the next frame: drawing inside the callback would resize what it observes.
  new ResizeObserver(([entry]) => {
    size = { width: entry.contentRect.width, height: entry.contentRect.height };
    requestAnimationFrame(render);
  }).observe(histogram);
  return render;
}
