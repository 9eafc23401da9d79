// Pure logic of the Diffusion Cache timeline: fold the server's events into a
// per-node state and turn that state into what the widget draws. No DOM, no
// ComfyUI imports, so it runs under `node --test` as it is.
//
// Events (see nodes/events.py):
//   diffusion_cache.step: {node, run, prompt, total, step, stage, sigma, branches,
//                          decision, metric, threshold, blocks_computed, blocks_total,
//                          reason, block_mask}
//   diffusion_cache.run:  {node, run, prompt, method, total_steps, evaluations, computed,
//                          reused, forecast, compute_fraction, estimated_speedup, wall_s,
//                          peak_cache_mb, resets, steps: [[step, stage, decision,
//                          blocks_computed, blocks_total, branches], ...]}
// Stored runs (GET /diffusion_cache/runs): {nodes: {id: [{node, run, prompt, done, total,
//                          records: [step fields...], summary: run event | null}, ...]}}

export const DECISIONS = ["computed", "reused", "forecast"];
export const MAX_RUNS = 4;
export const MAX_EVALS = 4096;

const BRANCH_ORDER = ["cond", "uncond"];
const STEP_FIELDS = ["step", "stage", "sigma", "branches", "decision", "metric", "threshold",
  "blocks_computed", "blocks_total", "reason", "block_mask"];

/** A fresh, empty state for one cache node. */
export function createNodeState() {
  return { prompt: null, stale: false, runs: [], version: 0 };
}

function toInt(v, fallback = 0) {
  const n = Number(v);
  return Number.isFinite(n) ? Math.trunc(n) : fallback;
}

function cleanEval(data) {
  const e = {};
  for (const k of STEP_FIELDS) if (data[k] !== undefined) e[k] = data[k];
  e.step = toInt(e.step);
  e.stage = toInt(e.stage);
  e.decision = DECISIONS.includes(e.decision) ? e.decision : "computed";
  e.branches = Array.isArray(e.branches) ? e.branches.map(String) : [];
  e.blocks_computed = toInt(e.blocks_computed);
  e.blocks_total = toInt(e.blocks_total);
  e.block_mask = typeof e.block_mask === "string" ? e.block_mask : "";
  return e;
}

function clearRuns(state) {
  state.runs = [];
  state.stale = false;
}

function findRun(state, data, create = true) {
  const id = data.run ?? null;
  let run = state.runs.find((r) => r.run === id);
  if (!run && create) {
    run = { run: id, prompt: data.prompt ?? null, total: 0, method: null, done: false,
      summary: null, evals: [], truncated: 0 };
    state.runs.push(run);
    while (state.runs.length > MAX_RUNS) state.runs.shift();
  }
  return run;
}

function startsNewPrompt(state, data) {
  if (state.stale) return true;
  const p = data.prompt ?? null;
  return p !== null && state.prompt !== null && p !== state.prompt;
}

/** Mark a state so that the next event for it starts a fresh timeline (a new prompt began). */
export function markStale(state) {
  state.stale = true;
  return state;
}

/** Fold one `diffusion_cache.step` event into the state. */
export function applyStep(state, data) {
  if (!data || typeof data !== "object") return state;
  if (startsNewPrompt(state, data) && !state.runs.some((r) => r.run === (data.run ?? null) && !r.done)) {
    clearRuns(state);
  }
  state.stale = false;
  if (data.prompt != null) state.prompt = data.prompt;
  const run = findRun(state, data);
  if (data.total != null) run.total = Math.max(toInt(data.total), run.total);
  if (run.evals.length < MAX_EVALS) run.evals.push(cleanEval(data));
  else run.truncated += 1;
  run.total = Math.max(run.total, run.evals[run.evals.length - 1]?.step + 1 || 0);
  state.version += 1;
  return state;
}

