// Diffusion Cache timeline: a widget on every "Diffusion Cache" node that shows,
// live while the sampler runs, which steps were computed, reused or forecast
// (one row per sampler run and conditioning branch), a per-block heat map for
// block-level methods, and a summary line ("19/28 computed · 1.47x"). After a page
// reload it shows the node's last run again from GET /diffusion_cache/runs.
// On every "Diffusion Cache Compare" node, a line of figures: the PSNR, SSIM and
// wall-clock speedup the node computed (its ui output, from the executed event).
// The Diffusion Cache node shows only the inputs of the chosen method, each with that
// method's tooltip; an "advanced inputs" toggle shows the method's other inputs
// (GET /diffusion_cache/methods says which; see method_inputs.js).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ADVANCED_PROPERTY, advancedLabel, inputTooltip, knobNames, methodView } from "./method_inputs.js";
import {
  applyRun,
  applyStep,
  applyStored,
  buildView,
  createNodeState,
  markStale,
  nodeMatchesId,
} from "./timeline_model.js";

const NODE_TYPE = "DiffusionCache";
const WIDGET_NAME = "diffusion_cache_timeline";
const STEP_EVENT = "diffusion_cache.step";
const RUN_EVENT = "diffusion_cache.run";
const RUNS_ROUTE = "/diffusion_cache/runs";

const ROW_H = 12;
const GAP = 3;          // flex gap between the widget's lines
const PAD = 8;          // top + bottom padding
const HEAT_MAX_H = 72;
const MARGIN = 6;       // around the widget inside the node

/** event node id (execution id) -> state */
const states = new Map();
/** live widgets: {node, el, scheduled, render} */
const widgets = new Set();

function stateFor(id) {
  const key = String(id);
  let state = states.get(key);
  if (!state) {
    state = createNodeState();
    states.set(key, state);
  }
  return state;
}

function rootGraph() {
  const g = app.graph;
  return g?.rootGraph ?? g ?? null;
}

function injectStyle() {
  if (document.getElementById("diffusion-cache-style")) return;
  const style = document.createElement("style");
  style.id = "diffusion-cache-style";
  style.textContent = `
.dc-timeline { box-sizing: border-box; width: 100%; height: 100%; padding: 4px 6px; overflow: hidden;
  font: 11px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--input-text, #ddd);
  background: var(--comfy-input-bg, #222); border-radius: 6px; display: flex; flex-direction: column; gap: 3px; }
.dc-timeline > * { flex: none; }
.dc-summary { height: 15px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.dc-summary .dc-method { opacity: .65; }
.dc-row { display: flex; align-items: center; gap: 4px; height: ${ROW_H}px; }
.dc-label { flex: 0 0 56px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; opacity: .8; font-size: 10px; }
.dc-cells { flex: 1 1 auto; display: flex; gap: 1px; height: 100%; min-width: 0; }
.dc-cell { flex: 1 1 0; min-width: 1px; height: 100%; border-radius: 2px; position: relative; background: #3a3a3a; }
.dc-cell[data-state="computed"] { background: #2f9e5a; }
.dc-cell[data-state="reused"] { background: #3b7dd8; }
.dc-cell[data-state="forecast"] { background: #d9962b; }
.dc-cell[data-state="pending"] { background: #3a3a3a; opacity: .6; }
.dc-stage { position: absolute; left: 0; right: 0; bottom: 0; height: 3px; border-radius: 0 0 2px 2px; background: #eee; }
.dc-stage[data-state="computed"] { background: #9be3b5; }
.dc-stage[data-state="reused"] { background: #a9c8f5; }
.dc-stage[data-state="forecast"] { background: #f5d39b; }
.dc-heat { display: block; width: 100%; image-rendering: pixelated; border-radius: 2px; }
.dc-heat-label { height: 13px; font-size: 10px; opacity: .7; white-space: nowrap; overflow: hidden; }
.dc-legend { height: 13px; display: flex; gap: 8px; font-size: 10px; opacity: .75; white-space: nowrap; overflow: hidden; }
.dc-legend i { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin-right: 3px; vertical-align: -1px; }
.dc-empty { height: 15px; opacity: .6; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.dc-compare { box-sizing: border-box; width: 100%; height: 100%; padding: 4px 6px; overflow: hidden;
  font: 11px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--input-text, #ddd);
  background: var(--comfy-input-bg, #222); border-radius: 6px; display: flex; flex-direction: column; gap: 3px; }
.dc-compare-line { height: 15px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.dc-compare-figures { font-size: 12px; font-weight: 600; }
.dc-compare-detail { opacity: .65; font-size: 10px; }
`;
  document.head.appendChild(style);
}

