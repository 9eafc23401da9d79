"""CFG-Cache (every method's ``cfg_cache_interval``) and PAB (``pab``) on ComfyUI's samplers.

* CFG-Cache off: no bit changes; on: the unconditional rows the model evaluates drop on the
  steps the schedule names, with batched and split CFG and a latent batch of two; cfg 1
  passes through with one log line; it composes with TaylorSeer.
* PAB: with nothing reused the output is bit-exact and the attention override is called;
  with reuse the run reports the share of attention calls skipped.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cache_engine import (STEPS, _run_both_layouts, attach, ksample, last_stats,  # noqa: E402
                               low_memory, reference)

ARCHS = ["flux", "wan21"]


def expected_cfg_skips(pack, tiny, interval: int, steps: int = STEPS) -> list[int]:
    """The steps whose uncond is rebuilt: not the first, step % interval != 0, t < 641."""
    import comfy.samplers
    ms = tiny.model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", steps)
    timestep_of = pack.nodes.guidance.timestep_of
    return [i for i in range(steps) if i > 0 and i % interval and timestep_of(ms, float(sigmas[i])) < 641]


class RowCounter:
    """Rows (conditioning chunks) and uuids the diffusion model evaluates."""

    def __init__(self, tiny):
        self.dm = tiny.model.model.diffusion_model
        self.rows = []
        self.kinds = []

    def _hook(self, module, args, kwargs):
        self.rows.append(args[0].shape[0])
        options = kwargs.get("transformer_options") or {}
        self.kinds.append(tuple(options.get("cond_or_uncond") or ()))

    def __enter__(self):
        self.handle = self.dm.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    @property
    def uncond_chunks(self) -> int:
        return sum(k.count(1) for k in self.kinds)


@pytest.mark.parametrize("arch", ARCHS)
def test_cfg_cache_off_is_bit_exact_and_on_drops_uncond(arch, comfy_nodes, cache_node, get_tiny, pack):
    tiny = get_tiny(arch)
    ref = reference(comfy_nodes, tiny)
    off = attach(cache_node, tiny.model, method="fixed_interval", interval=1, cfg_cache_interval=0)
    with RowCounter(tiny) as rows_off:
        assert torch.equal(ksample(comfy_nodes, tiny, model=off), ref)
    assert rows_off.uncond_chunks == STEPS
    assert "cfg_uncond_skipped" not in last_stats(off)["summary"]

    skips = expected_cfg_skips(pack, tiny, 2)
    assert skips, "the schedule should give cached unconditional steps"
    on = attach(cache_node, tiny.model, method="fixed_interval", interval=1, cfg_cache_interval=2)
    with RowCounter(tiny) as rows_on:
        out = ksample(comfy_nodes, tiny, model=on)
    summary = last_stats(on)["summary"]
    assert summary["cfg_uncond_skipped"] == len(skips)
    assert summary["cfg_uncond_computed"] == STEPS - len(skips)
    assert rows_on.uncond_chunks == STEPS - len(skips)
    assert sum(rows_on.rows) == sum(rows_off.rows) - len(skips) * tiny.latent["samples"].shape[0]
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    records = {r["step"]: r for r in last_stats(on)["records"]}
    assert all(records[s]["branches"] == ["cond"] for s in skips)
    # a cached uncond stays close to the real one on these tiny models
    assert (out - ref).abs().max() < 0.5 * ref.abs().max() + 1


@pytest.mark.parametrize("arch", ARCHS)
def test_cfg_cache_split_and_batched_cfg(arch, comfy_nodes, cache_node, get_tiny, monkeypatch, pack):
    tiny = get_tiny(arch)
    skips = expected_cfg_skips(pack, tiny, 3)
    (out_b, stats_b, calls_b), (out_s, stats_s, calls_s) = _run_both_layouts(
        comfy_nodes, cache_node, tiny, monkeypatch, dict(method="fixed_interval", interval=1, cfg_cache_interval=3))
    batch = tiny.latent["samples"].shape[0]
    assert calls_b.count(2 * batch) == STEPS - len(skips) and calls_b.count(batch) == len(skips)
    assert len(calls_s) == 2 * STEPS - len(skips) and set(calls_s) == {batch}
    for stats in (stats_b, stats_s):
        assert stats["summary"]["cfg_uncond_skipped"] == len(skips)
    torch.testing.assert_close(out_s, out_b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_cfg_cache_batch_of_two(arch, comfy_nodes, cache_node, get_tiny, monkeypatch, pack):
    tiny = get_tiny(arch)
    latent = torch.randn((2,) + tuple(tiny.latent["samples"].shape[1:]), generator=torch.Generator().manual_seed(3))
    skips = expected_cfg_skips(pack, tiny, 2)
    ref = reference(comfy_nodes, tiny, latent=latent)
    (out_b, stats_b, calls_b), (out_s, stats_s, calls_s) = _run_both_layouts(
        comfy_nodes, cache_node, tiny, monkeypatch, dict(method="fixed_interval", interval=1, cfg_cache_interval=2),
        latent=latent)
    assert calls_b.count(4) == STEPS - len(skips) and calls_b.count(2) == len(skips)
    assert stats_b["summary"]["cfg_uncond_skipped"] == stats_s["summary"]["cfg_uncond_skipped"] == len(skips)
    torch.testing.assert_close(out_s, out_b, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(out_b).all() and not torch.equal(out_b, ref)
    # each entry rebuilt from its own difference: cached entry 0 and 1 stay near their uncached ones
    for i in range(2):
        assert (out_b[i] - ref[i]).abs().mean() < (out_b[i] - ref[1 - i]).abs().mean()


def test_cfg_cache_at_cfg_1_passes_through(comfy_nodes, cache_node, get_tiny, caplog):
    tiny = get_tiny("flux")
    ref = reference(comfy_nodes, tiny, cfg=1.0)
    model = attach(cache_node, tiny.model, method="fixed_interval", interval=1, cfg_cache_interval=2)
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        out = ksample(comfy_nodes, tiny, model=model, cfg=1.0)
    assert torch.equal(out, ref)
    lines = [r for r in caplog.records if "CFG-Cache has no unconditional branch" in r.getMessage()]
    assert len(lines) == 1
    assert last_stats(model)["summary"]["cfg_uncond_skipped"] == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_cfg_cache_with_taylorseer(arch, comfy_nodes, cache_node, get_tiny, pack):
    tiny = get_tiny(arch)
    alone = attach(cache_node, tiny.model, method="taylorseer", interval=3)
    out_alone = ksample(comfy_nodes, tiny, model=alone)
    both = attach(cache_node, tiny.model, method="taylorseer", interval=3, cfg_cache_interval=2)
    with RowCounter(tiny) as rows:
        out = ksample(comfy_nodes, tiny, model=both)
    stats = last_stats(both)
    skips = expected_cfg_skips(pack, tiny, 2)
    assert stats["summary"]["cfg_uncond_skipped"] == len(skips)
    assert stats["summary"]["forecast"] > 0
    assert [r["decision"] for r in stats["records"]] == [r["decision"] for r in last_stats(alone)["records"]]
    assert rows.uncond_chunks == STEPS - len(skips)
    assert torch.isfinite(out).all() and not torch.equal(out, out_alone)


# ---- PAB ---------------------------------------------------------------------------------

def _needs_override(pack):
    if not pack.nodes.guidance.attention_supported():
        pytest.skip("this ComfyUI has no transformer_options['optimized_attention_override'] hook")


@pytest.mark.parametrize("arch", ARCHS + ["sd15"])
def test_pab_nothing_reused_is_bit_exact(arch, comfy_nodes, cache_node, get_tiny, pack):
    _needs_override(pack)
    tiny = get_tiny(arch)
    ref = reference(comfy_nodes, tiny)
    model = attach(cache_node, tiny.model, method="pab", pab_self_range=1, pab_cross_range=1,
                   pab_temporal_range=1, pab_window_start=0.0, pab_window_end=1000.0)
    out = ksample(comfy_nodes, tiny, model=model)
    summary = last_stats(model)["summary"]
    assert summary["attention_calls"] > 0, "the attention override must be called"
    assert summary["attention_skipped"] == 0
    assert torch.equal(out, ref)


@pytest.mark.parametrize("arch", ARCHS + ["sd15"])
def test_pab_reuses_attention(arch, comfy_nodes, cache_node, get_tiny, pack):
    _needs_override(pack)
    tiny = get_tiny(arch)
    ref = reference(comfy_nodes, tiny)
    model = attach(cache_node, tiny.model, method="pab", pab_self_range=2, pab_cross_range=4,
                   pab_window_start=0.0, pab_window_end=1000.0)
    out = ksample(comfy_nodes, tiny, model=model)
    stats = last_stats(model)
    summary = stats["summary"]
    calls, skipped = summary["attention_calls"], summary["attention_skipped"]
    assert calls > 0 and 0 < skipped < calls
    assert summary["attention_skipped_share"] == pytest.approx(skipped / calls, abs=1e-4)
    by_kind = summary["attention_by_kind"]
    # self-attention: one of every 2 calls per call id recomputed (the first of each id too)
    assert by_kind["self"]["skipped"] <= by_kind["self"]["calls"] // 2
    if "cross" in by_kind:
        assert by_kind["cross"]["skipped"] > by_kind["cross"]["calls"] // 2
    assert all(r["decision"] == "computed" for r in stats["records"])
    assert torch.isfinite(out).all() and not torch.equal(out, ref)


def test_pab_outside_window_is_exact(comfy_nodes, cache_node, get_tiny, pack):
    _needs_override(pack)
    tiny = get_tiny("flux")
    model = attach(cache_node, tiny.model, method="pab", pab_window_start=1000.0, pab_window_end=1000.0)
    assert torch.equal(ksample(comfy_nodes, tiny, model=model), reference(comfy_nodes, tiny))
    assert last_stats(model)["summary"]["attention_skipped"] == 0
