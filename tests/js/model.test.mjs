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

// Links: a value of any linked field is one node, under the link's name,
// lowercased when the link says so; its records are found by it.
{
  const { linkIndex, keysOf } = await import("../../static/js/model.js");
  const links = linkIndex([{ name: "person", lowercase: true, fields: [
    { datasource: "tweets", field: "user.email" }, { datasource: "emails", field: "from" }] }]);
  const tweet = { ds: "tweets", id: "t1", fields: { "user.email": "Anna@X", "user.screen_name": "annad0" } };
  const email = { ds: "emails", id: "m1", fields: { from: "anna@x", to: ["bob@x"] } };
  assert.deepEqual(keysOf(tweet, ["user.email", "user.screen_name"], links), [nodeKey("person", "anna@x"), nodeKey("user.screen_name", "annad0")]);
  assert.deepEqual(keysOf(email, ["from", "to"], links), [nodeKey("person", "anna@x"), nodeKey("to", "bob@x")]);
  // `from` of a tweet is not in the link: it stays a field of its own.
  assert.deepEqual(keysOf({ ds: "tweets", id: "t2", fields: { from: "anna@x" } }, ["from"], links), [nodeKey("from", "anna@x")]);
  const q = { id: 1, color: "#000", records: new Map([["a", tweet], ["b", email]]) };
  const model = new GraphModel();
  model.setFields(["user.email", "from", "to", "user.screen_name"], [q], links);
  const view = model.view([q], new Set());
  assert.equal(view.nodes.get(nodeKey("person", "anna@x")).count, 2, "one node for both datasets");
  const found = recordsOfNodes([q], [nodeKey("person", "anna@x")], links).map((r) => r.record.id).sort();
  assert.deepEqual(found, ["m1", "t1"]);
}

// A link that rewrites values (lowercase, then strip the domain): a screen
// name and addresses at any domain are one node; the loaded forms of it are
// found for a search; a pattern JavaScript cannot read leaves values apart.
{
  const { linkIndex, keysOf, formsOf, linkValue } = await import("../../static/js/model.js");
  const link = { name: "person", lowercase: true, replace: [{ regex: "@.*$", with: "" }], fields: [
    { datasource: "tweets", field: "user.screen_name" }, { datasource: "emails", field: "from" }] };
  const links = linkIndex([link]);
  const tweet = { ds: "tweets", id: "t1", fields: { "user.screen_name": "AnnaD" } };
  const email = { ds: "emails", id: "m1", fields: { from: "annad@acme.example" } };
  const other = { ds: "emails", id: "m2", fields: { from: "AnnaD@other.example" } };
  const decoy = { ds: "emails", id: "m3", fields: { from: "anna.d@acme.example" } };
  const person = nodeKey("person", "annad");
  assert.deepEqual(keysOf(tweet, ["user.screen_name"], links), [person]);
  assert.deepEqual(keysOf(email, ["from"], links), [person]);
  assert.deepEqual(keysOf(decoy, ["from"], links), [nodeKey("person", "anna.d")]);
  const q = { id: 1, color: "#000", records: new Map([["a", tweet], ["b", email], ["c", other], ["d", decoy]]) };
  assert.deepEqual(formsOf([q], person, links).sort(), ["AnnaD", "AnnaD@other.example", "annad@acme.example"]);
  assert.deepEqual(formsOf([q], nodeKey("from", "x"), links), ["x"]);
  const model = new GraphModel();
  model.setFields(["user.screen_name", "from"], [q], links);
  assert.equal(model.view([q], new Set()).nodes.get(person).count, 3, "one node for the screen name and both addresses");
  // Groups in the replacement, as the server writes them.
  const swap = { name: "s", replace: [{ regex: "^(\\w+)@(\\w+)$", with: "$2/$1" }], fields: [] };
  assert.equal(linkValue(swap, "ann@acme", linkIndex([swap])), "acme/ann");
  const unreadable = { name: "u", replace: [{ regex: "(?<", with: "" }], fields: [{ datasource: "emails", field: "to" }] };
  assert.deepEqual(keysOf({ ds: "emails", id: "m", fields: { to: "a@b" } }, ["to"], linkIndex([unreadable])), [nodeKey("u", "a@b")]);
}

// Merges: nodes merged into another are drawn as that one, counts and
// links moved over, "(+n)" on its label; names replace labels.
{
  const { withMerges, withMerged } = await import("../../static/js/model.js");
  const a = nodeKey("user", "ann"), b = nodeKey("user", "anne"), t = nodeKey("tags", "x");
  const drawn = {
    nodes: new Map([
      [a, { field: "user", label: "ann", colors: ["#f00"], shares: [2], count: 2 }],
      [b, { field: "user", label: "anne", colors: ["#f00", "#00f"], shares: [1, 1], count: 2 }],
      [t, { field: "tags", label: "x", colors: ["#f00"], shares: [3], count: 3 }],
    ]),
    edges: new Map([["e1", { source: a, target: t, count: 2 }], ["e2", { source: b, target: t, count: 1 }], ["e3", { source: a, target: b, count: 1 }]]),
    hidden: new Map(),
  };
  const merged = withMerges(drawn, { [b]: a }, { [a]: { label: "Ann S." } });
  assert.deepEqual([...merged.nodes.keys()].sort(), [a, t].sort());
  const ann = merged.nodes.get(a);
  assert.equal(ann.label, "Ann S. (+1)");
  assert.equal(ann.count, 4);
  assert.deepEqual(ann.colors, ["#f00", "#00f"]);
  assert.deepEqual(ann.shares, [3, 1]);
  assert.equal(merged.edges.size, 1, "the link between the two is gone, the others are one");
  assert.equal([...merged.edges.values()][0].count, 3);
  assert.deepEqual(withMerged([a], { [b]: a }).sort(), [a, b].sort());
}
console.log("links and merges: ok");

// Suggested links: chosen fields of different datasources whose values
// overlap enough, not linked or dismissed yet.
{
  const { suggestLinks, linkIndex } = await import("../../static/js/model.js");
  const records = new Map();
  ["Ann", "bob", "cy", "dee"].forEach((u, i) => records.set(`t${i}`, { ds: "tweets", id: `t${i}`, fields: { user: u, tag: "x" } }));
  ["ann", "bob", "cy", "eve"].forEach((u, i) => records.set(`m${i}`, { ds: "emails", id: `m${i}`, fields: { from: u, tag: "y" } }));
  const q = { id: 1, color: "#000", records };
  const found = suggestLinks([q], ["user", "from", "tag"]);
  assert.equal(found.length, 1, JSON.stringify(found));
  assert.deepEqual(found[0].fields, [{ datasource: "emails", field: "from" }, { datasource: "tweets", field: "user" }]);
  assert.equal(found[0].shared, 3);
  const linked = linkIndex([{ name: "p", fields: found[0].fields }]);
  assert.equal(suggestLinks([q], ["user", "from"], linked).length, 0, "linked already");
  assert.equal(suggestLinks([q], ["user", "from"], undefined, ["emails:from|tweets:user"]).length, 0, "dismissed");
}
console.log("suggested links: ok");
