"""Spectrum and the compute budget through the Diffusion Cache node on tiny models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cache_engine import attach, ksample, last_stats, stage0  # noqa: E402


def computed(stats) -> list[int]:
    return [r["step"] for r in stage0(stats) if r["decision"] == "computed"]


@pytest.mark.parametrize("arch", ["flux", "wan21"])
def test_spectrum_forecasts_on_its_schedule(arch, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny(arch)
    ref = ksample(comfy_nodes, tiny, steps=20)
    model = attach(cache_node, tiny.model, method="spectrum")
    out = ksample(comfy_nodes, tiny, model=model, steps=20)
    stats = last_stats(model)
    assert stats["summary"]["method"] == "spectrum"
    # warm-up 5 (a quarter of 20 steps), then intervals 2, 2, 3, 4 ...; the last step by the shared guard
    assert computed(stats) == [0, 1, 2, 3, 4, 6, 8, 11, 15, 19]
    assert {r["decision"] for r in stage0(stats) if r["step"] not in computed(stats)} == {"forecast"}
    assert torch.isfinite(out).all()
    err = float((out - ref).abs().mean() / ref.abs().mean())
    assert err < 0.5, err


@pytest.mark.parametrize("predictor", ["auto", "taylor", "spectrum", "foca"])
@pytest.mark.parametrize("budget", [{"compute_steps": 8}, {"target_speedup": 4.0}])
def test_budget_met_exactly_via_node(predictor, budget, comfy_nodes, cache_node, get_tiny):
    tiny = get_tiny("flux")
    model = attach(cache_node, tiny.model, method="budget", predictor=predictor, **budget)
    out = ksample(comfy_nodes, tiny, model=model, steps=28)
    stats = last_stats(model)
    steps = computed(stats)
    assert len(steps) == (8 if "compute_steps" in budget else 7)
    assert {0, 1, 27} <= set(steps) and torch.isfinite(out).all()
    assert [r["step"] for r in stage0(stats)] == list(range(28))


def test_budget_plans_from_a_calibrated_profile(comfy_nodes, cache_node, get_tiny, pack, tmp_path, monkeypatch):
    import folder_paths

    from cache_core import budget as planner
    monkeypatch.setattr(folder_paths, "user_directory", folder_paths.get_user_directory())
    if hasattr(folder_paths, "set_user_directory"):
        folder_paths.set_user_directory(str(tmp_path))
    else:
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    tiny = get_tiny("flux")
    calibrate = comfy_nodes.NODE_CLASS_MAPPINGS["DiffusionCacheCalibrate"]
    (model,) = calibrate.execute(model=tiny.model, profile_name="tiny flux budget").result
    ksample(comfy_nodes, tiny, model=model, steps=12)
    data = json.loads((tmp_path / "diffusion_cache" / "profiles" / "tiny_flux_budget.json").read_text())
    lags = data["recorded"]["residual_lag_changes"]
    assert len(lags) == 12 and lags[0] == [] and all(len(row) == min(k, planner.LAGS) for k, row in enumerate(lags))
    assert all(v is not None and v >= 0 for row in lags for v in row)

    cached = attach(cache_node, tiny.model, method="budget", compute_steps=5, profile="user:tiny_flux_budget")
    out = ksample(comfy_nodes, tiny, model=cached, steps=12)
    sigmas = data["recorded"]["sigmas"] + [0.0]
    expected = planner.plan(12, 5, planner.profile_cost(sigmas, lags), planner.forced_steps(12, 1, 1))
    assert computed(last_stats(cached)) == expected and torch.isfinite(out).all()
    # tiny Flux's residual changes little early on, so its plan differs from the model-independent one
    assert expected != planner.plan(12, 5, planner.default_cost(12), planner.forced_steps(12))
