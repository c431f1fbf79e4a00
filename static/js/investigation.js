// An investigation: the whole workspace as one JSON file, to keep or to hand
// to a colleague — what this browser keeps between visits (datasources,
// fields and icons, queries with their colors and live state, expansions
// with what they found, deleted nodes, names, notes and merges of nodes) and
// the layout (node positions, pins, the camera). Loading one replaces the
// workspace and reloads the page, which asks the server for the queries'
// records again. No DOM here.

export const FORMAT = "tributary.investigation";
export const VERSION = 1;

/** The file's content for `workspace` (the store's `saved`) and `layout`. */
export function investigation(workspace, layout) {
  return { format: FORMAT, version: VERSION, savedAt: new Date().toISOString(), workspace, layout };
}

/** The workspace and layout in a file's text; an Error says what is wrong. */
export function readInvestigation(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error("the file is not JSON");
  }
  if (data?.format !== FORMAT) throw new Error("the file is not a tributary investigation");
  if (data.version !== VERSION) throw new Error(`it is version ${data.version}; this page reads version ${VERSION}`);
  const workspace = data.workspace;
  const complete = workspace && typeof workspace === "object" && Array.isArray(workspace.queries)
    && Array.isArray(workspace.enabled) && workspace.nodeFields && typeof workspace.nodeFields === "object";
  if (!complete) throw new Error("the workspace in the file is incomplete");
  const layout = data.layout && typeof data.layout === "object" ? data.layout : null;
  return { workspace, layout };
}

/** A name for the file: `tributary-investigation-2026-11-24.json`. */
export function fileName(now = new Date()) {
  return `tributary-investigation-${now.toISOString().slice(0, 10)}.json`;
}
