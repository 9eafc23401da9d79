#!/usr/bin/env python
"""Run the test suites once per ComfyUI version found, then print a per-version summary.

    python scripts/run_suites.py [pytest arguments]     # scripts/run_tests.sh sets up first, then runs this

* ``tests/core`` needs no ComfyUI: it runs once, in the base environment (``.venv``).
* ``tests/host`` and ``tests/web`` import ComfyUI in-process, so they run in one pytest
  process per ComfyUI found (``scripts/comfy_host.py``), with that version's own
  environment (``.venv/comfyui-<version>``, made by ``scripts/setup.sh``) and
  ``DIFFUSION_CACHE_COMFYUI`` pointing the process at that ComfyUI.
* The browser test runs once more per newer frontend that setup.sh installed into
  ``.venv/frontends/<version>``, served by the newest ComfyUI found (``--front-end-root``).
* A tested version that is not found gets a ``NOT FOUND`` line; with no ComfyUI at all
  the host and web suites still run once and skip, saying why.

Environment: ``DIFFUSION_CACHE_SUITES`` (default ``core,host,web``) picks suites;
``DIFFUSION_CACHE_COMFYUI`` set by the caller tests that one ComfyUI only;
``DIFFUSION_CACHE_VENV`` is the base environment. The pytest arguments (``-x``,
``-k EXPR``, ...) go to every process. Exits non-zero when any suite failed.
Only the standard library is used.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_host  # noqa: E402

ROOT = comfy_host.REPO_ROOT
VENV = Path(os.environ.get("DIFFUSION_CACHE_VENV") or ROOT / ".venv")
SUITES = ("core", "host", "web")
NO_TESTS = 5                 # pytest's exit status when -k / -m selected nothing


def shown(path) -> str:
    """A path as the summary prints it: relative to the repository, or with ~ for home
    (symlinks such as a venv's python are kept, not followed)."""
    path = Path(os.path.abspath(path))
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT)) or "."
    if path.is_relative_to(Path.home()):
        return "~/" + str(path.relative_to(Path.home()))
    return str(path)


def base_python() -> Path:
    py = VENV / "bin" / "python"
    return py if py.exists() else Path(sys.executable)


def env_python(version: str | None) -> Path:
    return VENV / f"comfyui-{version or 'unknown'}" / "bin" / "python"


def count(junit: Path) -> dict[str, dict[str, int]]:
    """{suite: {passed, failed, errors, skipped}} from a pytest junit XML file."""
    out = {}
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return out
    for case in root.iter("testcase"):
        # a collection error has no classname; its name is the module ("tests.host.test_x")
        parts = (case.get("classname") or case.get("name") or "").replace("/", ".").split(".")
        suite = parts[1] if len(parts) > 1 and parts[0] == "tests" else "other"
        c = out.setdefault(suite, {"passed": 0, "failed": 0, "errors": 0, "skipped": 0})
        tags = {child.tag for child in case}
        if "failure" in tags:
            c["failed"] += 1
        elif "error" in tags:
            c["errors"] += 1
        elif "skipped" in tags:
            c["skipped"] += 1
        else:
            c["passed"] += 1
    return out


def fmt(c: dict[str, int]) -> str:
    text = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
    return text + (f", {c['errors']} errors" if c["errors"] else "")


