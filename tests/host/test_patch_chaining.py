"""Other packs' block patches, in any node order, and block patches that never fire.

* A third pack's ``patches_replace["dit"]`` patch survives one or two Diffusion Cache
  nodes before or after it, whether it chains the patch it found or replaces it.
* A probe that cannot be read makes that step a computed step, with one warning.
* When none of the cache's block patches runs inside a model call (a later wrapper
  replaced them, or the model calls its blocks without ``transformer_options``), the
  run falls back to caching whole model calls, with one warning.
"""
from __future__ import annotations

import logging

import pytest
import torch

import tiny_archs
from tiny_archs import stats_of

STEPS = 6


def decisions(model):
    return [r["decision"] for r in stats_of(model)["records"] if r["stage"] == 0]


def sample(comfy_nodes, tiny, model):
    return tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)


class OtherPack:
    """A third pack's block patch: runs the block and scales its image stream.

    ``chain=True`` calls the patch it found at that key (well-behaved chaining);
    ``chain=False`` calls ``extra["original_block"]``, replacing what was there."""

    def __init__(self, factor=1.25):
        self.factor = factor
        self.calls = 0

    def patch(self, previous=None):
        def other_block_patch(args, extra):
            self.calls += 1
            out = previous(args, extra) if previous is not None else extra["original_block"](args)
            return {**out, "img": out["img"] * self.factor}
        return other_block_patch

    def apply(self, model, key=("double_block", 1), chain=False):
        """A clone of ``model`` with this pack's patch at ``key``, as the pack's node returns it."""
        model = model.clone()
        found = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        model.set_model_patch_replace(self.patch(found.get(key) if chain else None), "dit", *key)
        return model


def test_two_cache_nodes_in_a_row_keep_a_third_packs_patch(comfy_nodes, build, tiny_dir):
    tiny = tiny_archs.build("flux", tiny_dir)
    other = OtherPack()
    patched = other.apply(tiny.model)
    with_patch = sample(comfy_nodes, tiny, patched)
    assert not torch.equal(with_patch, sample(comfy_nodes, tiny, tiny.model))
    once = build(patched, method="fixed_interval", interval=1)
    assert torch.equal(sample(comfy_nodes, tiny, once), with_patch)
    twice = build(once, method="fixed_interval", interval=1)
    other.calls = 0
    assert torch.equal(sample(comfy_nodes, tiny, twice), with_patch), "the third pack's patch was dropped"
    assert other.calls == STEPS              # once per step (cond and uncond batched in one call)
    # and the second node's cache is the one that runs
    assert stats_of(twice)["summary"]["method"] == "fixed_interval"


@pytest.mark.parametrize("chain", [False, True], ids=["replaces", "chains"])
@pytest.mark.parametrize("method", ["first_block", "dbcache"])
def test_a_block0_patch_added_after_the_cache_node(comfy_nodes, build, tiny_dir, method, chain):
    tiny = tiny_archs.build("flux", tiny_dir)
    other = OtherPack()
    key = ("double_block", 0)
    expected = sample(comfy_nodes, tiny, other.apply(tiny.model, key))
    # nothing skipped: exactly the uncached model with the other pack's patch (applied once)
    exact = other.apply(build(tiny.model, method=method, threshold=1e-6), key, chain=chain)
    other.calls = 0
    assert torch.equal(sample(comfy_nodes, tiny, exact), expected)
    assert other.calls == STEPS
    assert set(decisions(exact)) == {"computed"}
    # and a threshold that skips still skips, with the other pack's patch in every step
    cached = other.apply(build(tiny.model, method=method, threshold=100.0), key, chain=chain)
    other.calls = 0
    out = sample(comfy_nodes, tiny, cached)
    assert torch.isfinite(out).all()
    assert decisions(cached).count("reused") == STEPS - 2
    assert other.calls == STEPS              # block 0 runs on every step (it is the probe)
    assert all(r["block_mask"] == "1000" for r in stats_of(cached)["records"] if r["decision"] == "reused")


@pytest.mark.parametrize("method", ["first_block", "dbcache"])
def test_a_block0_patch_added_before_the_cache_node(comfy_nodes, build, tiny_dir, method):
    tiny = tiny_archs.build("flux", tiny_dir)
    other = OtherPack()
    key = ("double_block", 0)
    patched = other.apply(tiny.model, key)
    expected = sample(comfy_nodes, tiny, patched)
    assert torch.equal(sample(comfy_nodes, tiny, build(patched, method=method, threshold=1e-6)), expected)
    cached = build(patched, method=method, threshold=100.0)
    sample(comfy_nodes, tiny, cached)
    assert decisions(cached).count("reused") == STEPS - 2


