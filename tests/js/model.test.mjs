// The web UI's graph model, run by `node` (tests/ui_model.rs): a graph kept
// up to date record by record is the same as one built from scratch.
import assert from "node:assert/strict";
import { GraphModel, nodeKey, recordsOfNodes } from "../../static/js/model.js";

function record(i) {
  return {
    ds: i % 2 ? "tweets" : "emails",
    id: `r${i}`,
    fields: {
      user: `u${i % 7}`,
      tags: i % 3 ? [`t${i % 4}`, `t${(i + 1) % 4}`] : [],
      lang: i % 5 ? "en" : null,
    },
  };
}

function query(id, color, from, to) {
  const records = new Map();
  for (let i = from; i < to; i++) records.set(`k${i}`, record(i));
  return { id, color, records };
}

function sorted(view) {
  const nodes = [...view.nodes].sort(([a], [b]) => a.localeCompare(b));
  const edges = [...view.edges].map(([k, e]) => [k, e.count]).sort(([a], [b]) => a.localeCompare(b));
  return { nodes, edges };
}

const fields = ["user", "tags", "lang"];
const a = query(1, "#f00", 0, 60);
const b = query(2, "#00f", 40, 100);

// Incremental: records arrive one by one, then some leave again.
const live = new GraphModel();
live.setFields(fields, []);
for (const q of [a, b]) for (const [key, r] of q.records) live.add(q, key, r);
for (const [key] of [...b.records].slice(0, 30)) {
  live.remove(b, key);
  b.records.delete(key);
}

// From scratch, over what is left.
const fresh = new GraphModel();
fresh.setFields(fields, [a, b]);

const deleted = new Set([nodeKey("user", "u3")]);
assert.deepEqual(sorted(live.view([a, b], deleted)), sorted(fresh.view([a, b], deleted)));
const view = live.view([a, b], deleted);
assert.ok(!view.nodes.has(nodeKey("user", "u3")), "a deleted node is not drawn");
for (const edge of view.edges.values()) {
  assert.ok(view.nodes.has(edge.source) && view.nodes.has(edge.target), "no link to a missing node");
}
// Colors follow the queries' order; a node found by both has both.
const both = [...view.nodes.values()].find((n) => n.colors.length === 2);
assert.deepEqual(both.colors, ["#f00", "#00f"]);

// Removing a whole query takes its counts away and nothing else.
live.removeQuery(b);
const onlyA = new GraphModel();
onlyA.setFields(fields, [a]);
assert.deepEqual(sorted(live.view([a], new Set())), sorted(onlyA.view([a], new Set())));

// The records behind nodes.
const rows = recordsOfNodes([a], [nodeKey("user", "u1")]);
assert.ok(rows.length > 0 && rows.every((row) => row.record.fields.user === "u1"));
console.log("graph model: ok");
