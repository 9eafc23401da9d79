"""The benchmark's report of its goals, on rows made up for the purpose (no ComfyUI needed)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import benchmark  # noqa: E402


def _row(method, setting, fraction, speedup, model="flux_tiny", kind="ours", **inputs):
    knob, value = setting.split("=")
    return {"model": model, "method": method, "setting": setting, "kind": kind,
            "inputs": {"method": method, knob: float(value), **inputs},
            "compute_fraction": fraction, "wall_speedup": speedup}


def test_a_cheaper_setting_that_measured_slower_is_reported():
    rows = [_row("taylorseer", "interval=3", 0.4, 2.4), _row("taylorseer", "interval=4", 0.3, 2.2),
            _row("taylorseer", "interval=2", 0.55, 1.8)]
    pairs = benchmark.slower_pairs(rows)
    assert [(a["setting"], b["setting"]) for a, b in pairs] == [("interval=4", "interval=3")]
    lines = benchmark.slower_lines({"rows": rows})
    assert lines[0].startswith("- 1 pair(s)")
    assert "interval=4 (0.300 of the blocks) 2.20x against interval=3 (0.400) 2.40x: 9% slower" in lines[1]


def test_settings_differing_in_more_than_the_swept_knob_models_or_kinds_are_not_compared():
    rows = [_row("taylorseer", "interval=3", 0.4, 2.4),
            _row("taylorseer", "interval=4", 0.3, 2.2, order=2),          # another order: another sweep
            _row("taylorseer", "interval=4", 0.3, 2.2, model="wan_tiny"),  # another model
            _row("foca", "interval=4", 0.3, 2.2),                          # another method
            _row("comfyui_lazycache", "reuse_threshold=0.4", 0.3, 1.0, kind="baseline"),
            dict(_row("taylorseer", "interval=5", 0.25, None), error="RuntimeError")]
    assert benchmark.slower_pairs(rows) == []
    assert benchmark.slower_lines({"rows": rows}) == [
        "- fewer computed blocks never measured slower within a method's sweep"]
