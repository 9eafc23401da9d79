"""A workflow through ComfyUI's own prompt validation and executor.

Tiny model loader -> Diffusion Cache -> KSampler -> tiny decode -> SaveImage, in API
format, run by ``execution.PromptExecutor``; and a graph with a bad cache setting,
which must fail at the Diffusion Cache node with the node's own message.
"""
from __future__ import annotations

import pytest

STEPS = 6


@pytest.fixture(scope="module")
def tiny_model_name(pack):
    names = pack.nodes.tiny_models.list_tiny_models()
    if not names:
        pytest.skip(f"no tiny model weights in {pack.nodes.tiny_models.TINY_MODELS_DIR} yet "
                    "(scripts/train_tiny.py writes them)")
    return "flux_tiny" if "flux_tiny" in names else names[0]


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    import folder_paths
    monkeypatch.setattr(folder_paths, "output_directory", folder_paths.get_output_directory())
    folder_paths.set_output_directory(str(tmp_path))
    return tmp_path


def cache_inputs(**overrides):
    inputs = {"model": ["1", 0], "method": "fixed_interval", "threshold": 0.0, "interval": 2,
              "step_mask": "medium", "profile": "auto", "start_percent": 0.0, "end_percent": 1.0,
              "warmup_steps": 1, "last_steps_computed": 1, "max_consecutive_cached": 0}
    inputs.update(overrides)
    return inputs


def workflow(model_name, **cache_overrides) -> dict:
    return {
        "1": {"class_type": "DiffusionCacheTinyModelLoader", "inputs": {"model_name": model_name}},
        "2": {"class_type": "DiffusionCacheTinyDigits", "inputs": {"model_name": model_name, "digits": "07"}},
        "3": {"class_type": "DiffusionCache", "inputs": cache_inputs(**cache_overrides)},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["3", 0], "seed": 0, "steps": STEPS, "cfg": 2.0, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["2", 2],
            "denoise": 1.0}},
        "5": {"class_type": "DiffusionCacheTinyDecode", "inputs": {"model_name": model_name, "samples": ["4", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "diffusion_cache_test"}},
    }


def run(pack, prompt):
    """Validate and execute ``prompt`` like the server's prompt worker; return the executor."""
    compat = pack.nodes.compat
    try:
        executor, _ = compat.run_prompt(prompt)
    except compat.PromptInvalid as e:
        pytest.fail(f"ComfyUI rejected the prompt: {e}")
    return executor


def events(executor, name):
    return [data for event, data in executor.status_messages if event == name]


def cached_model_of(pack, executor, node_id="3"):
    return pack.nodes.compat.node_outputs(executor, node_id)[0][0]


def test_workflow_runs_through_the_executor(comfy_nodes, pack, tiny_model_name, output_dir):
    executor = run(pack, workflow(tiny_model_name))
    assert executor.success, events(executor, "execution_error")
    assert events(executor, "execution_success")
    saved = sorted(output_dir.glob("diffusion_cache_test*.png"))
    assert len(saved) == 2                      # one image per digit
    assert set(executor.history_result["outputs"]) == {"6"}

    holder = cached_model_of(pack, executor).model_options["transformer_options"]["diffusion_cache"]
    assert holder.node_id == "3"                # the node's own id, for its UI events
    stats = holder.last_stats
    stage0 = [r for r in stats["records"] if r["stage"] == 0]
    assert [r["step"] for r in stage0] == list(range(STEPS))
    assert sorted(r["step"] for r in stage0 if r["decision"] == "reused") == [1, 3]
    assert stats["summary"]["reused"] == 2


def test_bad_setting_fails_at_the_cache_node(comfy_nodes, pack, tiny_model_name, output_dir):
    executor = run(pack, workflow(tiny_model_name, start_percent=0.6, end_percent=0.4))
    assert not executor.success
    assert not events(executor, "execution_success")
    (error,) = events(executor, "execution_error")
    assert error["node_id"] == "3" and error["node_type"] == "DiffusionCache"
    assert error["exception_type"].endswith("ValueError")
    assert "start_percent (0.6) must be below end_percent (0.4)" in error["exception_message"]
    assert not list(output_dir.glob("*.png"))


def test_negative_threshold_is_rejected_before_running(comfy_nodes, pack, tiny_model_name):
    prompt = workflow(tiny_model_name, threshold=-0.5)
    valid, error, outputs, node_errors = pack.nodes.compat.validate_prompt(prompt, "bad")
    assert not valid
    assert "3" in node_errors and node_errors["3"]["class_type"] == "DiffusionCache"
    details = " ".join(e["details"] for e in node_errors["3"]["errors"])
    assert "threshold" in details
