// Pure logic of the timeline widget: node --test tests/web
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyRun,
  applyStep,
  applyStored,
  buildView,
  createNodeState,
  executionIdToLocatorId,
  heatMap,
  MAX_RUNS,
  markStale,
  nodeLocatorId,
  nodeMatchesId,
  resolveExecutionId,
  rowCells,
  summarize,
  summaryText,
} from "../../web/timeline_model.js";

function step(over = {}) {
  return { node: "7", run: 1, prompt: "p1", total: 4, step: 0, stage: 0, sigma: 1.0,
    branches: ["cond", "uncond"], decision: "computed", metric: null, threshold: 0.1,
    blocks_computed: 4, blocks_total: 4, reason: "warmup", block_mask: "1111", ...over };
}

test("steps fold into one row per branch with a cell per step", () => {
  const s = createNodeState();
  applyStep(s, step());
  applyStep(s, step({ step: 1, decision: "reused", blocks_computed: 1, block_mask: "1000", reason: "" }));
  const view = buildView(s);
  assert.deepEqual(view.rows.map((r) => r.branch), ["cond", "uncond"]);
  assert.deepEqual(view.rows.map((r) => r.label), ["cond", "uncond"]);
  const cells = view.rows[0].cells;
  assert.equal(cells.length, 4);
  assert.deepEqual(cells.map((c) => c.state), ["computed", "reused", "pending", "pending"]);
  assert.equal(view.running, true);
  assert.equal(view.summary.text, "1/2 computed · 1.60x");
});

test("summary line matches the server's estimated speed-up formula", () => {
  const s = createNodeState();
  const decisions = ["computed", "reused", "computed", "forecast"];
  decisions.forEach((d, i) => applyStep(s, step({ step: i, decision: d,
    blocks_computed: d === "computed" ? 4 : 1, block_mask: d === "computed" ? "1111" : "1000" })));
  const sum = summarize(s.runs);
  assert.equal(sum.evaluations, 4);
  assert.equal(sum.computed, 2);
  assert.equal(sum.reused, 1);
  assert.equal(sum.forecast, 1);
  assert.equal(sum.computeFraction, 10 / 16);
  assert.equal(sum.text, "2/4 computed · 1.60x");
  assert.equal(summaryText(19, 28, 1.4712), "19/28 computed · 1.47x");
  assert.equal(summaryText(0, 3, Infinity), "0/3 computed · ∞");
  assert.equal(summaryText(0, 0, 1), "waiting for the sampler…");
});

test("stage > 0 evaluations mark the step's cell", () => {
  const s = createNodeState();
  applyStep(s, step({ step: 0, stage: 0 }));
  applyStep(s, step({ step: 0, stage: 1, decision: "reused" }));
  applyStep(s, step({ step: 1, stage: 0, decision: "reused" }));
  const cells = rowCells(s.runs[0], "cond");
  assert.equal(cells[0].state, "computed");
  assert.equal(cells[0].marked, true);
  assert.deepEqual(cells[0].stages, ["reused"]);
  assert.match(cells[0].title, /stage 1: reused/);
  assert.equal(cells[1].marked, false);
});

test("a branch missing from an evaluation leaves that row's cell pending", () => {
  const s = createNodeState();
  applyStep(s, step({ step: 0, branches: ["cond", "uncond"] }));
  applyStep(s, step({ step: 1, branches: ["cond"] }));
  const view = buildView(s);
  assert.equal(view.rows[1].branch, "uncond");
  assert.equal(view.rows[1].cells[1].state, "pending");
  assert.equal(view.rows[0].cells[1].state, "computed");
});

test("evaluations without branches get one 'model' row", () => {
  const s = createNodeState();
  applyStep(s, step({ branches: [] }));
  assert.deepEqual(buildView(s).rows.map((r) => r.branch), ["model"]);
});

test("two samplers sharing one node: two runs, rows labelled per sampler", () => {
  const s = createNodeState();
  for (let i = 0; i < 2; i++) applyStep(s, step({ run: 11, total: 2, step: i }));
  applyRun(s, { node: "7", run: 11, prompt: "p1", method: "first_block", total_steps: 2, steps: [] });
  for (let i = 0; i < 2; i++) applyStep(s, step({ run: 12, total: 2, step: i, decision: i ? "reused" : "computed" }));
  const view = buildView(s);
  assert.equal(view.rows.length, 4);
  assert.deepEqual(view.rows.map((r) => r.label), ["S1 cond", "S1 uncond", "S2 cond", "S2 uncond"]);
  assert.deepEqual(view.rows[2].cells.map((c) => c.state), ["computed", "reused"]);
  assert.deepEqual(view.methods, ["first_block"]);
});