/** Fold one `diffusion_cache.run` (end of a sampler run) event into the state. */
export function applyRun(state, data) {
  if (!data || typeof data !== "object") return state;
  if (startsNewPrompt(state, data) && !state.runs.some((r) => r.run === (data.run ?? null))) {
    clearRuns(state);
  }
  state.stale = false;
  if (data.prompt != null) state.prompt = data.prompt;
  const run = findRun(state, data);
  const summary = {};
  for (const [k, v] of Object.entries(data)) if (k !== "steps" && k !== "node") summary[k] = v;
  run.summary = summary;
  run.done = true;
  run.method = data.method ?? run.method;
  if (data.total_steps != null) run.total = toInt(data.total_steps);
  if (run.evals.length === 0 && Array.isArray(data.steps)) {
    // the step events were missed (page opened late): rebuild from the compact list
    for (const row of data.steps.slice(0, MAX_EVALS)) {
      const [step, stage, decision, computed, total, branches] = row;
      run.evals.push(cleanEval({ step, stage, decision, blocks_computed: computed,
        blocks_total: total, branches }));
    }
  }
  state.version += 1;
  return state;
}

/**
 * Load the runs the server stored for this node (after a page reload). Only the
 * runs of the newest prompt are kept (two samplers may share one cached model).
 * A state that already has live runs only gets the evaluations of those same runs
 * that it missed (the page was opened in the middle of a run).
 */
export function applyStored(state, entries) {
  if (!Array.isArray(entries) || entries.length === 0) return state;
  const ordered = [...entries].sort((a, b) => (a.started ?? 0) - (b.started ?? 0));
  const last = ordered[ordered.length - 1];
  const group = last.prompt != null ? ordered.filter((e) => e.prompt === last.prompt) : [last];
  if (state.runs.length > 0) return fillMissed(state, group);
  state.prompt = last.prompt ?? null;
  state.stale = false;
  for (const entry of group.slice(-MAX_RUNS)) {
    const run = findRun(state, entry);
    run.total = toInt(entry.total, 0);
    run.truncated = toInt(entry.truncated, 0);
    for (const rec of (entry.records || []).slice(0, MAX_EVALS)) run.evals.push(cleanEval(rec));
    if (entry.summary) {
      run.summary = { ...entry.summary };
      run.method = entry.summary.method ?? null;
      run.done = true;
    } else {
      run.done = !!entry.done;
    }
    for (const e of run.evals) run.total = Math.max(run.total, e.step + 1);
  }
  state.version += 1;
  return state;
}

const evalKey = (e) => `${e.step}:${e.stage}:${e.branches.join(",")}`;

// The page opened while a run was going: live events came first, so add what the
// server recorded before them (same run ids only; live data always wins).
function fillMissed(state, group) {
  let changed = false;
  for (const entry of group) {
    const run = state.runs.find((r) => r.run === (entry.run ?? null));
    if (!run) continue;
    const have = new Set(run.evals.map(evalKey));
    const missed = (entry.records || []).map(cleanEval).filter((e) => !have.has(evalKey(e)));
    if (missed.length) {
      run.evals = [...missed, ...run.evals].sort((a, b) => a.step - b.step || a.stage - b.stage)
        .slice(0, MAX_EVALS);
      for (const e of run.evals) run.total = Math.max(run.total, e.step + 1);
      changed = true;
    }
    if (entry.summary && !run.summary) {
      run.summary = { ...entry.summary };
      run.method = entry.summary.method ?? run.method;
      run.done = true;
      changed = true;
    }
  }
  if (changed) state.version += 1;
  return state;
}

function branchRank(b) {
  const i = BRANCH_ORDER.indexOf(b);
  return i < 0 ? BRANCH_ORDER.length : i;
}

function branchesOf(run) {
  const seen = [];
  for (const e of run.evals) {
    const list = e.branches.length ? e.branches : ["model"];
    for (const b of list) if (!seen.includes(b)) seen.push(b);
  }
  return seen.sort((a, b) => branchRank(a) - branchRank(b) || a.localeCompare(b));
}