def total(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    t = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for c in counts.values():
        for k in t:
            t[k] += c[k]
    return t


def run_pytest(label: str, python: Path, paths: list[str], args: list[str], env: dict, junit: Path) -> dict:
    cmd = [str(python), "-m", "pytest", *paths, "-q", f"--junitxml={junit}", *args]
    print(f"\n{'=' * 20} {label}: {' '.join(paths)} with {shown(python)} {'=' * 20}", flush=True)
    started = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    seconds = time.monotonic() - started
    counts = count(junit)
    ok = rc in (0, NO_TESTS) and not any(c["failed"] or c["errors"] for c in counts.values())
    return {"label": label, "rc": rc, "seconds": seconds, "counts": counts, "ok": ok}


def main(argv: list[str]) -> int:
    suites = [s.strip() for s in os.environ.get("DIFFUSION_CACHE_SUITES", ",".join(SUITES)).split(",") if s.strip()]
    unknown = set(suites) - set(SUITES)
    if unknown:
        print(f"DIFFUSION_CACHE_SUITES: unknown suite(s) {sorted(unknown)}; choose from {SUITES}", file=sys.stderr)
        return 2
    comfy_suites = [f"tests/{s}" for s in ("host", "web") if s in suites]
    base_env = dict(os.environ)
    base_env.pop("DIFFUSION_CACHE_COMFYUI", None)
    scratch = Path(tempfile.mkdtemp(prefix="diffusion_cache_tests_"))
    results, lines = [], []

    if "core" in suites:
        r = run_pytest("core (no ComfyUI)", base_python(), ["tests/core"], argv, base_env, scratch / "core.xml")
        results.append(r)
        lines.append((r, f"core (no ComfyUI), {shown(base_python())}"))

    chosen = os.environ.get("DIFFUSION_CACHE_COMFYUI", "").strip()
    if chosen:
        path = comfy_host.find_comfyui()
        installs = [comfy_host.Install(path, comfy_host.comfyui_version(path), "DIFFUSION_CACHE_COMFYUI")] \
            if path else []
    else:
        installs = comfy_host.find_all()
    not_found = []
    if comfy_suites:
        for inst in installs:
            label = f"ComfyUI {inst.version or '(unknown version)'}"
            python = env_python(inst.version)
            where = f"{label} at {shown(inst.path)}"
            if inst.version not in comfy_host.TESTED_VERSIONS:
                where += " (not a tested version)"
            if not python.exists():
                r = {"label": label, "rc": None, "seconds": 0.0, "counts": {}, "ok": False}
                results.append(r)
                lines.append((r, f"{where}: NO ENVIRONMENT {shown(python.parent.parent)} "
                                 "(run scripts/setup.sh)"))
                continue
            env = dict(base_env, DIFFUSION_CACHE_COMFYUI=str(inst.path))
            r = run_pytest(label, python, comfy_suites, argv, env,
                           scratch / f"comfyui-{inst.version or 'unknown'}-{len(results)}.xml")
            results.append(r)
            lines.append((r, f"{where}, {shown(python)}"))
        newest = max(installs, key=lambda i: comfy_host.version_key(i.version)) if installs else None
        if "web" in suites and newest is not None and env_python(newest.version).exists():
            # newer frontends (setup.sh puts them in .venv/frontends/<version>), with the newest ComfyUI
            for root in sorted((VENV / "frontends").glob("*/comfyui_frontend_package/static")):
                fv = root.parent.parent.name
                label = f"ComfyUI {newest.version} + frontend {fv}"
                env = dict(base_env, DIFFUSION_CACHE_COMFYUI=str(newest.path), DIFFUSION_CACHE_FRONTEND_ROOT=str(root))
                r = run_pytest(label, env_python(newest.version), ["tests/web/test_browser.py"], argv, env,
                               scratch / f"frontend-{fv}.xml")
                results.append(r)
                lines.append((r, f"{label} (browser test, --front-end-root {shown(root)})"))
        if not installs:
            # nothing to point at: the suites run once and skip, saying why
            env = dict(base_env, **({"DIFFUSION_CACHE_COMFYUI": chosen} if chosen else {}))
            r = run_pytest("no ComfyUI found", base_python(), comfy_suites, argv, env, scratch / "none.xml")
            results.append(r)
            lines.append((r, "host/web without ComfyUI (skipped)"))
        if not chosen:
            not_found = comfy_host.missing_tested_versions(installs)

    print(f"\n{'=' * 25} summary, per ComfyUI version {'=' * 25}")
    for r, head in lines:
        if r["rc"] is None:
            print(f"FAILED  {head}")
            continue
        suites_text = "; ".join(f"{s} {fmt(c)}" for s, c in sorted(r["counts"].items()))
        status = "ok    " if r["ok"] else "FAILED"
        extra = "" if r["counts"] else f"no test report (pytest exit {r['rc']})"
        rc_note = f" (pytest exit {r['rc']})" if not r["ok"] and r["counts"] and r["rc"] not in (0, 1) else ""
        print(f"{status}  {head}: {fmt(total(r['counts'])) if r['counts'] else extra} "
              f"[{suites_text}] {r['seconds']:.0f} s{rc_note}")
    looked = "; ".join(f"{shown(p)} ({src})" for p, src in comfy_host.candidate_paths())
    for version in not_found:
        print(f"NOT FOUND: ComfyUI {version} (a tested version) - looked in: {looked}. "
              f"Set COMFYUI_PATH to test it.")
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