test("a new prompt restarts the timeline; a stale mark does too", () => {
  const s = createNodeState();
  applyStep(s, step({ prompt: "p1" }));
  applyRun(s, { node: "7", run: 1, prompt: "p1", method: "x", total_steps: 4 });
  applyStep(s, step({ prompt: "p2", run: 2 }));
  assert.deepEqual(s.runs.map((r) => r.run), [2]);
  markStale(s);
  applyStep(s, step({ prompt: null, run: 3 }));
  assert.deepEqual(s.runs.map((r) => r.run), [3]);
});

test("runs per node are bounded", () => {
  const s = createNodeState();
  for (let r = 0; r < MAX_RUNS + 3; r++) applyStep(s, step({ run: r }));
  assert.equal(s.runs.length, MAX_RUNS);
  assert.equal(s.runs[0].run, 3);
});

test("run event alone rebuilds the cells from its compact step list", () => {
  const s = createNodeState();
  applyRun(s, { node: "7", run: 5, prompt: "p", method: "teacache", total_steps: 3,
    steps: [[0, 0, "computed", 1, 1, ["cond"]], [1, 0, "reused", 0, 1, ["cond"]], [2, 0, "computed", 1, 1, ["cond"]]] });
  const view = buildView(s);
  assert.deepEqual(view.rows[0].cells.map((c) => c.state), ["computed", "reused", "computed"]);
  assert.equal(view.summary.text, "2/3 computed · 1.50x");
  assert.equal(view.running, false);
});

test("heat map from block_mask: a column per step, a row per block", () => {
  const s = createNodeState();
  applyStep(s, step({ step: 0, block_mask: "1111" }));
  applyStep(s, step({ step: 0, stage: 1, block_mask: "0000" }));   // later stages are not drawn
  applyStep(s, step({ step: 2, decision: "reused", blocks_computed: 1, block_mask: "1000" }));
  const heat = heatMap(s.runs[0]);
  assert.equal(heat.blocks, 4);
  assert.equal(heat.steps, 4);
  assert.deepEqual(heat.cols, ["1111", null, "1000", null]);
  assert.deepEqual(heat.blockFraction, [1, 0.5, 0.5, 0.5]);
  const whole = createNodeState();
  applyStep(whole, step({ block_mask: "", blocks_total: 1, blocks_computed: 1 }));
  assert.equal(heatMap(whole.runs[0]), null);
  assert.deepEqual(buildView(whole).heat, []);
});

test("stored runs: only the newest prompt, never over live data", () => {
  const entries = [
    { node: "7", run: 1, prompt: "old", started: 1, done: true, total: 2,
      records: [{ step: 0, stage: 0, decision: "computed", branches: ["cond"], blocks_computed: 1, blocks_total: 1 }],
      summary: { method: "easycache" } },
    { node: "7", run: 2, prompt: "new", started: 2, done: true, total: 2,
      records: [{ step: 0, stage: 0, decision: "computed", branches: ["cond"], blocks_computed: 1, blocks_total: 1 },
        { step: 1, stage: 0, decision: "reused", branches: ["cond"], blocks_computed: 0, blocks_total: 1 }],
      summary: { method: "easycache", estimated_speedup: 2 } },
    { node: "7", run: 3, prompt: "new", started: 3, done: false, total: 2, records: [], summary: null },
  ];
  const s = createNodeState();
  applyStored(s, entries);
  assert.deepEqual(s.runs.map((r) => r.run), [2, 3]);
  assert.equal(s.runs[0].done, true);
  assert.equal(s.runs[1].done, false);
  const view = buildView(s);
  assert.deepEqual(view.rows[0].cells.map((c) => c.state), ["computed", "reused"]);
  const live = createNodeState();
  applyStep(live, step({ run: 9 }));
  applyStored(live, entries);
  assert.deepEqual(live.runs.map((r) => r.run), [9]);
});

