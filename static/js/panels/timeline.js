// The timeline panel: records per hour, day or week of the chosen date field.

import { drawHistogram } from "./histogram.js";

export function timelinePanel({ store, $ }) {
  function render() {
    const field = store.saved.dateField;
    const count = drawHistogram($("histogram"), store.session.queries, field);
    $("histogram-field").textContent = field ? `${field}${count ? "" : " — no dates in the results yet"}` : "pick a date field's “timeline” on the left";
  }
  new ResizeObserver(() => render()).observe($("histogram"));
  return render;
}
