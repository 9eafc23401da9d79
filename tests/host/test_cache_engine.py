"""The Diffusion Cache node on ComfyUI's own samplers, with tiny real models.

* exactness: a cache that skips nothing changes no bit of KSampler's output;
* skipping: a fixed interval reuses exactly the steps it should, skips the block
  span (or the whole model call on models without a block hook) and stays finite;
* every method runs and records a decision per step;
* real sampling: CFG batched or split by ComfyUI's low-memory path, batch 2,
  multi-stage and stochastic samplers, two KSamplerAdvanced runs sharing one cached
  model, a second resolution, an interrupted run;
* calibration writes a profile the cache node then uses;
* bad input raises ValueError with a message that says what to change.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_archs  # noqa: E402

ARCHS = tiny_archs.ARCHS
STEPS = 8
# fixed_interval, interval 2, warm-up 1, last 1, on 8 steps: compute 0, 2, 4, 6, 7
EXPECTED_REUSED = [1, 3, 5]

DEFAULTS = dict(method="fixed_interval", threshold=0.0, interval=2, step_mask="medium", profile="auto",
                start_percent=0.0, end_percent=1.0, warmup_steps=1, last_steps_computed=1,
                max_consecutive_cached=0)


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------



def attach(node, model, **inputs):
    """Run the Diffusion Cache node's own ``execute``; return its MODEL output."""
    out = node.execute(model=model, **{**DEFAULTS, **inputs})
    assert out.result is not None and len(out.result) == 1
    return out.result[0]


def holder_of(model):
    return model.model_options["transformer_options"]["diffusion_cache"]


def last_stats(model) -> dict:
    stats = holder_of(model).last_stats
    assert stats is not None, "the cache recorded no run"
    return stats


def stage0(stats) -> list[dict]:
    return [r for r in stats["records"] if r["stage"] == 0]


def reused_steps(stats) -> list[int]:
    return sorted(r["step"] for r in stage0(stats) if r["decision"] != "computed")


def ksample(comfy_nodes, tiny, model=None, steps=STEPS, sampler="euler", scheduler="simple", seed=0,
            cfg=2.0, latent=None, positive=None, negative=None):
    out = comfy_nodes.KSampler().sample(
        model if model is not None else tiny.model, seed, steps, cfg, sampler, scheduler,
        positive if positive is not None else tiny.positive,
        negative if negative is not None else tiny.negative,
        {"samples": latent if latent is not None else tiny.latent["samples"].clone()})
    return out[0]["samples"]


_REFERENCE: dict = {}


def reference(comfy_nodes, tiny, **kw):
    """The uncached KSampler output (computed once per arch and settings)."""
    key = (tiny.name, tuple(sorted(kw.items())))
    if key not in _REFERENCE:
        _REFERENCE[key] = ksample(comfy_nodes, tiny, **kw)
    return _REFERENCE[key]


def block_modules(pack, diffusion_model) -> list:
    arch = pack.nodes.architectures.identify(diffusion_model)
    return [b for _, attr in arch.block_lists for b in getattr(diffusion_model, attr)]


class CallCounter:
    """Counts forward calls of some modules (torch forward hooks, removed on exit)."""

    def __init__(self, modules):
        self.modules = list(modules)
        self.count = 0
        self.handles = []

    def _hook(self, *_):
        self.count += 1

    def __enter__(self):
        self.handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def low_memory(monkeypatch):
    """Make ComfyUI's cond batching see no free memory, as on a small GPU: every
    conditioning then runs in its own model call (comfy/samplers.py _calc_cond_batch).
    Only the batching decision sees it; model loading is untouched. Where ComfyUI asks
    for the free memory differs by version: nodes/compat.py knows."""
    import comfy_host
    comfy_host.compat().no_free_memory_for_cond_batching(monkeypatch)


