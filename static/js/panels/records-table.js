// The records table (the records behind the selected nodes, with columns the
// user picks) and the details panel (every field of one record).

const MAX_ROWS = 500; // more rows than this are counted, not drawn

export function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(formatValue).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The text of a row's cell in `column` (`datasource` or a field path). */
export function cellText(row, column, datasourceName) {
  return column === "datasource" ? datasourceName(row.record.ds) : formatValue(row.record.fields?.[column]);
}

/**
 * Rows sorted by `sort.column`: numbers as numbers, dates (`typeOf(column)`
 * is "date") by time, the rest as text; rows without a value last, either way.
 */
export function sortRows(rows, sort, datasourceName, typeOf = () => null) {
  if (!sort) return rows;
  const date = typeOf(sort.column) === "date";
  const key = (row) => {
    let raw = sort.column === "datasource" ? null : row.record.fields?.[sort.column];
    if (Array.isArray(raw)) raw = raw[0];
    if (raw === null || raw === undefined || raw === "") return sort.column === "datasource" ? datasourceName(row.record.ds) : null;
    if (typeof raw === "number") return raw;
    if (date) {
      const time = Date.parse(raw);
      if (Number.isFinite(time)) return time;
    }
    if (typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw))) return Number(raw);
    return cellText(row, sort.column, datasourceName);
  };
  const keyed = rows.map((row) => [key(row), row]);
  keyed.sort(([x], [y]) => {
    if (x === null || y === null) return (x === null) - (y === null); // empty last
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return sort.descending ? -order : order;
  });
  return keyed.map(([, row]) => row);
}

/** The rows as CSV (RFC 4180: quoted where needed), a header line first. */
export function toCsv(rows, columns, datasourceName) {
  const quote = (text) => (/[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);
  const header = ["datasource", "id", ...columns];
  const lines = [header.map(quote).join(",")];
  for (const row of rows) {
    lines.push([datasourceName(row.record.ds), String(row.record.id), ...columns.map((c) => cellText(row, c, datasourceName))]
      .map(quote).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

/**
 * rows: [{record, queries}] from model.recordsOfNodes; columns: [path];
 * datasourceName(id) → display name; onRemoveColumn(path); onOpen(row);
 * sort ({column, descending} or null) and onSort(column): a click on a
 * header sorts by it.
 */
export function drawRecords(table, rows, columns, { datasourceName, onRemoveColumn, onOpen, sort = null, onSort = () => {}, typeOf = () => null }) {
  const head = table.tHead;
  const body = table.tBodies[0];
  head.replaceChildren();
  body.replaceChildren();
  if (!rows.length) return;

  const headRow = head.insertRow();
  const header = (column) => {
    const th = document.createElement("th");
    const button = document.createElement("button");
    button.className = "sort";
    button.textContent = column;
    button.title = `Sort by ${column}`;
    button.addEventListener("click", () => onSort(column));
    th.append(button);
    th.setAttribute("aria-sort", sort?.column === column ? (sort.descending ? "descending" : "ascending") : "none");
    headRow.append(th);
    return th;
  };
  header("datasource");
  for (const column of columns) {
    const th = header(column);
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.title = `Remove the column ${column}`;
    remove.addEventListener("click", () => onRemoveColumn(column));
    th.append(remove);
  }

  // Rows are built apart and added at once, and one listener on the body
  // serves them all: with hundreds of rows, a selection stays one short frame.
  const drawn = sortRows(rows, sort, datasourceName, typeOf).slice(0, MAX_ROWS);
  const fragment = document.createDocumentFragment();
  for (const row of drawn) {
    const tr = document.createElement("tr");
    fragment.append(tr);
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
    // Reachable with Tab, opened with Enter or Space, as with a click.
    tr.tabIndex = 0;
  }
  body.append(fragment);
  const rowOf = (event) => drawn[event.target.closest?.("tr")?.sectionRowIndex];
  body.onclick = (event) => {
    const row = rowOf(event);
    if (row) onOpen(row);
  };
  body.onkeydown = (event) => {
    const row = rowOf(event);
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      onOpen(row);
    }
  };
}

export function recordsCaption(count) {
  if (!count) return "";
  return count > MAX_ROWS ? `${MAX_ROWS} of ${count} shown` : `${count}`;
}

/** Fills the details table with every field of `record` (highlights, where
 * the datasource gave them, below). `valueActions(field, value)`: buttons
 * offered beside each single value of a field (search it, expand from it). */
export function drawDetails(table, record, datasourceName, valueActions = () => []) {
  table.replaceChildren();
  const add = (key, value, field = null) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    const cell = tr.insertCell();
    cell.textContent = formatValue(value);
    const values = (Array.isArray(value) ? value : [value]).filter((v) => ["string", "number", "boolean"].includes(typeof v));
    if (field && values.length === 1) cell.append(" ", ...valueActions(field, String(values[0])));
  };
  add("datasource", datasourceName(record.ds));
  add("id", record.id);
  for (const [key, value] of Object.entries(record.fields ?? {})) {
    if (key === "id" && String(value) === String(record.id)) continue;
    add(key, value, key);
  }
  for (const [key, fragments] of Object.entries(record.highlight ?? {})) {
    add(`highlight: ${key}`, (fragments ?? []).join(" … ").replace(/<\/?em>/g, ""));
  }
}
