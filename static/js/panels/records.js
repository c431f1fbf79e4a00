// The records panel: the records behind the selected nodes, with columns the
// user picks, and the details of one record.

import { allRecords, keyFor, recordsOfNodes, withMerged } from "../model.js";
import { drawDetails, drawRecords, recordsCaption, sortRows, toCsv } from "./records-table.js";
import { mergedFields } from "./fields.js";

export function recordsPanel({ store, $, graphless = false, searchValue = () => {}, expandValue = () => {} }) {
  const saved = store.saved;
  // By default: when (each datasource's timeline date), what (its first
  // text field: a tweet's text, an e-mail's subject), then the node fields.
  const columns = () => saved.columns ?? defaultColumns();
  function defaultColumns() {
    const wanted = [];
    const add = (path) => { if (path && !wanted.includes(path)) wanted.push(path); };
    for (const path of store.timelineFields().values()) add(path);
    for (const ds of store.enabledIds()) {
      const fields = store.session.fields.get(ds) ?? [];
      // A short text beats a long one: "subject" before "body".
      const texts = fields.filter((f) => f.type === "text").map((f) => f.path);
      add(texts.find((p) => /(^|\.)(subject|title|text|message|name)$/.test(p)) ?? texts[0]);
    }
    for (const path of Object.keys(saved.nodeFields)) add(path);
    return wanted;
  }
  /** A column's type in the enabled datasources ("date", "long", …). */
  const typeOf = (path) => mergedFields(store).get(path)?.types.values().next().value ?? null;
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
    const csv = toCsv(sortRows(shown, sort, datasourceName, typeOf), columns(), datasourceName);
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
    // Each value can be searched everywhere or expanded from, as a node can.
    const actions = (field, value) => {
      const key = keyFor(record.ds, field, value, store.session.links);
      const button = (label, title, run) => {
        const element = document.createElement("button");
        element.type = "button";
        element.className = "link value-action";
        element.textContent = label;
        element.title = title;
        element.addEventListener("click", () => run(key));
        return element;
      };
      return [
        button("search", `Search ${value} in all datasources`, searchValue),
        button("expand", `Expand from ${value}`, expandValue),
      ];
    };
    drawDetails($("details-fields"), record, datasourceName, actions);
    $("details").hidden = false;
  }

  function render() {
    const { selection, queries } = store.session;
    // Without a graph to select from, the table shows every record.
    const { links } = store.session;
    // A merged node stands for the values merged into it.
    const keys = withMerged(selection, saved.merges);
    const rows = selection.length ? recordsOfNodes(queries, keys, links) : graphless ? allRecords(queries) : [];
    shown = rows;
    $("export-csv").hidden = rows.length === 0;
    drawRecords($("records"), rows, columns(), {
      datasourceName,
      typeOf,
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
