"""Host tests run inside a real ComfyUI; without one they are skipped, loudly."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import comfy_host  # noqa: E402

COMFY_PATH = comfy_host.find_comfyui()


def pytest_report_header(config):
    if COMFY_PATH is None:
        return ["!!! HOST TESTS SKIPPED: " + comfy_host.why_not_found()]
    lines = [f"host tests run against the real {comfy_host.describe(COMFY_PATH)}"]
    made_for = comfy_host.venv_comfyui()
    if made_for is not None and made_for.resolve() != COMFY_PATH:
        lines.append(f"!!! this Python ({sys.prefix}) was set up for {comfy_host.describe(made_for)}, "
                     f"not for this one: use that version's environment (scripts/run_tests.sh does)")
    return lines


def pytest_collection_modifyitems(config, items):
    if COMFY_PATH is not None:
        return
    marker = pytest.mark.skip(reason=comfy_host.why_not_found().splitlines()[0])
    for item in items:
        if "tests/host" in str(item.fspath).replace("\\", "/"):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def comfy_nodes():
    """ComfyUI's ``nodes`` module, imported from the real checkout (CPU)."""
    return comfy_host.import_comfyui(COMFY_PATH)


@pytest.fixture(scope="session")
def pack(comfy_nodes):
    """This pack, loaded through ComfyUI's own custom-node loader."""
    return comfy_host.load_pack()


@pytest.fixture(scope="module")
def cache_node(comfy_nodes, pack):
    """The Diffusion Cache node class, as ComfyUI registered it."""
    return comfy_nodes.NODE_CLASS_MAPPINGS["DiffusionCache"]


@pytest.fixture(scope="module")
def get_tiny(comfy_nodes, tiny_dir):
    """``get_tiny(arch)``: the tiny instance of ``arch`` (tests/host/tiny_archs.py), built once per session."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_archs
    return lambda arch: tiny_archs.build(arch, tiny_dir)


@pytest.fixture(scope="module")
def build(comfy_nodes, pack):
    """``build(model, **inputs)``: the Diffusion Cache node's model, as ``build_cached_model`` makes it."""
    return pack.nodes.cache_node.build_cached_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """One folder for the tiny architecture instances of the whole session."""
    return tmp_path_factory.mktemp("tiny_archs")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Host tests run torch on one thread: steadier timing on small CPUs, same results."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
