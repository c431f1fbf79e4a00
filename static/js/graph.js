// The graph view: graphology holds the graph, sigma draws it with WebGL, and
// ForceAtlas2 (in a web worker) lays it out. Nodes are pie charts of the
// colors of the queries that found them, with their field's icon on top.

import { iconUrl } from "./icons.js";
import { pieSlices } from "./model.js";

const SLICES = 4;              // at most this many query colors per node
const DIM = "#e6e7ea";         // nodes that do not match a graph search
const EDGE = "#c9ccd1";

const ICON_LIMIT = 2000;       // above this many nodes, icons are left out to keep frames fast
const SPREAD_LIMIT = 2000;     // above this many nodes, overlapping nodes are not moved apart
const LAYOUT_KEY = "tributary.ui.layout.v1";
const REMEMBERED = 20000;      // node positions kept across reloads, at most
const LONG_PRESS_MS = 550;     // a touch held this long on a node opens its menu

/** Replaces the remembered layout (loading an investigation). */
export function writeLayout(layout) {
  localStorage.setItem(LAYOUT_KEY, JSON.stringify({
    positions: layout?.positions ?? {}, pinned: layout?.pinned ?? [], camera: layout?.camera ?? null,
  }));
}

/** Where nodes were, which were pinned, and the camera, as last saved. */
function loadLayout() {
  try {
    const saved = JSON.parse(localStorage.getItem(LAYOUT_KEY));
    if (saved && typeof saved === "object") {
      return { positions: saved.positions ?? {}, pinned: new Set(saved.pinned ?? []), camera: saved.camera ?? null };
    }
  } catch {
    // A damaged entry is dropped: the graph is laid out again.
  }
  return { positions: {}, pinned: new Set(), camera: null };
}

/** The node programs (pies, and pies with an icon), built on first use:
 * where WebGL is missing sigma does not even load, and the page must. */
function nodePrograms() {
  const { createNodePiechartProgram, createNodeImageProgram, createNodeCompoundProgram } = Sigma.rendering;
  const pie = createNodePiechartProgram({
    defaultColor: "#999",
    slices: Array.from({ length: SLICES }, (_, i) => ({
      color: { attribute: `c${i}` },
      value: { attribute: `v${i}` },
    })),
  });
  const pieIcon = createNodeCompoundProgram([
    pie,
    createNodeImageProgram({
      drawingMode: "color",
      colorAttribute: "iconColor",
      padding: 0.28,
      keepWithinCircle: true,
      size: { mode: "force", value: 96 },
      // A dozen 96 px icons fit in 1024²; the default 4096² atlas took
      // ~100 ms of canvas work each time the icons changed.
      maxTextureSize: 1024,
    }),
  ]);
  return { pie, pieIcon };
}

/** WCAG relative luminance of `#rrggbb`. */
function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m);
  return (x + 0.05) / (y + 0.05);
}

/** The icon color (white or near-black) most readable on every slice of
 * the node's pie: at least 3:1 on each color of the palettes offered. */
