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

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent?.append(node);
  return node;
}

/** Draws into `container`; `queries`: [{color, text, records: Map}]; returns the number of dated records. */
export function drawHistogram(container, queries, field) {
  container.replaceChildren();
  if (!field) return 0;
  const points = []; // [time, query index]
  queries.forEach((query, index) => {
    for (const record of query.records.values()) {
      const raw = record.fields?.[field];
      for (const value of Array.isArray(raw) ? raw : [raw]) {
        const time = parseTime(value);
        if (Number.isFinite(time)) points.push([time, index]);
      }
    }
  });
  if (!points.length) return 0;

  let min = Infinity, max = -Infinity;
  for (const [time] of points) { min = Math.min(min, time); max = Math.max(max, time); }
  const [unit, step] = UNITS.find(([, , span]) => max - min <= span);
  const start = Math.floor(min / step) * step;
  const binCount = Math.max(1, Math.floor((max - start) / step) + 1);
  const bins = Array.from({ length: binCount }, () => new Array(queries.length).fill(0));
  for (const [time, index] of points) bins[Math.floor((time - start) / step)][index] += 1;
  const tallest = Math.max(...bins.map((bin) => bin.reduce((a, b) => a + b, 0)));

  const width = Math.max(container.clientWidth, 200);
  const height = Math.max(container.clientHeight, 80);
  const axis = 18;
  const svg = element("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `records per ${unit}` }, container);
  const barWidth = width / binCount;
  bins.forEach((bin, i) => {
    let y = height - axis;
    bin.forEach((count, index) => {
      if (!count) return;
      const h = (count / tallest) * (height - axis - 6);
      y -= h;
      const rect = element("rect", {
        x: i * barWidth + 0.5, y, width: Math.max(1, barWidth - 1), height: h, fill: queries[index].color,
      }, svg);
      const when = new Date(start + i * step).toISOString().slice(0, unit === "hour" ? 16 : 10).replace("T", " ");
      element("title", {}, rect).textContent = `${queries[index].text}: ${count} record${count === 1 ? "" : "s"} in the ${unit} from ${when}`;
    });
  });
  const label = (x, anchor, time) => {
    const text = element("text", { x, y: height - 4, "text-anchor": anchor, "font-size": 11, fill: "#6a737d" }, svg);
    text.textContent = new Date(time).toISOString().slice(0, 10);
  };
  label(2, "start", start);
  label(width - 2, "end", start + binCount * step);
  const peak = element("text", { x: 2, y: 11, "font-size": 11, fill: "#6a737d" }, svg);
  peak.textContent = `${tallest} per ${unit} at most`;
  return points.length;
}