const COLORS = { computed: "#2f9e5a", cached: "#2b4f86", none: "#303030" };

function drawHeat(canvas, heat) {
  const blocks = heat.blocks;
  const steps = Math.max(heat.steps, 1);
  const cssH = heatCanvasHeight(heat);
  canvas.width = steps;
  canvas.height = blocks;
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.fillStyle = COLORS.none;
  ctx.fillRect(0, 0, steps, blocks);
  heat.cols.forEach((mask, step) => {
    if (!mask) return;
    for (let b = 0; b < mask.length; b++) {
      ctx.fillStyle = mask[b] === "1" ? COLORS.computed : COLORS.cached;
      ctx.fillRect(step, b, 1, 1);
    }
  });
}

function heatCanvasHeight(heat) {
  return Math.min(HEAT_MAX_H, Math.max(16, heat.blocks * 3));
}

/** Height of what renderInto draws: every line has a fixed height (see the style above). */
function contentHeight(view) {
  const lines = [15];                                   // summary
  if (view.empty) lines.push(15);
  for (let i = 0; i < view.rows.length; i++) lines.push(ROW_H);
  for (const heat of view.heat) lines.push(13, heatCanvasHeight(heat));
  lines.push(13);                                       // legend
  return PAD + lines.reduce((a, b) => a + b, 0) + GAP * (lines.length - 1) + 2;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function renderInto(root, view) {
  root.replaceChildren();
  const summary = el("div", "dc-summary");
  summary.dataset.role = "summary";
  summary.append(el("span", "dc-summary-text", view.summary.text));
  if (view.methods.length) summary.append(el("span", "dc-method", ` · ${view.methods.join(", ")}`));
  if (view.running) summary.append(el("span", "dc-method", " · running"));
  root.append(summary);

  if (view.empty) {
    root.append(el("div", "dc-empty", "Run the workflow to see which steps the cache computed."));
  }
  for (const row of view.rows) {
    const line = el("div", "dc-row");
    line.dataset.run = String(row.run);
    line.dataset.branch = row.branch;
    line.dataset.sampler = String(row.sampler);
    const label = el("span", "dc-label", row.label);
    label.title = `sampler run ${row.sampler} (id ${row.run}), ${row.branch}`;
    const cells = el("div", "dc-cells");
    for (const c of row.cells) {
      const cell = el("div", "dc-cell");
      cell.dataset.step = String(c.step);
      cell.dataset.state = c.state;
      if (c.marked) {
        cell.dataset.stages = c.stages.join(",");
        const mark = el("span", "dc-stage");
        mark.dataset.state = c.stages[c.stages.length - 1];
        cell.append(mark);
      }
      cell.title = c.title;
      cells.append(cell);
    }
    line.append(label, cells);
    root.append(line);
  }
  view.heat.forEach((heat, i) => {
    const sampler = view.rows.find((r) => r.run === heat.run)?.sampler ?? i + 1;
    const caption = el("div", "dc-heat-label",
      `blocks × steps${view.heat.length > 1 || view.rows.some((r) => r.sampler > 1) ? ` (S${sampler})` : ""}: ` +
      `${heat.blocks} blocks`);
    const canvas = el("canvas", "dc-heat");
    canvas.dataset.run = String(heat.run);
    canvas.dataset.blocks = String(heat.blocks);
    canvas.title = heat.blockFraction
      .map((f, b) => `block ${b}: ${f == null ? "-" : `${Math.round(f * 100)}% computed`}`).join("\n");
    drawHeat(canvas, heat);
    root.append(caption, canvas);
  });
  const legend = el("div", "dc-legend");
  for (const [name, color] of [["computed", "#2f9e5a"], ["reused", "#3b7dd8"], ["forecast", "#d9962b"]]) {
    const item = el("span");
    const swatch = el("i");
    swatch.style.background = color;
    item.append(swatch, name);
    legend.append(item);
  }
  legend.append(el("span", null, "▁ later stage"));
  root.append(legend);
}

/** The states whose event id belongs to this node (several for a subgraph used twice). */
function statesForNode(node) {
  const root = rootGraph();
  const out = [];
  for (const [id, state] of states) {
    try {
      if (nodeMatchesId(node, id, root)) out.push([id, state]);
    } catch (e) {
      // a graph in the middle of being configured: match again on the next render
    }
  }
  return out;
}

function mergedView(node) {
  const matches = statesForNode(node);
  if (matches.length === 0) return buildView(createNodeState());
  if (matches.length === 1) return buildView(matches[0][1]);
  // one node object, several subgraph instances: show their runs together
  const merged = createNodeState();
  for (const [, state] of matches) merged.runs.push(...state.runs);
  return buildView(merged);
}

function renderWidget(w) {
  w.scheduled = false;
  if (!w.el.isConnected && !w.node.graph) return;
  const view = mergedView(w.node);
  renderInto(w.el, view);
  w.el.dataset.nodeId = String(w.node.id);
  w.el.dataset.evaluations = String(view.summary.evaluations);
  const needed = contentHeight(view);
  if (needed !== w.height) {
    w.height = needed;
    const size = w.node.size;
    const min = w.node.computeSize?.();
    if (size && min && min[1] > size[1]) w.node.setSize?.([size[0], min[1]]);
    w.node.setDirtyCanvas?.(true, true);
  }
}

function schedule(w) {
  if (w.scheduled) return;
  w.scheduled = true;
  const run = () => { if (w.scheduled) renderWidget(w); };
  requestAnimationFrame(run);
  setTimeout(run, 250);   // also when the tab is in the background
}

function renderMatching(id) {
  const root = rootGraph();
  for (const w of widgets) {
    let hit = false;
    try { hit = nodeMatchesId(w.node, id, root); } catch (e) { hit = false; }
    if (hit) schedule(w);
  }
}

function renderAll() {
  for (const w of widgets) schedule(w);
}

async function loadStoredRuns() {
  let data;
  try {
    const res = await api.fetchApi(RUNS_ROUTE, { cache: "no-store" });
    if (!res.ok) return;
    data = await res.json();
  } catch (e) {
    return;   // older server without the route, or offline: nothing to restore
  }
  for (const [id, entries] of Object.entries(data?.nodes ?? {})) applyStored(stateFor(id), entries);
  renderAll();
}

function addTimeline(node) {
  injectStyle();
  const root = el("div", "dc-timeline");
  root.dataset.diffusionCache = "timeline";
  const w = { node, el: root, scheduled: false, height: 0 };
  const widget = node.addDOMWidget(WIDGET_NAME, "diffusion_cache_timeline", root, {
    serialize: false,
    hideOnZoom: true,
    getValue: () => "",
    setValue: () => {},
    margin: MARGIN,
    // the element gets the widget's height less a margin above and below
    getMinHeight: () => (w.height || contentHeight(buildView(createNodeState()))) + 2 * MARGIN,
    getMaxHeight: () => (w.height || contentHeight(buildView(createNodeState()))) + 2 * MARGIN + 24,
  });
  widget.serialize = false;   // not part of widgets_values (they follow the node's inputs)
  w.widget = widget;
  widgets.add(w);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    widgets.delete(w);
    return onRemoved?.apply(this, arguments);
  };
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    const r = onConfigure?.apply(this, arguments);
    schedule(w);
    return r;
  };
  schedule(w);
}