export function iconOn(colors) {
  const valid = colors.filter((c) => /^#[0-9a-f]{6}$/i.test(c));
  if (!valid.length) return "#ffffff";
  const worst = (icon) => Math.min(...valid.map((c) => contrast(icon, c)));
  return worst("#ffffff") >= worst("#1f2328") ? "#ffffff" : "#1f2328";
}

/** A node's label with a white halo, readable over links and other nodes. */
function drawLabelWithHalo(context, data, settings, x = data.x + data.size + 3, y = data.y + settings.labelSize / 3) {
  if (!data.label) return;
  const size = settings.labelSize;
  context.font = `${settings.labelWeight} ${size}px ${settings.labelFont}`;
  context.lineJoin = "round";
  context.lineWidth = 3;
  context.strokeStyle = "rgba(255, 255, 255, 0.92)";
  context.strokeText(data.label, x, y);
  context.fillStyle = "#1f2328";
  context.fillText(data.label, x, y);
}

function hasWebGL() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

/** Stands in for sigma where WebGL is missing: every call does nothing. */
const NO_RENDERER = {
  setSetting() {},
  refresh() {},
  setCustomBBox() {},
  getCamera: () => ({ animatedZoom() {}, animatedUnzoom() {}, animatedReset() {} }),
  graphToViewport: () => ({ x: 0, y: 0 }),
};

export class GraphView {
  /**
   * container: the element sigma draws into; box: the selection-rectangle element.
   * onSelect(keys): the selection changed. icons: field path → icon name.
   */
  constructor(container, box, { onSelect }) {
    this.graph = new graphology.UndirectedGraph();
    this.box = box;
    this.onSelect = onSelect;
    this.selected = new Set();
    this.neighbors = new Set(); // of the selected nodes
    this.matches = null; // Set of node keys matching the graph search, or null
    this.layout = null;
    this.layoutTimer = null;
    this.onLayoutChange = () => {};
    this.onNodeMenu = () => {}; // (node key, {x, y} in the container)
    this.drawnLabels = [];
    // Positions, pins and the camera survive a reload, and a deleted node
    // that comes back returns to where it was.
    this.memory = loadLayout();
    this.cameraToRestore = this.memory.camera;

    try {
      this.renderer = this.draw(container);
    } catch (error) {
      // No WebGL (turned off, or no GPU and no software fallback): nothing
      // can be drawn. The graph is still kept — its counts, the selection,
      // the search — and the rest of the page works without it.
      this.unavailable = hasWebGL() ? String(error?.message ?? error) : "WebGL is turned off or not available";
      this.renderer = NO_RENDERER;
      return;
    }
    this.bindPointer();
    // Labels drawn in the current frame (for their collisions, the tests
    // and the SVG export).
    this.drawnLabels = [];
    this.renderer.on("beforeRender", () => { this.drawnLabels = []; this.discs = null; });
    // Sigma sizes its canvases on window resizes only; the graph's area
    // also changes when the details open, the toolbar wraps or a panel grows.
    new ResizeObserver(() => {
      this.renderer.resize();
      this.renderer.refresh();
    }).observe(container);
  }

  draw(container) {
    return new Sigma(this.graph, container, {
      allowInvalidContainer: true,
      defaultNodeType: "pieIcon",
      nodeProgramClasses: nodePrograms(),
      zIndex: true,
      labelRenderedSizeThreshold: 9,
      labelFont: "system-ui, sans-serif",
      labelSize: 12,
      // Fewer labels per screen cell: sigma draws the larger nodes' labels
      // and leaves out those that would overlap them.
      labelDensity: 0.6,
      labelGridCellSize: 120,
      renderEdgeLabels: true,
      edgeLabelSize: 11,
      defaultDrawNodeLabel: (context, data, settings) => this.drawLabel(context, data, settings),
      defaultEdgeColor: EDGE,
      nodeReducer: (key, data) => this.reduceNode(key, data),
      edgeReducer: (key, data) => this.reduceEdge(key, data),
    });
  }

  /**
   * Draws a node's label where it covers no label drawn before it in this
   * frame and no other node — right of the node, else left, below, above —
   * or not at all (sigma's label grid thins labels out, but a long label
   * still reaches into its neighbours' cells). Selected nodes' labels are
   * always drawn, on the right.
   */
  drawLabel(context, data, settings) {
    if (!data.label) return;
    const size = settings.labelSize;
    context.font = `${settings.labelWeight} ${size}px ${settings.labelFont}`;
    const width = context.measureText(data.label).width;
    // Right of the node, else left, below or above it: the first place clear.
    const places = [
      [data.x + data.size + 3, data.y + size / 3],
      [data.x - data.size - 3 - width, data.y + size / 3],
      [data.x - width / 2, data.y + data.size + size],
      [data.x - width / 2, data.y - data.size - 4],
    ];
    const boxAt = ([x, y]) => ({ left: x - 1, right: x + width + 1, top: y - size * 0.85, bottom: y + size * 0.3 });
    const place = data.forceLabel ? places[0] : places.find((p) => !this.labelCollides(boxAt(p), data.key));
    if (!place) return;
    this.drawnLabels.push({ key: data.key, ...boxAt(place) });
    drawLabelWithHalo(context, data, settings, place[0], place[1]);
  }

  labelCollides(box, own) {
    const overlaps = (a) => a.left < box.right && box.left < a.right && a.top < box.bottom && box.top < a.bottom;
    if (this.drawnLabels.some(overlaps)) return true;
    // Nodes near the label, from a grid of the frame's discs built once per frame.
    this.discs ??= this.discGrid();
    const { cell, grid } = this.discs;
    for (let cx = Math.floor(box.left / cell) - 1; cx <= Math.floor(box.right / cell) + 1; cx++) {
      for (let cy = Math.floor(box.top / cell) - 1; cy <= Math.floor(box.bottom / cell) + 1; cy++) {
        for (const disc of grid.get(`${cx},${cy}`) ?? []) {
          if (disc.key === own) continue;
          const nearestX = Math.max(box.left, Math.min(disc.x, box.right));
          const nearestY = Math.max(box.top, Math.min(disc.y, box.bottom));
          if (Math.hypot(disc.x - nearestX, disc.y - nearestY) < disc.r) return true;
        }
      }
    }
    return false;
  }

  /** The discs of the nodes drawn this frame (pixels), by 40 px cell. */
  discGrid() {
    const cell = 40;
    const grid = new Map();
    const { width, height } = this.renderer.getDimensions();
    this.graph.forEachNode((key, attributes) => {
      if (attributes.hidden) return;
      const display = this.renderer.getNodeDisplayData(key);
      if (!display) return;
      const { x, y } = this.renderer.framedGraphToViewport(display);
      const r = this.renderer.scaleSize(display.size);
      if (x < -r || y < -r || x > width + r || y > height + r) return;
      const at = `${Math.floor(x / cell)},${Math.floor(y / cell)}`;
      if (!grid.has(at)) grid.set(at, []);
      grid.get(at).push({ key, x, y, r });
    });
    return { cell, grid };
  }

  reduceNode(key, data) {
    const out = { ...data };
    // With a selection, what is neither selected nor next to it steps back.
    const apart = this.selected.size > 0 && !this.selected.has(key) && !this.neighbors.has(key);
    if ((this.matches && !this.matches.has(key)) || apart) {
      for (let i = 0; i < SLICES; i++) out[`c${i}`] = DIM;
      out.iconColor = "#fafafa";
      out.label = "";
      out.zIndex = 0;
    } else if (this.matches) {
      out.highlighted = true;
      out.zIndex = 2;
    }
    if (this.selected.has(key)) {
      // A few selected nodes are highlighted with their labels; many keep
      // to the label grid, so their labels do not pile up.
      const few = this.selected.size <= 30;
      out.highlighted = few;
      out.forceLabel = few;
      out.size = data.size * 1.35;
      out.zIndex = 3;
    }
    return out;
  }

  reduceEdge(key, data) {
    const [source, target] = this.graph.extremities(key);
    if (this.matches && !(this.matches.has(source) && this.matches.has(target))) {
      return { ...data, hidden: true };
    }
    if (this.selected.size && (this.selected.has(source) || this.selected.has(target))) {
      return { ...data, color: "#6b7280", zIndex: 1 };
    }
    if (this.selected.size) return { ...data, hidden: true };
    return data;
  }

  /** Makes the drawn graph equal to `model` (see model.js), keeping the positions of nodes that stay. */
  update(model, icons) {
    const graph = this.graph;
    graph.forEachNode((key) => { if (!model.nodes.has(key)) graph.dropNode(key); });
    graph.forEachEdge((key) => { if (!model.edges.has(key)) graph.dropEdge(key); });

    const added = [];
    const type = model.nodes.size > ICON_LIMIT ? "pie" : "pieIcon";
    const radius = (node) => 5 + 2.5 * Math.log2(1 + node.count);
    const scale = this.sizeScale([...model.nodes.values()].map(radius));
    for (const [key, node] of model.nodes) {
      const attributes = {
        type,
        label: node.label,
        field: node.field,
        size: radius(node) * scale,
        image: iconUrl(icons[node.field]),
        iconColor: iconOn(node.colors),
        colors: node.colors,
        queries: node.queries ?? [],
        count: node.count,
      };
      // Slices in proportion to how many records of each query hold the
      // value, a minimum slice for each, so every query stays visible.
      const slices = pieSlices(node.colors.slice(0, SLICES).map((_, i) => node.shares?.[i] ?? 1));
      for (let i = 0; i < SLICES; i++) {
        attributes[`c${i}`] = node.colors[i] ?? "#999";
        attributes[`v${i}`] = slices[i] ?? 0;
      }
      if (graph.hasNode(key)) {
        graph.mergeNodeAttributes(key, attributes);
      } else {
        const known = this.memory.positions[key];
        if (known) {
          graph.addNode(key, { ...attributes, x: known[0], y: known[1], fixed: this.memory.pinned.has(key) });
        } else {
          graph.addNode(key, { ...attributes, x: 0, y: 0, fresh: true });
          added.push(key);
        }
      }
    }
    for (const [key, edge] of model.edges) {
      const size = Math.min(6, 0.6 + Math.log2(edge.count));
      // An expansion's link through a link between fields is labelled with it.
      const label = edge.label ?? "";
      if (graph.hasEdge(key)) graph.mergeEdgeAttributes(key, { size, label, count: edge.count });
      else graph.addEdgeWithKey(key, edge.source, edge.target, { size, label, count: edge.count });
    }
    this.place(added);
    // Big graphs pan and zoom smoothly when edges and labels sit out the motion.
    this.renderer.setSetting("hideEdgesOnMove", graph.size > 8000);
    this.renderer.setSetting("hideLabelsOnMove", graph.order > 2000);

    let selectionChanged = false;
    for (const key of this.selected) {
      if (!graph.hasNode(key)) { this.selected.delete(key); selectionChanged = true; }
    }
    if (selectionChanged) this.onSelect([...this.selected]);
    this.neighbors = new Set();
    for (const key of this.selected) graph.forEachNeighbor(key, (neighbor) => this.neighbors.add(neighbor));
    if (this.matches) this.search(this.searchText);
    if (added.length) this.runLayout(Math.min(12000, 2500 + added.length * 2));
    else this.renderer.refresh();
    this.restoreCamera();
  }

  /** How much to shrink nodes of these radii (pixels) so that, side by
   * side, they cover at most a third of the graph's area when fitted: a
   * dense graph of full-size nodes cannot be drawn without heaps. Never
   * below 0.4, so every node stays big enough to click. */
  sizeScale(radii) {
    const { width = 0, height = 0 } = this.renderer.getDimensions?.() ?? {};
    const side = Math.min(width, height);
    const covered = radii.reduce((sum, r) => sum + Math.PI * r * r, 0);
    if (!side || !covered) return 1;
    return Math.max(0.4, Math.min(1, Math.sqrt((side * side * 0.33) / covered)));
  }

  /** Once the graph has nodes again after a reload: the camera where it was. */
  restoreCamera() {
    const saved = this.cameraToRestore;
    if (!saved || !this.graph.order || this.unavailable) return;
    this.cameraToRestore = null;
    if (saved.bbox) this.renderer.setCustomBBox(saved.bbox);
    this.renderer.getCamera().setState(saved.state);
  }

  /** Writes positions, pins and the camera (when the layout stops, a node
   * is dropped, the camera moves). */
  saveLayout() {
    if (this.unavailable) return;
    const positions = this.memory.positions;
    this.graph.forEachNode((key, a) => { positions[key] = [Math.round(a.x * 100) / 100, Math.round(a.y * 100) / 100]; });
    const keys = Object.keys(positions);
    // The oldest remembered positions go first when there are too many.
    for (const key of keys.slice(0, Math.max(0, keys.length - REMEMBERED))) delete positions[key];
    const camera = this.renderer.getCamera().getState();
    this.memory.camera = { state: camera, bbox: this.renderer.getCustomBBox() ?? this.renderer.getBBox() };
    try {
      localStorage.setItem(LAYOUT_KEY, JSON.stringify({
        positions, pinned: [...this.memory.pinned], camera: this.memory.camera,
      }));
    } catch {
      // Storage full or disabled: the layout is simply not remembered.
    }
  }

  /** The layout as saved (positions, pins, camera), for an investigation. */
  layoutState() {
    this.saveLayout();
    return { positions: this.memory.positions, pinned: [...this.memory.pinned], camera: this.memory.camera };
  }

  /** Pins the nodes (the layout leaves them where they are), or unpins them
   * when every one is pinned already. Returns whether they are pinned now. */
  togglePins(keys) {
    const present = keys.filter((key) => this.graph.hasNode(key));
    const pin = !present.every((key) => this.memory.pinned.has(key));
    for (const key of present) {
      if (pin) this.memory.pinned.add(key);
      else this.memory.pinned.delete(key);
      this.graph.setNodeAttribute(key, "fixed", pin);
    }
    this.saveLayout();
    this.renderer.refresh({ skipIndexation: true });
    return pin;
  }

  /** Pans the camera by (dx, dy) pixels (arrow keys). */
  pan(dx, dy) {
    if (this.unavailable) return;
    const camera = this.renderer.getCamera?.();
    if (!camera?.getState) return;
    const a = this.renderer.viewportToFramedGraph({ x: 0, y: 0 });
    const b = this.renderer.viewportToFramedGraph({ x: dx, y: dy });
    const state = camera.getState();
    camera.animate({ x: state.x + (b.x - a.x), y: state.y + (b.y - a.y) }, { duration: 120 });
  }

  /** Moves `keys` by (dx, dy) pixels and pins them there (Shift+arrows: a drag from the keyboard). */
  moveNodes(keys, dx, dy) {
    if (this.unavailable) return;
    const a = this.renderer.viewportToGraph({ x: 0, y: 0 });
    const b = this.renderer.viewportToGraph({ x: dx, y: dy });
    if (!this.renderer.getCustomBBox?.()) this.renderer.setCustomBBox?.(this.renderer.getBBox());
    for (const key of keys) {
      if (!this.graph.hasNode(key)) continue;
      const { x, y } = this.graph.getNodeAttributes(key);
      this.graph.mergeNodeAttributes(key, { x: x + (b.x - a.x), y: y + (b.y - a.y), fixed: true });
      this.memory.pinned.add(key);
    }
    this.saveLayout();
  }

  /** Pins every node, or releases every pin (`pin` false). */
  pinAll(pin) {
    this.graph.forEachNode((key) => {
      if (pin) this.memory.pinned.add(key);
      else this.memory.pinned.delete(key);
      this.graph.setNodeAttribute(key, "fixed", pin);
    });
    if (!pin) this.memory.pinned.clear();
    this.saveLayout();
    this.renderer.refresh({ skipIndexation: true });
  }

  /**
   * Places the nodes by `kind` (layouts.js: circular, concentric around
   * `center`, grouped by query) instead of the force layout; pinned nodes
   * stay where they are. The camera then shows the whole graph.
   */
  arrange(positions) {
    if (this.layout?.isRunning()) this.stopLayout();
    this.spreading = null;
    for (const [key, [x, y]] of positions) {
      if (this.graph.hasNode(key) && !this.graph.getNodeAttribute(key, "fixed")) this.graph.mergeNodeAttributes(key, { x, y });
    }
    this.renderer.setCustomBBox(null);
    this.renderer.refresh();
    this.renderer.getCamera().animatedReset({ duration: 300 });
    this.saveLayout();
  }

  /** Forgets every position, pin and the camera, and lays the graph out anew. */
  forgetLayout() {
    this.memory = { positions: {}, pinned: new Set(), camera: null };
    localStorage.removeItem(LAYOUT_KEY);
    this.graph.forEachNode((key) => this.graph.setNodeAttribute(key, "fixed", false));
  }

  /** New nodes start next to a neighbor that already has a place, so the layout settles quickly. */
  place(keys) {
    const graph = this.graph;
    const spread = Math.sqrt(graph.order) * 10 + 10;
    for (const key of keys) {
      let anchor = null;
      graph.forEachNeighbor(key, (neighbor, attributes) => {
        if (!anchor && !attributes.fresh) anchor = attributes;
      });
      const angle = Math.random() * 2 * Math.PI;
      const radius = anchor ? 5 + Math.random() * 10 : spread * Math.sqrt(Math.random());
      graph.mergeNodeAttributes(key, {
        x: (anchor?.x ?? 0) + radius * Math.cos(angle),
        y: (anchor?.y ?? 0) + radius * Math.sin(angle),
      });
      graph.removeNodeAttribute(key, "fresh");
    }
  }

  runLayout(ms) {
    if (this.graph.order === 0 || this.unavailable) return;
    if (!this.layout) {
      const settings = graphologyLibrary.layoutForceAtlas2.inferSettings(this.graph);
      this.layout = new graphologyLibrary.FA2Layout(this.graph, {
        settings: { ...settings, slowDown: 4, barnesHutOptimize: this.graph.order > 800 },
      });
    }
    this.spreading = null;
    this.layout.start();
    clearTimeout(this.layoutTimer);
    this.layoutTimer = setTimeout(() => this.stopLayout(), ms);
    this.onLayoutChange(true);
  }

  stopLayout() {
    clearTimeout(this.layoutTimer);
    const finish = () => {
      this.onLayoutChange(false);
      this.saveLayout();
    };
    if (this.layout?.isRunning()) {
      this.layout.stop();
      this.spreadOut(finish);
    } else {
      finish();
    }
  }

  /** Moves overlapping nodes apart (ForceAtlas2 leaves the dense parts in
   * heaps, where labels pile up and a click hits whichever node is on top).
   * Sizes are pixels on screen, positions graph units: one pixel is
   * measured at the fitted camera. Pinned nodes stay where they are.
   * A few iterations a frame, so the page stays responsive; then `done`. */
  spreadOut(done) {
    if (this.graph.order < 2 || this.graph.order > SPREAD_LIMIT || this.unavailable) return done();
    const run = (this.spreading = {});
    let passes = 10;
    const pass = () => {
      if (this.spreading !== run) return; // the layout started again
      const started = performance.now();
      this.renderer.refresh(); // the bounding box of the positions so far
      const ratio = this.renderer.getCamera().getState().ratio;
      const a = this.renderer.viewportToGraph({ x: 0, y: 0 });
      const b = this.renderer.viewportToGraph({ x: 100, y: 0 });
      const unit = Math.hypot(b.x - a.x, b.y - a.y) / 100 / ratio;
      if (Number.isFinite(unit) && unit > 0) {
        graphologyLibrary.layoutNoverlap.assign(this.graph, {
          maxIterations: 15,
          settings: { margin: 2 * unit, ratio: 1, gridSize: 20, speed: 3 },
          inputReducer: (key, attributes) => ({ x: attributes.x, y: attributes.y, size: attributes.size * unit }),
          outputReducer: (key, position) => {
            const attributes = this.graph.getNodeAttributes(key);
            return attributes.fixed ? { x: attributes.x, y: attributes.y } : position;
          },
        });
      }
      // A pass that took long (heaps too dense to resolve) is the last.
      passes = performance.now() - started > 40 ? 0 : passes - 1;
      if (passes > 0 && !this.unavailable) requestAnimationFrame(pass);
      else {
        this.spreading = null;
        this.renderer.refresh();
        done();
      }
    };
    pass();
  }

  toggleLayout() {
    if (this.layout?.isRunning()) this.stopLayout();
    else this.runLayout(30000);
  }

  fit() {
    this.renderer.setCustomBBox(null);
    this.renderer.getCamera().animatedReset({ duration: 300 });
  }

  /** Highlights the nodes whose label contains `text` (case-insensitive); returns how many. */
  search(text) {
    this.searchText = text;
    const needle = text.trim().toLowerCase();
    if (!needle) {
      this.matches = null;
    } else {
      this.matches = new Set();
      this.graph.forEachNode((key, attributes) => {
        if (attributes.label.toLowerCase().includes(needle)) this.matches.add(key);
      });
    }
    this.renderer.refresh({ skipIndexation: true });
    return this.matches ? this.matches.size : null;
  }

  setSelection(keys) {
    this.selected = new Set(keys.filter((key) => this.graph.hasNode(key)));
    this.neighbors = new Set();
    for (const key of this.selected) this.graph.forEachNeighbor(key, (neighbor) => this.neighbors.add(neighbor));
    this.renderer.refresh({ skipIndexation: true });
    this.onSelect([...this.selected]);
  }

  /** Selects `keys` and every node next to one of them. */
  selectNeighbours(keys) {
    const next = new Set(keys.filter((key) => this.graph.hasNode(key)));
    for (const key of [...next]) this.graph.forEachNeighbor(key, (neighbour) => next.add(neighbour));
    this.setSelection([...next]);
  }

  selectAll() {
    this.setSelection(this.matches ? [...this.matches] : this.graph.nodes());
  }

  /** What is on screen, in pixels, for a picture of the view (exports.js):
   * the nodes in view with their pies and shown labels, and their links. */
  shownInView() {
    const { width, height } = this.renderer.getDimensions();
    const labelled = new Set(this.drawnLabels.map((label) => label.key));
    const at = new Map();
    const nodes = [];
    this.graph.forEachNode((key, a) => {
      const shown = this.reduceNode(key, a);
      const { x, y } = this.renderer.graphToViewport({ x: a.x, y: a.y });
      const display = this.renderer.getNodeDisplayData(key);
      const r = Math.max(2, this.renderer.scaleSize(display?.size ?? shown.size));
      at.set(key, { x, y });
      if (x < -r || y < -r || x > width + r || y > height + r) return;
      const colors = [];
      const shares = [];
      for (let i = 0; i < SLICES; i++) {
        if (!shown[`v${i}`]) continue;
        colors.push(shown[`c${i}`]);
        shares.push(shown[`v${i}`]);
      }
      nodes.push({ x, y, r, colors, shares, label: labelled.has(key) || shown.forceLabel ? shown.label : "" });
    });
    const edges = [];
    this.graph.forEachEdge((key, a, source, target) => {
      if (this.reduceEdge(key, a).hidden) return;
      const [p, q] = [at.get(source), at.get(target)];
      edges.push({ x1: p.x, y1: p.y, x2: q.x, y2: q.y, width: Math.max(0.5, a.size / 2) });
    });
    return { width, height, nodes, edges };
  }

  /** Where a node is drawn, in pixels from the graph container's top left (for tests and tooltips). */
  viewportPosition(key) {
    const { x, y } = this.graph.getNodeAttributes(key);
    return this.renderer.graphToViewport({ x, y });
  }

  bindPointer() {
    const renderer = this.renderer;
    const captor = renderer.getMouseCaptor();
    let dragged = null;
    let moved = false;
    let boxStart = null;
    let boxEnded = 0;
    // The click that ends a box selection is not a click on what lies under the pointer.
    const endsBox = () => performance.now() - boxEnded < 300;

    renderer.on("downNode", ({ node, event }) => {
      if (event.original.shiftKey) return;
      dragged = node;
      moved = false;
      // Freeze the frame while dragging so the camera does not rescale under the pointer.
      if (!renderer.getCustomBBox()) renderer.setCustomBBox(renderer.getBBox());
    });
    renderer.on("downStage", ({ event }) => {
      if (!event.original.shiftKey) return;
      boxStart = { x: event.x, y: event.y };
      this.drawBox(boxStart, boxStart);
    });
    captor.on("mousemovebody", (event) => {
      if (dragged) {
        moved = true;
        const { x, y } = renderer.viewportToGraph(event);
        this.graph.mergeNodeAttributes(dragged, { x, y, fixed: true });
      } else if (boxStart) {
        this.drawBox(boxStart, event);
      } else {
        return;
      }
      event.preventSigmaDefault();
      event.original.preventDefault();
      event.original.stopPropagation();
    });
    captor.on("mouseup", (event) => {
      if (boxStart) {
        const picked = this.nodesInBox(boxStart, event);
        this.setSelection([...new Set([...this.selected, ...picked])]);
        boxStart = null;
        this.box.hidden = true;
        boxEnded = performance.now();
      }
      if (dragged && moved) {
        // A node put somewhere stays there: pinned.
        this.memory.pinned.add(dragged);
        this.saveLayout();
      }
      dragged = null;
    });
    // Two quick clicks are a double click to sigma, which zooms in and
    // reports no click: the second node clicked would not be selected and
    // the graph would jump under the pointer. On a node it is a click.
    renderer.on("doubleClickNode", (payload) => {
      payload.event.preventSigmaDefault();
      clickNode(payload);
    });
    renderer.on("clickNode", (payload) => clickNode(payload));
    const clickNode = ({ node, event }) => {
      if (moved || endsBox()) { moved = false; return; }
      if (event.original.shiftKey) {
        const next = new Set(this.selected);
        if (next.has(node)) next.delete(node);
        else next.add(node);
        this.setSelection([...next]);
      } else {
        this.setSelection([node]);
      }
    };
    // A right click on a node opens its menu (the page decides what is in it).
    renderer.on("rightClickNode", ({ node, event }) => {
      event.preventSigmaDefault();
      event.original.preventDefault();
      if (!this.selected.has(node)) this.setSelection([node]);
      this.onNodeMenu(node, { x: event.x, y: event.y });
    });
    renderer.getContainer().addEventListener("contextmenu", (event) => event.preventDefault());
    // A long press on a node opens its menu on touch screens.
    let press = null;
    const container = renderer.getContainer();
    container.addEventListener("pointerdown", (event) => {
      if (event.pointerType !== "touch") return;
      const box = container.getBoundingClientRect();
      const at = { x: event.clientX - box.left, y: event.clientY - box.top };
      clearTimeout(press?.timer);
      press = { at, timer: setTimeout(() => {
        const node = this.nodeAt(at);
        press = null;
        if (!node) return;
        if (!this.selected.has(node)) this.setSelection([node]);
        this.onNodeMenu(node, at);
      }, LONG_PRESS_MS) };
    });
    const cancelPress = (event) => {
      if (!press) return;
      const box = container.getBoundingClientRect();
      const moved = event.type === "pointermove" && Math.hypot(event.clientX - box.left - press.at.x, event.clientY - box.top - press.at.y) > 10;
      if (event.type !== "pointermove" || moved) { clearTimeout(press.timer); press = null; }
    };
    for (const type of ["pointermove", "pointerup", "pointercancel"]) container.addEventListener(type, cancelPress);
    renderer.on("clickStage", ({ event }) => {
      if (endsBox()) return;
      if (!event.original.shiftKey && this.selected.size) this.setSelection([]);
    });
    // The camera is remembered a moment after it stops moving.
    let cameraTimer = null;
    renderer.getCamera().on("updated", () => {
      clearTimeout(cameraTimer);
      cameraTimer = setTimeout(() => this.saveLayout(), 500);
    });
    renderer.on("enterNode", () => { renderer.getContainer().style.cursor = "pointer"; });
    renderer.on("leaveNode", () => { renderer.getContainer().style.cursor = ""; });
  }

  /** The node drawn at `at` (pixels in the container), if any: the nearest
   * whose disc holds the point, or within a fingertip of it. */
  nodeAt(at) {
    let found = null;
    let best = Infinity;
    this.graph.forEachNode((key, attributes) => {
      const { x, y } = this.viewportPosition(key);
      const display = this.renderer.getNodeDisplayData(key);
      const reach = Math.max(12, this.renderer.scaleSize(display?.size ?? attributes.size));
      const distance = Math.hypot(x - at.x, y - at.y);
      if (distance <= reach && distance < best) { best = distance; found = key; }
    });
    return found;
  }

  drawBox(a, b) {
    Object.assign(this.box.style, {
      left: `${Math.min(a.x, b.x)}px`, top: `${Math.min(a.y, b.y)}px`,
      width: `${Math.abs(a.x - b.x)}px`, height: `${Math.abs(a.y - b.y)}px`,
    });
    this.box.hidden = false;
  }

  nodesInBox(a, b) {
    const [left, right] = [Math.min(a.x, b.x), Math.max(a.x, b.x)];
    const [top, bottom] = [Math.min(a.y, b.y), Math.max(a.y, b.y)];
    const picked = [];
    this.graph.forEachNode((key) => {
      const { x, y } = this.viewportPosition(key);
      if (x >= left && x <= right && y >= top && y <= bottom) picked.push(key);
    });
    return picked;
  }
}
