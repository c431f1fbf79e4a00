// The timeline panel: records per hour, day or week, each datasource's
// records by its own date field; dragging across it selects the nodes of
// the records in that time range, and the selection's records are shown
// over the bars.

import { drawHistogram } from "./histogram.js";
import { keysOf, mergedInto, recordsOfNodes, withMerged } from "../model.js";

export function timelinePanel({ store, $, select }) {
  let range = null; // [from, to] of the last drawing, ms
  let size = null; // the histogram's {width, height}, as last observed

  function render() {
    const fields = store.timelineFields();
    const { queries, selection } = store.session;
    const selected = selection.length
      ? new Set(recordsOfNodes(queries, withMerged(selection, store.saved.merges), store.session.links).map(({ record }) => `${record.ds}\u0000${record.id}`))
      : null;
    const drawn = drawHistogram($("histogram"), queries, (ds) => fields.get(ds), selected, size);
    range = drawn.range;
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
  });
  // Redrawn in the next frame: drawing inside the callback would resize what it observes.
  new ResizeObserver(([entry]) => {
    size = { width: entry.contentRect.width, height: entry.contentRect.height };
    requestAnimationFrame(render);
  }).observe(histogram);
  return render;
}
