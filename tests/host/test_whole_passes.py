"""Whole passes on ComfyUI's samplers: a method that decides from the schedule alone answers a
cached step in the CALC_COND_BATCH wrapper, before ComfyUI prepares any model call.

* a cached step runs none of ComfyUI's per-pass work (an inner CALC_COND_BATCH wrapper and
  the model's blocks see only computed steps);
* on flow and eps models the noise prediction kept per branch, (x - output) / sigma, is the
  model's own output: whole passes give what whole model calls give (EasyCache, which keeps
  the change y - x, on flow models);
* a ControlNet in the conditioning (checked in test_block_level) and CFG-Cache keep the
  model-call path, as does a run whose first pass could not be answered whole;
* a prompt that switches within the run (timestep ranges) is a new branch with its own cache.
"""
import pytest
import torch

import tiny_archs
from tiny_archs import stats_of

STEPS = 8


def inner_pass_counter(model):
    """An inner CALC_COND_BATCH wrapper on ``model``: counts the passes that reach ComfyUI's own
    calc_cond_batch (the cache's wrapper, attached first, is the outer one)."""
    from comfy.patcher_extension import WrappersMP
    seen = []

    def count(executor, *args, **kwargs):
        seen.append(1)
        return executor(*args, **kwargs)
    model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, "test_count", count)
    return seen


@pytest.mark.parametrize("arch", ["flux", "wan21", "sd3"] + tiny_archs.UNET_ARCHS[:1])
def test_a_cached_step_runs_none_of_comfyuis_pass(comfy_nodes, build, tiny_dir, arch):
    tiny = tiny_archs.build(arch, tiny_dir)
    model = build(tiny.model, method="fixed_interval", interval=2)
    passes = inner_pass_counter(model)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    records = stats_of(model)["records"]
    computed = [r for r in records if r["decision"] == "computed"]
    assert len(computed) < len(records)
    assert len(passes) == len(computed), "a cached step reached ComfyUI's calc_cond_batch"
    for r in records:
        if r["decision"] != "computed":
            assert r["blocks_computed"] == 0 and r["blocks_total"] > 0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["flux", "wan21"] + tiny_archs.UNET_ARCHS[:1])
@pytest.mark.parametrize("inputs", [dict(method="fixed_interval", interval=2),
                                    dict(method="taylorseer", interval=3),
                                    dict(method="guarded_forecast", threshold=0.15),
                                    dict(method="magcache", threshold=2.0, profile="flux"),
                                    dict(method="easycache", threshold=1.0)])
def test_whole_passes_give_what_whole_model_calls_give(comfy_nodes, build, tiny_dir, pack, monkeypatch,
                                                       arch, inputs):
    tiny = tiny_archs.build(arch, tiny_dir)
    if inputs["method"] == "easycache" and arch in tiny_archs.UNET_ARCHS:
        pytest.skip("EasyCache's change is of the scaled model input on eps models: not the same quantity")
    passes_model = build(tiny.model, **inputs)
    passes_seen = inner_pass_counter(passes_model)
    by_pass = tiny_archs.sample(comfy_nodes, tiny, model=passes_model, steps=STEPS)
    monkeypatch.setattr(pack.nodes.hooks, "_pass_can_be_cached", lambda conds, model_options: False)
    calls_model = build(tiny.model, **inputs)
    calls_seen = inner_pass_counter(calls_model)
    by_call = tiny_archs.sample(comfy_nodes, tiny, model=calls_model, steps=STEPS)
    decisions = [r["decision"] for r in stats_of(passes_model)["records"]]
    assert decisions == [r["decision"] for r in stats_of(calls_model)["records"]]
    assert "computed" in decisions and set(decisions) - {"computed"}, [r["reason"] for r in stats_of(passes_model)["records"]]
    assert len(calls_seen) == STEPS > len(passes_seen)      # whole calls: every pass reached ComfyUI's
    assert torch.allclose(by_pass, by_call, rtol=1e-4, atol=1e-4), (by_pass - by_call).abs().max()


def test_cfg_cache_keeps_the_model_call_path(comfy_nodes, build, tiny_dir):
    tiny = tiny_archs.build("flux", tiny_dir)
    model = build(tiny.model, method="fixed_interval", interval=2, cfg_cache_interval=2)
    passes = inner_pass_counter(model)
    tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert len(passes) == STEPS          # every pass reaches ComfyUI: the cache works per model call
    assert any(r["decision"] != "computed" for r in stats_of(model)["records"])


def test_a_prompt_that_switches_mid_run_is_a_new_branch(comfy_nodes, build, tiny_dir):
    # ConditioningSetTimestepRange + ConditioningCombine: one prompt for the first half, another after;
    # at the boundary sigma both apply (ComfyUI compares in the sigma's dtype)
    tiny = tiny_archs.build("flux", tiny_dir)
    ranged = comfy_nodes.ConditioningSetTimestepRange()
    early = ranged.set_range(tiny.positive, 0.0, 0.5)[0]
    late = ranged.set_range(tiny.negative, 0.5, 1.0)[0]
    switching = comfy_nodes.ConditioningCombine().combine(early, late)[0]
    model = build(tiny.model, method="fixed_interval", interval=3)
    passes = inner_pass_counter(model)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS, positive=switching)
    seen = [(r["decision"], r["reason"]) for r in stats_of(model)["records"]]
    # steps 0-3: the early prompt (interval 3); step 4: both prompts; step 5: the late one alone.
    # Each new set of prompts computes: no step answers with another prompt's prediction
    assert seen[:6] == [("computed", "warm-up"), ("reused", ""), ("reused", ""), ("computed", "interval reached"),
                        ("computed", "nothing cached yet"), ("computed", "nothing cached yet")], seen
    assert ("reused", "") in seen[6:]
    assert len(passes) == sum(d == "computed" for d, _ in seen) and torch.isfinite(out).all()
