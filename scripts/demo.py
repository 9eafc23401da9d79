#!/usr/bin/env python
"""Run the example workflow through ComfyUI's own prompt executor, cached and uncached.

    python scripts/demo.py            # (scripts/run_demo.sh sets up first, then runs this)

The workflow ``workflows/api/tiny_flux_demo.api.json`` (the same graph as the UI
workflow ``workflows/tiny_flux_demo.json``) loads the bundled tiny Flux digit model
and samples digits 0-9 twice from the same seed and conditioning: one KSampler
takes the model through the Diffusion Cache node, the other takes it straight from
the loader. Both branches are in one graph so a single queue in ComfyUI shows the
two results side by side; the cache node is the only difference between them.

The prompt is validated and executed by ``execution.PromptExecutor``, as ComfyUI's
server does (``nodes/compat.py`` builds it for the running ComfyUI version), with a
small stand-in for the server object that records the messages the executor sends. The first execution writes the images; then the prompt is
executed again ``--repeats`` times, each by a fresh executor (so no node output is
reused), and each sampler node is timed from the executor's "executing" messages.

Prints the steps computed and skipped, the wall-clock speedup (median of the
repeats) and PSNR / SSIM of the cached images against the uncached ones, and
writes to ``out/demo/``:

* ``comparison.png``: uncached, cached and their difference (x4), one column per digit;
* ``timeline.png``: one cell per sampler step, coloured computed / reused / forecast,
  one row per sampler run;
* ``summary.json`` and the images saved by the workflow's SaveImage nodes (``saved/``).

``--write-ui-workflow`` regenerates the UI-format workflow from the API-format one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_host  # noqa: E402

REPO_ROOT = comfy_host.REPO_ROOT
API_WORKFLOW = REPO_ROOT / "workflows" / "api" / "tiny_flux_demo.api.json"
UI_WORKFLOW = REPO_ROOT / "workflows" / "tiny_flux_demo.json"
OUT_DIR = REPO_ROOT / "out" / "demo"
CLIENT_ID = "diffusion-cache-demo"

COLOURS = {"computed": (52, 101, 164), "reused": (245, 166, 35), "forecast": (76, 175, 80)}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class DemoError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- executor

def node_seconds(server) -> dict[str, float]:
    """Seconds from each node's "executing" message to the next node's (or the end)."""
    marks = [(t, data.get("node") if event == "executing" else None) for t, event, data in server.messages
             if event in ("executing", "execution_success", "execution_error", "execution_interrupted")]
    out = {}
    for (t0, node), (t1, _) in zip(marks, marks[1:]):
        if node is not None:
            out[node] = out.get(node, 0.0) + (t1 - t0)
    return out


def execute_prompt(prompt: dict, output_dir: Path):
    """Validate and execute an API-format prompt with a fresh PromptExecutor
    (``nodes/compat.py`` builds it as the running ComfyUI version wants).

    Returns ``(executor, server)``; raises DemoError when validation or execution fails.
    """
    import folder_paths
    compat = comfy_host.compat()
    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(output_dir))
    try:
        executor, server = compat.run_prompt(prompt, extra_data={"client_id": CLIENT_ID})
    except compat.PromptInvalid as e:
        raise DemoError(f"ComfyUI rejected the workflow: {e.error}\n"
                        f"node errors: {json.dumps(e.node_errors, indent=1)}") from None
    finally:
        folder_paths.set_output_directory(previous)
    if not executor.success or server.errors():
        err = (server.errors() or [{}])[0]
        raise DemoError(f"the workflow failed in node {err.get('node_id')} ({err.get('node_type')}): "
                        f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                        + "".join(err.get("traceback") or []))
    return executor, server


def node_output(executor, node_id: str, index: int = 0):
    """The first value of one output of an executed node."""
    value = comfy_host.compat().node_outputs(executor, node_id)
    if value is None:
        raise DemoError(f"node {node_id} has no output in the executor")
    return value[index][0]


# ----------------------------------------------------------------------------- the graph

def find_roles(prompt: dict) -> dict:
    """Node ids of the cache node, both samplers and their SaveImage nodes."""
    def upstream(node_id, name):
        link = prompt[node_id]["inputs"].get(name)
        return link[0] if isinstance(link, list) else None

    def downstream_of(node_id, class_type):
        seen, frontier = set(), [node_id]
        while frontier:
            current = frontier.pop()
            for nid, node in prompt.items():
                if nid in seen:
                    continue
                if any(isinstance(v, list) and v and v[0] == current for v in node["inputs"].values()):
                    seen.add(nid)
                    frontier.append(nid)
        hits = [n for n in seen if prompt[n]["class_type"] == class_type]
        return hits[0] if hits else None

    caches = [n for n, v in prompt.items() if v["class_type"] == "DiffusionCache"]
    samplers = [n for n, v in prompt.items() if v["class_type"] == "KSampler"]
    if len(caches) != 1 or len(samplers) != 2:
        raise DemoError("the demo workflow needs one DiffusionCache node and two KSampler nodes")
    cached = [s for s in samplers if upstream(s, "model") == caches[0]]
    if len(cached) != 1:
        raise DemoError("exactly one KSampler must take its model from the DiffusionCache node")
    uncached = [s for s in samplers if s != cached[0]][0]
    roles = {"cache": caches[0], "cached": cached[0], "uncached": uncached,
             "save_cached": downstream_of(cached[0], "SaveImage"),
             "save_uncached": downstream_of(uncached, "SaveImage")}
    if roles["save_cached"] is None or roles["save_uncached"] is None:
        raise DemoError("both samplers must end in a SaveImage node")
    return roles


def load_saved_images(history: dict, save_node: str, output_dir: Path):
    """The images a SaveImage node wrote, as a ComfyUI IMAGE tensor [B,H,W,3] in 0..1."""
    import numpy as np
    import torch
    from PIL import Image
    entries = history["outputs"].get(save_node, {}).get("images", [])
    if not entries:
        raise DemoError(f"SaveImage node {save_node} reported no images")
    arrays = []
    for e in entries:
        path = output_dir / e.get("subfolder", "") / e["filename"]
        arrays.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrays)), [str(output_dir / e.get("subfolder", "") / e["filename"])
                                                for e in entries]


# ----------------------------------------------------------------------------- pictures

def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def comparison_grid(uncached, cached, path: Path, title: str, scale: int = 2) -> Path:
    """Rows: uncached, cached, |difference| x4; one column per image."""
    import numpy as np
    from PIL import Image, ImageDraw
    rows = [("uncached", uncached), ("cached", cached), ("|diff| x4", ((cached - uncached).abs() * 4).clamp(0, 1))]
    n, h, w = uncached.shape[0], uncached.shape[1] * scale, uncached.shape[2] * scale
    label_w, title_h, pad = 110, 34, 4
    grid = Image.new("RGB", (label_w + n * (w + pad) + pad, title_h + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((pad, 8), title, fill="black", font=_font(14))
    for r, (label, images) in enumerate(rows):
        y = title_h + pad + r * (h + pad)
        draw.text((pad, y + h // 2 - 8), label, fill="black", font=_font(14))
        for i in range(n):
            arr = (images[i].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            tile = Image.fromarray(arr).resize((w, h), Image.NEAREST)
            grid.paste(tile, (label_w + pad + i * (w + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def decision_timeline(rows: list[tuple[str, list[dict]]], path: Path, title: str) -> Path:
    """One row per sampler run, one cell per step (evaluation), coloured by the cache's decision.

    ``rows``: (label, records) with records as in ``last_stats["records"]``; a reused
    cell that still computed some blocks shows computed/total inside.
    """
    from PIL import Image, ImageDraw
    steps = max(len(records) for _, records in rows)
    cell, gap, label_w, title_h, legend_h = 30, 3, 230, 34, 34
    width = label_w + steps * (cell + gap) + 10
    height = title_h + len(rows) * (cell + gap) + 22 + legend_h
    img = Image.new("RGB", (max(width, 560), height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill="black", font=_font(14))
    small = _font(10)
    for r, (label, records) in enumerate(rows):
        y = title_h + r * (cell + gap)
        draw.text((8, y + cell // 2 - 7), label, fill="black", font=_font(13))
        for i, rec in enumerate(records):
            x = label_w + i * (cell + gap)
            colour = COLOURS.get(rec["decision"], (150, 150, 150))
            draw.rectangle([x, y, x + cell, y + cell], fill=colour)
            done, total = rec.get("blocks_computed", 0), rec.get("blocks_total", 0)
            if rec["decision"] != "computed" and done:
                draw.text((x + 3, y + cell // 2 - 6), f"{done}/{total}", fill="black", font=small)
    y = title_h + len(rows) * (cell + gap)
    for i in range(steps):
        if i % 5 == 0 or i == steps - 1:
            draw.text((label_w + i * (cell + gap) + 4, y + 2), str(i), fill="black", font=small)
    y += 22
    x = 8
    for name, colour in COLOURS.items():
        draw.rectangle([x, y + 6, x + 16, y + 22], fill=colour)
        draw.text((x + 22, y + 7), name, fill="black", font=_font(13))
        x += 130
    draw.text((x, y + 7), "n/m: blocks computed of m", fill="black", font=_font(13))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# ----------------------------------------------------------------------------- UI workflow

def _input_specs(class_type: str) -> list[tuple[str, tuple]]:
    import nodes
    types = nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        out += list((types.get(section) or {}).items())
    return out


def _is_widget(spec: tuple) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def _default(spec: tuple):
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in options:
        return options["default"]
    if isinstance(spec[0], (list, tuple)):
        return spec[0][0] if spec[0] else None
    if options.get("options"):
        return options["options"][0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec[0])


def _has_control(spec: tuple) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(options.get("control_after_generate"))


# where each node sits in the UI (x, y), by API node id
UI_LAYOUT = {"1": (40, 300), "2": (40, 560), "3": (420, 40), "4": (820, 40), "5": (820, 560),
             "6": (1220, 40), "7": (1220, 560), "8": (1560, 40), "9": (1560, 560)}


def ui_from_api(prompt: dict, layout: dict | None = None) -> dict:
    """A UI-format (litegraph) workflow with the same graph and values as an API prompt."""
    import nodes
    layout = layout or UI_LAYOUT
    links, node_links_in, node_links_out = [], {}, {}
    for nid, node in prompt.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                link_id = len(links) + 1
                src, slot = str(value[0]), int(value[1])
                node_links_in[(nid, name)] = link_id
                node_links_out.setdefault((src, slot), []).append(link_id)
                links.append([link_id, int(src), slot, int(nid), None, None])
    order = _topological(prompt)
    ui_nodes = []
    for nid in sorted(prompt, key=int):
        node = prompt[nid]
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        inputs, widgets = [], []
        for name, spec in _input_specs(node["class_type"]):
            linked = (nid, name) in node_links_in
            if _is_widget(spec) and not linked:
                widgets.append(node["inputs"].get(name, _default(spec)))
                if _has_control(spec):
                    widgets.append("fixed")
            elif not _is_widget(spec) or linked:
                slot = len(inputs)
                link_id = node_links_in.get((nid, name))
                inputs.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                               "link": link_id})
                if link_id is not None:
                    links[link_id - 1][4] = slot
                    links[link_id - 1][5] = inputs[-1]["type"]
        types = list(getattr(cls, "RETURN_TYPES", ()) or ())
        names = list(getattr(cls, "RETURN_NAMES", None) or types)
        outputs = []
        for i, (t, n) in enumerate(zip(types, names)):
            out = {"name": n, "type": t, "links": node_links_out.get((nid, i), [])}
            if out["links"]:
                out["slot_index"] = i
            outputs.append(out)
        entry = {
            "id": int(nid), "type": node["class_type"], "pos": list(layout.get(nid, (40 + 300 * int(nid), 40))),
            "size": [320, 60 + 24 * (len(inputs) + len(widgets))], "flags": {}, "order": order.index(nid),
            "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets,
        }
        title = node.get("_meta", {}).get("title")
        if title:
            entry["title"] = title
        ui_nodes.append(entry)
    return {
        "id": "5d1f0c1e-0000-4000-8000-d1ff0cac4e00", "revision": 0,
        "last_node_id": max(int(n) for n in prompt), "last_link_id": len(links),
        "nodes": ui_nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
    }


def api_from_ui(workflow: dict) -> dict:
    """The API prompt a UI-format workflow stands for (widgets read in the node's input order)."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        values = list(node.get("widgets_values") or [])
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs = {}
        for name, spec in _input_specs(node["type"]):
            if name in linked:
                inputs[name] = [str(linked[name][1]), linked[name][2]]
            elif _is_widget(spec):
                inputs[name] = values.pop(0) if values else _default(spec)
                if _has_control(spec) and values:
                    values.pop(0)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def ui_mismatches(workflow: dict, prompt: dict) -> list[str]:
    """Differences between a UI workflow (read as ComfyUI's frontend would) and an API prompt."""
    converted = api_from_ui(workflow)
    problems = []
    if set(converted) != set(prompt):
        problems.append(f"node ids differ: {sorted(converted)} vs {sorted(prompt)}")
    for nid, node in prompt.items():
        other = converted.get(nid)
        if other is None:
            continue
        if other["class_type"] != node["class_type"]:
            problems.append(f"node {nid}: {other['class_type']} vs {node['class_type']}")
        for name, value in node["inputs"].items():
            if other["inputs"].get(name) != value:
                problems.append(f"node {nid} input {name}: {other['inputs'].get(name)!r} vs {value!r}")
    return problems


def _topological(prompt: dict) -> list[str]:
    order, done = [], set()

    def visit(nid):
        if nid in done:
            return
        done.add(nid)
        for value in prompt[nid]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                visit(str(value[0]))
        order.append(nid)
    for nid in sorted(prompt, key=int):
        visit(nid)
    return order


# ----------------------------------------------------------------------------- the demo

def step_rows(records: list[dict]) -> list[dict]:
    """One record per sampler step (the first evaluation of each step)."""
    by_step = {}
    for r in records:
        by_step.setdefault(r["step"], r)
    return [by_step[s] for s in sorted(by_step)]


def run_demo(workflow: Path = API_WORKFLOW, out_dir: Path = OUT_DIR, repeats: int = 3, threads: int | None = 1,
             quiet: bool = False) -> dict:
    """Run the demo; returns the summary it also writes to ``out_dir/summary.json``."""
    def say(*parts):
        if not quiet:
            print(*parts, flush=True)

    if comfy_host.find_comfyui() is None:
        raise DemoError(comfy_host.why_not_found())
    pack = comfy_host.load_pack()
    import comfy.utils
    import torch
    from benchmark import settle_server_module
    settle_server_module()
    comfy.utils.PROGRESS_BAR_ENABLED = False
    if threads:
        torch.set_num_threads(threads)

    prompt = json.loads(Path(workflow).read_text())
    roles = find_roles(prompt)
    needed = {v["inputs"]["model_name"] for v in prompt.values() if "model_name" in v["inputs"]}
    available = pack.nodes.tiny_models.list_tiny_models()
    if not needed <= set(available):
        raise DemoError(f"the workflow needs tiny model(s) {sorted(needed - set(available))}, not found in "
                        f"{pack.nodes.tiny_models.TINY_MODELS_DIR} (available: {available or 'none'})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "saved", ignore_errors=True)   # SaveImage numbers files on from what is there
    sampler = prompt[roles["cached"]]["inputs"]
    cache_inputs = prompt[roles["cache"]]["inputs"]
    say(f"{comfy_host.describe(comfy_host.find_comfyui())}  |  torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)")
    method_name = cache_inputs.get("method")
    spec = pack.cache_core.methods.METHODS.get(method_name)
    knob = spec.sweep.get("knob", "threshold") if spec is not None else "threshold"
    knob_text = f"{knob} {cache_inputs.get(knob)}" + (" = the method's default" if knob == "threshold"
                                                       and not cache_inputs.get(knob) else "")
    shown = Path(workflow).resolve()
    shown = shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown
    say(f"workflow: {shown} - {sampler['steps']} steps {sampler['sampler_name']}/{sampler['scheduler']}, "
        f"cfg {sampler['cfg']}, cache method {method_name} ({knob_text})")

    # 1. the workflow itself: writes the images
    t0 = time.perf_counter()
    executor, server = execute_prompt(prompt, out_dir / "saved")
    first_seconds = time.perf_counter() - t0
    cached_model = node_output(executor, roles["cache"])
    stats = cached_model.model_options["transformer_options"]["diffusion_cache"].last_stats
    if not stats:
        raise DemoError("the cached sampler ran but the cache recorded no statistics")
    history = executor.history_result
    uncached_img, uncached_files = load_saved_images(history, roles["save_uncached"], out_dir / "saved")
    cached_img, cached_files = load_saved_images(history, roles["save_cached"], out_dir / "saved")
    metrics = pack.cache_core.metrics
    psnr = metrics.psnr(cached_img, uncached_img)
    ssim = metrics.ssim(cached_img, uncached_img)

    # 2. timing: the same prompt again, each time by a fresh executor
    times_cached, times_uncached, runs = [], [], [stats]
    with tempfile.TemporaryDirectory(prefix="diffusion_cache_demo_") as scratch:
        for _ in range(repeats):
            ex, srv = execute_prompt(prompt, Path(scratch))
            seconds = node_seconds(srv)
            times_cached.append(seconds[roles["cached"]])
            times_uncached.append(seconds[roles["uncached"]])
            runs.append(node_output(ex, roles["cache"]).model_options["transformer_options"]["diffusion_cache"]
                        .last_stats)
    speedup = statistics.median(times_uncached) / statistics.median(times_cached)

    summary_stats = stats["summary"]
    steps = step_rows(stats["records"])
    computed = [r["step"] for r in steps if r["decision"] == "computed"]
    skipped = [r["step"] for r in steps if r["decision"] != "computed"]
    method = summary_stats.get("method", cache_inputs.get("method"))
    title = (f"{method}: {len(computed)}/{len(steps)} steps computed, blocks {summary_stats['compute_fraction']:.2f}, "
             f"speedup {speedup:.2f}x, PSNR {psnr:.1f} dB, SSIM {ssim:.4f}")
    grid = comparison_grid(uncached_img, cached_img, out_dir / "comparison.png", title)
    uncached_rows = [{"step": i, "decision": "computed", "blocks_computed": 0, "blocks_total": 0}
                     for i in range(len(steps))]
    timeline_rows = [("KSampler, uncached", uncached_rows)]
    distinct = []
    for i, run in enumerate(runs):
        letters = "".join(r["decision"][0] for r in step_rows(run["records"]))
        if letters not in [d[0] for d in distinct]:
            distinct.append((letters, i))
    for letters, i in distinct:
        label = "KSampler + Diffusion Cache" + (f" (run {i + 1})" if len(distinct) > 1 else "")
        timeline_rows.append((label, step_rows(runs[i]["records"])))
    timeline = decision_timeline(timeline_rows, out_dir / "timeline.png",
                                 f"Decisions per step - {method}, {len(steps)} steps")

    summary = {
        "success": True,
        "workflow": str(workflow),
        "method": method,
        "steps": len(steps),
        "steps_computed": computed,
        "steps_skipped": skipped,
        "compute_fraction": summary_stats["compute_fraction"],
        "cache_summary": summary_stats,
        "wall_speedup": round(speedup, 3),
        "seconds_cached": [round(t, 4) for t in times_cached],
        "seconds_uncached": [round(t, 4) for t in times_uncached],
        "psnr_db": None if psnr == float("inf") else round(psnr, 2),
        "ssim": round(ssim, 4),
        "first_execution_s": round(first_seconds, 2),
        "files": {"comparison": str(grid), "timeline": str(timeline), "cached": cached_files,
                  "uncached": uncached_files},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))

    say(f"executed by ComfyUI's PromptExecutor: {1 + repeats} times, all successful "
        f"(first execution {first_seconds:.1f} s)")
    say(f"steps computed: {len(computed)}/{len(steps)} {computed}")
    say(f"steps skipped:  {len(skipped)}/{len(steps)} {skipped}")
    say(f"block evaluations computed: {summary_stats['compute_fraction']:.3f} of uncached; "
        f"peak cache {summary_stats['peak_cache_mb']:.2f} MB")
    say(f"wall time of the sampler node, median of {repeats}: uncached {statistics.median(times_uncached):.3f} s, "
        f"cached {statistics.median(times_cached):.3f} s -> speedup {speedup:.2f}x")
    say(f"quality vs uncached (same seed): PSNR {psnr:.2f} dB, SSIM {ssim:.4f}")
    say(f"wrote {grid}\nwrote {timeline}\nwrote {out_dir / 'summary.json'} and the saved images in {out_dir / 'saved'}")
    return summary


def write_ui_workflow(api_path: Path = API_WORKFLOW, ui_path: Path = UI_WORKFLOW) -> Path:
    comfy_host.load_pack()
    prompt = json.loads(Path(api_path).read_text())
    ui = ui_from_api(prompt)
    problems = ui_mismatches(ui, prompt)
    if problems:
        raise DemoError("the UI workflow does not convert back: " + "; ".join(problems))
    Path(ui_path).write_text(json.dumps(ui, indent=1) + "\n")
    return Path(ui_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workflow", default=str(API_WORKFLOW), help="API-format workflow to run")
    p.add_argument("--out", default=str(OUT_DIR), help="output folder (default out/demo)")
    p.add_argument("--repeats", type=int, default=3, help="timed executions (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--write-ui-workflow", action="store_true",
                   help="regenerate workflows/tiny_flux_demo.json from the API workflow and exit")
    a = p.parse_args(argv)
    try:
        if a.write_ui_workflow:
            print(f"wrote {write_ui_workflow(Path(a.workflow))}")
            return 0
        run_demo(Path(a.workflow), Path(a.out), repeats=max(1, a.repeats), threads=a.threads or None)
    except DemoError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
