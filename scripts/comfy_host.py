"""Find and import real ComfyUI checkouts, the way users have them installed.

Several ComfyUIs can be found; every one of them is a candidate, in this order:
  1. the ``COMFYUI_PATH`` environment variable (one folder, or several separated by ``os.pathsep``);
  2. the ComfyUI whose ``custom_nodes/`` folder holds this checkout;
  3. ``~/comfy/ComfyUI`` (comfy-cli's default workspace) and ``~/comfy/ComfyUI-0.33``;
  4. ``<repo>/.comfyui``: a clone of the newest tested release, made by ``ensure_comfyui()``
     when nothing else is found and the network allows it.

One process imports one ComfyUI. ``find_comfyui()`` picks it:
  * ``DIFFUSION_CACHE_COMFYUI`` names exactly one (``scripts/run_tests.sh`` sets it for each
    test process); if it is not a ComfyUI, none is found (no silent fallback);
  * else, if ``COMFYUI_PATH`` is set, the newest ComfyUI it names;
  * else, in a per-version environment made by ``scripts/setup.sh``, the ComfyUI it was made for;
  * else the newest ComfyUI found.

Nothing here fakes ComfyUI: callers that find none skip with the reason given.
Run ``python scripts/comfy_host.py list`` to see what is found. Only the standard
library is imported at module level, so the base environment can run it before
any ComfyUI requirement is installed.
"""
from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTED_VERSIONS = ("0.3.64", "0.33.0")
PINNED_VERSION = "v" + TESTED_VERSIONS[-1]          # the clone made when no ComfyUI is found
PINNED_URL = "https://github.com/comfyanonymous/ComfyUI.git"
LOCAL_CLONE = REPO_ROOT / ".comfyui"
DOCUMENTED_PLACES = (Path("~/comfy/ComfyUI"), Path("~/comfy/ComfyUI-0.33"))
ENV_ONE = "DIFFUSION_CACHE_COMFYUI"
ENV_LIST = "COMFYUI_PATH"
VENV_MARKER = "diffusion_cache_comfyui"            # in a per-version environment: the ComfyUI it serves


class Install(NamedTuple):
    path: Path
    version: str | None
    source: str


def _is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "nodes.py").is_file()


