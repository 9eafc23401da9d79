"""Guarded forecast through the Diffusion Cache node on tiny Flux and Wan."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cache_engine import attach, ksample, last_stats, stage0  # noqa: E402


@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_guarded_forecast_adapts_its_interval(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    ref = ksample(comfy_nodes, tiny, steps=20)
    runs = {}
    for threshold in (0.05, 0.6):
        model = attach(cache_node, tiny.model, method="guarded_forecast", threshold=threshold)
        out = ksample(comfy_nodes, tiny, model=model, steps=20)
        stats = last_stats(model)
        assert stats["summary"]["method"] == "guarded_forecast"
        records = stage0(stats)
        steps = [r["step"] for r in records if r["decision"] == "computed"]
        # the first interval is 8 steps, then half of it; the last step by the shared guard
        assert steps[:3] == [0, 8, 12] and steps[-1] == 19
        assert {r["decision"] for r in records if r["step"] not in steps} == {"forecast"}
        # after the first measured forecast the interval follows its error, never past 8
        assert all(b - a <= 8 for a, b in zip(steps, steps[1:]))
        assert torch.isfinite(out).all()
        runs[threshold] = (steps, float((out - ref).abs().mean() / ref.abs().mean()))
    (tight, err_tight), (loose, err_loose) = runs[0.05], runs[0.6]
    assert len(tight) > len(loose)                      # a tighter threshold computes more steps
    assert err_tight < 0.5 and err_loose < 0.5, (err_tight, err_loose)
