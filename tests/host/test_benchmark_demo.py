"""The benchmark and the demo run end to end on the shipped tiny Flux model.

The benchmark runs with a tiny option set (one method, two settings, 6 steps,
batch 1) plus ComfyUI's EasyCache / LazyCache baselines (batch 1: ComfyUI
0.3.64's EasyCache fails on a skipped step when batched CFG holds more than one
image per condition, which the benchmark reports as a failed row); the demo executes its
workflow through ComfyUI's PromptExecutor. Both skip when models/tiny has no
trained weights.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"model", "method", "setting", "compute_fraction", "calls_computed", "calls_total", "wall_speedup",
            "psnr_db", "ssim", "extra_mem_mb"}


@pytest.fixture(scope="module")
def flux_tiny(pack):
    if "flux_tiny" not in pack.nodes.tiny_models.list_tiny_models():
        pytest.skip(f"no trained tiny Flux model in {pack.nodes.tiny_models.TINY_MODELS_DIR} "
                    "(flux_tiny.safetensors + flux_tiny.json)")
    return "flux_tiny"


@pytest.fixture(scope="module")
def benchmark_result(flux_tiny, tmp_path_factory):
    import benchmark  # scripts/ is on sys.path (conftest)
    out = tmp_path_factory.mktemp("bench")
    opts = benchmark.Options(models=[flux_tiny], methods=["fixed_interval"], quick=True, repeats=3, batch=1,
                             steps=6, progress=False)
    result = benchmark.run_benchmark(opts)
    (out / "rows.json").write_text(json.dumps(result))
    benchmark.plot_pareto(result, out / "pareto.png")
    return result, out


def test_benchmark_rows(benchmark_result):
    result, _ = benchmark_result
    rows = result["rows"]
    assert rows
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["error"] is None, row
        assert row["model"] == "flux_tiny"
        assert 0.0 < row["compute_fraction"] <= 1.0, row
        assert 0 < row["calls_computed"] <= row["calls_total"], row
        assert row["psnr_db"] is None or row["psnr_db"] > 0, row        # None: identical images
        assert -1.0 <= row["ssim"] <= 1.0 + 1e-6, row
        assert row["wall_speedup"] > 0 and math.isfinite(row["wall_speedup"]), row
        assert len(row["times_cached"]) == len(row["times_uncached"]) == 3
        # each repeat's uncached run is paired with the cached run after it; the speedup is their
        # ratios' median, and the ratio of the median times is kept beside it
        ratios = sorted(u / c for u, c in zip(row["times_uncached"], row["times_cached"]))
        assert row["wall_speedup"] == pytest.approx(ratios[1], rel=2e-3, abs=2e-3), row
        if row["kind"] == "ours" and row["compute_fraction"] < 1.0:
            # the schedule replayed with no cache work, timed in the same rounds
            assert len(row["times_bound"]) == 3, row
            shares = sorted(b / c for b, c in zip(row["times_bound"], row["times_cached"]))
            assert row["of_bound"] == pytest.approx(shares[1], rel=2e-3, abs=2e-3), row
            bounds = sorted(u / b for u, b in zip(row["times_uncached"], row["times_bound"]))
            assert row["bound_speedup"] == pytest.approx(bounds[1], rel=2e-3, abs=2e-3), row
        assert row["median_speedup"] == pytest.approx(
            sorted(row["times_uncached"])[1] / sorted(row["times_cached"])[1], rel=2e-3, abs=2e-3), row
        assert row["extra_mem_mb"] >= 0
    ours = [r for r in rows if r["method"] == "fixed_interval"]
    assert [r["setting"] for r in ours] == ["interval=2", "interval=4"]
    for r in ours:
        assert r["calls_total"] == 6
        # interval 2 computes at least every other step: never more than ~half reused
        assert r["calls_computed"] < 6
        assert r["extra_mem_mb"] > 0
        assert r["whole_steps"] is True       # fixed_interval caches whole passes: nothing of the model runs
        assert r["passes_cached"] > 0         # ... and the cache's own work answering them is counted
    import benchmark
    lines = benchmark.overhead_lines(result)
    assert any("rows whose cached steps run nothing of the model" in line for line in lines), lines
    methods = {r["method"] for r in rows}
    assert {"comfyui_easycache", "comfyui_lazycache"} <= methods
    for r in rows:
        if r["kind"] == "baseline":
            assert r["calls_total"] == 6          # one model call per euler step, counted on the uncached model
            assert r["compute_fraction"] == pytest.approx(r["calls_computed"] / r["calls_total"], abs=1e-3)
    env = result["environment"]
    assert env["torch_threads"] >= 1 and env["cpu"]


def test_benchmark_outputs(benchmark_result):
    import benchmark
    result, out = benchmark_result
    assert (out / "pareto.png").stat().st_size > 10_000
    table = benchmark.markdown_table(result)
    assert table.count("\n") == len(result["rows"]) + 1
    assert "comfyui_lazycache (ComfyUI)" in table


def test_ui_workflow_matches_api_workflow(pack):
    import demo
    api = json.loads((REPO_ROOT / "workflows" / "api" / "tiny_flux_demo.api.json").read_text())
    ui = json.loads((REPO_ROOT / "workflows" / "tiny_flux_demo.json").read_text())
    assert demo.ui_mismatches(ui, api) == [], "regenerate with: python scripts/demo.py --write-ui-workflow"
    for link in ui["links"]:
        assert len(link) == 6 and all(v is not None for v in link), link
    roles = demo.find_roles(api)
    assert api[roles["cached"]]["inputs"]["model"] == [roles["cache"], 0]


def test_demo_end_to_end(flux_tiny, tmp_path):
    import demo
    summary = demo.run_demo(out_dir=tmp_path, repeats=3, quiet=True)
    assert summary["success"]
    for name in ("comparison.png", "timeline.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert len(summary["files"]["cached"]) == len(summary["files"]["uncached"]) == 10
    assert all(Path(f).is_file() for f in summary["files"]["cached"] + summary["files"]["uncached"])
    assert summary["steps"] == 20
    assert len(summary["steps_computed"]) + len(summary["steps_skipped"]) == 20
    assert 0 < summary["compute_fraction"] <= 1
    assert summary["psnr_db"] is None or summary["psnr_db"] > 10
    assert summary["wall_speedup"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["success"] is True


def test_a_methods_extra_settings_are_measured_besides_its_sweep(pack):
    import benchmark
    opts = benchmark.Options(models=["flux_tiny"], methods=["taylorseer"], quick=True)
    settings = list(benchmark._our_settings(["taylorseer"], None, opts))
    assert [s for _, s, _ in settings] == ["interval=3", "interval=6", "interval=4 predictor_order=2"]
    assert settings[-1][2] == {"method": "taylorseer", "interval": 4, "predictor_order": 2}


def test_settings_from_the_command_line_are_rows_of_their_own(pack):
    import benchmark
    opts, _ = benchmark.parse_args(["--setting", "taylorseer:interval=8,predictor_order=2",
                                    "--setting", "budget:target_speedup=6.5,predictor=taylor"])
    assert opts.settings == [("taylorseer", {"interval": 8, "predictor_order": 2}),
                             ("budget", {"target_speedup": 6.5, "predictor": "taylor"})]
    rows = list(benchmark._our_settings([], None, opts))
    assert [(m, s) for m, s, _ in rows] == [("taylorseer", "interval=8 predictor_order=2"),
                                           ("budget", "target_speedup=6.5 predictor=taylor")]
    assert "--setting" in benchmark.argv_used(opts)
    with pytest.raises(SystemExit, match="METHOD:KNOB=VALUE"):
        benchmark.parse_args(["--setting", "taylorseer"])