# --------------------------------------------------------------------------------------
# patches replaced while the model runs
# --------------------------------------------------------------------------------------

def _options_of(args, kwargs):
    options = kwargs.get("transformer_options")
    if isinstance(options, dict):
        return options
    return next(a for a in reversed(args) if isinstance(a, dict) and "patches_replace" in a)


def replacing_wrapper(keys=None):
    """A DIFFUSION_MODEL wrapper of a later pack that puts its own block patches in place of
    whatever is there (for ``keys``, or all of them) for the duration of the call."""
    def passthrough(args, extra):
        return extra["original_block"](args)

    def wrapper(executor, *args, **kwargs):
        options = _options_of(args, kwargs)
        replace = dict(options.get("patches_replace", {}))
        dit = dict(replace.get("dit", {}))
        for k in list(dit) if keys is None else keys:
            dit[k] = passthrough
        replace["dit"] = dit
        options["patches_replace"] = replace
        return executor(*args, **kwargs)
    return wrapper


def stripping_wrapper():
    """Like a model that calls its blocks without ``transformer_options`` (Wan S2V): the
    block patches run, but see no options."""
    def wrapper(executor, *args, **kwargs):
        options = _options_of(args, kwargs)
        replace = dict(options.get("patches_replace", {}))

        def strip(fn):
            def patch(a, extra):
                def original_block(b):     # the model's own block still gets its options
                    return extra["original_block"]({**b, "transformer_options": a["transformer_options"]})
                return fn({k: v for k, v in a.items() if k != "transformer_options"},
                          {**extra, "original_block": original_block})
            return patch
        replace["dit"] = {k: strip(fn) for k, fn in replace.get("dit", {}).items()}
        options["patches_replace"] = replace
        return executor(*args, **kwargs)
    return wrapper


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "diffusion_cache" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("how", ["replaced", "no_options"])
@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_block_patches_that_never_fire_fall_back_to_whole_calls(comfy_nodes, build, tiny_dir, caplog, arch, how):
    from comfy.patcher_extension import WrappersMP
    tiny = tiny_archs.build(arch, tiny_dir)
    reference = sample(comfy_nodes, tiny, tiny.model)
    for interval in (1, 2):
        # block span caching (whole calls would not need the block patches at all)
        model = build(tiny.model, method="fixed_interval", interval=interval, cache_level="blocks")
        model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "later_pack",
                                   replacing_wrapper() if how == "replaced" else stripping_wrapper())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="diffusion_cache"):
            out = sample(comfy_nodes, tiny, model)
        warnings = _warnings(caplog)
        assert len(warnings) == 1, warnings
        assert "block" in warnings[0] and "whole model calls" in warnings[0], warnings[0]
        records = stats_of(model)["records"]
        if interval == 1:
            assert torch.equal(out, reference)
            assert set(decisions(model)) == {"computed"}
        else:
            # steps 1 and 3 reuse the whole call (step 0 fell back, the last step is computed)
            assert decisions(model) == ["computed", "reused", "computed", "reused", "computed", "computed"]
            assert all((r["blocks_computed"], r["blocks_total"]) == (0, 1)
                       for r in records if r["decision"] == "reused")
            assert torch.isfinite(out).all() and not torch.equal(out, reference)


@pytest.mark.parametrize("method", ["first_block", "dbcache", "teacache"])
def test_an_unreadable_probe_computes_the_step_with_one_warning(comfy_nodes, build, tiny_dir, caplog, method):
    """Block 0 is replaced while the model runs: the front residual (or block 0's modulated
    input) cannot be measured, so every step computes, and the run says so once."""
    from comfy.patcher_extension import WrappersMP
    tiny = tiny_archs.build("flux", tiny_dir)
    reference = sample(comfy_nodes, tiny, tiny.model)
    model = build(tiny.model, method=method, threshold=100.0)
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "later_pack", replacing_wrapper([("double_block", 0)]))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        out = sample(comfy_nodes, tiny, model)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "probe" in warnings[0], warnings
    assert set(decisions(model)) == {"computed"}
    assert torch.equal(out, reference)