function fmtNumber(v, digits = 4) {
  return typeof v === "number" && Number.isFinite(v) ? String(Number(v.toFixed(digits))) : "-";
}

function cellTitle(step, total, evals) {
  const lines = [`step ${step + 1}/${total}`];
  for (const e of evals) {
    let line = `${e.stage > 0 ? `stage ${e.stage}: ` : ""}${e.decision}`;
    if (e.blocks_total > 0) line += ` · ${e.blocks_computed}/${e.blocks_total} blocks`;
    if (e.metric != null || e.threshold != null) {
      line += ` · metric ${fmtNumber(e.metric)} / threshold ${fmtNumber(e.threshold)}`;
    }
    if (e.reason) line += ` · ${e.reason}`;
    lines.push(line);
  }
  if (evals.length && typeof evals[0].sigma === "number") lines.push(`sigma ${fmtNumber(evals[0].sigma)}`);
  return lines.join("\n");
}

/** The cells of one (run, branch) row: one per step, "pending" where nothing ran yet. */
export function rowCells(run, branch) {
  const total = Math.max(run.total, ...run.evals.map((e) => e.step + 1), 0);
  const perStep = Array.from({ length: total }, () => []);
  for (const e of run.evals) {
    const list = e.branches.length ? e.branches : ["model"];
    if (!list.includes(branch) || e.step < 0 || e.step >= total) continue;
    perStep[e.step].push(e);
  }
  return perStep.map((evals, step) => {
    if (evals.length === 0) return { step, state: "pending", stages: [], marked: false, title: `step ${step + 1}/${total}: not run yet` };
    const main = [...evals].reverse().find((e) => e.stage === 0) ?? evals[0];
    const extra = evals.filter((e) => e !== main);
    return { step, state: main.decision, stages: extra.map((e) => e.decision), marked: extra.length > 0,
      title: cellTitle(step, total, [main, ...extra]) };
  });
}

/** Per-run block heat map: one column per step (stage 0), one row per block, from block_mask. */
export function heatMap(run) {
  const total = Math.max(run.total, ...run.evals.map((e) => e.step + 1), 0);
  const cols = Array.from({ length: total }, () => null);
  let blocks = 0;
  for (const e of run.evals) {
    if (e.stage !== 0 || !e.block_mask || e.step < 0 || e.step >= total) continue;
    if (cols[e.step] === null) cols[e.step] = e.block_mask;   // first branch's call of the step
    blocks = Math.max(blocks, e.block_mask.length);
  }
  if (blocks === 0) return null;
  const perBlock = Array.from({ length: blocks }, () => ({ computed: 0, seen: 0 }));
  for (const mask of cols) {
    if (!mask) continue;
    for (let b = 0; b < mask.length; b++) {
      perBlock[b].seen += 1;
      if (mask[b] === "1") perBlock[b].computed += 1;
    }
  }
  return { run: run.run, blocks, steps: total, cols,
    blockFraction: perBlock.map((p) => (p.seen ? p.computed / p.seen : null)) };
}

/** Counts and estimated speed-up over the given runs, as the server computes them. */
export function summarize(runs) {
  let evaluations = 0, computed = 0, reused = 0, forecast = 0, blocksTotal = 0, blocksComputed = 0;
  for (const run of runs) {
    for (const e of run.evals) {
      evaluations += 1;
      if (e.decision === "computed") computed += 1;
      else if (e.decision === "reused") reused += 1;
      else if (e.decision === "forecast") forecast += 1;
      blocksTotal += e.blocks_total;
      blocksComputed += e.blocks_computed;
    }
  }
  const fraction = blocksTotal === 0 ? 1 : blocksComputed / blocksTotal;
  const speedup = fraction === 0 ? Infinity : 1 / fraction;
  return { evaluations, computed, reused, forecast, computeFraction: fraction, speedup,
    text: summaryText(computed, evaluations, speedup) };
}

