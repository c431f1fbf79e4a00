// The records table (the records behind the selected nodes, with columns the
// user picks) and the details panel (every field of one record).

const MAX_ROWS = 500; // more rows than this are counted, not drawn

export function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(formatValue).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * rows: [{record, queries}] from model.recordsOfNodes; columns: [path];
 * datasourceName(id) → display name; onRemoveColumn(path); onOpen(row).
 */
export function drawRecords(table, rows, columns, { datasourceName, onRemoveColumn, onOpen }) {
  const head = table.tHead;
  const body = table.tBodies[0];
  head.replaceChildren();
  body.replaceChildren();
  if (!rows.length) return;

  const headRow = head.insertRow();
  const first = document.createElement("th");
  first.textContent = "datasource";
  headRow.append(first);
  for (const column of columns) {
    const th = document.createElement("th");
    th.textContent = column;
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.title = `Remove the column ${column}`;
    remove.addEventListener("click", () => onRemoveColumn(column));
    th.append(remove);
    headRow.append(th);
  }

  for (const row of rows.slice(0, MAX_ROWS)) {
    const tr = body.insertRow();
    tr.dataset.record = `${row.record.ds}/${row.record.id}`;
    const source = tr.insertCell();
    for (const query of row.queries) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = query.color;
      swatch.title = query.text;
      source.append(swatch);
    }
    source.append(datasourceName(row.record.ds));
    for (const column of columns) {
      const text = formatValue(row.record.fields?.[column]);
      const cell = tr.insertCell();
      cell.textContent = text;
      cell.title = text;
    }
    tr.addEventListener("click", () => onOpen(row));
  }
}

export function recordsCaption(count) {
  if (!count) return "";
  return count > MAX_ROWS ? `${MAX_ROWS} of ${count} shown` : `${count}`;
}

/** Fills the details table with every field of `record` (highlights, where the datasource gave them, below). */
export function drawDetails(table, record, datasourceName) {
  table.replaceChildren();
  const add = (key, value) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    tr.insertCell().textContent = formatValue(value);
  };
  add("datasource", datasourceName(record.ds));
  add("id", record.id);
  for (const [key, value] of Object.entries(record.fields ?? {})) {
    if (key === "id" && String(value) === String(record.id)) continue;
    add(key, value);
  }
  for (const [key, fragments] of Object.entries(record.highlight ?? {})) {
    add(`highlight: ${key}`, (fragments ?? []).join(" … ").replace(/<\/?em>/g, ""));
  }
}