// ---- the node's inputs: those of the chosen method, the rest behind "advanced" ---------------

const METHODS_ROUTE = "/diffusion_cache/methods";
const METHOD_WIDGET = "method";
const ADVANCED_WIDGET = "diffusion_cache_advanced";
/** GET /diffusion_cache/methods, or null (an older server): then the node shows every input */
let methodsDescription = null;
let methodKnobs = new Set();
const methodsLoaded = (async () => {
  try {
    const res = await api.fetchApi(METHODS_ROUTE, { cache: "no-store" });
    if (!res.ok) return;
    methodsDescription = await res.json();
    methodKnobs = knobNames(methodsDescription);
  } catch (e) {
    // no route: every input stays shown
  }
})();

function setWidgetHidden(node, widget, hidden) {
  // Newer frontends leave hidden widgets out of the layout (getLayoutWidgets); the older ones
  // (1.27) still give each widget its computeSize height there, so a hidden one takes none.
  widget.hidden = hidden;
  const layoutSkipsHidden = typeof node.getLayoutWidgets === "function";
  if (layoutSkipsHidden) return;
  if (hidden && !widget.__dcHiddenSize) {
    widget.__dcHiddenSize = { own: Object.prototype.hasOwnProperty.call(widget, "computeSize"),
      computeSize: widget.computeSize };
    widget.computeSize = () => [0, -4];
  } else if (!hidden && widget.__dcHiddenSize) {
    const saved = widget.__dcHiddenSize;
    delete widget.__dcHiddenSize;
    if (saved.own) widget.computeSize = saved.computeSize;
    else delete widget.computeSize;
  }
}

function showAdvanced(node) {
  return node.properties?.[ADVANCED_PROPERTY] === true;
}

