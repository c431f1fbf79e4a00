// The records panel: the records behind the selected nodes, with columns the
// user picks, and the details of one record.

import { recordsOfNodes } from "../model.js";
import { drawDetails, drawRecords, recordsCaption } from "./records-table.js";
import { mergedFields } from "./fields.js";

export function recordsPanel({ store, $ }) {
  const saved = store.saved;
  const columns = () => saved.columns ?? Object.keys(saved.nodeFields);
  const datasourceName = (id) => store.datasourceName(id);

  $("add-column").addEventListener("change", (event) => {
    if (!event.target.value) return;
    saved.columns = [...columns(), event.target.value];
    store.changed("saved", "columns");
  });
  $("details-close").addEventListener("click", () => { $("details").hidden = true; });

  function renderColumnPicker() {
    const picker = $("add-column");
    const shown = new Set(columns());
    picker.replaceChildren(new Option("+ column", ""));
    for (const path of [...mergedFields(store).keys()].sort()) if (!shown.has(path)) picker.append(new Option(path, path));
  }

  function openDetails(record) {
    $("details-title").textContent = `Record ${record.id}`;
    drawDetails($("details-fields"), record, datasourceName);
    $("details").hidden = false;
  }

  return function render() {
    const { selection, queries } = store.session;
    const rows = selection.length ? recordsOfNodes(queries, selection) : [];
    drawRecords($("records"), rows, columns(), {
      datasourceName,
      onRemoveColumn: (path) => {
        saved.columns = columns().filter((c) => c !== path);
        store.changed("saved", "columns");
      },
      onOpen: (row) => openDetails(row.record),
    });
    $("records-count").textContent = recordsCaption(rows.length);
    $("records-empty").hidden = rows.length > 0;
    renderColumnPicker();
  };
}
