"""Find and import a real ComfyUI, the way users have it installed.

Search order:
  1. the ``COMFYUI_PATH`` environment variable;
  2. the ComfyUI whose ``custom_nodes/`` folder holds this checkout;
  3. ``~/comfy/ComfyUI`` (comfy-cli's default workspace);
  4. ``<repo>/.comfyui``: a clone of the pinned release, made by ``ensure_comfyui()``
     when the network allows it.

Nothing here fakes ComfyUI: callers that find none skip with the reason given.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PINNED_VERSION = "v0.3.64"
PINNED_URL = "https://github.com/comfyanonymous/ComfyUI.git"
LOCAL_CLONE = REPO_ROOT / ".comfyui"


def _is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "nodes.py").is_file()


def candidate_paths() -> list[Path]:
    found = []
    env = os.environ.get("COMFYUI_PATH")
    if env:
        found.append(Path(env).expanduser())
    if REPO_ROOT.parent.name == "custom_nodes":
        found.append(REPO_ROOT.parent.parent)
    found.append(Path.home() / "comfy" / "ComfyUI")
    found.append(LOCAL_CLONE)
    return found


def find_comfyui() -> Path | None:
    """Return the first real ComfyUI checkout in the search order, or None."""
    for path in candidate_paths():
        if _is_comfyui(path):
            return path.resolve()
    return None


def ensure_comfyui() -> Path:
    """Find ComfyUI, or clone the pinned release into ``.comfyui`` if none is found."""
    path = find_comfyui()
    if path is not None:
        return path
    print(f"No ComfyUI found; cloning {PINNED_VERSION} into {LOCAL_CLONE} ...", flush=True)
    result = subprocess.run(
        ["git", "clone", "--depth", "1", "--branch", PINNED_VERSION, PINNED_URL, str(LOCAL_CLONE)],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not _is_comfyui(LOCAL_CLONE):
        raise RuntimeError(
            "ComfyUI was not found and could not be cloned.\n"
            "Set COMFYUI_PATH to your ComfyUI folder, or put this pack in ComfyUI/custom_nodes/.\n"
            f"git said: {result.stderr.strip()[-400:]}"
        )
    return LOCAL_CLONE


def why_not_found() -> str:
    tried = "\n".join(f"  - {p}" for p in candidate_paths())
    return ("No real ComfyUI found. Set COMFYUI_PATH, install this pack into ComfyUI/custom_nodes, "
            "or run scripts/setup.sh. Looked in:\n" + tried)


_PACK = None


def import_comfyui(path: Path | None = None, cpu: bool | None = None):
    """Put ComfyUI on sys.path and import it in-process (CPU unless a GPU is present).

    Returns the ComfyUI ``nodes`` module with its built-in extra nodes loaded.
    """
    path = path or find_comfyui()
    if path is None:
        raise RuntimeError(why_not_found())
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    if cpu is None:
        import torch
        cpu = not torch.cuda.is_available()
    if cpu:
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (must follow the cpu flag)
    import nodes
    if "EasyCache" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    return nodes


def load_pack():
    """Load this checkout through ComfyUI's own custom-node loader; return the module."""
    global _PACK
    if _PACK is not None:
        return _PACK
    nodes = import_comfyui()
    before = set(nodes.NODE_CLASS_MAPPINGS)
    ok = asyncio.run(nodes.load_custom_node(str(REPO_ROOT)))
    if not ok:
        raise RuntimeError("ComfyUI failed to load this pack; see the log above.")
    module_name = str(REPO_ROOT).replace(".", "_x_")
    _PACK = sys.modules[module_name]
    _PACK.registered_nodes = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
    return _PACK
