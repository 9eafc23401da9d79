"""The timeline widget in a real headless Chromium, against a real ComfyUI server.

One ComfyUI server (this checkout linked into a temporary custom_nodes folder) and one
browser session (tests/web/e2e.mjs, playwright-core) serve every test in this module:

* every UI workflow in workflows/ loads in the frontend with no missing node type, and
  its widget values survive the load unchanged and match /object_info;
* the tiny Flux demo (workflows/tiny_flux_demo.json, or the same kind of graph built
  from /object_info when that file is missing or out of step with the nodes), queued
  from the UI, draws a timeline whose cells are exactly the decisions
  GET /diffusion_cache/runs recorded, and it was drawn while sampling ran;
* after a page reload the widget shows the same run again, from the stored runs;
* a cache node moved into a subgraph gets its events (sent with the subgraph path id);
* two samplers sharing one cached model give two runs, S1 and S2, under one node;
* the Diffusion Cache Compare workflow (workflows/tiny_flux_compare.json, or the same graph
  built from /object_info), queued from the UI, shows on its node the PSNR, SSIM and speedup
  that the server computed (its ui output in GET /history);
* the Diffusion Cache node shows only the chosen method's inputs (GET /diffusion_cache/methods,
  the registry's ``ui_description()``), each with that method's tooltip, laid out without gaps;
  its "advanced inputs" toggle shows the rest; picking methods from the method widget's menu
  keeps the values of hidden inputs, which the workflow saves and the prompt sends; the saved
  graph loads again as it was (values, method, toggle) and runs;
* the browser logged no errors (network 404s of optional files are not errors of ours);
* a screenshot of the two-sampler timeline is written to out/web/timeline-<ComfyUI version>.png
  (or to $DIFFUSION_CACHE_SCREENSHOT; the README's docs/timeline.png is made that way).

The server is the ComfyUI that ``comfy_host.find_comfyui()`` picks (scripts/run_tests.sh
points each process at one version), run by this Python, so it serves the frontend pinned
by that version's requirements, installed in its environment. ``DIFFUSION_CACHE_FRONTEND_ROOT``
(a frontend package's ``static`` folder) serves another frontend instead, through ComfyUI's
``--front-end-root``.

Skips with the reason when Chromium, Node.js, playwright-core (``npm ci``), ComfyUI,
the server's Python dependencies or the tiny model weights are missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(HERE))
import comfy_host  # noqa: E402
from make_workflows import tiny_flux_compare, tiny_flux_fixture, tiny_flux_two_stage_fixture, widget_layout  # noqa: E402

FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
DEMO = REPO / "workflows" / "tiny_flux_demo.json"
COMPARE = REPO / "workflows" / "tiny_flux_compare.json"
TINY_MODEL = "flux_tiny"
FRONTEND_ROOT = os.environ.get("DIFFUSION_CACHE_FRONTEND_ROOT", "").strip() or None
SERVER_START_S = 180
E2E_TIMEOUT_S = 240


def frontend_version() -> str | None:
    """The version of the frontend the server will serve: the package beside
    ``$DIFFUSION_CACHE_FRONTEND_ROOT``, else the one installed for this Python."""
    from importlib import metadata
    try:
        if FRONTEND_ROOT:
            # <target>/comfyui_frontend_package/static -> <target>/comfyui_frontend_package-X.dist-info
            found = list(metadata.distributions(name="comfyui-frontend-package",
                                                path=[str(Path(FRONTEND_ROOT).resolve().parent.parent)]))
            return found[0].version if found else None
        return metadata.version("comfyui-frontend-package")
    except metadata.PackageNotFoundError:
        return None


def _screenshot_path() -> Path:
    env = os.environ.get("DIFFUSION_CACHE_SCREENSHOT")
    if env:
        return Path(env)
    comfy = comfy_host.find_comfyui()
    version = (comfy_host.comfyui_version(comfy) if comfy else None) or "unknown"
    front = f"-frontend-{frontend_version()}" if FRONTEND_ROOT else ""
    return REPO / "out" / "web" / f"timeline-{version}{front}.png"


SCREENSHOT = _screenshot_path()
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.InstalledVersion": frontend_version() or "1.27.10",   # no "what's new" over the canvas
    "Comfy.Canvas.NavigationMode": "legacy",
    "Comfy.Canvas.LeftMouseClickBehavior": "panning",
    "Comfy.Canvas.MouseWheelScroll": "zoom",
    "Comfy.Notification.ShowVersionUpdates": False,
    "Comfy.Graph.CanvasInfo": False,
}


def _chromium() -> str | None:
    env = os.environ.get("DIFFUSION_CACHE_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing_tools() -> str | None:
    if _chromium() is None:
        return "Chromium not found (apt-get install -y chromium, or set DIFFUSION_CACHE_CHROMIUM)"
    node = shutil.which("node")
    if node is None:
        return "Node.js not found (node >= 18 is needed for the browser test)"
    if not (REPO / "node_modules" / "playwright-core" / "package.json").is_file():
        return "playwright-core is not installed (run `npm ci` in the repository root)"
    if comfy_host.find_comfyui() is None:
        return "no real ComfyUI found: " + comfy_host.why_not_found()
    if FRONTEND_ROOT and not (Path(FRONTEND_ROOT) / "index.html").is_file():
        return f"DIFFUSION_CACHE_FRONTEND_ROOT={FRONTEND_ROOT} holds no frontend (no index.html)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def server():
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    comfy = comfy_host.find_comfyui()
    base = Path(tempfile.mkdtemp(prefix="dc-web-"))
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "diffusion_cache").symlink_to(REPO, target_is_directory=True)
    user = base / "user" / "default"
    for sub in ("workflows", "subgraphs"):
        (user / sub).mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps(SETTINGS))
    (user / "user.css").write_text("")
    port = _free_port()
    log_path = base / "server.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-auto-launch", "--disable-api-nodes",
           "--database-url", "sqlite:///:memory:"]
    if FRONTEND_ROOT:
        cmd += ["--front-end-root", str(Path(FRONTEND_ROOT).resolve())]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=comfy, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                text = log_path.read_text(errors="replace")
                if "ModuleNotFoundError" in text:
                    missing = [ln for ln in text.splitlines() if "ModuleNotFoundError" in ln][-1]
                    pytest.skip(f"the ComfyUI server cannot start in this environment: {missing.strip()}")
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{text[-3000:]}")
            try:
                info = _get_json(url + "/object_info", timeout=30)
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer within {SERVER_START_S}s:\n"
                                f"{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(1)
        if "DiffusionCache" not in info:
            pytest.fail("the Diffusion Cache pack did not load:\n" + log_path.read_text(errors="replace")[-3000:])
        if FRONTEND_ROOT:
            web_root = [ln for ln in log_path.read_text(errors="replace").splitlines() if "web root:" in ln]
            assert web_root and str(Path(FRONTEND_ROOT).resolve()) in web_root[-1], \
                f"ComfyUI does not serve the frontend in {FRONTEND_ROOT}: {web_root}"
        yield {"url": url, "object_info": info, "base": base, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def _run_ready(info) -> str | None:
    names = info.get("DiffusionCacheTinyModelLoader", {}).get("input", {}).get("required", {}) \
        .get("model_name", [[]])
    options = names[0] if isinstance(names[0], list) else names[1].get("options", [])
    if TINY_MODEL not in options:
        return f"the tiny model {TINY_MODEL!r} is not in models/tiny/ (train it with scripts/train_tiny.py)"
    return None


def _matches_nodes(path: Path, info: dict) -> bool:
    """Does a UI workflow exist, and do its widget values fit the nodes' inputs?"""
    if not path.is_file():
        return False
    wf = json.loads(path.read_text())
    return all(n["type"] in FRONTEND_ONLY or
               (n["type"] in info and len(n.get("widgets_values", [])) == len(widget_layout(info, n["type"])))
               for n in wf.get("nodes", []))