def comfyui_version(path: Path) -> str | None:
    """The version of the ComfyUI at ``path``: ``comfyui_version.py``, else ``pyproject.toml``."""
    path = Path(path)
    for name, pattern in (("comfyui_version.py", r"""^__version__\s*=\s*["']([^"']+)["']"""),
                          ("pyproject.toml", r"""^version\s*=\s*["']([^"']+)["']""")):
        try:
            text = (path / name).read_text(errors="replace")
        except OSError:
            continue
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def version_key(version: str | None) -> tuple:
    """Sortable form of a version string ("0.3.64" < "0.33.0"); unknown versions sort first."""
    if not version:
        return (-1,)
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def _env_list(name: str) -> list[Path]:
    value = os.environ.get(name, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def candidate_paths() -> list[tuple[Path, str]]:
    """Every place looked in, with where it came from, in search order."""
    found = [(p, ENV_LIST) for p in _env_list(ENV_LIST)]
    if REPO_ROOT.parent.name == "custom_nodes":
        found.append((REPO_ROOT.parent.parent, "the ComfyUI holding this checkout"))
    found += [(p.expanduser(), "documented place") for p in DOCUMENTED_PLACES]
    found.append((LOCAL_CLONE, "local clone"))
    return found


def find_all() -> list[Install]:
    """Every real ComfyUI found, in search order, each once."""
    seen, out = set(), []
    for path, source in candidate_paths():
        if not _is_comfyui(path):
            continue
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        out.append(Install(real, comfyui_version(real), source))
    return out


def _newest(installs: list[Install]) -> Install | None:
    return max(installs, key=lambda i: version_key(i.version)) if installs else None


def venv_comfyui() -> Path | None:
    """The ComfyUI this Python's environment was made for by setup.sh, or None."""
    try:
        text = (Path(sys.prefix) / VENV_MARKER).read_text().strip()
    except OSError:
        return None
    return Path(text) if text and _is_comfyui(Path(text)) else None


def find_comfyui() -> Path | None:
    """The one ComfyUI this process should use (see the module's docstring), or None."""
    one = os.environ.get(ENV_ONE, "").strip()
    if one:
        path = Path(one).expanduser()
        return path.resolve() if _is_comfyui(path) else None
    listed = [p for p in _env_list(ENV_LIST) if _is_comfyui(p)]
    if listed:
        return _newest([Install(p.resolve(), comfyui_version(p), ENV_LIST) for p in listed]).path
    mine = venv_comfyui()
    if mine is not None:
        return mine.resolve()
    newest = _newest(find_all())
    return newest.path if newest else None


def describe(path: Path | None) -> str:
    """``ComfyUI 0.33.0 at <path>`` (or the reason none is found)."""
    if path is None:
        return why_not_found()
    return f"ComfyUI {comfyui_version(path) or '(unknown version)'} at {path}"


def ensure_comfyui() -> Path:
    """Find ComfyUI, or clone the newest tested release into ``.comfyui`` if none is found."""
    path = find_comfyui()
    if path is not None:
        return path
    print(f"No ComfyUI found; cloning {PINNED_VERSION} into {LOCAL_CLONE} ...", file=sys.stderr, flush=True)
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


def looked_in() -> str:
    return "\n".join(f"  - {p} ({source})" for p, source in candidate_paths())


def why_not_found() -> str:
    one = os.environ.get(ENV_ONE, "").strip()
    if one:
        return f"{ENV_ONE}={one} is not a ComfyUI folder (no comfy/model_patcher.py and nodes.py there)."
    return ("No real ComfyUI found. Set COMFYUI_PATH, install this pack into ComfyUI/custom_nodes, "
            "or run scripts/setup.sh. Looked in:\n" + looked_in())


def missing_tested_versions(installs: list[Install] | None = None) -> list[str]:
    """The tested versions of which no ComfyUI was found."""
    installs = find_all() if installs is None else installs
    have = {i.version for i in installs}
    return [v for v in TESTED_VERSIONS if v not in have]


# ------------------------------------------------------------------ what a version needs

_CORE_ENTRY_POINTS = ("nodes.py", "execution.py", "server.py", "comfy/sd.py")


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _top_level_imports(path: Path, root: Path) -> list[str]:
    """Modules imported unconditionally at the top of ``path`` (not in try/if/def)."""
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (OSError, SyntaxError):
        return []
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(package) - (node.level - 1)
                if keep < 0:
                    continue
                base = ".".join(package[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.append(base)
            names += [f"{base}.{a.name}" if base else a.name for a in node.names]
    return names


def core_imports(path: Path, module: str) -> bool:
    """Does importing ComfyUI's core (nodes, execution, server, comfy.sd) import ``module``?

    Follows the unconditional top-level imports inside the ComfyUI checkout; an import
    guarded by try/except is optional and does not count.
    """
    root = Path(path).resolve()
    todo = [root / p for p in _CORE_ENTRY_POINTS if (root / p).is_file()]
    seen = set()
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for name in _top_level_imports(file, root):
            if name == module or name.startswith(module + "."):
                return True
            parts = name.split(".")
            for i in range(1, len(parts) + 1):      # a package's __init__ runs before its modules
                target = _module_file(root, ".".join(parts[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return False


def requirements(path: Path) -> list[str]:
    """ComfyUI's requirements.txt without torch, torchvision and torchaudio (shared or chosen by setup.sh)."""
    try:
        lines = (Path(path) / "requirements.txt").read_text().splitlines()
    except OSError:
        return []
    keep = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name = re.split(r"[\s<>=!~;\[]", text, maxsplit=1)[0].lower()
        if name in ("torch", "torchvision", "torchaudio"):
            continue
        keep.append(text)
    return keep


# ------------------------------------------------------------------ importing one ComfyUI

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
    importlib.import_module(module_name + ".nodes.compat")     # pack.nodes.compat: the version differences
    return _PACK


def compat():
    """The pack's ``nodes.compat`` module (ComfyUI's version differences), as the loader loaded it."""
    return load_pack().nodes.compat


# ------------------------------------------------------------------ command line (setup.sh, run_tests.sh)

def _main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "list"
    if cmd == "list":                    # version<TAB>path<TAB>source, one line per ComfyUI found
        for i in find_all():
            print(f"{i.version or 'unknown'}\t{i.path}\t{i.source}")
    elif cmd == "ensure":                # the ComfyUIs to set up, cloning one if none is found
        installs = find_all()
        if not installs:
            try:
                ensure_comfyui()
            except RuntimeError as e:
                print(str(e), file=sys.stderr)
                return 1
            installs = find_all()
        for i in installs:
            print(f"{i.version or 'unknown'}\t{i.path}\t{i.source}")
    elif cmd == "missing":               # the tested versions not found
        for v in missing_tested_versions():
            print(v)
    elif cmd == "looked-in":
        print(looked_in())
    elif cmd == "requirements":          # comfy_host.py requirements PATH
        print("\n".join(requirements(Path(argv[1]))))
    elif cmd == "needs":                 # comfy_host.py needs PATH MODULE: exit 0 if the core imports it
        return 0 if core_imports(Path(argv[1]), argv[2]) else 1
    elif cmd in ("find", "pick"):        # the ComfyUI this process would use; pick: version<TAB>path
        path = find_comfyui()
        if path is None:
            print(why_not_found(), file=sys.stderr)
            return 1
        print(f"{comfyui_version(path) or 'unknown'}\t{path}" if cmd == "pick" else path)
    else:
        print(f"unknown command {cmd!r}: list | ensure | missing | looked-in | requirements PATH | "
              "needs PATH MODULE | find | pick", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
