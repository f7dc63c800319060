// A plan as a layered graph in SVG, left to right: each step in the column after the
// longest chain of steps it needs, steps in a column ordered to cross few edges (a few
// sweeps of the barycentre heuristic), edges as curves from a step to those that need it.

import { cssWord, s } from "./dom.js";

const NODE_W = 156;
const NODE_H = 46;
const GAP_X = 64;
const GAP_Y = 18;
const PAD = 12;
const LABEL_CHARS = 20;

/** Columns and rows of the nodes: {id: {layer, row}}, with the number of each. */
export function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const known = new Set(ids);
  const preds = new Map(ids.map((id) => [id, []]));
  const succs = new Map(ids.map((id) => [id, []]));
  for (const [from, to] of edges) {
    if (!known.has(from) || !known.has(to) || from === to) continue;
    preds.get(to).push(from);
    succs.get(from).push(to);
  }
  // Longest path from the sources, in topological order (Kahn); a cycle (a plan never has
  // one, but the graph is data) leaves nodes behind, which go one column past the others.
  const layer = new Map();
  const indegree = new Map(ids.map((id) => [id, preds.get(id).length]));
  const queue = ids.filter((id) => indegree.get(id) === 0);
  for (const id of queue) layer.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const next of succs.get(id)) {
      layer.set(next, Math.max(layer.get(next) ?? 0, layer.get(id) + 1));
      indegree.set(next, indegree.get(next) - 1);
      if (indegree.get(next) === 0) queue.push(next);
    }
  }
  const deepest = Math.max(-1, ...layer.values());
  for (const id of ids) if (!layer.has(id) || indegree.get(id) > 0) layer.set(id, deepest + 1);

  const columns = [];
  for (const id of ids) (columns[layer.get(id)] ||= []).push(id);
  for (let i = 0; i < columns.length; i++) columns[i] ||= [];
  const row = new Map();
  const number = () => columns.forEach((column) => column.forEach((id, i) => row.set(id, i)));
  number();
  const centre = (id, neighbours) => {
    const rows = neighbours.get(id).map((other) => row.get(other));
    return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : row.get(id);
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? columns.keys() : [...columns.keys()].reverse();
    for (const i of order) {
      const by = new Map(columns[i].map((id) => [id, centre(id, down ? preds : succs)]));
      columns[i].sort((a, b) => by.get(a) - by.get(b) || row.get(a) - row.get(b));
      columns[i].forEach((id, r) => row.set(id, r));
    }
  }
  const height = Math.max(1, ...columns.map((c) => c.length));
  const place = new Map();
  for (const [i, column] of columns.entries()) {
    const offset = (height - column.length) / 2; // a short column is centred
    column.forEach((id, r) => place.set(id, { layer: i, row: r + offset }));
  }
  return { place, layers: columns.length, rows: height };
}

function cut(text) {
  const t = String(text ?? "");
  return t.length > LABEL_CHARS ? `${t.slice(0, LABEL_CHARS - 1)}…` : t;
}

/** Draw `graph` ({nodes: [{id, tool}], edges: [[from, to]]}) as an SVG element. `state(id)`
 * gives a step's status; `critical` is the ids on the critical path, in order. */
export function drawGraph(graph, { state, critical = [], selected, onSelect } = {}) {
  const nodes = (graph && Array.isArray(graph.nodes) ? graph.nodes : []).filter(
    (n) => n && n.id !== undefined && n.id !== null,
  );
  const edges = (graph && Array.isArray(graph.edges) ? graph.edges : []).filter(
    (e) => Array.isArray(e) && e.length >= 2,
  );
  const { place, layers, rows } = layout(nodes, edges);
  const width = PAD * 2 + layers * NODE_W + Math.max(0, layers - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + Math.max(0, rows - 1) * GAP_Y;
  const xy = (id) => {
    const p = place.get(id);
    return { x: PAD + p.layer * (NODE_W + GAP_X), y: PAD + p.row * (NODE_H + GAP_Y) };
  };
  let onPath = new Set(critical);
  const edgeKeys = (path) => new Set(path.slice(1).map((id, i) => `${path[i]}\u0000${id}`));
  const pathEdges = edgeKeys(critical);

  const svg = s("svg", {
    class: "plan-graph",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "plan graph",
  });
  svg.style.minWidth = `${Math.min(width, Math.round(width * 0.55))}px`;
  svg.append(
    s(
      "defs",
      null,
      ["arrow", "arrow-critical"].map((id) =>
        s(
          "marker",
          { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" },
          s("path", { d: "M0,0 L10,5 L0,10 z", class: id === "arrow" ? "arrow-head" : "arrow-head critical" }),
        ),
      ),
    ),
  );
  const edgeLayer = s("g", { class: "edges" });
  for (const [from, to] of edges) {
    if (!place.has(from) || !place.has(to) || from === to) continue;
    const a = xy(from);
    const b = xy(to);
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x - 2;
    const y2 = b.y + NODE_H / 2;
    const bend = Math.max(24, (x2 - x1) / 2);
    edgeLayer.append(
      s("path", {
        class: ["edge", pathEdges.has(`${from}\u0000${to}`) && "edge-critical"],
        d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": pathEdges.has(`${from}\u0000${to}`) ? "url(#arrow-critical)" : "url(#arrow)",
        dataset: { from: String(from), to: String(to) },
      }),
    );
  }
  svg.append(edgeLayer);
  const nodeLayer = s("g", { class: "nodes" });
  const byId = new Map();
  for (const node of nodes) {
    const { x, y } = xy(node.id);
    const id = String(node.id);
    const group = s(
      "g",
      {
        class: "node",
        transform: `translate(${x},${y})`,
        tabindex: 0,
        role: "button",
        dataset: { step: id },
      },
      s("title", null, `${id} (${node.tool ?? "check"})`),
      s("rect", { width: NODE_W, height: NODE_H, rx: 7, ry: 7 }),
      s("text", { x: 10, y: 19, class: "node-id" }, cut(id)),
      s("text", { x: 10, y: 36, class: "node-tool" }, cut(node.tool ?? "check")),
    );
    if (onSelect) {
      group.addEventListener("click", () => onSelect(id));
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          onSelect(id);
        }
      });
    }
    byId.set(id, group);
    nodeLayer.append(group);
  }
  svg.append(nodeLayer);

  /** Set each node's classes from the current states (called on every step event). */
  function update(current = {}) {
    if (current.critical) {
      onPath = new Set(current.critical);
      const keys = edgeKeys(current.critical);
      for (const path of edgeLayer.children) {
        const key = `${path.dataset.from}\u0000${path.dataset.to}`;
        path.classList.toggle("edge-critical", keys.has(key));
        path.setAttribute("marker-end", keys.has(key) ? "url(#arrow-critical)" : "url(#arrow)");
      }
    }
    for (const [id, group] of byId) {
      const status = (current.state || state || (() => "pending"))(id) || "pending";
      group.setAttribute(
        "class",
        [
          "node",
          `state-${cssWord(status)}`,
          onPath.has(id) && "critical",
          (current.selected ?? selected) === id && "selected",
        ]
          .filter(Boolean)
          .join(" "),
      );
      group.dataset.state = status;
    }
  }
  update();
  return { svg, update, nodes: byId };
}
