"""ComfyUI's TorchCompileModel node and the cache, in either order.

The cache's decisions and cached tensors stay in eager code (``cache_core.eager``), so
torch.compile compiles the model's own work and the cache keeps skipping exactly the
steps it skips uncompiled, with outputs equal to the uncompiled cached run's. Compiled on the CPU with the inductor backend, which needs a
C++ compiler; without one the test is skipped with the reason.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_archs  # noqa: E402
from test_cache_engine import EXPECTED_REUSED, attach, last_stats, ksample, reused_steps  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile's inductor backend needs a C++ compiler on the CPU")


def compile_node(comfy_nodes, model):
    node = comfy_nodes.NODE_CLASS_MAPPINGS["TorchCompileModel"]
    out = node.execute(model=model, backend="inductor") if hasattr(node, "define_schema") \
        else node().patch(model=model, backend="inductor")
    result = out.result if hasattr(out, "result") else out
    return result[0]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compile_with_backend(model, backend):
    """What the node does, through the same public helper, with another backend."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    m = model.clone()
    set_torch_compile_wrapper(model=m, backend=backend)
    return m


def _check(comfy_nodes, cache_node, tiny, knobs, order, compile_fn):
    eager_model = attach(cache_node, tiny.model, **knobs)
    eager_out = ksample(comfy_nodes, tiny, model=eager_model)
    eager_reused = reused_steps(last_stats(eager_model))
    assert eager_reused, "the eager run must skip something for this test to mean anything"
    if order == "compile_then_cache":
        model = attach(cache_node, compile_fn(tiny.model), **knobs)
    else:
        model = compile_fn(attach(cache_node, tiny.model, **knobs))
    out = ksample(comfy_nodes, tiny, model=model)
    assert reused_steps(last_stats(model)) == eager_reused
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, eager_out, rtol=1e-3, atol=1e-3)
    return eager_reused


@pytest.mark.parametrize("order", ["compile_then_cache", "cache_then_compile"])
def test_torch_compile_node_keeps_skipping(order, comfy_nodes, cache_node, tiny_dir):
    """ComfyUI's TorchCompileModel node (inductor) before or after the cache node."""
    tiny = tiny_archs.build("flux", tiny_dir)
    reused = _check(comfy_nodes, cache_node, tiny, dict(method="fixed_interval", interval=2), order,
                    lambda m: compile_node(comfy_nodes, m))
    assert reused == EXPECTED_REUSED


@pytest.mark.parametrize("arch, knobs, order", [
    ("flux", dict(method="first_block", threshold=0.7), "compile_then_cache"),
    ("flux", dict(method="first_block", threshold=0.7), "cache_then_compile"),
    ("wan21", dict(method="taylorseer", interval=3), "cache_then_compile"),
])
def test_traced_model_keeps_dynamic_decisions(arch, knobs, order, comfy_nodes, cache_node, tiny_dir):
    """Dynamo traces the compiled model (``aot_eager``: the tracing without inductor's code
    generation); data-dependent decisions and forecasts stay what they are uncompiled."""
    _check(comfy_nodes, cache_node, tiny_archs.build(arch, tiny_dir), knobs, order,
           lambda m: compile_with_backend(m, "aot_eager"))
