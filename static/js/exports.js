// The graph for other tools and for reports: GEXF (Gephi), GraphML
// (Cytoscape, yEd, Gephi), JSON, and the current view as SVG (and from it
// PNG) with the legend. GEXF and GraphML are written here rather than by
// graphology-gexf/-graphml: those need a bundler to reach the browser, and
// the formats' published schemas (validated against in the tests) are small.
// No DOM here but `svgToPng`.

import { splitKey } from "./model.js";

const escapeXml = (text) => String(text).replace(/[<>&"']/g, (c) => ({
  "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;",
}[c])).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, ""); // not allowed in XML 1.0

/**
 * The drawn graph as plain data: nodes with their field, value, label,
 * record count, the queries (ids) that found them, color, position and pin;
 * links with their count and label. `queries`: [{id, text, color}];
 * `notes`: key → {label, note}.
 */
export function graphData(graph, queries, notes = {}) {
  const nodes = [];
  graph.forEachNode((key, a) => {
    const { field, value } = splitKey(key);
    nodes.push({
      id: key, field, value, label: a.label, count: a.count ?? null, queries: a.queries ?? [],
      color: a.colors?.[0] ?? null, x: a.x, y: a.y, size: a.size, pinned: Boolean(a.fixed),
      ...(notes[key]?.note ? { note: notes[key].note } : {}),
    });
  });
  const edges = [];
  graph.forEachEdge((key, a, source, target) => {
    edges.push({ id: key, source, target, count: a.count ?? 1, label: a.label || null });
  });
  return {
    queries: queries.map(({ id, text, color, kind }) => ({ id, text, color, ...(kind ? { kind } : {}) })),
    nodes, edges,
  };
}

/** The graph as JSON (`tributary.graph`, version 1). */
export function toJson(data) {
  return JSON.stringify({ format: "tributary.graph", version: 1, exportedAt: new Date().toISOString(), ...data }, null, 1);
}

const queryNames = (data, ids) => ids.map((id) => data.queries.find((q) => q.id === id)?.text ?? String(id)).join(" | ");

function rgb(hex) {
  const ok = /^#[0-9a-f]{6}$/i.test(hex ?? "");
  return ok ? [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) : [153, 153, 153];
}

/** GEXF 1.2 (Gephi's format) with the colors, sizes and positions shown. */
export function toGexf(data) {
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<gexf xmlns="http://www.gexf.net/1.2draft" version="1.2">',
    `  <meta lastmodifieddate="${new Date().toISOString().slice(0, 10)}"><creator>tributary</creator><description>${escapeXml(data.queries.map((q) => q.text).join("; "))}</description></meta>`,
    '  <graph defaultedgetype="undirected" mode="static">',
    '    <attributes class="node" mode="static">',
    '      <attribute id="field" title="field" type="string"/>',
    '      <attribute id="value" title="value" type="string"/>',
    '      <attribute id="count" title="records" type="integer"/>',
    '      <attribute id="queries" title="queries" type="string"/>',
    '      <attribute id="note" title="note" type="string"/>',
    "    </attributes>",
    "    <nodes>",
  ];
  for (const node of data.nodes) {
    const [r, g, b] = rgb(node.color);
    const values = [["field", node.field], ["value", node.value], ["count", node.count ?? 0], ["queries", queryNames(data, node.queries)]];
    if (node.note) values.push(["note", node.note]);
    out.push(
      `      <node id="${escapeXml(node.id)}" label="${escapeXml(node.label)}">`,
      `        <attvalues>${values.map(([k, v]) => `<attvalue for="${k}" value="${escapeXml(v)}"/>`).join("")}</attvalues>`,
      // Color, position and size in GEXF's own namespace, where its 1.2
      // schema declares them (Gephi reads them by name, whatever the prefix).
      `        <color r="${r}" g="${g}" b="${b}"/>`,
      `        <position x="${num(node.x)}" y="${num(-node.y)}" z="0"/>`,
      `        <size value="${num(node.size ?? 1)}"/>`,
      "      </node>",
    );
  }
  out.push("    </nodes>", "    <edges>");
  data.edges.forEach((edge, i) => {
    const label = edge.label ? ` label="${escapeXml(edge.label)}"` : "";
    out.push(`      <edge id="e${i}" source="${escapeXml(edge.source)}" target="${escapeXml(edge.target)}" weight="${num(edge.count)}"${label}/>`);
  });
  out.push("    </edges>", "  </graph>", "</gexf>", "");
  return out.join("\n");
}

