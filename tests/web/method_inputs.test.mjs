// Pure logic of the node's per-method inputs: node --test tests/web
import assert from "node:assert/strict";
import { test } from "node:test";

import { ADVANCED_PROPERTY, advancedLabel, inputTooltip, knobNames, methodView } from "../../web/method_inputs.js";

// the shape of GET /diffusion_cache/methods (cache_core.methods.ui_description()), cut down
const COMMON = ["start_percent", "warmup_steps", "predictor_order", "verbose"];
const DESCRIPTION = {
  auto: { label: "auto", inputs: ["threshold", ...COMMON], advanced: COMMON,
    tooltips: { threshold: "first_block: change of block 0 | easycache: output change", start_percent: "start",
      warmup_steps: "warmup", predictor_order: "order", verbose: "log" } },
  dbcache: { label: "DBCache (block-level)", inputs: ["threshold", "front_blocks", "back_blocks", ...COMMON],
    advanced: COMMON,
    tooltips: { threshold: "front residual change. Useful: 0.05-0.5", front_blocks: "Fn", back_blocks: "Bn",
      start_percent: "start", warmup_steps: "warmup", predictor_order: "order", verbose: "log" } },
  taylorseer: { label: "TaylorSeer", inputs: ["interval", "predictor_order", "start_percent", "warmup_steps",
    "verbose"], advanced: ["start_percent", "warmup_steps", "verbose"],
  tooltips: { interval: "every N-th step. Useful: 2-6", predictor_order: "Taylor order 1-4", start_percent: "start",
    warmup_steps: "warmup", verbose: "log" } },
  magcache: { label: "MagCache", inputs: ["threshold", "profile", "magcache_retention", ...COMMON],
    advanced: ["magcache_retention", ...COMMON],
    tooltips: { threshold: "magnitude error", profile: "profile", magcache_retention: "R" } },
};

test("every input any method reads, once", () => {
  assert.deepEqual([...knobNames(DESCRIPTION)].sort(),
    ["back_blocks", "front_blocks", "interval", "magcache_retention", "predictor_order", "profile",
      "start_percent", "threshold", "verbose", "warmup_steps"]);
  assert.equal(knobNames(null).size, 0);
});

test("a method shows its own inputs but the advanced ones; the rest are hidden", () => {
  const v = methodView(DESCRIPTION, "dbcache");
  assert.equal(v.known, true);
  assert.deepEqual(v.shown.sort(), ["back_blocks", "front_blocks", "threshold"]);
  assert.deepEqual(v.advanced, COMMON);
  assert.deepEqual(v.hiddenAdvanced, COMMON);
  assert.ok(v.hidden.includes("interval") && v.hidden.includes("profile") && v.hidden.includes("verbose"));
  assert.deepEqual([...v.shown, ...v.hidden].sort(), [...knobNames(DESCRIPTION)].sort());
});

test("the advanced toggle shows the method's advanced inputs, never another method's", () => {
  const v = methodView(DESCRIPTION, "dbcache", { showAdvanced: true });
  assert.deepEqual(v.shown.sort(), ["back_blocks", "front_blocks", ...COMMON, "threshold"].sort());
  assert.deepEqual(v.hiddenAdvanced, []);
  assert.deepEqual(v.hidden.sort(), ["interval", "magcache_retention", "profile"]);
});

test("what is advanced depends on the method", () => {
  assert.ok(methodView(DESCRIPTION, "taylorseer").shown.includes("predictor_order"));
  assert.ok(!methodView(DESCRIPTION, "dbcache").shown.includes("predictor_order"));
  assert.deepEqual(methodView(DESCRIPTION, "magcache").shown.sort(), ["profile", "threshold"]);
  assert.ok(methodView(DESCRIPTION, "magcache", { showAdvanced: true }).shown.includes("magcache_retention"));
});

test("auto shows what either method it becomes reads", () => {
  assert.deepEqual(methodView(DESCRIPTION, "auto").shown, ["threshold"]);
});

test("an input with a link stays shown whatever the method", () => {
  const v = methodView(DESCRIPTION, "taylorseer", { linked: ["threshold"] });
  assert.ok(v.shown.includes("threshold") && !v.hidden.includes("threshold"));
});

test("an unknown method, or no description, shows every input", () => {
  const v = methodView(DESCRIPTION, "a_newer_method");
  assert.equal(v.known, false);
  assert.deepEqual(v.shown, [...knobNames(DESCRIPTION)]);
  assert.deepEqual(v.hidden, []);
  assert.deepEqual(methodView(null, "dbcache"), { known: false, shown: [], hidden: [], advanced: [],
    hiddenAdvanced: [], tooltips: {} });
});

test("at most four inputs of a method are shown by default (six with model and method)", () => {
  for (const method of Object.keys(DESCRIPTION)) {
    assert.ok(methodView(DESCRIPTION, method).shown.length <= 4, method);
  }
});

test("tooltips follow the method", () => {
  assert.equal(inputTooltip(DESCRIPTION, "dbcache", "threshold"),
    "DBCache (block-level): front residual change. Useful: 0.05-0.5");
  assert.equal(inputTooltip(DESCRIPTION, "magcache", "threshold"), "MagCache: magnitude error");
  assert.notEqual(inputTooltip(DESCRIPTION, "dbcache", "threshold"), inputTooltip(DESCRIPTION, "auto", "threshold"));
  assert.equal(inputTooltip(DESCRIPTION, "dbcache", "interval", "from the schema"), "from the schema");
  assert.equal(inputTooltip(DESCRIPTION, "nope", "threshold"), undefined);
  assert.deepEqual(methodView(DESCRIPTION, "taylorseer").tooltips.interval, "every N-th step. Useful: 2-6");
});

test("the toggle says how many inputs it holds", () => {
  assert.equal(advancedLabel(methodView(DESCRIPTION, "magcache")), "advanced inputs (5)");
  assert.equal(typeof ADVANCED_PROPERTY, "string");
});
