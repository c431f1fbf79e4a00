// The legend over the graph: which color is which query, and selection by
// query. Each entry is a toggle: pressing one selects its query's nodes;
// pressing more combines them as the chooser says — nodes in all of the
// pressed queries (what two queries share), in any of them, or only in them.

import { nodesOfQueries, QUERY_SETS } from "../model.js";

export function legendPanel({ store, $, select }) {
  const { session } = store;
  session.chosenQueries ??= [];
  session.queryOp ??= "all";
  const legend = $("legend");

  /** Selects the nodes the pressed queries and the chooser pick. */
  function apply() {
    const nodes = [];
    const graph = session.graph();
    graph.forEachNode((key, attributes) => nodes.push([key, attributes]));
    const keys = nodesOfQueries(nodes, session.chosenQueries, session.queryOp);
    session.selectingByQuery = true;
    select(keys);
    session.selectingByQuery = false;
    render();
  }

  function toggle(id) {
    const chosen = session.chosenQueries;
    session.chosenQueries = chosen.includes(id) ? chosen.filter((q) => q !== id) : [...chosen, id];
    apply();
  }

  function render() {
    const focused = document.activeElement?.closest?.("#legend [data-query]")?.dataset.query;
    legend.replaceChildren();
    const ids = new Set(session.queries.map((q) => q.id));
    session.chosenQueries = session.chosenQueries.filter((id) => ids.has(id));
    if (session.queries.length > 1) {
      const head = document.createElement("li");
      head.className = "legend-op";
      const op = document.createElement("select");
      op.id = "legend-op";
      op.setAttribute("aria-label", "Select the nodes that are");
      for (const [value, text] of Object.entries(QUERY_SETS)) op.append(new Option(`Select nodes ${text}`, value, false, value === session.queryOp));
      op.addEventListener("change", () => {
        session.queryOp = op.value;
        if (session.chosenQueries.length) apply();
      });
      head.append(op);
      legend.append(head);
    }
    for (const query of session.queries) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.query = String(query.id);
      const pressed = session.chosenQueries.includes(query.id);
      button.setAttribute("aria-pressed", String(pressed));
      button.title = pressed ? "Leave this query out of the selection" : "Select the nodes this query found (press more to combine)";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = query.color;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = query.text;
      button.append(swatch, text);
      button.addEventListener("click", () => toggle(query.id));
      item.append(button);
      legend.append(item);
    }
    legend.hidden = session.queries.length === 0;
    if (focused) legend.querySelector(`[data-query="${CSS.escape(focused)}"]`)?.focus();
  }

  return {
    // While queries are pressed, the selection follows their nodes as results arrive.
    render: () => (session.chosenQueries.length ? apply() : render()),
    /** A selection made another way (a click, a box) is no longer by query. */
    selectionChanged() {
      if (session.selectingByQuery || !session.chosenQueries.length) return;
      session.chosenQueries = [];
      render();
    },
  };
}