# --------------------------------------------------------------------------------------
# 1. exactness and skipping on every architecture
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_nothing_skipped_is_bit_exact(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    ref = reference(comfy_nodes, tiny)
    # interval 1: every step computes; first_block with a tiny threshold: every change is too large
    for inputs in (dict(method="fixed_interval", interval=1),
                   dict(method="first_block", threshold=0.0001)):
        model = attach(cache_node, tiny.model, **inputs)
        out = ksample(comfy_nodes, tiny, model=model)
        stats = last_stats(model)
        assert [r["step"] for r in stage0(stats)] == list(range(STEPS)), inputs
        assert all(r["decision"] == "computed" for r in stats["records"]), (inputs, stats["records"])
        assert stats["summary"]["compute_fraction"] == 1.0
        assert torch.equal(out, ref), f"{arch} {inputs}: cached output differs from uncached"


@pytest.mark.parametrize("arch", ARCHS)
def test_fixed_interval_reuses_expected_steps(arch, comfy_nodes, cache_node, get_tiny, pack):
    tiny = get_tiny(arch)
    dm = tiny.model.model.diffusion_model
    blocks = block_modules(pack, dm)
    assert bool(blocks) == bool(tiny.block_kinds)
    # with blocks: count block calls; without: count every submodule call of the model
    watched = blocks if blocks else list(dm.children())
    with CallCounter(watched) as uncached_calls:
        ref = ksample(comfy_nodes, tiny)
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2, warmup_steps=1,
                   last_steps_computed=1)
    with CallCounter(watched) as cached_calls:
        out = ksample(comfy_nodes, tiny, model=model)
    stats = last_stats(model)

    assert [r["step"] for r in stage0(stats)] == list(range(STEPS))
    assert reused_steps(stats) == EXPECTED_REUSED
    assert stats["summary"]["reused"] == len(EXPECTED_REUSED)
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    assert not torch.equal(out, ref), "reusing steps must change the result"

    computed = STEPS - len(EXPECTED_REUSED)
    assert uncached_calls.count % STEPS == 0
    per_step = uncached_calls.count // STEPS
    assert per_step > 0
    assert cached_calls.count == computed * per_step, "reused steps must not run what they skip"
    for r in stats["records"]:
        if r["decision"] == "computed":
            assert r["blocks_computed"] == r["blocks_total"] > 0
        else:
            assert r["blocks_computed"] < r["blocks_total"]
            if blocks:
                assert r["blocks_total"] == len(blocks)      # one batched call: every block hooked
            else:
                assert (r["blocks_computed"], r["blocks_total"]) == (0, 1)   # the whole call reused
    assert stats["summary"]["compute_fraction"] < 1.0


# --------------------------------------------------------------------------------------
# 2. every method runs
# --------------------------------------------------------------------------------------

def _methods() -> list[str]:
    """The methods the node offers: the registry's (cache_core imports no ComfyUI)."""
    from cache_core.methods import METHODS
    return list(METHODS)


# inputs beyond DEFAULTS for some methods (the tiny models have 2 to 4 blocks)
METHOD_INPUTS = {
    "dbcache": dict(front_blocks=1, back_blocks=0),
    "dbcache_hybrid": dict(front_blocks=1, back_blocks=0),
    "fixed_interval": dict(interval=3),
    "deepcache": dict(interval=3),              # U-Net only: a fixed interval on transformers
    "step_mask": dict(step_mask="11010101"),
}


