// End-to-end check of the Diffusion Cache timeline in a real headless Chromium
// against a running ComfyUI that has this pack installed. Driven by
// tests/web/test_browser.py, which starts the server and asserts on the report.
//
//   node tests/web/e2e.mjs --url http://127.0.0.1:PORT --chromium /usr/bin/chromium \
//        --workflows workflows --demo workflows/tiny_flux_demo.json --two-stage two_stage.json \
//        --screenshot docs/timeline.png --compare workflows/tiny_flux_compare.json --report out.json [--no-run]
//
// Phases: (1) load every UI workflow in workflows/ with app.loadGraphData and record
// missing node types and widget round-trips; (2) load the tiny demo, queue it from the
// UI, record what the timeline widget showed while sampling and at the end, plus
// GET /diffusion_cache/runs; (4) reload the page and record what the widget shows from
// the stored runs; (5) put the cache node in a subgraph, run again and record the widget
// of the node inside the subgraph; (6) run a graph where two samplers share one cached
// model and take the screenshot of its timeline; (7) run the Diffusion Cache Compare
// workflow and record the figures its node shows, with the prompt's GET /history entry
// (what the server computed); (8) load the demo again, pick other methods from the method
// widget's menu and click the "advanced inputs" toggle, recording after each what the frontend
// shows (its visibility test, layout rows, hit test, tooltips on hover) and what the workflow and
// the prompt hold; save, load the saved graph and queue it. Every browser console error and page error is recorded. The report is JSON; the assertions live in the Python test.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    workflows: { type: "string" },
    demo: { type: "string" },
    "two-stage": { type: "string" },
    compare: { type: "string" },
    screenshot: { type: "string" },
    report: { type: "string" },
    "no-run": { type: "boolean", default: false },
    timeout: { type: "string", default: "120" },
  },
});

const TIMEOUT_MS = Number(opt.timeout) * 1000;
const report = { console_errors: [], page_errors: [], workflows: {}, phases: [], timings: {} };
const t0 = Date.now();
function mark(name) {
  report.timings[name] = (Date.now() - t0) / 1000;
  report.phases.push(name);
  process.stderr.write(`[e2e] ${name} at ${report.timings[name].toFixed(1)}s\n`);
}

function writeReport() {
  report.timings.total = (Date.now() - t0) / 1000;
  const text = JSON.stringify(report, null, 1);
  if (opt.report) fs.writeFileSync(opt.report, text);
  else process.stdout.write(text + "\n");
}

const browser = await chromium.launch({
  executablePath: opt.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});