/** "19/28 computed · 1.47x" */
export function summaryText(computed, evaluations, speedup) {
  if (evaluations === 0) return "waiting for the sampler…";
  const s = speedup === Infinity ? "∞" : `${speedup.toFixed(2)}x`;
  return `${computed}/${evaluations} computed · ${s}`;
}

/** Everything the widget draws for one node state. */
export function buildView(state) {
  const runs = state.runs;
  const rows = [];
  runs.forEach((run, i) => {
    for (const branch of branchesOf(run)) {
      const label = runs.length > 1 ? `S${i + 1} ${branch}` : branch;
      rows.push({ key: `${run.run}:${branch}`, run: run.run, sampler: i + 1, branch, label,
        cells: rowCells(run, branch) });
    }
  });
  const heat = runs.map(heatMap).filter(Boolean);
  const summary = summarize(runs);
  const methods = [...new Set(runs.map((r) => r.method).filter(Boolean))];
  const running = runs.some((r) => !r.done);
  return { rows, heat, summary, methods, running, empty: runs.length === 0 };
}

// ---- node ids -------------------------------------------------------------------------
// The server tags events with the cache node's execution id: "12" for a node of the
// root graph, "5:12" for node 12 inside the subgraph that node 5 of the root graph
// instantiates (deeper nesting adds more parts). The frontend's locator id of a node
// inside a subgraph is "<subgraph uuid>:<local id>".

function getNode(graph, id) {
  if (!graph) return null;
  if (typeof graph.getNodeById === "function") {
    const n = graph.getNodeById(id) ?? graph.getNodeById(Number(id));
    if (n) return n;
  }
  const nodes = graph._nodes || graph.nodes || [];
  return nodes.find((n) => String(n.id) === String(id)) ?? null;
}

/** The node an execution id names, walking subgraph instances from the root graph. */
export function resolveExecutionId(rootGraph, executionId) {
  const parts = String(executionId).split(":");
  let graph = rootGraph;
  for (let i = 0; i < parts.length - 1; i++) {
    const holder = getNode(graph, parts[i]);
    if (!holder || !holder.subgraph) return null;
    graph = holder.subgraph;
  }
  return getNode(graph, parts[parts.length - 1]);
}

/** The locator id ("uuid:local" or "local") of an execution id, or null. */
export function executionIdToLocatorId(rootGraph, executionId) {
  const parts = String(executionId).split(":");
  if (parts.length === 1) return parts[0];
  let graph = rootGraph;
  for (let i = 0; i < parts.length - 1; i++) {
    const holder = getNode(graph, parts[i]);
    if (!holder || !holder.subgraph) return null;
    graph = holder.subgraph;
  }
  return graph && graph.id != null ? `${graph.id}:${parts[parts.length - 1]}` : null;
}

/** The locator id of a node object: its own id in the root graph, "uuid:id" in a subgraph. */
export function nodeLocatorId(node, rootGraph) {
  const graph = node.graph;
  if (!graph || graph === rootGraph || graph.isRootGraph === true || !graph.id || graph === graph.rootGraph) {
    return String(node.id);
  }
  return `${graph.id}:${node.id}`;
}

/** Does an event's node id belong to this node? Tolerant of ids with or without subgraph paths. */
export function nodeMatchesId(node, eventId, rootGraph) {
  if (!node || eventId == null) return false;
  const id = String(eventId);
  const inRoot = !node.graph || !rootGraph || node.graph === rootGraph;
  if (!id.includes(":")) return inRoot && String(node.id) === id;
  const resolved = rootGraph ? resolveExecutionId(rootGraph, id) : null;
  if (resolved) return resolved === node;
  const locator = nodeLocatorId(node, rootGraph);
  if (locator === id) return true;
  const viaPath = rootGraph ? executionIdToLocatorId(rootGraph, id) : null;
  if (viaPath !== null) return viaPath === locator;
  // no graph to walk: compare the local id only
  return !rootGraph && id.split(":").pop() === String(node.id);
}
