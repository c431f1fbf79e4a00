// The graph view: graphology holds the graph, sigma draws it with WebGL, and
// ForceAtlas2 (in a web worker) lays it out. Nodes are pie charts of the
// colors of the queries that found them, with their field's icon on top.

import { iconUrl } from "./icons.js";

const SLICES = 4;              // at most this many query colors per node
const DIM = "#e6e7ea";         // nodes that do not match a graph search
const EDGE = "#c9ccd1";

const { createNodePiechartProgram, createNodeImageProgram, createNodeCompoundProgram } = Sigma.rendering;

const ICON_LIMIT = 2000;       // above this many nodes, icons are left out to keep frames fast

const PieProgram = createNodePiechartProgram({
  defaultColor: "#999",
  slices: Array.from({ length: SLICES }, (_, i) => ({
    color: { attribute: `c${i}` },
    value: { attribute: `v${i}` },
  })),
});
const PieIconProgram = createNodeCompoundProgram([
  PieProgram,
  createNodeImageProgram({
    drawingMode: "color",
    colorAttribute: "iconColor",
    padding: 0.28,
    keepWithinCircle: true,
    size: { mode: "force", value: 96 },
  }),
]);

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
    this.matches = null; // Set of node keys matching the graph search, or null
    this.layout = null;
    this.layoutTimer = null;
    this.onLayoutChange = () => {};

    this.renderer = new Sigma(this.graph, container, {
      allowInvalidContainer: true,
      defaultNodeType: "pieIcon",
      nodeProgramClasses: { pie: PieProgram, pieIcon: PieIconProgram },
      zIndex: true,
      labelRenderedSizeThreshold: 9,
      labelFont: "system-ui, sans-serif",
      labelSize: 12,
      defaultEdgeColor: EDGE,
      nodeReducer: (key, data) => this.reduceNode(key, data),
      edgeReducer: (key, data) => this.reduceEdge(key, data),
    });
    this.bindPointer();
  }

  reduceNode(key, data) {
    const out = { ...data };
    if (this.matches && !this.matches.has(key)) {
      for (let i = 0; i < SLICES; i++) out[`c${i}`] = DIM;
      out.iconColor = "#fafafa";
      out.label = "";
      out.zIndex = 0;
    } else if (this.matches) {
      out.highlighted = true;
      out.zIndex = 2;
    }
    if (this.selected.has(key)) {
      out.highlighted = true;
      out.forceLabel = true;
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
    return data;
  }

  /** Makes the drawn graph equal to `model` (see model.js), keeping the positions of nodes that stay. */
  update(model, icons) {
    const graph = this.graph;
    graph.forEachNode((key) => { if (!model.nodes.has(key)) graph.dropNode(key); });
    graph.forEachEdge((key) => { if (!model.edges.has(key)) graph.dropEdge(key); });

    const added = [];
    const type = model.nodes.size > ICON_LIMIT ? "pie" : "pieIcon";
    for (const [key, node] of model.nodes) {
      const attributes = {
        type,
        label: node.label,
        field: node.field,
        size: 5 + 2.5 * Math.log2(1 + node.count),
        image: iconUrl(icons[node.field]),
        iconColor: "#ffffff",
        colors: node.colors,
      };
      for (let i = 0; i < SLICES; i++) {
        attributes[`c${i}`] = node.colors[i] ?? "#999";
        attributes[`v${i}`] = i < node.colors.length ? 1 : 0;
      }
      if (graph.hasNode(key)) {
        graph.mergeNodeAttributes(key, attributes);
      } else {
        graph.addNode(key, { ...attributes, x: 0, y: 0, fresh: true });
        added.push(key);
      }
    }
    for (const [key, edge] of model.edges) {
      const size = Math.min(6, 0.6 + Math.log2(edge.count));
      if (graph.hasEdge(key)) graph.setEdgeAttribute(key, "size", size);
      else graph.addEdgeWithKey(key, edge.source, edge.target, { size });
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
    if (this.matches) this.search(this.searchText);
    if (added.length) this.runLayout(Math.min(12000, 2500 + added.length * 2));
    else this.renderer.refresh();
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
    if (this.graph.order === 0) return;
    if (!this.layout) {
      const settings = graphologyLibrary.layoutForceAtlas2.inferSettings(this.graph);
      this.layout = new graphologyLibrary.FA2Layout(this.graph, {
        settings: { ...settings, slowDown: 4, barnesHutOptimize: this.graph.order > 800 },
      });
    }
    this.layout.start();
    clearTimeout(this.layoutTimer);
    this.layoutTimer = setTimeout(() => this.stopLayout(), ms);
    this.onLayoutChange(true);
  }

  stopLayout() {
    clearTimeout(this.layoutTimer);
    if (this.layout?.isRunning()) this.layout.stop();
    this.onLayoutChange(false);
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
    this.renderer.refresh({ skipIndexation: true });
    this.onSelect([...this.selected]);
  }

  selectAll() {
    this.setSelection(this.matches ? [...this.matches] : this.graph.nodes());
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
      dragged = null;
    });
    renderer.on("clickNode", ({ node, event }) => {
      if (moved || endsBox()) { moved = false; return; }
      if (event.original.shiftKey) {
        const next = new Set(this.selected);
        if (next.has(node)) next.delete(node);
        else next.add(node);
        this.setSelection([...next]);
      } else {
        this.setSelection([node]);
      }
    });
    renderer.on("clickStage", ({ event }) => {
      if (endsBox()) return;
      if (!event.original.shiftKey && this.selected.size) this.setSelection([]);
    });
    renderer.on("enterNode", () => { renderer.getContainer().style.cursor = "pointer"; });
    renderer.on("leaveNode", () => { renderer.getContainer().style.cursor = ""; });
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