/** Show the chosen method's inputs (its advanced ones with the toggle on), each with its tooltip. */
function applyMethodInputs(node, { fit = true } = {}) {
  const methodWidget = node.widgets?.find((w) => w.name === METHOD_WIDGET);
  const toggle = node.widgets?.find((w) => w.name === ADVANCED_WIDGET);
  if (!methodWidget) return;
  const method = methodWidget.value;
  node.__dcApplied = method;
  const linked = (node.inputs ?? []).filter((i) => i.widget?.name && i.link != null).map((i) => i.widget.name);
  const view = methodView(methodsDescription, method, { showAdvanced: showAdvanced(node), linked });
  const shown = new Set(view.shown);
  for (const w of node.widgets) {
    if (!methodKnobs.has(w.name)) continue;
    if (!("__dcTooltip" in w)) w.__dcTooltip = w.tooltip;    // the schema's, for a method we do not know
    setWidgetHidden(node, w, !shown.has(w.name));
    w.tooltip = inputTooltip(methodsDescription, method, w.name, w.__dcTooltip);
  }
  if (toggle) {
    toggle.value = showAdvanced(node);
    toggle.label = advancedLabel(view);
    toggle.tooltip = view.advanced.length
      ? `Show the ${view.advanced.length} inputs of ${method} that rarely need changing: ${view.advanced.join(", ")}. ` +
        "Hidden inputs keep their values, and the workflow saves them."
      : undefined;
    setWidgetHidden(node, toggle, !view.known || view.advanced.length === 0);
  }
  if (fit && node.size && typeof node.computeSize === "function") {
    const min = node.computeSize();
    if (min && Number.isFinite(min[1])) node.setSize?.([node.size[0], min[1]]);
  }
  node.setDirtyCanvas?.(true, true);
}

function chain(object, name, after) {
  const before = object[name];
  object[name] = function () {
    const r = before?.apply(this, arguments);
    after.apply(this, arguments);
    return r;
  };
}

function addMethodInputs(node) {
  if (!methodsDescription) return;
  node.properties ??= {};
  if (typeof node.properties[ADVANCED_PROPERTY] !== "boolean") node.properties[ADVANCED_PROPERTY] = false;
  // after every input widget, so widgets_values keep their positions (client-only: never saved or sent)
  const toggle = node.addWidget("toggle", ADVANCED_WIDGET, showAdvanced(node), (value) => {
    node.properties[ADVANCED_PROPERTY] = !!value;
    applyMethodInputs(node);
  }, { on: "shown", off: "hidden", serialize: false });
  toggle.serialize = false;
  const methodWidget = node.widgets.find((w) => w.name === METHOD_WIDGET);
  if (methodWidget) chain(methodWidget, "callback", () => applyMethodInputs(node));
  chain(node, "onWidgetChanged", (name) => { if (name === METHOD_WIDGET) applyMethodInputs(node); });
  chain(node, "onConfigure", () => applyMethodInputs(node));
  chain(node, "onConnectionsChange", () => { if (node.widgets) applyMethodInputs(node, { fit: false }); });
  // a value set without a callback (another extension, a script): follow it on the next frame drawn
  chain(node, "onDrawForeground", () => {
    const w = node.widgets?.find((x) => x.name === METHOD_WIDGET);
    if (w && w.value !== node.__dcApplied) applyMethodInputs(node);
  });
  applyMethodInputs(node);
}


// ---- Diffusion Cache Compare: the figures its execution computed ---------------------------

const COMPARE_TYPE = "DiffusionCacheCompare";
const COMPARE_WIDGET = "diffusion_cache_compare";
const COMPARE_KEY = "diffusion_cache_compare";      // the node's ui output key
const COMPARE_H = 2 * 15 + 3 + PAD + 2;
/** event node id (execution id) -> the figures of its last execution */
const compareResults = new Map();
/** live compare widgets: {node, el} */
const compareWidgets = new Set();

const COMPARE_TIPS = {
  psnr: "PSNR of the cached images against the uncached ones, on the decoded images in [0, 1]: " +
    "higher is closer, ∞ = identical; above about 30 dB differences are hard to see.",
  ssim: "SSIM (structural similarity) of the cached images against the uncached ones: 1 = identical.",
  speedup: "Wall-clock seconds of the uncached sampler run / the cached one, both run in this node. The cached " +
    "run goes first, so on the first queue it also carries loading the model and warm-up: queue again " +
    "(another seed) for a steadier figure.",
};