@pytest.mark.parametrize("method", ["auto"] + _methods())
@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_every_method_runs(arch, method, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    inputs = dict(METHOD_INPUTS.get(method, {}), method=method)
    if method == "magcache" and arch == "flux":
        inputs["profile"] = "flux"      # published curves: Flux and Wan 2.1 ("auto" finds Wan's)
    model = attach(cache_node, tiny.model, **inputs)
    out = ksample(comfy_nodes, tiny, model=model)
    stats = last_stats(model)
    assert out.shape == tiny.latent["samples"].shape and torch.isfinite(out).all()
    assert [r["step"] for r in stage0(stats)] == list(range(STEPS))
    expected_method = {"auto": "first_block", "deepcache": "fixed_interval"}.get(method, method)
    assert stats["summary"]["method"] == expected_method
    for r in stats["records"]:
        assert r["decision"] in ("computed", "reused", "forecast")
        assert r["branches"] == ["cond", "uncond"]
        assert (r["reason"] != "") == (r["decision"] == "computed"), r
        assert 0 <= r["blocks_computed"] <= r["blocks_total"]
    first, last = stage0(stats)[0], stage0(stats)[-1]
    assert first["decision"] == "computed" and last["decision"] == "computed"   # warm-up / last step
    assert (first["reason"], last["reason"]) == ("warm-up", "last steps")
    if method == "step_mask":
        assert reused_steps(stats) == [2, 4, 6]
    if method in ("fixed_interval", "deepcache"):
        assert reused_steps(stats) == [1, 2, 4, 5]


@pytest.mark.parametrize("arch", tiny_archs.UNET_ARCHS)
def test_deepcache_on_unets(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    unet = tiny.model.model.diffusion_model
    # the U-Net's sequential containers are iterated, not called: watch their layers
    deep = list(unet.middle_block)
    shallow = list(unet.input_blocks[0])
    with CallCounter(deep) as deep_ref, CallCounter(shallow) as shallow_ref:
        ref = ksample(comfy_nodes, tiny)
    assert deep_ref.count and deep_ref.count % STEPS == 0 and shallow_ref.count % STEPS == 0

    exact = attach(cache_node, tiny.model, method="deepcache", interval=1)
    assert torch.equal(ksample(comfy_nodes, tiny, model=exact), ref)
    assert last_stats(exact)["summary"]["method"] == "deepcache"

    model = attach(cache_node, tiny.model, method="deepcache", interval=2)
    with CallCounter(deep) as deep_calls, CallCounter(shallow) as shallow_calls:
        out = ksample(comfy_nodes, tiny, model=model)
    stats = last_stats(model)
    assert reused_steps(stats) == EXPECTED_REUSED
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    computed = STEPS - len(EXPECTED_REUSED)
    assert deep_calls.count == computed * deep_ref.count // STEPS, "cached steps must skip the deep features"
    assert shallow_calls.count == shallow_ref.count, "the shallow branch runs on every step"


# --------------------------------------------------------------------------------------
# 3a. CFG batched in one call or split into one call per conditioning
# --------------------------------------------------------------------------------------

# thresholds that give a mix of computed and reused steps on the tiny random models
LAYOUT_METHODS = {
    "flux": [dict(method="fixed_interval"), dict(method="first_block", threshold=0.7),
             dict(method="teacache"), dict(method="easycache", threshold=2.0)],
    "wan21": [dict(method="fixed_interval"), dict(method="first_block", threshold=0.45),
              dict(method="easycache", threshold=2.0)],
}


def _run_both_layouts(comfy_nodes, cache_node, tiny, monkeypatch, inputs, positive=None, negative=None,
                      latent=None):
    results = []
    for split in (False, True):
        with monkeypatch.context() as mp:
            if split:
                low_memory(mp)
            dm = tiny.model.model.diffusion_model
            batches = []
            handle = dm.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
            try:
                model = attach(cache_node, tiny.model, **inputs)
                out = ksample(comfy_nodes, tiny, model=model, positive=positive, negative=negative,
                              latent=latent)
            finally:
                handle.remove()
        results.append((out, last_stats(model), batches))
    return results


@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_split_cfg_same_decisions_as_batched(arch, comfy_nodes, cache_node, get_tiny, monkeypatch):
    tiny = get_tiny(arch)
    batch = tiny.latent["samples"].shape[0]
    saw_reuse = False
    for inputs in LAYOUT_METHODS[arch]:
        (out_b, stats_b, calls_b), (out_s, stats_s, calls_s) = _run_both_layouts(
            comfy_nodes, cache_node, tiny, monkeypatch, inputs)
        # the layouts really differ: one call of cond+uncond vs one call per conditioning
        assert calls_b and set(calls_b) == {2 * batch}, calls_b
        assert calls_s and set(calls_s) == {batch}, calls_s
        dec_b = [(r["step"], r["stage"], r["decision"]) for r in stats_b["records"]]
        dec_s = [(r["step"], r["stage"], r["decision"]) for r in stats_s["records"]]
        assert dec_b == dec_s, inputs
        for rb, rs in zip(stats_b["records"], stats_s["records"]):
            assert rb["branches"] == rs["branches"] == ["cond", "uncond"]
            if rb["metric"] is not None:
                assert rs["metric"] == pytest.approx(rb["metric"], rel=1e-3, abs=1e-6), inputs
        saw_reuse |= bool(reused_steps(stats_b))
        torch.testing.assert_close(out_s, out_b, rtol=1e-4, atol=1e-4, msg=lambda m: f"{inputs}: {m}")
    assert saw_reuse, "the thresholds above should make some steps reuse"


def test_split_cfg_decides_on_every_branch(comfy_nodes, cache_node, get_tiny, monkeypatch):
    tiny = get_tiny("flux")
    # the same conditionings in the other roles: ComfyUI runs the uncond first when it splits
    positive, negative = tiny.negative, tiny.positive
    for inputs in (dict(method="teacache"), dict(method="first_block", threshold=0.6)):
        (out_b, stats_b, _), (out_s, stats_s, _) = _run_both_layouts(
            comfy_nodes, cache_node, tiny, monkeypatch, inputs, positive=positive, negative=negative)
        assert [r["decision"] for r in stats_b["records"]] == [r["decision"] for r in stats_s["records"]], inputs
        torch.testing.assert_close(out_s, out_b, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------
# 3b. a latent batch of two
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_batch_of_two(arch, comfy_nodes, cache_node, get_tiny, monkeypatch):
    tiny = get_tiny(arch)
    latent = torch.zeros((2,) + tuple(tiny.latent["samples"].shape[1:]))
    ref = reference(comfy_nodes, tiny, latent=latent)
    assert ref.shape[0] == 2

    exact = attach(cache_node, tiny.model, method="fixed_interval", interval=1)
    assert torch.equal(ksample(comfy_nodes, tiny, model=exact, latent=latent.clone()), ref)

    (out_b, stats_b, calls_b), (out_s, stats_s, calls_s) = _run_both_layouts(
        comfy_nodes, cache_node, tiny, monkeypatch, dict(method="fixed_interval"), latent=latent)
    assert set(calls_b) == {4} and set(calls_s) == {2}
    for stats in (stats_b, stats_s):
        assert reused_steps(stats) == EXPECTED_REUSED
        assert all(r["blocks_computed"] == 0 for r in stats["records"] if r["decision"] == "reused")
    assert torch.isfinite(out_b).all() and not torch.equal(out_b, ref)
    torch.testing.assert_close(out_s, out_b, rtol=1e-4, atol=1e-4)
    # each batch entry got its own residual: entry 1 is not entry 0's result
    assert not torch.allclose(out_b[0], out_b[1])


# --------------------------------------------------------------------------------------
# 3c. multi-stage samplers
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_multistage_samplers(arch, sampler, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    steps = 6
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2)
    out = ksample(comfy_nodes, tiny, model=model, steps=steps, sampler=sampler)
    stats = last_stats(model)
    assert torch.isfinite(out).all()
    assert sorted(r["step"] for r in stage0(stats)) == list(range(steps))   # one stage-0 record per step
    extra = [r for r in stats["records"] if r["stage"] > 0]
    assert len(extra) == steps - 1                # the last step (to sigma 0) has a single evaluation
    assert all(r["decision"] == "computed" and r["reason"] == "extra sampler stage" for r in extra)
    assert reused_steps(stats), "stage-0 evaluations still follow the interval"
    # with nothing skipped the multi-stage run is exact
    exact = attach(cache_node, tiny.model, method="fixed_interval", interval=1)
    assert torch.equal(ksample(comfy_nodes, tiny, model=exact, steps=steps, sampler=sampler),
                       reference(comfy_nodes, tiny, steps=steps, sampler=sampler))


def test_heun_corrector_is_an_extra_stage_of_its_step(comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny("flux")
    steps = 6
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2)
    ksample(comfy_nodes, tiny, model=model, steps=steps, sampler="heun")
    records = last_stats(model)["records"]
    # step i: stage 0 at sigma[i], then the corrector at sigma[i+1] (none for the last step)
    assert [(r["step"], r["stage"]) for r in records] == \
        [(i, s) for i in range(steps) for s in ((0, 1) if i < steps - 1 else (0,))]
    sigmas = [r["sigma"] for r in records if r["stage"] == 0]
    for r in records:
        if r["stage"] == 1:
            assert r["sigma"] == pytest.approx(sigmas[r["step"] + 1])


# --------------------------------------------------------------------------------------
# 3d. stochastic samplers: the cache consumes no randomness
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_sde"])
@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_stochastic_samplers_unchanged(arch, sampler, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    steps = 5
    ref = reference(comfy_nodes, tiny, steps=steps, sampler=sampler, seed=1234)
    for inputs in (dict(method="fixed_interval", interval=1), dict(method="first_block", threshold=0.0001)):
        model = attach(cache_node, tiny.model, **inputs)
        out = ksample(comfy_nodes, tiny, model=model, steps=steps, sampler=sampler, seed=1234)
        assert all(r["decision"] == "computed" for r in last_stats(model)["records"])
        assert torch.equal(out, ref), f"{sampler} {inputs}: RNG consumption or math changed"
    # and a skipping cache still runs the sampler to a finite result
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2)
    out = ksample(comfy_nodes, tiny, model=model, steps=steps, sampler=sampler, seed=1234)
    assert torch.isfinite(out).all() and reused_steps(last_stats(model))


# --------------------------------------------------------------------------------------
# 3e. two KSamplerAdvanced nodes sharing one cached model (Wan 2.2 high/low noise style)
# --------------------------------------------------------------------------------------

def _advanced(comfy_nodes, model, tiny, latent, start, end, first):
    out = comfy_nodes.KSamplerAdvanced().sample(
        model, "enable" if first else "disable", 7, STEPS, 2.0, "euler", "simple",
        tiny.positive, tiny.negative, latent, start, end, "enable" if first else "disable")
    return out[0]


@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_two_advanced_samplers_share_one_cached_model(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    latent = {"samples": tiny.latent["samples"].clone()}
    plain_mid = _advanced(comfy_nodes, tiny.model, tiny, latent, 0, 4, True)
    plain_end = _advanced(comfy_nodes, tiny.model, tiny, plain_mid, 4, STEPS, False)["samples"]

    # nothing skipped: both halves exact
    exact = attach(cache_node, tiny.model, method="fixed_interval", interval=1)
    mid = _advanced(comfy_nodes, exact, tiny, latent, 0, 4, True)
    assert torch.equal(_advanced(comfy_nodes, exact, tiny, mid, 4, STEPS, False)["samples"], plain_end)

    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2, warmup_steps=0,
                   last_steps_computed=1)
    mid = _advanced(comfy_nodes, model, tiny, latent, 0, 4, True)
    first = json.loads(json.dumps(last_stats(model)))
    end = _advanced(comfy_nodes, model, tiny, mid, 4, STEPS, False)["samples"]
    second = last_stats(model)

    assert first["summary"]["run_id"] != second["summary"]["run_id"]
    for stats in (first, second):
        assert stats["summary"]["total_steps"] == 4
        assert [r["step"] for r in stage0(stats)] == [0, 1, 2, 3]
        # each run starts empty: its first step has nothing to reuse
        assert stats["records"][0]["decision"] == "computed"
        assert stats["records"][0]["reason"] == "nothing cached yet"
        assert reused_steps(stats) == [1]
    # the second run's schedule is the low-noise half, not the first run's
    assert second["records"][0]["sigma"] < first["records"][-1]["sigma"]
    assert torch.isfinite(end).all() and not torch.equal(end, plain_end)


# --------------------------------------------------------------------------------------
# 3f. a new resolution after a run; an interrupted run
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_new_resolution_with_the_same_cached_model(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=2)
    small = ksample(comfy_nodes, tiny, model=model, steps=4)
    assert reused_steps(last_stats(model)) == [1]
    shape = list(tiny.latent["samples"].shape)
    shape[-2], shape[-1] = shape[-2] + 8, shape[-1] + 8
    big_latent = torch.zeros(shape)
    big = ksample(comfy_nodes, tiny, model=model, steps=4, latent=big_latent.clone())
    stats = last_stats(model)
    assert big.shape == tuple(shape) and small.shape == tiny.latent["samples"].shape
    assert torch.isfinite(big).all()
    assert reused_steps(stats) == [1]
    assert stats["summary"]["resets"] == []        # a fresh run, not a cache that had to reset
    # and the result is what a freshly attached cache gives at that size
    fresh = attach(cache_node, tiny.model, method="fixed_interval", interval=2)
    assert torch.equal(big, ksample(comfy_nodes, tiny, model=fresh, steps=4, latent=big_latent.clone()))


def _tensors_in(obj, depth=0):
    """Tensors reachable from ``obj`` through attributes, dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if depth > 4:
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif "cache_core" in type(obj).__module__ and hasattr(obj, "__dict__"):   # this pack's own objects
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _tensors_in(child, depth + 1)


def _interrupt_from_progress_hook(comfy_nodes, tiny, model):
    """What ComfyUI's server does when the user presses Cancel: its progress-bar hook
    raises InterruptProcessingException at the next step report."""
    import comfy.model_management
    import comfy.utils

    def progress_hook(value, total, preview, node_id=None):
        if value >= 3:
            comfy.model_management.interrupt_current_processing(True)
        comfy.model_management.throw_exception_if_processing_interrupted()

    import comfy_host
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(progress_hook)
    try:
        with pytest.MonkeyPatch.context() as mp:
            comfy_host.compat().every_progress_report_reaches_the_hook(mp)
            with pytest.raises(comfy.model_management.InterruptProcessingException) as info:
                ksample(comfy_nodes, tiny, model=model)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.model_management.interrupt_current_processing(False)
    return info


def _error_inside_a_block(comfy_nodes, tiny, model):
    """A failure in the middle of a model call (out of memory, another pack's patch)."""
    block = tiny.model.model.diffusion_model.double_blocks[1]
    calls = []

    def fail(module, args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated failure inside block 1")

    handle = block.register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="simulated failure") as info:
            ksample(comfy_nodes, tiny, model=model)
    finally:
        handle.remove()
    return info


@pytest.mark.parametrize("stop", [_interrupt_from_progress_hook, _error_inside_a_block],
                         ids=["interrupt", "error_in_block"])
def test_stopped_run_leaves_nothing_cached(stop, comfy_nodes, cache_node, get_tiny, pack):
    tiny = get_tiny("flux")
    inputs = dict(method="first_block", threshold=0.7, warmup_steps=0)
    model = attach(cache_node, tiny.model, **inputs)
    info = stop(comfy_nodes, tiny, model)

    stopped = last_stats(model)          # the run's statistics are still reported
    assert 1 <= len(stage0(stopped)) < STEPS
    assert [r["step"] for r in stage0(stopped)] == list(range(len(stage0(stopped))))
    # the stopped run, kept alive by the traceback, holds no tensor any more
    engine = pack.cache_core.engine
    runs = [frame.f_locals["run"] for frame, _ in traceback.walk_tb(info.tb)
            if type(frame.f_locals.get("run")) is engine.CacheRun]
    assert runs, "the sampling run should be reachable from the traceback"
    for run in runs:
        assert run.store.nbytes() == 0 and run.store.slots() == []
        assert list(_tensors_in(run.policy)) == [], "the policy still holds tensors"

    # the next run with the same cached model starts clean, exactly like a fresh cache
    out = ksample(comfy_nodes, tiny, model=model)
    stats = last_stats(model)
    assert stats["summary"]["run_id"] != stopped["summary"]["run_id"]
    assert [r["step"] for r in stage0(stats)] == list(range(STEPS))
    assert stats["records"][0]["reason"] == "nothing cached yet"
    assert reused_steps(stats), "the threshold should let some steps reuse"
    fresh = attach(cache_node, tiny.model, **inputs)
    assert torch.equal(out, ksample(comfy_nodes, tiny, model=fresh))
    assert [r["decision"] for r in last_stats(fresh)["records"]] == [r["decision"] for r in stats["records"]]


# --------------------------------------------------------------------------------------
# 4. calibration
# --------------------------------------------------------------------------------------

def test_calibrate_then_use_profile(comfy_nodes, cache_node, get_tiny, pack, tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "user_directory", folder_paths.get_user_directory())
    if hasattr(folder_paths, "set_user_directory"):
        folder_paths.set_user_directory(str(tmp_path))
    else:
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    assert Path(folder_paths.get_user_directory()) == tmp_path

    tiny = get_tiny("flux")
    calibrate = comfy_nodes.NODE_CLASS_MAPPINGS["DiffusionCacheCalibrate"]
    (model,) = calibrate.execute(model=tiny.model, profile_name="tiny flux/8").result
    out = ksample(comfy_nodes, tiny, model=model)
    assert torch.equal(out, reference(comfy_nodes, tiny)), "calibration must not change the result"
    assert all(r["decision"] == "computed" for r in last_stats(model)["records"])

    path = tmp_path / "diffusion_cache" / "profiles" / "tiny_flux_8.json"
    assert path.is_file(), sorted(str(p) for p in tmp_path.rglob("*"))
    data = json.loads(path.read_text())
    assert data["architecture"] == "flux"
    coeffs = data["teacache_coefficients"]
    assert len(coeffs) == 5 and all(isinstance(c, float) and math.isfinite(c) for c in coeffs)
    mag = data["magnitude"]
    assert len(mag["sigmas"]) == len(mag["log_magnitude"]) == STEPS
    assert mag["sigmas"] == sorted(mag["sigmas"], reverse=True)
    assert all(math.isfinite(v) for v in mag["log_magnitude"]) and mag["log_magnitude"][0] == 0.0
    assert "user:tiny_flux_8" in pack.nodes.profile_files.profile_choices()

    for inputs in (dict(method="magcache", profile="user:tiny_flux_8"),
                   dict(method="teacache", profile="user:tiny_flux_8"),
                   dict(method="teacache")):
        cached = attach(cache_node, tiny.model, **inputs)
        assert holder_of(cached).profile.name == "tiny_flux_8", inputs   # "auto" prefers the calibrated one
        result = ksample(comfy_nodes, tiny, model=cached)
        assert torch.isfinite(result).all()
        assert [r["step"] for r in stage0(last_stats(cached))] == list(range(STEPS))


# --------------------------------------------------------------------------------------
# 5. bad input
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs, phrases", [
    (dict(threshold=-0.1), ["threshold", "0 or more", "-0.1"]),
    (dict(start_percent=0.5, end_percent=0.5), ["start_percent (0.5)", "below end_percent",
                                               "lower start_percent or raise end_percent"]),
    (dict(start_percent=0.8, end_percent=0.3), ["below end_percent"]),
    (dict(method="teacache", profile="nope"), ["unknown profile 'nope'", "choose 'auto'", "user:<name>"]),
    (dict(method="magcache", profile="nope"), ["unknown profile 'nope'"]),
    (dict(method="magcache", profile="user:missing"), ["not found", "Calibrate"]),
    (dict(method="step_mask", step_mask="12x"), ["step_mask must be", "0 and 1", "'12x'"]),
    (dict(method="fixed_interval", interval=0), ["interval must be 1 or more"]),
    (dict(warmup_steps=-1), ["warmup_steps must be 0 or more"]),
])
def test_bad_input_says_what_to_change(inputs, phrases, cache_node, get_tiny):
    tiny = get_tiny("flux")
    with pytest.raises(ValueError) as info:
        attach(cache_node, tiny.model, **inputs)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, message


def test_easycache_on_sd3_passes_through_with_warning(cache_node, get_tiny, caplog):
    tiny = get_tiny("sd3")
    with caplog.at_level(logging.WARNING, logger="diffusion_cache"):
        out = attach(cache_node, tiny.model, method="easycache")
    assert out is tiny.model
    assert "diffusion_cache" not in out.model_options.get("transformer_options", {})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "diffusion_cache"]
    assert len(warnings) == 1
    assert "EasyCache" in warnings[0].getMessage() and "sd3" in warnings[0].getMessage()
    assert "first_block" in warnings[0].getMessage()     # says what to pick instead


def test_model_without_diffusion_model_passes_through(cache_node, comfy_nodes, caplog):
    import comfy.model_patcher
    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    with pytest.raises(AttributeError):
        patcher.get_model_object("diffusion_model")
    with caplog.at_level(logging.WARNING, logger="diffusion_cache"):
        out = attach(cache_node, patcher, method="first_block")
    assert out is patcher
    assert any("passing it through" in r.getMessage() for r in caplog.records if r.name == "diffusion_cache")


def test_cache_node_leaves_its_input_model_alone(cache_node, comfy_nodes, get_tiny):
    tiny = get_tiny("flux")
    before = dict(tiny.model.model_options.get("transformer_options", {}))
    model = attach(cache_node, tiny.model, method="first_block")
    assert model is not tiny.model
    assert "diffusion_cache" in model.model_options["transformer_options"]
    assert tiny.model.model_options.get("transformer_options", {}) == before
    assert not tiny.model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit")
    # a second cache node on the cached model replaces the first: one set of hooks
    again = attach(cache_node, model, method="fixed_interval", interval=1)
    patches = again.model_options["transformer_options"]["patches_replace"]["dit"]
    assert len(patches) == sum(tiny.block_kinds.values())
    out = ksample(comfy_nodes, tiny, model=again)
    assert torch.equal(out, reference(comfy_nodes, tiny))
    assert last_stats(again)["summary"]["method"] == "fixed_interval"


@pytest.mark.parametrize("inputs, knob", [(dict(method="fixed_interval", interval=3), "interval=3"),
                                          (dict(method="first_block", threshold=0.2), "threshold=0.2")])
def test_run_log_names_the_settings_used(inputs, knob, comfy_nodes, cache_node, get_tiny, caplog):
    tiny = get_tiny("wan21")
    model = attach(cache_node, tiny.model, **inputs)
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        ksample(comfy_nodes, tiny, model=model, steps=3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Diffusion Cache enabled")]
    assert len(lines) == 1
    assert f"method={inputs['method']}" in lines[0] and knob in lines[0]
    assert "step_mask" not in lines[0], lines[0]
