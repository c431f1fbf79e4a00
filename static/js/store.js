// What survives a reload, kept in localStorage: enabled datasources, chosen
// fields, table columns, queries (text, color, pages) and deleted nodes.
// Results are not stored; queries are re-run after a reload.

const KEY = "tributary.ui.v1";

export function emptySaved() {
  return {
    enabled: [],          // datasource ids
    nodeFields: {},       // field path → icon name
    dateField: null,      // field path for the timeline
    columns: null,        // record table columns (null: the node fields)
    queries: [],          // [{id, text, color, pages}]
    deleted: [],          // node keys the user deleted
    nextQueryId: 1,
  };
}

export function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY));
    if (saved && typeof saved === "object") return { ...emptySaved(), ...saved };
  } catch {
    // A damaged entry is dropped rather than breaking the page.
  }
  return emptySaved();
}

export function save(saved) {
  try {
    localStorage.setItem(KEY, JSON.stringify(saved));
  } catch {
    // Storage full or disabled: the page keeps working, it just forgets on reload.
  }
}

export function clear() {
  localStorage.removeItem(KEY);
}