/** The figures' text, one entry per figure: [name, text, raw value]. */
function compareFigures(f) {
  const psnr = f.identical ? "∞" : (typeof f.psnr === "number" ? `${f.psnr.toFixed(2)} dB` : "—");
  const ssim = typeof f.ssim === "number" ? f.ssim.toFixed(4) : "—";
  const speedup = typeof f.speedup === "number" ? `${f.speedup.toFixed(2)}x` : "—";
  return [["psnr", `PSNR ${psnr}`, f.identical ? "inf" : f.psnr], ["ssim", `SSIM ${ssim}`, f.ssim],
    ["speedup", `speedup ${speedup}`, f.speedup]];
}

function compareDetail(f) {
  const parts = [];
  if (typeof f.seconds_cached === "number" && typeof f.seconds_uncached === "number") {
    parts.push(`cached ${f.seconds_cached.toFixed(2)} s`, `uncached ${f.seconds_uncached.toFixed(2)} s`);
  } else {
    parts.push(`compared ${f.mode ?? "inputs"} made upstream (not timed)`);
  }
  if (f.images != null) parts.push(`${f.images} image${f.images === 1 ? "" : "s"}`);
  if (f.cache_attached === false) parts.push("no cache attached");
  return parts.join(" · ");
}

function renderCompare(w) {
  const root = w.el;
  root.replaceChildren();
  root.dataset.nodeId = String(w.node.id);
  let figures = null;
  const rootG = rootGraph();
  for (const [id, f] of compareResults) {
    let hit = false;
    try { hit = nodeMatchesId(w.node, id, rootG); } catch (e) { hit = false; }
    if (hit) figures = f;
  }
  root.dataset.state = figures ? "done" : "empty";
  if (!figures) {
    root.append(el("div", "dc-compare-line dc-empty", "Run the workflow to compare cached and uncached."));
    return;
  }
  const line = el("div", "dc-compare-line dc-compare-figures");
  compareFigures(figures).forEach(([name, text, value], i) => {
    if (i) line.append(document.createTextNode(" · "));
    const span = el("span", "dc-figure", text);
    span.dataset.figure = name;
    span.dataset.value = value == null ? "" : String(value);
    span.title = COMPARE_TIPS[name];
    line.append(span);
  });
  root.append(line, el("div", "dc-compare-line dc-compare-detail", compareDetail(figures)));
}

function addCompareWidget(node) {
  injectStyle();
  const root = el("div", "dc-compare");
  root.dataset.diffusionCache = "compare";
  const w = { node, el: root };
  const widget = node.addDOMWidget(COMPARE_WIDGET, "diffusion_cache_compare", root, {
    serialize: false,
    hideOnZoom: true,
    getValue: () => "",
    setValue: () => {},
    margin: MARGIN,
    getMinHeight: () => COMPARE_H + 2 * MARGIN,
    getMaxHeight: () => COMPARE_H + 2 * MARGIN + 8,
  });
  widget.serialize = false;
  compareWidgets.add(w);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    compareWidgets.delete(w);
    return onRemoved?.apply(this, arguments);
  };
  renderCompare(w);
}

api.addEventListener("executed", ({ detail }) => {
  const figures = detail?.output?.[COMPARE_KEY]?.[0];
  if (!figures) return;
  compareResults.set(String(detail.display_node ?? detail.node), figures);
  for (const w of compareWidgets) renderCompare(w);
});

api.addEventListener(STEP_EVENT, ({ detail }) => {
  if (!detail || detail.node == null) return;
  applyStep(stateFor(detail.node), detail);
  renderMatching(detail.node);
});

api.addEventListener(RUN_EVENT, ({ detail }) => {
  if (!detail || detail.node == null) return;
  applyRun(stateFor(detail.node), detail);
  renderMatching(detail.node);
});

api.addEventListener("execution_start", () => {
  // a new prompt: each node's timeline restarts at its first event of this prompt
  for (const state of states.values()) markStale(state);
});

app.registerExtension({
  name: "DiffusionCache.Timeline",
  async setup() {
    await loadStoredRuns();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name === COMPARE_TYPE) {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        addCompareWidget(this);
        return r;
      };
      return;
    }
    if (nodeData?.name !== NODE_TYPE) return;
    await methodsLoaded;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      addMethodInputs(this);
      addTimeline(this);
      return r;
    };
  },
  async afterConfigureGraph() {
    for (const node of rootGraph()?.nodes ?? []) {
      if (node.type === NODE_TYPE) applyMethodInputs(node);
    }
    renderAll();
    for (const w of compareWidgets) renderCompare(w);
  },
});

// for tests and for other extensions that want to read what the widget shows
window.diffusionCacheTimeline = {
  states,
  widgets,
  reload: loadStoredRuns,
  renderAll,
  compareResults,
  methods: { description: () => methodsDescription, apply: applyMethodInputs, ADVANCED_PROPERTY, ADVANCED_WIDGET },
};
