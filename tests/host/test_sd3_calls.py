"""SD3's MMDiT fires no DIFFUSION_MODEL wrapper: its block 0 opens each model call.

* calibration records through the block path and writes a full profile;
* a stopped run (interrupt, or an error inside a block) leaves no tensor in the run.
"""
from __future__ import annotations

import json
import logging
import math
import traceback

import pytest
import torch

import tiny_archs

STEPS = 6


def _user_directory(monkeypatch, path):
    import folder_paths
    monkeypatch.setattr(folder_paths, "user_directory", folder_paths.get_user_directory())
    if hasattr(folder_paths, "set_user_directory"):
        folder_paths.set_user_directory(str(path))
    else:
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(path))


def stats_of(model):
    return model.model_options["transformer_options"]["diffusion_cache"].last_stats


def test_sd3_calibration_writes_a_profile(comfy_nodes, pack, tiny_dir, tmp_path, monkeypatch, caplog):
    _user_directory(monkeypatch, tmp_path)
    tiny = tiny_archs.build("sd3", tiny_dir)
    assert not tiny.diffusion_model_wrapper
    expected = tiny_archs.sample(comfy_nodes, tiny, steps=STEPS)
    model = pack.nodes.calibrate_node.build_calibrating_model(tiny.model, "tiny_sd3")
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert torch.equal(out, expected)
    warnings = [r.getMessage() for r in caplog.records if r.name == "diffusion_cache" and r.levelno >= logging.WARNING]
    assert warnings == []
    path = tmp_path / "diffusion_cache" / "profiles" / "tiny_sd3.json"
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["architecture"] == "sd3"
    assert all(math.isfinite(c) for c in data["teacache_coefficients"])
    ratios = data["recorded"]["residual_ratios"]
    assert len(ratios) == STEPS and all(r != 1.0 for r in ratios[1:]), ratios    # measured, not the default
    assert all(v is not None for v in data["recorded"]["output_changes"][1:])
    # and the cache node uses it
    cached = pack.nodes.cache_node.build_cached_model(tiny.model, method="magcache", profile="user:tiny_sd3")
    assert torch.isfinite(tiny_archs.sample(comfy_nodes, tiny, model=cached, steps=STEPS)).all()
    assert len(stats_of(cached)["records"]) == STEPS


def _tensors_in(obj, seen=None, depth=0):
    """Tensors reachable from ``obj`` through this pack's objects, dicts, lists and tuples."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if isinstance(obj, dict):
        children = list(obj.values()) + list(obj.keys())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif "cache_core" in type(obj).__module__ and hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _tensors_in(child, seen, depth + 1)


def _interrupt(comfy_nodes, tiny, model):
    import comfy.model_management
    import comfy.utils

    def progress_hook(value, total, preview, node_id=None):
        if value >= 3:
            comfy.model_management.interrupt_current_processing(True)
        comfy.model_management.throw_exception_if_processing_interrupted()

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(progress_hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException) as info:
            tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.model_management.interrupt_current_processing(False)
    return info


def _error_in_last_block(comfy_nodes, tiny, model):
    block = tiny.model.model.diffusion_model.joint_blocks[-1]
    calls = []

    def fail(module, args, kwargs=None):
        calls.append(1)
        if len(calls) == 2:           # the second computed step
            raise RuntimeError("simulated failure inside the last block")

    handle = block.register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="simulated failure") as info:
            tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    finally:
        handle.remove()
    return info


@pytest.mark.parametrize("method", ["first_block", "fixed_interval", "taylorseer", "calibrate"])
@pytest.mark.parametrize("stop", [_interrupt, _error_in_last_block], ids=["interrupt", "error_in_block"])
def test_stopped_sd3_run_frees_everything(comfy_nodes, pack, tiny_dir, tmp_path, monkeypatch, stop, method):
    _user_directory(monkeypatch, tmp_path)
    tiny = tiny_archs.build("sd3", tiny_dir)
    if method == "calibrate":
        model = pack.nodes.calibrate_node.build_calibrating_model(tiny.model, "stopped")
    else:
        model = pack.nodes.cache_node.build_cached_model(tiny.model, method=method, threshold=100.0, warmup_steps=0)
    info = stop(comfy_nodes, tiny, model)
    engine = pack.cache_core.engine
    runs = [frame.f_locals["run"] for frame, _ in traceback.walk_tb(info.tb)
            if type(frame.f_locals.get("run")) is engine.CacheRun]
    assert runs, "the sampling run should be reachable from the traceback"
    for run in runs:
        left = list(_tensors_in(run))
        assert left == [], f"the stopped run still holds {len(left)} tensor(s): {[tuple(t.shape) for t in left]}"


def test_sd3_blocks_replaced_while_it_runs_warn_once(comfy_nodes, pack, tiny_dir, caplog):
    """SD3 has no model-call hook, so a later pack that replaces the block patches for the
    call (here in an APPLY_MODEL wrapper) leaves the cache nothing to see: it says so once."""
    from comfy.patcher_extension import WrappersMP
    tiny = tiny_archs.build("sd3", tiny_dir)
    expected = tiny_archs.sample(comfy_nodes, tiny, steps=STEPS)

    def passthrough(args, extra):
        return extra["original_block"](args)

    def replacing(executor, *args, **kwargs):
        options = kwargs.get("transformer_options")
        if not isinstance(options, dict):
            options = args[5]
        replace = dict(options.get("patches_replace", {}))
        replace["dit"] = {k: passthrough for k in replace.get("dit", {})}
        options["patches_replace"] = replace
        return executor(*args, **kwargs)

    model = pack.nodes.cache_node.build_cached_model(tiny.model, method="fixed_interval", interval=2)
    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "later_pack", replacing)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert torch.equal(out, expected)
    warnings = [r.getMessage() for r in caplog.records if r.name == "diffusion_cache" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "without reaching the cache" in warnings[0], warnings