test("stored runs fill in what a page opened mid-run missed", () => {
  const s = createNodeState();
  applyStep(s, step({ run: 4, step: 2, prompt: "p" }));
  applyStep(s, step({ run: 4, step: 3, prompt: "p", decision: "reused" }));
  const stored = [{ node: "7", run: 4, prompt: "p", started: 1, done: false, total: 4,
    records: [0, 1, 2].map((i) => ({ step: i, stage: 0, decision: i === 1 ? "reused" : "computed",
      branches: ["cond", "uncond"], blocks_computed: 4, blocks_total: 4 })), summary: null },
  { node: "7", run: 3, prompt: "old", started: 0, done: true, total: 4, records: [], summary: {} }];
  applyStored(s, stored);
  assert.deepEqual(s.runs.map((r) => r.run), [4]);
  assert.deepEqual(s.runs[0].evals.map((e) => e.step), [0, 1, 2, 3]);
  assert.deepEqual(rowCells(s.runs[0], "cond").map((c) => c.state), ["computed", "reused", "computed", "reused"]);
  applyStored(s, stored);   // idempotent
  assert.equal(s.runs[0].evals.length, 4);
});

test("unknown decisions and junk events do not break the state", () => {
  const s = createNodeState();
  applyStep(s, null);
  applyStep(s, { node: "1", run: 1, step: "x", decision: "weird" });
  applyRun(s, undefined);
  assert.equal(s.runs.length, 1);
  assert.equal(s.runs[0].evals[0].decision, "computed");
  assert.equal(s.runs[0].evals[0].step, 0);
});

// ---- node ids ----------------------------------------------------------------------

function fakeGraph(id, nodes) {
  const g = { id, _nodes: nodes, getNodeById: (nid) => nodes.find((n) => String(n.id) === String(nid)) ?? null };
  for (const n of nodes) n.graph = g;
  return g;
}

function fixture() {
  const inner = { id: 12, type: "DiffusionCache" };
  const sub = fakeGraph("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", [inner, { id: 3 }]);
  const rootCache = { id: 12, type: "DiffusionCache" };
  const inst1 = { id: 5, subgraph: sub };
  const inst2 = { id: 6, subgraph: sub };
  const root = fakeGraph("root-uuid", [rootCache, inst1, inst2]);
  sub.rootGraph = root;
  root.rootGraph = root;
  return { root, sub, inner, rootCache };
}

test("root node ids match only root nodes", () => {
  const { root, inner, rootCache } = fixture();
  assert.equal(nodeMatchesId(rootCache, "12", root), true);
  assert.equal(nodeMatchesId(rootCache, 12, root), true);
  assert.equal(nodeMatchesId(inner, "12", root), false);
  assert.equal(nodeMatchesId(rootCache, "13", root), false);
});

test("execution ids resolve through subgraph instances", () => {
  const { root, inner, rootCache } = fixture();
  assert.equal(resolveExecutionId(root, "5:12"), inner);
  assert.equal(resolveExecutionId(root, "6:12"), inner);
  assert.equal(resolveExecutionId(root, "12"), rootCache);
  assert.equal(resolveExecutionId(root, "9:12"), null);
  assert.equal(nodeMatchesId(inner, "5:12", root), true);
  assert.equal(nodeMatchesId(inner, "6:12", root), true);
  assert.equal(nodeMatchesId(rootCache, "5:12", root), false);
});

test("locator ids (uuid:local) match the node in that subgraph", () => {
  const { root, inner } = fixture();
  assert.equal(nodeLocatorId(inner, root), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:12");
  assert.equal(executionIdToLocatorId(root, "5:12"), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:12");
  assert.equal(executionIdToLocatorId(root, "12"), "12");
  assert.equal(nodeMatchesId(inner, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:12", root), true);
  assert.equal(nodeMatchesId(inner, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:3", root), false);
});

test("without a graph to walk, ids compare by their local part", () => {
  assert.equal(nodeMatchesId({ id: 4 }, "4", null), true);
  assert.equal(nodeMatchesId({ id: 4 }, "9:4", null), true);
  assert.equal(nodeMatchesId({ id: 4 }, "9:5", null), false);
  assert.equal(nodeMatchesId(null, "4", null), false);
});
