// The timeline: how many matching records fall in each hour, day, week or
// month of the chosen date field, stacked by query color. Plain SVG.

const SVG = "http://www.w3.org/2000/svg";
const UNITS = [
  ["hour", 3600e3, 3 * 86400e3],
  ["day", 86400e3, 120 * 86400e3],
  ["week", 7 * 86400e3, 730 * 86400e3],
  ["month", 30.44 * 86400e3, Infinity],
];

function parseTime(value) {
  if (typeof value === "number") return value > 1e11 ? value : value * 1000; // ms or s since the epoch
  if (typeof value !== "string") return NaN;
  return Date.parse(value);
}

// Parsed times by record and field: records do not change once received,
// and parsing every date again on each selection was most of a redraw.
const parsed = new WeakMap();

function timesOf(record, field) {
  let byField = parsed.get(record);
  if (!byField) parsed.set(record, (byField = new Map()));
  let times = byField.get(field);
  if (!times) {
    const raw = record.fields?.[field];
    times = (Array.isArray(raw) ? raw : [raw]).map(parseTime).filter(Number.isFinite);
    byField.set(field, times);
  }
  return times;
}

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent?.append(node);
  return node;
}

/**
 * Draws into `container`; `queries`: [{color, text, records: Map}];
 * `fieldOf(datasource)`: the date field of that datasource's records;
 * `selected`: record keys (`ds\u0000id`) drawn over the bars, or null;
 * `size`: the container's {width, height} if known (reading it from the
 * layout after other panels changed the page would force a layout).
 * `cursor`: [first, last] bar chosen from the keyboard, outlined.
 * Returns the number of dated records, the time range drawn and its bars.
 */
export function drawHistogram(container, queries, fieldOf, selected = null, size = null, cursor = null) {
  container.replaceChildren();
  const points = []; // [time, query index, selected]
  queries.forEach((query, index) => {
    for (const record of query.records.values()) {
      const field = fieldOf(record.ds);
      if (!field) continue;
      const chosen = selected?.has(`${record.ds}\u0000${record.id}`) ?? false;
      for (const time of timesOf(record, field)) points.push([time, index, chosen]);
    }
  });
  if (!points.length) return { count: 0, range: null };

  let min = Infinity, max = -Infinity;
  for (const [time] of points) { min = Math.min(min, time); max = Math.max(max, time); }
  const [unit, step] = UNITS.find(([, , span]) => max - min <= span);
  const start = Math.floor(min / step) * step;
  const binCount = Math.max(1, Math.floor((max - start) / step) + 1);
  const bins = Array.from({ length: binCount }, () => new Array(queries.length).fill(0));
  const chosenBins = new Array(binCount).fill(0);
  for (const [time, index, chosen] of points) {
    const bin = Math.floor((time - start) / step);
    bins[bin][index] += 1;
    if (chosen) chosenBins[bin] += 1;
  }
  const tallest = Math.max(...bins.map((bin) => bin.reduce((a, b) => a + b, 0)));

  const width = Math.max(size?.width ?? container.clientWidth, 200);
  const height = Math.max(size?.height ?? container.clientHeight, 80);
  const axis = 18;
  const svg = element("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `records per ${unit}` }, container);
  const barWidth = width / binCount;
  bins.forEach((bin, i) => {
    let y = height - axis;
    bin.forEach((count, index) => {
      if (!count) return;
      const h = (count / tallest) * (height - axis - 16);
      y -= h;
      const rect = element("rect", {
        x: i * barWidth + 0.5, y, width: Math.max(1, barWidth - 1), height: h, fill: queries[index].color,
      }, svg);
      const when = new Date(start + i * step).toISOString().slice(0, unit === "hour" ? 16 : 10).replace("T", " ");
      element("title", {}, rect).textContent = `${queries[index].text}: ${count} record${count === 1 ? "" : "s"} in the ${unit} from ${when}`;
    });
    // The selection's records, over the bars.
    if (chosenBins[i]) {
      const h = (chosenBins[i] / tallest) * (height - axis - 16);
      element("rect", {
        x: i * barWidth + 0.5, y: height - axis - h, width: Math.max(1, barWidth - 1), height: h,
        fill: "none", stroke: "#1f2328", "stroke-width": 1.5, class: "selected",
      }, svg);
    }
  });
  const label = (x, anchor, time) => {
    const text = element("text", { x, y: height - 4, "text-anchor": anchor, "font-size": 11, fill: "#6a737d" }, svg);
    text.textContent = new Date(time).toISOString().slice(0, 10);
  };
  if (cursor) {
    const [first, last] = [Math.max(0, Math.min(...cursor)), Math.min(binCount - 1, Math.max(...cursor))];
    element("rect", {
      x: first * barWidth, y: 1, width: (last - first + 1) * barWidth, height: height - axis - 1,
      fill: "rgba(37, 99, 235, .08)", stroke: "#2563eb", "stroke-dasharray": "4 2", class: "cursor",
    }, svg);
  }
  label(2, "start", start);
  label(width - 2, "end", start + binCount * step);
  const peak = element("text", { x: 2, y: 11, "font-size": 11, fill: "#6a737d" }, svg);
  peak.textContent = `${tallest} per ${unit} at most`;
  return { count: points.length, range: [start, start + binCount * step], bins: binCount, unit };
}