/** GraphML, with the same node and link data as keys. */
export function toGraphml(data) {
  const keys = [
    ["label", "node", "string"], ["field", "node", "string"], ["value", "node", "string"], ["count", "node", "int"],
    ["queries", "node", "string"], ["color", "node", "string"], ["x", "node", "double"], ["y", "node", "double"],
    ["note", "node", "string"], ["weight", "edge", "int"], ["edgelabel", "edge", "string"],
  ];
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
    '    xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ...keys.map(([id, target, type]) => `  <key id="${id}" for="${target}" attr.name="${id === "edgelabel" ? "label" : id}" attr.type="${type}"/>`),
    '  <graph id="tributary" edgedefault="undirected">',
  ];
  const entry = (key, value) => `<data key="${key}">${escapeXml(value)}</data>`;
  // GraphML's ids are name tokens (no spaces, no @): numbered, with the
  // node's field and value as data.
  const ids = new Map(data.nodes.map((node, i) => [node.id, `n${i}`]));
  for (const node of data.nodes) {
    const values = [
      entry("label", node.label), entry("field", node.field), entry("value", node.value), entry("count", node.count ?? 0),
      entry("queries", queryNames(data, node.queries)), entry("color", node.color ?? ""), entry("x", num(node.x)), entry("y", num(node.y)),
    ];
    if (node.note) values.push(entry("note", node.note));
    out.push(`    <node id="${ids.get(node.id)}">${values.join("")}</node>`);
  }
  data.edges.forEach((edge, i) => {
    const values = [entry("weight", edge.count)];
    if (edge.label) values.push(entry("edgelabel", edge.label));
    out.push(`    <edge id="e${i}" source="${ids.get(edge.source)}" target="${ids.get(edge.target)}">${values.join("")}</edge>`);
  });
  out.push("  </graph>", "</graphml>", "");
  return out.join("\n");
}

function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : "0";
}

/** A pie's slice from angle `a` to `b` (radians) as an SVG path. */
function slice(x, y, r, a, b) {
  if (b - a >= 2 * Math.PI - 1e-9) return `M${num(x - r)} ${num(y)}a${num(r)} ${num(r)} 0 1 0 ${num(2 * r)} 0a${num(r)} ${num(r)} 0 1 0 ${num(-2 * r)} 0Z`;
  const [x1, y1, x2, y2] = [x + r * Math.sin(a), y - r * Math.cos(a), x + r * Math.sin(b), y - r * Math.cos(b)];
  return `M${num(x)} ${num(y)}L${num(x1)} ${num(y1)}A${num(r)} ${num(r)} 0 ${b - a > Math.PI ? 1 : 0} 1 ${num(x2)} ${num(y2)}Z`;
}

/**
 * The current view as SVG: `shown` is what is on screen — nodes
 * [{x, y, r, colors, shares, label}] and links [{x1, y1, x2, y2, width,
 * label}] in pixels — and `legend` the queries [{text, color}].
 */
export function toSvg({ width, height, nodes, edges }, legend) {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#fbfbfc"/>`,
    '<g stroke="#c9ccd1" fill="none">',
    ...edges.map((e) => `<line x1="${num(e.x1)}" y1="${num(e.y1)}" x2="${num(e.x2)}" y2="${num(e.y2)}" stroke-width="${num(e.width)}"/>`),
    "</g>",
    '<g stroke="#ffffff" stroke-width="0.5">',
  ];
  for (const node of nodes) {
    const total = node.shares.reduce((s, v) => s + v, 0) || 1;
    let at = 0;
    const parts = node.colors.map((color, i) => {
      const from = at;
      at += (2 * Math.PI * (node.shares[i] ?? 0)) / total;
      return `<path d="${slice(node.x, node.y, node.r, from, at)}" fill="${escapeXml(color)}"/>`;
    });
    out.push(`<g>${parts.join("")}</g>`);
  }
  out.push("</g>", '<g font-size="12" fill="#1f2328" stroke="#ffffff" stroke-width="3" paint-order="stroke" stroke-linejoin="round">');
  for (const node of nodes) {
    if (node.label) out.push(`<text x="${num(node.x + node.r + 3)}" y="${num(node.y + 4)}">${escapeXml(node.label)}</text>`);
  }
  out.push("</g>");
  if (legend.length) {
    const rowHeight = 18;
    const boxWidth = Math.min(width - 16, 16 + 7 * Math.max(...legend.map((q) => Math.min(60, q.text.length))) + 24);
    const x = width - boxWidth - 8;
    out.push(`<g font-size="12"><rect x="${x}" y="8" width="${boxWidth}" height="${legend.length * rowHeight + 10}" rx="6" fill="#ffffff" fill-opacity="0.92" stroke="#e3e5e8"/>`);
    legend.forEach((q, i) => {
      const y = 8 + 5 + i * rowHeight + rowHeight / 2;
      const text = q.text.length > 60 ? `${q.text.slice(0, 59)}…` : q.text;
      out.push(`<circle cx="${x + 14}" cy="${y}" r="5" fill="${escapeXml(q.color)}"/><text x="${x + 26}" y="${y + 4}" fill="#1f2328">${escapeXml(text)}</text>`);
    });
    out.push("</g>");
  }
  out.push("</svg>", "");
  return out.join("\n");
}

/** The SVG drawn into a PNG (a Blob) at `scale` times its size. */
export function svgToPng(svg, width, height, scale = 2) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(width * scale);
      canvas.height = Math.round(height * scale);
      const context = canvas.getContext("2d");
      context.scale(scale, scale);
      context.drawImage(image, 0, 0);
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the picture could not be made"))), "image/png");
    };
    image.onerror = () => reject(new Error("the picture could not be drawn"));
    image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  });
}