try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1300 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on("console", (msg) => {
    if (msg.type() === "error") report.console_errors.push({ text: msg.text(), location: msg.location() });
  });
  page.on("pageerror", (err) => report.page_errors.push(String(err && err.stack || err)));

  async function openApp() {
    await page.goto(opt.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => !!(window.app && window.app.graph && window.app.canvas &&
      window.LiteGraph && window.LiteGraph.registered_node_types.DiffusionCache && window.diffusionCacheTimeline),
    null, { timeout: TIMEOUT_MS });
    await page.evaluate(() => {
      if (window.__dcE2E) return;
      window.__dcE2E = { missing: [], events: [], snapshots: [], done: [] };
      window.app.registerExtension({
        name: "DiffusionCache.E2E",
        afterConfigureGraph(missing) {
          for (const m of missing || []) window.__dcE2E.missing.push(typeof m === "string" ? m : m.type);
        },
      });
      const api = window.comfyAPI.api.api;
      api.addEventListener("diffusion_cache.step", ({ detail }) => window.__dcE2E.events.push(detail));
      api.addEventListener("execution_success", ({ detail }) => window.__dcE2E.done.push(detail?.prompt_id ?? true));
      api.addEventListener("execution_error", ({ detail }) => window.__dcE2E.done.push({ error: detail }));
    });
  }

  await openApp();
  mark("app loaded");

  // ---- (1) every UI workflow loads without missing node types -----------------------------
  if (opt.workflows) {
    const files = fs.readdirSync(opt.workflows).filter((f) => f.endsWith(".json")).sort();
    for (const f of files) {
      const data = JSON.parse(fs.readFileSync(path.join(opt.workflows, f), "utf8"));
      if (!Array.isArray(data.nodes)) continue;   // API-format files are not UI workflows
      report.workflows[f] = await page.evaluate(async (wf) => {
        const { app, LiteGraph } = window;
        const before = window.__dcE2E.missing.length;
        await app.loadGraphData(wf, true, true, null,
          { showMissingNodesDialog: false, showMissingModelsDialog: false });
        const missing = window.__dcE2E.missing.slice(before);
        const unregistered = wf.nodes.map((n) => n.type).filter((t) => !(t in LiteGraph.registered_node_types));
        const saved = app.graph.serialize();
        const roundTrip = [];
        for (const n of wf.nodes) {
          const s = saved.nodes.find((x) => x.id === n.id);
          roundTrip.push({ id: n.id, type: n.type, file: n.widgets_values ?? [], loaded: s?.widgets_values ?? null,
            links_in: (s?.inputs || []).filter((i) => i.link != null).length,
            links_file: (n.inputs || []).filter((i) => i.link != null).length });
        }
        const timelines = app.graph.nodes.filter((n) => n.type === "DiffusionCache")
          .map((n) => !!n.widgets?.find((w) => w.name === "diffusion_cache_timeline"));
        return { missing, unregistered, nodes: wf.nodes.length, loaded_nodes: app.graph.nodes.length,
          links: wf.links.length, loaded_links: saved.links.length, roundTrip, timelines };
      }, data);
    }
    mark("workflows loaded");
  }

  if (!opt["no-run"] && opt.demo) {
    const demo = JSON.parse(fs.readFileSync(opt.demo, "utf8"));
    const cacheNode = demo.nodes.find((n) => n.type === "DiffusionCache");
    report.cache_node_id = String(cacheNode.id);

    // ---- (2) run the tiny demo from the UI and watch the widget ----------------------------
    await page.evaluate(async (wf) => {
      await window.app.loadGraphData(wf, true, true, "tiny_flux_demo",
        { showMissingNodesDialog: false, showMissingModelsDialog: false });
    }, demo);
    await page.evaluate((id) => {
      const el = document.querySelector(`.dc-timeline[data-node-id="${id}"]`) ||
        [...document.querySelectorAll(".dc-timeline")][0];
      window.__dcE2E.observed = !!el;
      const snap = () => {
        const t = document.querySelector(`.dc-timeline[data-node-id="${id}"]`);
        if (!t) return;
        const cells = [...t.querySelectorAll(".dc-cell")];
        window.__dcE2E.snapshots.push({ cells: cells.length,
          done: cells.filter((c) => c.dataset.state !== "pending").length });
      };
      new MutationObserver(snap).observe(document.body, { childList: true, subtree: true });
    }, report.cache_node_id);
    const queued = Date.now();
    await page.evaluate(() => window.app.queuePrompt(0, 1));
    await page.waitForFunction(() => window.__dcE2E.done.length > 0, null, { timeout: TIMEOUT_MS });
    report.run_seconds = (Date.now() - queued) / 1000;
    report.run_result = await page.evaluate(() => window.__dcE2E.done[0]);
    mark("demo ran");
    if (report.run_result && report.run_result.error) {
      const e = report.run_result.error;
      throw new Error(`the demo workflow failed on node ${e.node_id} (${e.node_type}): ${e.exception_message}`);
    }

    const readWidget = (id) => page.evaluate((nodeId) => {
      const el = document.querySelector(`.dc-timeline[data-node-id="${nodeId}"]`);
      if (!el) return null;
      return {
        summary: el.querySelector(".dc-summary-text")?.textContent ?? null,
        rows: [...el.querySelectorAll(".dc-row")].map((r) => ({
          run: r.dataset.run, branch: r.dataset.branch, sampler: r.dataset.sampler,
          cells: [...r.querySelectorAll(".dc-cell")].map((c) => c.dataset.state),
          stages: [...r.querySelectorAll(".dc-cell")].map((c) => c.dataset.stages ?? ""),
        })),
        heat: [...el.querySelectorAll("canvas.dc-heat")].map((c) => ({ run: c.dataset.run, blocks: c.dataset.blocks })),
        visible: el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().height > 0,
      };
    }, id);
    const waitForWidget = (id, evaluations) => page.waitForFunction(([nodeId, n]) => {
      const el = document.querySelector(`.dc-timeline[data-node-id="${nodeId}"]`);
      return !!el && Number(el.dataset.evaluations) >= n && !el.textContent.includes("running");
    }, [id, evaluations], { timeout: TIMEOUT_MS });

    // evaluations of the newest prompt's runs of a node: what its widget shows
    const latestEvaluations = (entries) => {
      if (!entries || entries.length === 0) return 0;
      const sorted = [...entries].sort((a, b) => (a.started ?? 0) - (b.started ?? 0));
      const prompt = sorted[sorted.length - 1].prompt;
      const group = prompt != null ? sorted.filter((e) => e.prompt === prompt) : sorted.slice(-1);
      return group.reduce((n, r) => n + (r.records?.length ?? 0), 0);
    };
    const fetchRuns = () => page.evaluate(async () => (await fetch("/diffusion_cache/runs")).json());
    report.server_runs = await fetchRuns();
    const stored = report.server_runs.nodes?.[report.cache_node_id] ?? [];
    const evaluations = latestEvaluations(stored);
    await waitForWidget(report.cache_node_id, evaluations);
    report.widget_live = await readWidget(report.cache_node_id);
    report.step_events = await page.evaluate(() => window.__dcE2E.events.length);
    report.snapshots = await page.evaluate(() => window.__dcE2E.snapshots);
    mark("widget read");

    // ---- screenshot of a cache node and its timeline -------------------------------------
    const screenshot = async (id) => {
      const clip = await page.evaluate((nodeId) => {
        const { app, LiteGraph } = window;
        const node = app.graph.getNodeById(Number(nodeId));
        // the cache node and the samplers it feeds
        const fed = (node.outputs?.[0]?.links ?? []).map((l) => app.graph.links[l] ?? app.graph.links.get?.(l))
          .filter(Boolean).map((l) => app.graph.getNodeById(l.target_id)).filter(Boolean);
        const all = [node, ...fed];
        const title = LiteGraph.NODE_TITLE_HEIGHT || 30;
        const x0 = Math.min(...all.map((n) => n.pos[0])), y0 = Math.min(...all.map((n) => n.pos[1] - title));
        const x1 = Math.max(...all.map((n) => n.pos[0] + n.size[0]));
        const y1 = Math.max(...all.map((n) => n.pos[1] + n.size[1]));
        const scale = 1;
        const pad = 24, top = 110;   // below the tab bar
        app.canvas.ds.scale = scale;
        app.canvas.ds.offset = [-x0 + 70, -y0 + top];
        app.canvas.setDirty(true, true);
        app.canvas.draw(true, true);
        const rect = app.canvas.canvas.getBoundingClientRect();
        return { x: rect.left + 70 - pad, y: rect.top + top - pad - 20,
          width: (x1 - x0) * scale + 2 * pad, height: (y1 - y0) * scale + 2 * pad + 20 };
      }, id);
      await page.waitForTimeout(400);   // DOM widgets follow the canvas on the next frames
      fs.mkdirSync(path.dirname(opt.screenshot), { recursive: true });
      await page.screenshot({ path: opt.screenshot, clip });
      if (process.env.DC_E2E_FULLPAGE) await page.screenshot({ path: process.env.DC_E2E_FULLPAGE });
      report.screenshot = opt.screenshot;
      mark("screenshot");
    };

    // ---- (4) reload: the widget shows the stored run again --------------------------------
    await page.reload({ waitUntil: "domcontentloaded" });
    await openApp();
    await page.waitForFunction(() => window.app.graph.nodes.some((n) => n.type === "DiffusionCache"), null,
      { timeout: TIMEOUT_MS });
    await waitForWidget(report.cache_node_id, evaluations);
    report.widget_reloaded = await readWidget(report.cache_node_id);
    mark("reloaded");

    // ---- (5) the cache node inside a subgraph ---------------------------------------------
    const sub = await page.evaluate(async (id) => {
      const { app } = window;
      const node = app.graph.getNodeById(Number(id));
      const { node: holder, subgraph } = app.graph.convertToSubgraph(new Set([node]));
      const inner = subgraph.nodes.find((n) => n.type === "DiffusionCache");
      // a new input, so ComfyUI runs the cache node (now "<holder>:<id>") and its sampler again
      // instead of answering from its output cache
      const threshold = inner.widgets.find((w) => w.name === "threshold");
      threshold.value = Number(threshold.value) + 0.005;
      const before = window.__dcE2E.done.length;
      window.__dcE2E.events.length = 0;
      await app.queuePrompt(0, 1);
      return { holder: String(holder.id), inner: String(inner.id), subgraph: subgraph.id, before };
    }, report.cache_node_id);
    report.subgraph = sub;
    await page.waitForFunction((n) => window.__dcE2E.done.length > n, sub.before, { timeout: TIMEOUT_MS });
    sub.event_nodes = await page.evaluate(() => [...new Set(window.__dcE2E.events.map((e) => String(e.node)))]);
    sub.server_runs = await fetchRuns();
    const subId = sub.event_nodes[0];
    const subEvals = latestEvaluations(sub.server_runs.nodes?.[subId]);
    // open the subgraph so the inner node (and its widget) is on the canvas
    await page.evaluate((s) => {
      const { app } = window;
      const holder = app.graph.getNodeById(Number(s.holder));
      app.canvas.openSubgraph(holder.subgraph);
    }, sub);
    sub.dom_before_wait = await page.evaluate(() => [...document.querySelectorAll(".dc-timeline")]
      .map((e) => ({ id: e.dataset.nodeId, evaluations: e.dataset.evaluations, connected: e.isConnected })));
    await waitForWidget(sub.inner, subEvals);
    sub.widget = await readWidget(sub.inner);
    sub.matches = await page.evaluate((s) => {
      const holder = window.app.graph.getNodeById(Number(s.holder));
      const inner = holder.subgraph.nodes.find((n) => n.type === "DiffusionCache");
      return s.event_nodes.map((id) => ({ id, node: String(inner.id) }));
    }, sub);
    report.subgraph = sub;
    mark("subgraph");

    // ---- (6) two samplers sharing one cached model: two runs under one node id ------------
    if (opt["two-stage"]) {
      const wf = JSON.parse(fs.readFileSync(opt["two-stage"], "utf8"));
      const id = String(wf.nodes.find((n) => n.type === "DiffusionCache").id);
      const before = await page.evaluate(async (graph) => {
        window.__dcE2E.events.length = 0;
        await window.app.loadGraphData(graph, true, true, "two_stage",
          { showMissingNodesDialog: false, showMissingModelsDialog: false });
        const n = window.__dcE2E.done.length;
        await window.app.queuePrompt(0, 1);
        return n;
      }, wf);
      await page.waitForFunction((n) => window.__dcE2E.done.length > n, before, { timeout: TIMEOUT_MS });
      const two = { node: id, result: await page.evaluate(() => window.__dcE2E.done.at(-1)) };
      two.server_runs = await fetchRuns();
      await waitForWidget(id, latestEvaluations(two.server_runs.nodes?.[id]));
      two.widget = await readWidget(id);
      report.two_stage = two;
      mark("two-stage");
      if (opt.screenshot) await screenshot(id);
    } else if (opt.screenshot) {
      await page.evaluate((g) => window.app.loadGraphData(g, true, true, "tiny_flux_demo",
        { showMissingNodesDialog: false, showMissingModelsDialog: false }), demo);
      await waitForWidget(report.cache_node_id, 1);
      await screenshot(report.cache_node_id);
    }
  }

  // ---- (7) the Diffusion Cache Compare node shows the figures the server computed ---------
  if (!opt["no-run"] && opt.compare) {
    const wf = JSON.parse(fs.readFileSync(opt.compare, "utf8"));
    const id = String(wf.nodes.find((n) => n.type === "DiffusionCacheCompare").id);
    const before = await page.evaluate(async (graph) => {
      await window.app.loadGraphData(graph, true, true, "tiny_flux_compare",
        { showMissingNodesDialog: false, showMissingModelsDialog: false });
      const n = window.__dcE2E.done.length;
      await window.app.queuePrompt(0, 1);
      return n;
    }, wf);
    await page.waitForFunction((n) => window.__dcE2E.done.length > n, before, { timeout: TIMEOUT_MS });
    const compare = { node: id, result: await page.evaluate(() => window.__dcE2E.done.at(-1)) };
    report.compare = compare;
    if (compare.result && compare.result.error) {
      const e = compare.result.error;
      throw new Error(`the compare workflow failed on node ${e.node_id} (${e.node_type}): ${e.exception_message}`);
    }
    await page.waitForFunction((nodeId) =>
      document.querySelector(`.dc-compare[data-node-id="${nodeId}"]`)?.dataset.state === "done", id,
    { timeout: TIMEOUT_MS });
    compare.widget = await page.evaluate((nodeId) => {
      const el = document.querySelector(`.dc-compare[data-node-id="${nodeId}"]`);
      const r = el.getBoundingClientRect();
      return { state: el.dataset.state, visible: r.width > 0 && r.height > 0,
        figures: [...el.querySelectorAll(".dc-figure")].map((f) => ({ name: f.dataset.figure, text: f.textContent,
          value: f.dataset.value, title: f.title })),
        detail: el.querySelector(".dc-compare-detail")?.textContent ?? null };
    }, id);
    compare.history = await page.evaluate(async (pid) => (await fetch(`/history/${pid}`)).json(), compare.result);
    if (process.env.DC_E2E_COMPARE_SHOT) {
      await page.waitForTimeout(400);
      await page.screenshot({ path: process.env.DC_E2E_COMPARE_SHOT });
    }
    mark("compare");
  }

  // ---- (8) the node shows the chosen method's inputs; "advanced" shows the rest ----------------
  if (opt.demo) {
    const demo = JSON.parse(fs.readFileSync(opt.demo, "utf8"));
    const id = Number(demo.nodes.find((n) => n.type === "DiffusionCache").id);
    const m = { node: String(id), steps: [] };
    report.method_inputs = m;
    m.description = await page.evaluate(async () => (await fetch("/diffusion_cache/methods")).json());
    await page.evaluate(async (graph) => {
      await window.app.loadGraphData(graph, true, true, "method_inputs",
        { showMissingNodesDialog: false, showMissingModelsDialog: false });
    }, demo);

    // what the frontend itself shows: its own visibility test, the rows it laid out and drew,
    // which widget its hit test finds on each row, and what the workflow and the prompt hold
    const state = (label) => page.evaluate(async ([nodeId, label]) => {
      const { app } = window;
      const node = app.graph.getNodeById(nodeId);
      app.canvas.ds.scale = 1;
      app.canvas.centerOnNode(node);
      app.canvas.setDirty(true, true);
      app.canvas.draw(true, true);
      await new Promise((r) => requestAnimationFrame(() => r()));
      app.canvas.draw(true, true);
      const visible = node.widgets.filter((w) => node.isWidgetVisible(w));
      const rows = visible.filter((w) => !w.element).map((w) => {
        const y = w.last_y ?? w.y;
        const hit = node.getWidgetOnPos(node.pos[0] + node.size[0] / 2, node.pos[1] + y + 6, true);
        return { name: w.name, y, height: w.computedHeight ?? null, hit: hit?.name ?? null };
      });
      const saved = node.serialize();
      const prompt = await app.graphToPrompt();
      const toggle = node.widgets.find((w) => w.name === window.diffusionCacheTimeline.methods.ADVANCED_WIDGET);
      return {
        label,
        method: node.widgets.find((w) => w.name === "method").value,
        widgets: node.widgets.map((w) => w.name),
        visible: visible.map((w) => w.name),
        rows,
        widget_height: window.LiteGraph.NODE_WIDGET_HEIGHT,
        size: [node.size[0], node.size[1]],
        min_size: Array.from(node.computeSize()),
        tooltips: Object.fromEntries(node.widgets.map((w) => [w.name, w.tooltip ?? null])),
        toggle: toggle ? { value: toggle.value, label: toggle.label ?? null, visible: node.isWidgetVisible(toggle),
          serialize: toggle.serialize, options_serialize: toggle.options?.serialize } : null,
        property: node.properties?.[window.diffusionCacheTimeline.methods.ADVANCED_PROPERTY] ?? null,
        widgets_values: saved.widgets_values,
        prompt_inputs: prompt.output[String(nodeId)]?.inputs ?? null,
      };
    }, [id, label]);

    // the screen point of a widget's row (its middle, clear of the input slot on the left)
    const widgetPoint = (name, xFraction = 0.6) => page.evaluate(([nodeId, name, xf]) => {
      const { app } = window;
      const node = app.graph.getNodeById(nodeId);
      const w = node.widgets.find((x) => x.name === name);
      const y = node.pos[1] + (w.last_y ?? w.y) + window.LiteGraph.NODE_WIDGET_HEIGHT / 2;
      const x = node.pos[0] + node.size[0] * xf;
      const c = app.canvas.ds.convertOffsetToCanvas([x, y]);
      const rect = app.canvas.canvas.getBoundingClientRect();
      const ratio = rect.width / app.canvas.canvas.width;
      return { x: rect.left + c[0] * ratio, y: rect.top + c[1] * ratio };
    }, [id, name, xFraction]);

    // the tooltip the frontend shows when the pointer rests on a widget
    const hoverTooltip = async (name) => {
      await page.mouse.move(5, 5);
      await page.waitForTimeout(150);
      const p = await widgetPoint(name);
      await page.mouse.move(p.x - 3, p.y);
      await page.mouse.move(p.x, p.y, { steps: 3 });
      try {
        await page.waitForFunction(() => (document.querySelector(".node-tooltip")?.textContent ?? "").trim(),
          null, { timeout: 5000 });
      } catch (e) {
        return null;
      }
      const text = await page.evaluate(() => document.querySelector(".node-tooltip")?.textContent.trim() ?? null);
      await page.mouse.move(5, 5);
      return text;
    };

    // pick a method the way a user does: click the combo, click the entry in its menu
    const pickMethod = async (method) => {
      await state("before pick");     // centred and drawn, so the rows are where they are shown
      const p = await widgetPoint("method");
      await page.mouse.click(p.x, p.y);
      const entry = page.locator(".litecontextmenu .litemenu-entry", { hasText: new RegExp(`^${method}$`) });
      try {
        await entry.first().click({ timeout: 5000 });
        return "menu";
      } catch (e) {
        // no LiteGraph menu in this frontend: the widget's own setter, as the menu would call it
        await page.keyboard.press("Escape");
        await page.evaluate(([nodeId, method]) => {
          const { app } = window;
          const node = app.graph.getNodeById(nodeId);
          const w = node.widgets.find((x) => x.name === "method");
          w.setValue(method, { e: undefined, node, canvas: app.canvas });
        }, [id, method]);
        return "setValue";
      }
    };

    m.steps.push(await state("loaded"));
    // the first input the loaded method shows (the demo's, or the fixture's built for this server)
    const knobs = new Set(Object.values(m.description).flatMap((d) => d.inputs));
    m.hovered = m.steps[0].visible.find((n) => knobs.has(n));
    m.tooltip_hover = { loaded: await hoverTooltip(m.hovered) };
    m.picked = [await pickMethod("dbcache")];
    m.steps.push(await state("dbcache"));
    m.tooltip_hover.dbcache = await hoverTooltip("threshold");

    // the toggle, clicked
    const t = await widgetPoint(await page.evaluate(() => window.diffusionCacheTimeline.methods.ADVANCED_WIDGET));
    await page.mouse.click(t.x, t.y);
    m.steps.push(await state("dbcache, advanced"));

    // values of hidden inputs are kept: front_blocks 2, then a method that does not read it
    await page.evaluate((nodeId) => {
      const node = window.app.graph.getNodeById(nodeId);
      node.widgets.find((w) => w.name === "front_blocks").value = 2;
      node.widgets.find((w) => w.name === "threshold").value = 0.15;
    }, id);
    m.picked.push(await pickMethod("magcache"));
    m.steps.push(await state("magcache, advanced"));
    m.tooltip_hover.magcache = await hoverTooltip("threshold");
    await page.mouse.click(...Object.values(await widgetPoint(
      await page.evaluate(() => window.diffusionCacheTimeline.methods.ADVANCED_WIDGET))));
    m.steps.push(await state("magcache"));
    m.picked.push(await pickMethod("dbcache"));
    m.steps.push(await state("dbcache again"));
    await page.mouse.click(...Object.values(await widgetPoint(
      await page.evaluate(() => window.diffusionCacheTimeline.methods.ADVANCED_WIDGET))));
    m.steps.push(await state("dbcache again, advanced"));
    if (process.env.DC_E2E_METHOD_SHOT) await page.screenshot({ path: process.env.DC_E2E_METHOD_SHOT });

    // save and load again (the workflow as a file holds it): values, method and toggle survive
    const saved = await page.evaluate(() => JSON.stringify(window.app.graph.serialize()));
    m.saved_node = JSON.parse(saved).nodes.find((n) => n.id === id);
    await page.evaluate(async (text) => {
      await window.app.loadGraphData(JSON.parse(text), true, true, "method_inputs_reloaded",
        { showMissingNodesDialog: false, showMissingModelsDialog: false });
    }, saved);
    m.steps.push(await state("reloaded"));

    // and it runs
    if (!opt["no-run"]) {
      const before = await page.evaluate(async () => {
        const n = window.__dcE2E.done.length;
        await window.app.queuePrompt(0, 1);
        return n;
      });
      await page.waitForFunction((n) => window.__dcE2E.done.length > n, before, { timeout: TIMEOUT_MS });
      m.result = await page.evaluate(() => window.__dcE2E.done.at(-1));
      if (typeof m.result === "string") {
        m.history = await page.evaluate(async (pid) => (await fetch(`/history/${pid}`)).json(), m.result);
      }
      m.server_runs = await page.evaluate(async () => (await fetch("/diffusion_cache/runs")).json());
    }
    mark("method inputs");
  }
} catch (err) {
  report.error = String(err && err.stack || err);
} finally {
  await browser.close();
  writeReport();
}
