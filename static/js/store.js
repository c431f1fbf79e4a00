// The page's one state store. `saved` is what survives a reload (enabled
// datasources, chosen fields, table columns, queries, deleted nodes);
// `session` is what the server sent (datasources, fields, query results)
// and what is selected. Every change names its topics; panels subscribe to
// the topics they draw, and persistence is one more subscriber.

import { linkIndex } from "./model.js";

const KEY = "tributary.ui.v1";

export function emptySaved() {
  return {
    enabled: [],          // datasource ids
    nodeFields: {},       // field path → icon name
    dateField: null,      // field path for the timeline (before there was one per datasource)
    dateFields: {},       // datasource id → its date field for the timeline
    columns: null,        // record table columns (null: the node fields)
    queries: [],          // [{id, text, color, pages}]
    deleted: [],          // node keys the user deleted
    deletions: [],        // the deletes, oldest first, each a list of keys (undone one at a time)
    nodes: {},            // node key → {label, note}: the user's name and note for a node
    merges: {},           // node key → the node key it is merged into (shown as that one)
    links: [],            // links the user accepted: [{name, lowercase, fields: [{datasource, field}]}]
    dismissedLinks: [],   // suggestions the user said no to ("ds:field|ds:field")
    nextQueryId: 1,
  };
}

function loadSaved() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY));
    if (saved && typeof saved === "object") return { ...emptySaved(), ...saved };
  } catch {
    // A damaged entry is dropped rather than breaking the page.
  }
  return emptySaved();
}

export class Store {
  constructor() {
    this.saved = loadSaved();
    this.session = {
      datasources: [],        // [{id, name, type}] from INITIAL_STATE_RECEIVE
      links: linkIndex(),     // links between fields of different datasources, from the same
      fields: new Map(),      // datasource id → [{path, type}]
      fieldErrors: new Map(), // datasource id → message
      queries: [],            // [{id, text, color, pages, sources, records}]
      selection: [],          // selected node keys
      connected: false,
      connection: { state: "connecting", text: "Connecting…" },
      health: new Map(),      // datasource id → {ok, latencyMs} from the status:/latency: channels
      unreachable: new Map(), // datasource id → why its last call failed (said once, in the datasource list)
    };
    this.listeners = [];
  }

  /** Calls `listener(topics)` after every change; `topics` is a Set of names. */
  subscribe(listener) {
    this.listeners.push(listener);
  }

  /** Announces a change of `topics` ("saved", "datasources", "fields", "queries", "results", "selection", "connection"). */
  changed(...topics) {
    const set = new Set(topics);
    for (const listener of this.listeners) listener(set);
  }

  /** The enabled datasources the server offers, in its order. */
  enabledIds() {
    return this.session.datasources.map((ds) => ds.id).filter((id) => this.saved.enabled.includes(id));
  }

  /** The date field each enabled datasource puts on the timeline: the one
   * chosen for it, else its first date field (none is left out unsaid). */
  timelineFields() {
    const chosen = new Map();
    for (const ds of this.enabledIds()) {
      const dates = (this.session.fields.get(ds) ?? []).filter((f) => f.type === "date").map((f) => f.path);
      const pick = [this.saved.dateFields?.[ds], this.saved.dateField].find((p) => p && dates.includes(p)) ?? dates[0];
      if (pick) chosen.set(ds, pick);
    }
    return chosen;
  }

  datasourceName(id) {
    return this.session.datasources.find((ds) => ds.id === id)?.name ?? id;
  }
}

/** Writes `saved` to localStorage whenever it changes. */
export function persist(store) {
  store.subscribe((topics) => {
    if (!topics.has("saved")) return;
    try {
      localStorage.setItem(KEY, JSON.stringify(store.saved));
    } catch {
      // Storage full or disabled: the page keeps working, it just forgets on reload.
    }
  });
}

export function clearSaved() {
  localStorage.removeItem(KEY);
}

/** Replaces what is kept between visits (loading an investigation). */
export function writeSaved(saved) {
  localStorage.setItem(KEY, JSON.stringify({ ...emptySaved(), ...saved }));
}
