// Layouts besides the force layout, each a pure function of the graph
// (graphology) to node positions (Map key → [x, y]): a circle, rings around
// chosen nodes, and groups by the queries that found each node. No DOM here.

const SPACING = 1; // between neighbouring nodes, in graph units (sigma fits the camera)
const GOLDEN_ANGLE = Math.PI * (3 - Math.sqrt(5));

/** Every node on one circle, those found by the same queries side by side. */
export function circular(graph) {
  const keys = graph.nodes().sort((a, b) => compareByQueries(graph, a, b));
  const radius = Math.max(1, (keys.length * SPACING) / (2 * Math.PI));
  const out = new Map();
  keys.forEach((key, i) => {
    const angle = (2 * Math.PI * i) / keys.length;
    out.set(key, [radius * Math.cos(angle), radius * Math.sin(angle)]);
  });
  return out;
}

/**
 * Rings around `centers`: the centers in the middle, then the nodes one
 * link away, two links away, …; nodes no path reaches on the outermost
 * ring. Each node sits near the mean angle of its neighbours on the ring
 * inside, so links cross as little as they can. No center: the node with
 * the most links.
 */
export function concentric(graph, centers = []) {
  let middle = centers.filter((key) => graph.hasNode(key));
  if (!middle.length && graph.order) {
    middle = [graph.nodes().reduce((best, key) => (graph.degree(key) > graph.degree(best) ? key : best))];
  }
  const distance = new Map(middle.map((key) => [key, 0]));
  let frontier = middle;
  while (frontier.length) {
    const next = [];
    for (const key of frontier) {
      graph.forEachNeighbor(key, (neighbour) => {
        if (!distance.has(neighbour)) {
          distance.set(neighbour, distance.get(key) + 1);
          next.push(neighbour);
        }
      });
    }
    frontier = next;
  }
  const farthest = Math.max(0, ...distance.values());
  const rings = [];
  graph.forEachNode((key) => {
    const ring = distance.has(key) ? distance.get(key) : farthest + 1;
    (rings[ring] ??= []).push(key);
  });
  const out = new Map();
  const angleOf = new Map();
  rings.forEach((ring = [], depth) => {
    // The first ring's radius leaves room for the centers themselves.
    const radius = depth === 0 ? (ring.length > 1 ? (ring.length * SPACING) / (2 * Math.PI) : 0)
      : Math.max(depth * 3 * SPACING, (ring.length * SPACING) / (2 * Math.PI), outerRadius(out) + 3 * SPACING);
    const wanted = (key) => {
      const angles = [];
      graph.forEachNeighbor(key, (neighbour) => { if (angleOf.has(neighbour)) angles.push(angleOf.get(neighbour)); });
      if (!angles.length) return Infinity;
      // The mean direction, not the mean angle: 350° and 10° average to 0°.
      const x = angles.reduce((s, a) => s + Math.cos(a), 0);
      const y = angles.reduce((s, a) => s + Math.sin(a), 0);
      return (Math.atan2(y, x) + 2 * Math.PI) % (2 * Math.PI);
    };
    const order = ring.map((key) => [key, wanted(key)]).sort((a, b) => a[1] - b[1] || compareByQueries(graph, a[0], b[0]));
    order.forEach(([key], i) => {
      const angle = (2 * Math.PI * i) / order.length;
      angleOf.set(key, angle);
      out.set(key, [radius * Math.cos(angle), radius * Math.sin(angle)]);
    });
  });
  return out;
}

function outerRadius(positions) {
  let most = 0;
  for (const [x, y] of positions.values()) most = Math.max(most, Math.hypot(x, y));
  return most;
}

/**
 * One cluster per set of queries: the nodes only the first query found,
 * those the first and second share, those only the second found, …, around
 * a circle; within a cluster, a sunflower of its nodes, most linked first.
 * `queryIds`: the queries in the list's order.
 */
export function groupedByQuery(graph, queryIds) {
  const rank = new Map(queryIds.map((id, i) => [id, i]));
  const groups = new Map(); // "1,3" → keys
  graph.forEachNode((key, attributes) => {
    const ids = [...(attributes.queries ?? [])].sort((a, b) => (rank.get(a) ?? 1e9) - (rank.get(b) ?? 1e9));
    const name = ids.join();
    if (!groups.has(name)) groups.set(name, { ids, keys: [] });
    groups.get(name).keys.push(key);
  });
  // Around the circle by the mean place of their queries: A, A+B, B, B+C, C.
  const place = ({ ids }) => (ids.length ? ids.reduce((s, id) => s + (rank.get(id) ?? queryIds.length), 0) / ids.length : queryIds.length);
  const ordered = [...groups.values()].sort((a, b) => place(a) - place(b) || a.ids.length - b.ids.length);
  const radii = ordered.map(({ keys }) => SPACING * Math.sqrt(keys.length) + SPACING);
  const circumference = radii.reduce((s, r) => s + 2 * r + 2 * SPACING, 0);
  const big = ordered.length > 1 ? circumference / (2 * Math.PI) : 0;
  const out = new Map();
  let along = 0;
  ordered.forEach(({ keys }, g) => {
    along += radii[g] + SPACING;
    const angle = big ? (2 * Math.PI * along) / circumference : 0;
    along += radii[g] + SPACING;
    const [cx, cy] = [big * Math.cos(angle), big * Math.sin(angle)];
    keys.sort((a, b) => graph.degree(b) - graph.degree(a) || (a < b ? -1 : 1));
    keys.forEach((key, i) => {
      const r = SPACING * Math.sqrt(i);
      out.set(key, [cx + r * Math.cos(i * GOLDEN_ANGLE), cy + r * Math.sin(i * GOLDEN_ANGLE)]);
    });
  });
  return out;
}

/** By the queries that found them, then by field and label. */
function compareByQueries(graph, a, b) {
  const qa = String(graph.getNodeAttribute(a, "queries") ?? "");
  const qb = String(graph.getNodeAttribute(b, "queries") ?? "");
  if (qa !== qb) return qa < qb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
