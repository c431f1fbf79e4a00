// The records panel: the records behind the selected nodes, with columns the
// user picks, and the details of one record.

import { allRecords, recordsOfNodes } from "../model.js";
import { drawDetails, drawRecords, recordsCaption, sortRows, toCsv } from "./records-table.js";
import { mergedFields } from "./fields.js";

export function recordsPanel({ store, $, graphless = false }) {
  const saved = store.saved;
  const columns = () => saved.columns ?? Object.keys(saved.nodeFields);
  const datasourceName = (id) => store.datasourceName(id);

  $("add-column").addEventListener("change", (event) => {
    if (!event.target.value) return;
    saved.columns = [...columns(), event.target.value];
    store.changed("saved", "columns");
  });
  $("details-close").addEventListener("click", () => { $("details").hidden = true; });

  // Sorted by a header's click (again: the other way); exported as shown.
  let sort = null;
  let shown = [];
  $("export-csv").addEventListener("click", () => {
    const csv = toCsv(sortRows(shown, sort, datasourceName), columns(), datasourceName);
    const link = document.createElement("a");
    link.href = `data:text/csv;charset=utf-8,${encodeURIComponent(csv)}`;
    link.download = "tributary-records.csv";
    link.click();
  });

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

  function render() {
    const { selection, queries } = store.session;
    // Without a graph to select from, the table shows every record.
    const { links } = store.session;
    const rows = selection.length ? recordsOfNodes(queries, selection, links) : graphless ? allRecords(queries) : [];
    shown = rows;
    $("export-csv").hidden = rows.length === 0;
    drawRecords($("records"), rows, columns(), {
      datasourceName,
      sort,
      onSort: (column) => {
        sort = { column, descending: sort?.column === column && !sort.descending };
        render();
      },
      onRemoveColumn: (path) => {
        saved.columns = columns().filter((c) => c !== path);
        store.changed("saved", "columns");
      },
      onOpen: (row) => openDetails(row.record),
    });
    $("records-count").textContent = recordsCaption(rows.length);
    $("records-empty").hidden = rows.length > 0;
    renderColumnPicker();
  }

  return render;
}