@pytest.fixture(scope="module")
def report(server):
    out = server["base"] / "report.json"
    shot = server["base"] / "timeline.png"
    cmd = ["node", str(HERE / "e2e.mjs"), "--url", server["url"], "--chromium", _chromium(),
           "--workflows", str(REPO / "workflows"), "--report", str(out), "--timeout", "120"]
    skip_run = _run_ready(server["object_info"])
    if skip_run:
        cmd.append("--no-run")
    else:
        demo = DEMO
        if not _matches_nodes(demo, server["object_info"]):
            # no demo yet, or one out of step with the nodes (test_every_workflow_loads... says so):
            # the same kind of graph, built for this server
            demo = server["base"] / "tiny_flux_fixture.json"
            demo.write_text(json.dumps(tiny_flux_fixture(server["object_info"]).to_json()))
        two_stage = server["base"] / "two_stage_fixture.json"
        two_stage.write_text(json.dumps(tiny_flux_two_stage_fixture(server["object_info"]).to_json()))
        compare = COMPARE
        if not _matches_nodes(compare, server["object_info"]):
            compare = server["base"] / "tiny_flux_compare.json"
            compare.write_text(json.dumps(tiny_flux_compare(server["object_info"]).to_json()))
        cmd += ["--demo", str(demo), "--two-stage", str(two_stage), "--screenshot", str(shot),
                "--compare", str(compare)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=E2E_TIMEOUT_S)
    elapsed = time.monotonic() - started
    if not out.is_file():
        pytest.fail(f"e2e.mjs wrote no report (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    data = json.loads(out.read_text())
    data["skip_run"] = skip_run
    data["demo"] = cmd[cmd.index("--demo") + 1] if "--demo" in cmd else None
    data["elapsed"] = elapsed
    data["stderr"] = proc.stderr
    if shot.is_file():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    print(f"browser session: {comfy_host.describe(comfy_host.find_comfyui())}, frontend "
          f"{frontend_version() or '(unknown version)'}{' from ' + FRONTEND_ROOT if FRONTEND_ROOT else ''}; "
          f"{elapsed:.1f}s on {data['demo']}; phases: {data.get('timings')}")
    return data


def _needs_run(report):
    if report["skip_run"]:
        pytest.skip(report["skip_run"])
    assert not report.get("error"), report["error"] + "\n" + report["stderr"][-3000:]


# ---- what the server recorded, computed independently of the widget's code ------------------

def _branch_key(b):
    return ({"cond": 0, "uncond": 1}.get(b, 2), b)


def expected_rows(entries):
    """[(run, branch, [state per step]), ...] for the runs of the newest prompt."""
    entries = sorted(entries, key=lambda e: e.get("started") or 0)
    last = entries[-1]
    group = [e for e in entries if e.get("prompt") == last.get("prompt")] if last.get("prompt") else [last]
    rows = []
    for e in group:
        recs = e["records"]
        total = max([e.get("total") or 0] + [r["step"] + 1 for r in recs])
        branches = sorted({b for r in recs for b in (r.get("branches") or ["model"])}, key=_branch_key)
        for b in branches:
            cells = ["pending"] * total
            for r in recs:
                if b in (r.get("branches") or ["model"]) and (r["stage"] == 0 or cells[r["step"]] == "pending"):
                    cells[r["step"]] = r["decision"]
            rows.append((str(e["run"]), b, cells))
    return rows


def expected_summary(entries):
    entries = sorted(entries, key=lambda e: e.get("started") or 0)
    last = entries[-1]
    group = [e for e in entries if e.get("prompt") == last.get("prompt")] if last.get("prompt") else [last]
    recs = [r for e in group for r in e["records"]]
    computed = sum(r["decision"] == "computed" for r in recs)
    total_blocks = sum(r["blocks_total"] for r in recs)
    done_blocks = sum(r["blocks_computed"] for r in recs)
    speedup = float("inf") if done_blocks == 0 and total_blocks else (total_blocks / done_blocks if total_blocks else 1.0)
    s = "∞" if speedup == float("inf") else f"{speedup:.2f}x"
    return f"{computed}/{len(recs)} computed · {s}", speedup


def widget_rows(widget):
    return [(r["run"], r["branch"], r["cells"]) for r in widget["rows"]]


# ---- tests ----------------------------------------------------------------------------------

def test_every_workflow_loads_without_missing_nodes(server, report):
    assert not report.get("error"), report["error"]
    info = server["object_info"]
    files = sorted(p for p in (REPO / "workflows").glob("*.json"))
    ui_files = [p for p in files if isinstance(json.loads(p.read_text()).get("nodes"), list)]
    assert ui_files, "no UI workflows in workflows/"
    problems = []
    for path in ui_files:
        wf = json.loads(path.read_text())
        loaded = report["workflows"].get(path.name)
        if loaded is None:
            problems.append(f"{path.name}: not loaded in the browser")
            continue
        if loaded["missing"] or loaded["unregistered"]:
            problems.append(f"{path.name}: missing node types {loaded['missing'] or loaded['unregistered']}")
        if (loaded["loaded_nodes"], loaded["loaded_links"]) != (loaded["nodes"], loaded["links"]):
            problems.append(f"{path.name}: {loaded['loaded_nodes']}/{loaded['nodes']} nodes and "
                            f"{loaded['loaded_links']}/{loaded['links']} links after loading")
        for n in wf["nodes"]:
            if n["type"] in FRONTEND_ONLY:
                continue
            if n["type"] not in info:
                problems.append(f"{path.name}: {n['type']} is not a node of this ComfyUI")
                continue
            layout = widget_layout(info, n["type"])
            if len(n.get("widgets_values", [])) != len(layout):
                problems.append(f"{path.name}: node {n['id']} ({n['type']}) has {len(n.get('widgets_values', []))} "
                                f"widget values for {len(layout)} widgets {layout}")
        for rt in loaded["roundTrip"]:
            if (rt["loaded"] or []) != (rt["file"] or []):     # newer frontends drop an empty list
                problems.append(f"{path.name}: node {rt['id']} ({rt['type']}) widget values changed on load: "
                                f"{rt['file']} -> {rt['loaded']}")
            if rt["links_in"] != rt["links_file"]:
                problems.append(f"{path.name}: node {rt['id']} ({rt['type']}) lost input links on load")
        if not all(loaded["timelines"]):
            problems.append(f"{path.name}: a Diffusion Cache node has no timeline widget")
    assert not problems, ("workflows out of step with the nodes (regenerate the examples with "
                          "`python tests/web/make_workflows.py --server URL`):\n" + "\n".join(problems))


def test_timeline_shows_the_recorded_decisions(report):
    _needs_run(report)
    assert report["run_result"] and not (isinstance(report["run_result"], dict) and "error" in report["run_result"]), \
        report["run_result"]
    node = report["cache_node_id"]
    entries = report["server_runs"]["nodes"].get(node)
    assert entries, f"GET /diffusion_cache/runs has no run for node {node}: {report['server_runs']}"
    assert all(e["done"] and e["summary"] for e in entries)
    widget = report["widget_live"]
    assert widget is not None and widget["visible"], "the timeline widget is not on the page"
    rows = expected_rows(entries)
    assert widget_rows(widget) == rows
    assert any(s != "pending" for _, _, cells in rows for s in cells)
    text, speedup = expected_summary(entries)
    assert widget["summary"] == text
    summary = entries[-1]["summary"]
    assert abs(summary["estimated_speedup"] - speedup) < 0.01
    assert summary["computed"] + summary["reused"] + summary["forecast"] == summary["evaluations"]
    # every step event reached the page, and the widget was drawn while the sampler ran
    assert report["step_events"] == sum(len(e["records"]) for e in entries)
    final = sum(len(c) for _, _, c in rows)
    partial = [s for s in report["snapshots"] if s["cells"] and 0 < s["done"] < final]
    assert partial, f"the timeline was not drawn during sampling: {report['snapshots'][-5:]}"
    # block-level method: a heat map per run, one row per block of the mask
    masks = [r["block_mask"] for e in entries for r in e["records"] if r.get("block_mask")]
    if masks:
        assert widget["heat"] and int(widget["heat"][0]["blocks"]) == len(masks[0])


def test_timeline_after_reload_shows_the_stored_run(report):
    _needs_run(report)
    node = report["cache_node_id"]
    entries = report["server_runs"]["nodes"][node]
    widget = report["widget_reloaded"]
    assert widget is not None and widget["visible"], "no timeline after the reload"
    assert widget_rows(widget) == expected_rows(entries)
    assert widget["summary"] == expected_summary(entries)[0]


def test_timeline_inside_a_subgraph(report):
    _needs_run(report)
    sub = report["subgraph"]
    ids = sub["event_nodes"]
    assert ids == [f"{sub['holder']}:{sub['inner']}"], f"unexpected event ids {ids} for a node in a subgraph"
    entries = sub["server_runs"]["nodes"][ids[0]]
    assert sub["widget"] is not None, "the node inside the subgraph shows no timeline"
    assert widget_rows(sub["widget"]) == expected_rows(entries)


# console.error lines the ComfyUI frontends print by themselves in this test: 1.27 on graph
# reloads; 1.49 and later when a settings value is computed before the graph exists
FRONTEND_NOISE = ("Attempted to cleanup event listeners for graph that was never set up",
                  "ComfyApp graph accessed before initialization")
# a URL of another host than the test server (newer frontends fetch model metadata from the web)
EXTERNAL_URL = re.compile(r"https?://(?!127\.0\.0\.1[:/]|localhost[:/])")


def test_two_samplers_sharing_one_cached_model(report):
    _needs_run(report)
    two = report["two_stage"]
    assert two["result"] and not (isinstance(two["result"], dict) and "error" in two["result"]), two["result"]
    entries = two["server_runs"]["nodes"][two["node"]]
    latest = [e for e in entries if e["prompt"] == max(entries, key=lambda e: e["started"])["prompt"]]
    assert len(latest) == 2, "two sampler runs under one cache node id"
    assert len({e["run"] for e in latest}) == 2
    rows = expected_rows(entries)
    assert widget_rows(two["widget"]) == rows
    assert [r["sampler"] for r in two["widget"]["rows"]] == ["1", "1", "2", "2"]   # cond + uncond each
    assert two["widget"]["summary"] == expected_summary(entries)[0]
    assert len(two["widget"]["heat"]) == 2


def test_compare_node_shows_the_server_figures(report):
    _needs_run(report)
    cmp = report["compare"]
    assert isinstance(cmp["result"], str), f"the compare workflow did not succeed: {cmp['result']}"
    outputs = cmp["history"][cmp["result"]]["outputs"]
    figures = outputs[cmp["node"]]["diffusion_cache_compare"][0]
    assert figures["mode"] == "sampled" and figures["cache_attached"] is True
    assert not figures["identical"] and 0.0 < figures["ssim"] < 1.0 and figures["speedup"] > 0
    widget = cmp["widget"]
    assert widget["visible"] and widget["state"] == "done", widget
    shown = {f["name"]: f for f in widget["figures"]}
    assert list(shown) == ["psnr", "ssim", "speedup"]
    assert shown["psnr"]["text"] == f"PSNR {figures['psnr']:.2f} dB"
    assert shown["ssim"]["text"] == f"SSIM {figures['ssim']:.4f}"
    assert shown["speedup"]["text"] == f"speedup {figures['speedup']:.2f}x"
    for name in ("psnr", "ssim", "speedup"):     # the numbers the page received, unrounded
        assert float(shown[name]["value"]) == figures[name], name
    assert "warm-up" in shown["speedup"]["title"]
    assert widget["detail"].startswith(f"cached {figures['seconds_cached']:.2f} s · "
                                       f"uncached {figures['seconds_uncached']:.2f} s")


def test_no_browser_errors(report):
    """No uncaught page error at all; no console error but the frontend's own noise and 404s of
    optional files (user.css, favicon.ico, templates) or of hosts an offline machine cannot reach."""
    assert not report.get("error"), report["error"]
    assert report["page_errors"] == [], report["page_errors"]
    errors = []
    for e in report["console_errors"]:
        url = (e.get("location") or {}).get("url") or ""
        network = e["text"].startswith("Failed to load resource") or bool(EXTERNAL_URL.search(e["text"]))
        ours = "diffusion_cache" in url or "/extensions/" in url
        if (network and not ours) or (not ours and e["text"].startswith(FRONTEND_NOISE)):
            continue
        errors.append(e)
    assert errors == [], errors


def _method_inputs(report):
    m = report.get("method_inputs")
    assert m and m.get("steps"), f"the method-switch phase did not run: {report.get('phases')}"
    return m


def test_node_shows_only_the_chosen_methods_inputs(server, report):
    assert not report.get("error"), report["error"] + "\n" + report["stderr"][-3000:]
    from cache_core.methods import ui_description
    described = json.loads(json.dumps(ui_description()))
    m = _method_inputs(report)
    assert m["description"] == described, "GET /diffusion_cache/methods is not the registry's ui_description()"
    knobs = {n for d in described.values() for n in d["inputs"]}
    layout = widget_layout(server["object_info"], "DiffusionCache")
    assert [s["method"] for s in m["steps"]][1:] == ["dbcache", "dbcache", "magcache", "magcache",
                                                      "dbcache", "dbcache", "dbcache"]
    assert m["picked"] == ["menu", "menu", "menu"], "methods were not picked from the widget's menu"
    for st in m["steps"]:
        where = f"{st['label']}: "
        entry, advanced = described[st["method"]], st["toggle"]["value"]
        expected = [n for n in entry["inputs"] if advanced or n not in entry["advanced"]]
        assert sorted(n for n in st["visible"] if n in knobs) == sorted(expected), where + str(st["visible"])
        assert [n for n in st["visible"] if n not in knobs] == ["method", "diffusion_cache_advanced",
                                                                  "diffusion_cache_timeline"], where
        if not advanced:     # model + method + the method's inputs
            assert 2 + len(expected) <= 6, where + str(expected)
        assert st["property"] is advanced and st["toggle"]["visible"]
        assert st["toggle"]["label"] == f"advanced inputs ({len(entry['advanced'])})"
        assert st["toggle"]["serialize"] is False and st["toggle"]["options_serialize"] is False
        # laid out as shown: one row after the other, no gap for a hidden input, each found by the hit test
        rows = st["rows"]
        assert [r["name"] for r in rows] == [n for n in st["visible"] if n != "diffusion_cache_timeline"], where
        for a, b in zip(rows, rows[1:]):
            assert b["y"] == a["y"] + a["height"], where + f"gap between {a['name']} and {b['name']}: {rows}"
        assert [r["hit"] for r in rows] == [r["name"] for r in rows], where + str(rows)
        assert abs(st["size"][1] - st["min_size"][1]) < 1, where + f"node not fitted: {st['size']} {st['min_size']}"
        # the method's tooltip on every input it reads
        for name in entry["inputs"]:
            assert st["tooltips"][name].endswith(entry["tooltips"][name]), where + name
        # every value is saved, in its place, and sent, shown or not
        assert len(st["widgets_values"]) == len(layout) and None not in st["widgets_values"], where
        assert st["widgets_values"][layout.index("method")] == st["method"]
        assert set(st["prompt_inputs"]) >= knobs | {"method"}, where
        assert "diffusion_cache_advanced" not in st["prompt_inputs"]
        for name in knobs:
            assert st["prompt_inputs"][name] == st["widgets_values"][layout.index(name)], where + name
    # the tooltip the frontend shows on hover changes with the method
    hover = m["tooltip_hover"]
    steps = {s["label"]: s for s in m["steps"]}
    assert hover["loaded"] == steps["loaded"]["tooltips"][m["hovered"]]
    assert hover["dbcache"] == steps["dbcache"]["tooltips"]["threshold"]
    assert hover["magcache"] == steps["magcache, advanced"]["tooltips"]["threshold"]
    assert hover["dbcache"] != hover["magcache"]
    assert described["dbcache"]["tooltips"]["threshold"] in hover["dbcache"]
    assert described["magcache"]["tooltips"]["threshold"] in hover["magcache"]


def test_method_switch_survives_save_and_load_and_runs(server, report):
    m = _method_inputs(report)
    layout = widget_layout(server["object_info"], "DiffusionCache")
    steps = {s["label"]: s for s in m["steps"]}
    # front_blocks 2 was set under dbcache; magcache does not read it, keeps it and still sends it
    hidden = steps["magcache"]
    assert "front_blocks" not in hidden["visible"]
    assert hidden["widgets_values"][layout.index("front_blocks")] == 2 and hidden["prompt_inputs"]["front_blocks"] == 2
    assert steps["dbcache again"]["widgets_values"][layout.index("front_blocks")] == 2
    # saved and loaded again: the same values in the same places, the same method, the toggle still on
    before, after = steps["dbcache again, advanced"], steps["reloaded"]
    assert m["saved_node"]["widgets_values"] == before["widgets_values"]
    assert after["widgets_values"] == before["widgets_values"]
    assert m["saved_node"]["properties"]["Show advanced inputs"] is True
    assert after["visible"] == before["visible"] and after["toggle"]["value"] is True
    _needs_run(report)
    assert isinstance(m.get("result"), str), f"the switched workflow did not run: {m.get('result')}"
    inputs = m["history"][m["result"]]["prompt"][2][m["node"]]["inputs"]
    assert inputs["method"] == "dbcache" and inputs["front_blocks"] == 2 and inputs["threshold"] == 0.15
    entries = m["server_runs"]["nodes"][m["node"]]
    latest = max(entries, key=lambda e: e["started"])
    assert latest["done"] and latest["prompt"] == m["result"]
    assert latest["summary"]["method"].startswith("dbcache"), latest["summary"]


def test_screenshot_written(report):
    _needs_run(report)
    assert report.get("screenshot"), "no screenshot taken"
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 2000
