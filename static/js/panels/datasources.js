// The datasource list: one checkbox per datasource the server offers, with
// its health from the server's status:/latency: channels (green: up, red:
// down, grey: not measured yet; the latency on hover).

export function datasourcesPanel({ store, searches, $ }) {
  return function render() {
    const { datasources, connected } = store.session;
    const list = $("datasources");
    list.replaceChildren();
    $("datasources-empty").hidden = datasources.length > 0;
    if (!datasources.length && connected) $("datasources-empty").textContent = "This server offers no datasources (or none to this token).";
    for (const ds of datasources) {
      const item = document.createElement("li");
      item.dataset.ds = ds.id;
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = store.saved.enabled.includes(ds.id);
      box.addEventListener("change", () => searches.setDatasourceEnabled(ds.id, box.checked));
      const type = document.createElement("span");
      type.className = "type";
      type.textContent = ds.type ?? "";
      const dot = document.createElement("span");
      dot.className = "health";
      // A picture of the health, named by its label.
      dot.setAttribute("role", "img");
      showHealth(dot, store.session.health.get(ds.id), connected);
      label.append(box, dot, ds.name ?? ds.id, type);
      item.append(label);
      // Unreachable: why, once for every query, and a way to ask again.
      const why = store.session.unreachable.get(ds.id);
      if (why !== undefined && box.checked) {
        const problem = document.createElement("div");
        problem.className = "problem";
        problem.append(`Unreachable: ${why.replace(/^datasource `[^`]*`: /, "") || "no answer"} `);
        const again = document.createElement("button");
        again.type = "button";
        again.className = "link retry-datasource";
        again.textContent = "Retry";
        again.addEventListener("click", () => searches.retryDatasource(ds.id));
        problem.append(again);
        item.append(problem);
      }
      list.append(item);
    }
  };
}

// Health changes every few seconds: only the dots are updated, so the list
// never re-renders under the pointer.
export function datasourceHealth({ store, $ }) {
  return function render() {
    for (const dot of $("datasources").querySelectorAll("li[data-ds] .health")) {
      showHealth(dot, store.session.health.get(dot.closest("li").dataset.ds), store.session.connected);
    }
  };
}

/** Offline, the last health measured says nothing of now: grey, and why. */
function showHealth(dot, health, connected = true) {
  if (!connected) {
    dot.dataset.health = "unknown";
    dot.title = "Health unknown while the page is offline";
    dot.setAttribute("aria-label", dot.title);
    return;
  }
  dot.dataset.health = health?.ok === true ? "up" : health?.ok === false ? "down" : "unknown";
  dot.title = health?.ok === undefined
    ? "Health not measured yet"
    : `${health.ok ? "Up" : "Down"}${health.latencyMs !== undefined ? ` · health check ${health.latencyMs} ms` : ""}`;
  dot.setAttribute("aria-label", dot.title);
}
