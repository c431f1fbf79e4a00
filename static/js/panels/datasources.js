// The datasource list: one checkbox per datasource the server offers.

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
      label.append(box, ds.name ?? ds.id, type);
      item.append(label);
      list.append(item);
    }
  };
}
