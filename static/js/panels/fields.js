// The field list: the fields of the enabled datasources, merged by path;
// ticking one makes its values nodes (with an icon), a date field can feed
// the timeline.

import { guessIcon, iconUrl, ICON_NAMES } from "../icons.js";
import { suggestLinks } from "../model.js";

/** path → {types: Set, sources: [name]} over the enabled datasources. */
export function mergedFields(store) {
  const merged = new Map();
  for (const ds of store.enabledIds()) {
    for (const field of store.session.fields.get(ds) ?? []) {
      const entry = merged.get(field.path) ?? { types: new Set(), sources: [] };
      entry.types.add(field.type);
      entry.sources.push(store.datasourceName(ds));
      merged.set(field.path, entry);
    }
  }
  return merged;
}

/**
 * Links the loaded records suggest between chosen fields of different
 * datasources (their values overlap), each with "Link them" and "No".
 */
export function linkSuggestions({ store, searches, $ }) {
  return function render() {
    const box = $("link-suggestions");
    box.replaceChildren();
    const { saved, session } = store;
    const suggestions = suggestLinks(session.queries, Object.keys(saved.nodeFields), session.links, saved.dismissedLinks ?? []);
    for (const suggestion of suggestions.slice(0, 3)) {
      const [a, b] = suggestion.fields;
      const item = document.createElement("div");
      item.className = "suggestion";
      item.append(`${a.field} (${store.datasourceName(a.datasource)}) and ${b.field} (${store.datasourceName(b.datasource)}) share ${suggestion.shared} value${suggestion.shared === 1 ? "" : "s"} (${suggestion.sample.join(", ")}…).`, document.createElement("br"));
      const yes = document.createElement("button");
      yes.className = "accept-link";
      yes.textContent = "Link them";
      yes.title = "Show their values as one node, and expand through the link";
      yes.addEventListener("click", () => searches.acceptLink(suggestion));
      const no = document.createElement("button");
      no.className = "ghost dismiss-link";
      no.textContent = "No";
      no.addEventListener("click", () => searches.dismissLink(suggestion));
      item.append(yes, no);
      box.append(item);
    }
  };
}

export function fieldsPanel({ store, $ }) {
  const saved = store.saved;
  $("field-filter").addEventListener("input", () => render());
  // While the pointer is over the list its order holds (ticking a field
  // does not move the next one from under the pointer); it is sorted again
  // once the pointer leaves.
  let order = null;
  $("fields").addEventListener("pointerenter", () => { order = [...$("fields").children].map((li) => li.dataset.field); });
  $("fields").addEventListener("pointerleave", () => { order = null; render(); });

  function render() {
    const list = $("fields");
    list.replaceChildren();
    const merged = mergedFields(store);
    const filter = $("field-filter").value.trim().toLowerCase();
    const enabled = store.enabledIds();
    const { fieldErrors } = store.session;
    const errors = enabled.filter((ds) => fieldErrors.has(ds)).map((ds) => `${store.datasourceName(ds)}: ${fieldErrors.get(ds)}`);
    const empty = $("fields-empty");
    empty.hidden = merged.size > 0 && !errors.length;
    empty.textContent = errors.length ? `Could not list fields. ${errors.join(" ")}`
      : enabled.length ? "Loading fields…" : "Enable a datasource above to see its fields.";

    const sorted = [...merged.keys()].sort((a, b) => {
      const chosen = Number(b in saved.nodeFields) - Number(a in saved.nodeFields);
      return chosen || a.localeCompare(b);
    });
    const paths = order
      ? [...order.filter((p) => merged.has(p)), ...sorted.filter((p) => !order.includes(p))]
      : sorted;
    for (const path of paths) {
      if (filter && !path.toLowerCase().includes(filter)) continue;
      list.append(fieldItem(path, merged.get(path)));
    }
  }

  function fieldItem(path, { types, sources }) {
    const typeText = [...types].join("/");
    const item = document.createElement("li");
    item.dataset.field = path;
    item.title = `${path} (${typeText}) in ${sources.join(", ")}`;

    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = path in saved.nodeFields;
    box.title = "Make this field's values nodes";
    box.addEventListener("change", () => {
      if (box.checked) saved.nodeFields[path] = guessIcon(path, [...types][0], new Set(Object.values(saved.nodeFields)));
      else delete saved.nodeFields[path];
      if (saved.columns) saved.columns = box.checked ? [...new Set([...saved.columns, path])] : saved.columns;
      store.changed("saved", "nodeFields");
    });
    const name = document.createElement("span");
    name.className = "path";
    name.textContent = path;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = typeText;
    label.append(box, name, type);
    item.append(label);

    if (path in saved.nodeFields) {
      const icon = document.createElement("button");
      icon.className = "icon";
      icon.title = "Change this field's icon";
      const img = document.createElement("img");
      img.src = iconUrl(saved.nodeFields[path]);
      img.alt = saved.nodeFields[path];
      icon.append(img);
      icon.addEventListener("click", () => {
        saved.nodeFields[path] = ICON_NAMES[(ICON_NAMES.indexOf(saved.nodeFields[path]) + 1) % ICON_NAMES.length];
        store.changed("saved", "nodeFields");
      });
      item.append(icon);
    }
    if (types.has("date")) {
      const date = document.createElement("label");
      date.className = "date";
      date.title = "Use this field for the timeline";
      const radio = document.createElement("input");
      radio.type = "checkbox";
      radio.className = "timeline";
      radio.setAttribute("aria-label", `Use ${path} for the timeline`);
      const timeline = store.timelineFields();
      radio.checked = [...timeline.values()].includes(path);
      radio.addEventListener("change", () => {
        // The datasources that have this date field use it.
        saved.dateFields = { ...saved.dateFields };
        for (const ds of store.enabledIds()) {
          if ((store.session.fields.get(ds) ?? []).some((f) => f.path === path && f.type === "date")) saved.dateFields[ds] = path;
        }
        store.changed("saved", "timeline", "fields");
      });
      date.append(radio, "timeline");
      item.append(date);
    }
    return item;
  }

  return render;
}
