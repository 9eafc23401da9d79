#!/usr/bin/env python
"""Speed / quality benchmark of every cache method on the shipped tiny models.

For each tiny model x method x setting of the method's main knob (plus ComfyUI's
built-in EasyCache and LazyCache nodes as baselines), the same seed is sampled
uncached and cached in one process with ComfyUI's KSampler node, and one row is
reported:

* model calls computed / total: evaluations whose whole model ran (ours: from the
  cache's run statistics; baselines: diffusion-model calls counted by a wrapper
  registered inside theirs, against the same count on the uncached model);
* block fraction: transformer block evaluations computed / total (ours:
  ``compute_fraction``; the baselines skip whole calls, so it equals their call
  fraction);
* wall speedup: the median over interleaved repeats (uncached, cached, uncached,
  cached, ...), after an untimed warm-up run, of each repeat's uncached time / its
  cached time. The machine's speed drifts by tens of percent over seconds; a pair runs
  within a second or two, so its ratio cancels the drift that a ratio of two medians
  keeps (``median_speedup`` keeps that ratio beside it);
* PSNR / SSIM of the decoded images against the uncached images of the same seed;
* cache MB: the peak size of the tensors the cache holds (ours: ``peak_cache_mb``
  of the run; baselines: the tensors in their holder, peak over the run);
* delta peak MB: the process-level cost, peak memory during a cached run minus
  peak during an uncached run, both relative to the run's start (CPU: resident set
  size from /proc, sampled every 2 ms; CUDA: ``torch.cuda.max_memory_allocated``).
  On CPU, allocator reuse makes it noisy by a few MB either way.

    python scripts/benchmark.py --quick
    python scripts/benchmark.py --json out/benchmark.json --plot docs/pareto.png --markdown docs/benchmark.md

The methods and their sweeps come from the registry (``cache_core.methods``): a
new method is benchmarked with the sweep its module declares.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_host  # noqa: E402
from cache_work import count_cache_work  # noqa: E402
from schedule_bound import whole_step_cached  # noqa: E402

REPO_ROOT = comfy_host.REPO_ROOT
CALIBRATED = "<calibrated>"   # stands for the profile calibrated on the model being benchmarked

# Each method's sweep (knob, values for the full run and --quick, fixed inputs) is in its
# registry entry: cache_core/methods/<method>.py, ``sweep``.

# ComfyUI's own cache nodes, run through their node classes with their default window.
BASELINES: dict[str, dict] = {
    "comfyui_easycache": {"node": "EasyCache", "knob": "reuse_threshold",
                          "full": [0.05, 0.1, 0.2, 0.4], "quick": [0.1, 0.4],
                          "inputs": {"start_percent": 0.15, "end_percent": 0.95, "verbose": False}},
    "comfyui_lazycache": {"node": "LazyCache", "knob": "reuse_threshold",
                          "full": [0.05, 0.1, 0.2, 0.4], "quick": [0.1, 0.4],
                          "inputs": {"start_percent": 0.15, "end_percent": 0.95, "verbose": False}},
}

COUNT_KEY = "benchmark_count"


@dataclass
class Options:
    models: list[str] | None = None       # None = every shipped tiny model
    methods: list[str] | None = None      # None = every method in METHODS + the baselines
    quick: bool = False
    repeats: int | None = None            # default 5
    batch: int | None = None              # default 10 (quick: 4)
    steps: int | None = None              # default: the model's recommended steps
    seed: int = 0
    threads: int = 1
    baselines: bool = True
    progress: bool = True
    settings: list = field(default_factory=list)   # (method, inputs): rows measured besides the sweeps


@dataclass
class Row:
    model: str
    method: str
    setting: str
    inputs: dict
    compute_fraction: float | None = None
    calls_computed: int | None = None
    calls_total: int | None = None
    wall_speedup: float | None = None     # median over repeats of uncached / cached (adjacent runs)
    median_speedup: float | None = None   # median uncached / median cached repeat
    uncached_s: float | None = None
    cached_s: float | None = None
    psnr_db: float | None = None          # None: identical to the uncached images (or an error)
    ssim: float | None = None
    extra_mem_mb: float | None = None     # the cache's own tensors, peak
    delta_peak_mb: float | None = None    # process-level peak (RSS or CUDA), cached minus uncached
    kind: str = "ours"                    # "ours" or "baseline"
    times_uncached: list = field(default_factory=list)
    times_cached: list = field(default_factory=list)
    steps_decisions: str = ""             # one letter per evaluation: C computed, R reused, F forecast
    passes_computed: float | None = None  # the cache's own full-tensor passes per block, computed steps
    passes_cached: float | None = None    # ... on reused / forecast steps
    transient_mb: float | None = None     # the cache's peak transient bytes in one evaluation (MB)
    bound_speedup: float | None = None    # ours: the row's schedule replayed with no cache work
    #                                       (scripts/schedule_bound.py), median of paired uncached / replay
    of_bound: float | None = None         # median of paired replay / cached times: the share of the
    #                                       schedule's speedup the cache delivers (1.0 = no overhead)
    times_bound: list = field(default_factory=list)
    whole_steps: bool | None = None       # ours: every cached step ran nothing of the model (whole calls
    #                                       or passes), not its first blocks or the layers around them
    error: str | None = None              # the exception, when this setting could not run
    attention_skipped_share: float | None = None   # PAB: share of attention calls that reused their output
    cfg_uncond_skipped: int | None = None          # CFG-Cache: unconditional evaluations rebuilt, not run


# ----------------------------------------------------------------------------- helpers

def log(opts: Options, *parts) -> None:
    if opts.progress:
        print(*parts, file=sys.stderr, flush=True)


def settle_server_module() -> bool:
    """Import ComfyUI's ``server`` module once, as a running ComfyUI has it.

    Outside ComfyUI's main.py it may not import (it needs ``requests``, and ``nodes``
    puts ``comfy/`` first on sys.path, which hides ComfyUI's ``utils`` package). A
    failed import is not remembered by Python, so every later ``from server import``
    (the pack looks for a running server to send UI events) would retry the whole
    import, milliseconds each time. Mark it unavailable instead; returns whether it
    imported.
    """
    if "server" in sys.modules:
        return sys.modules["server"] is not None
    try:
        import server  # noqa: F401
        return True
    except Exception:
        sys.modules["server"] = None
        return False


def methods_catalogue():
    """(our methods in METHODS order, baseline names)."""
    pack = comfy_host.load_pack()
    ours = list(pack.cache_core.methods.METHODS) + [CFG_CACHE]
    return ours, list(BASELINES)


def sweep_for(method: str, quick: bool) -> tuple[str, list, dict, list]:
    """(knob, values, fixed inputs, extra settings) of one of our methods; an extra setting is a
    dict of inputs measured besides the sweep of the knob."""
    pack = comfy_host.load_pack()
    entry = pack.cache_core.methods.METHODS[method].sweep
    values = entry["quick" if quick and "quick" in entry else "full"]
    return entry["knob"], list(values), dict(entry.get("inputs", {})), [dict(e) for e in entry.get("extra", ())]


def fmt_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


class MemoryProbe:
    """Peak memory above the level at start, while a block runs."""

    def __init__(self, device):
        self.cuda = getattr(device, "type", "cpu") == "cuda"
        self.statm = Path("/proc/self/statm")
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.available = self.cuda or self.statm.is_file()
        self.peak_mb = None

    def _rss(self) -> int:
        return int(self.statm.read_text().split()[1]) * self.page

    def __enter__(self):
        if not self.available:
            return self
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return self
        self._start = self._rss()
        self._peak = self._start
        self._stop = threading.Event()

        def watch():
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self._rss())
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if not self.available:
            return False
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._start) / 2 ** 20
            return False
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_mb = (self._peak - self._start) / 2 ** 20
        return False


def tensor_bytes(obj, depth: int = 0) -> int:
    """Bytes of the tensors an object holds (attributes, dicts, lists), one level of nesting deep."""
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if depth > 2:
        return 0
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and depth == 0:
        return sum(tensor_bytes(v, depth + 1) for v in vars(obj).values())
    return 0


class CallCounter:
    """Counts diffusion-model calls that really run, and the peak size of a baseline's holder.

    Registered on a clone *after* any cache wrapper, so it sits inside it: calls a
    cache answers from memory never reach it.
    """

    def __init__(self):
        self.calls = 0
        self.peak_holder_bytes = 0

    def reset(self):
        self.calls = 0
        self.peak_holder_bytes = 0

    def _note(self, options):
        holder = (options or {}).get("easycache")
        if holder is not None:
            self.peak_holder_bytes = max(self.peak_holder_bytes, tensor_bytes(holder))

    def diffusion_model(self, executor, *args, **kwargs):
        self.calls += 1
        options = kwargs.get("transformer_options")
        if not isinstance(options, dict):
            options = next((a for a in reversed(args) if isinstance(a, dict)), {})
        self._note(options)
        return executor(*args, **kwargs)

    def outer_sample(self, executor, *args, **kwargs):
        try:
            return executor(*args, **kwargs)
        finally:
            self._note(executor.class_obj.model_options.get("transformer_options"))

    def attach(self, model):
        from comfy.patcher_extension import WrappersMP
        counter = self

        # plain functions: ModelPatcher.clone deep-copies model_options, and a deep copy
        # of a bound method would copy the counter with it
        def count_call(executor, *args, **kwargs):
            return counter.diffusion_model(executor, *args, **kwargs)

        def watch_run(executor, *args, **kwargs):
            return counter.outer_sample(executor, *args, **kwargs)

        model = model.clone()
        model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, COUNT_KEY, count_call)
        model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, COUNT_KEY, watch_run)
        return model


def environment(opts: Options, device) -> dict:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    comfy_path = comfy_host.find_comfyui()
    comfy_version = "?"
    try:
        comfy_version = (comfy_path / "comfyui_version.py").read_text().split('"')[1]
    except Exception:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        commit = "?"
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "comfyui": comfy_version,
        "pack_commit": commit,
        "comfyui_server_module": "server" in sys.modules and sys.modules["server"] is not None,
    }
    if getattr(device, "type", "cpu") == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------- benchmark

class ModelBench:
    """Everything needed to sample one tiny model the same way again and again."""

    def __init__(self, name: str, opts: Options):
        import comfy.model_management
        import nodes
        pack = comfy_host.load_pack()
        self.pack = pack
        self.tiny = pack.nodes.tiny_models
        self.metrics = pack.cache_core.metrics
        self.name = name
        self.info = self.tiny.tiny_model_info(name)
        rec = self.info["recommended"]
        self.steps = int(opts.steps or rec["steps"])
        self.cfg = float(rec["cfg"])
        self.sampler = rec.get("sampler_name", "euler")
        self.scheduler = rec.get("scheduler", "simple")
        self.seed = opts.seed
        batch = opts.batch
        digits = [i % 10 for i in range(batch)]
        self.positive, self.negative = self.tiny.class_conditioning(name, digits)
        self.latent = self.tiny.empty_latent(name, batch)
        self.base = self.tiny.load_tiny_model(name)
        self.ksampler = nodes.KSampler()
        self.counter = CallCounter()
        self.uncached = self.counter.attach(self.base)
        self.device = comfy.model_management.get_torch_device()
        self.uncached_calls = 0
        self.uncached_peak_mb = None

    def sample(self, model):
        """(latent samples, seconds) of one KSampler run."""
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        (out,) = self.ksampler.sample(model, self.seed, self.steps, self.cfg, self.sampler, self.scheduler,
                                      self.positive, self.negative, self.latent)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out["samples"], time.perf_counter() - t0

    def decode(self, samples):
        return self.tiny.decode_latent(self.name, samples)


def _calibrate(bench: ModelBench, opts: Options) -> str:
    """Calibrate TeaCache / MagCache on this model once; returns the profile choice."""
    name = f"benchmark_{bench.name}_{bench.steps}steps"
    calibrating = bench.pack.nodes.calibrate_node.build_calibrating_model(bench.base, name)
    bench.sample(calibrating)
    log(opts, f"  calibrated profile user:{name}")
    return f"user:{name}"


def _measure(bench: ModelBench, cached, reference_img, repeats: int, stats_fn, bound_fn=None):
    """Warm-up (with memory) + interleaved timing of one cached model against the uncached one;
    ``bound_fn(stats)`` may give the row's schedule replay model (timed in the same rounds)."""
    counter = bench.counter
    counter.reset()
    with MemoryProbe(bench.device) as mem_cached:
        samples, _ = bench.sample(cached)
    cached_calls = counter.calls
    holder_bytes = counter.peak_holder_bytes
    stats = stats_fn()
    image = bench.decode(samples)
    bound = bound_fn(stats) if bound_fn is not None else None
    times_u, times_c, times_b = [], [], []
    for _ in range(repeats):
        times_u.append(bench.sample(bench.uncached)[1])
        times_c.append(bench.sample(cached)[1])
        if bound is not None:
            times_b.append(bench.sample(bound)[1])
    psnr = bench.metrics.psnr(image, reference_img)
    delta = None
    if mem_cached.peak_mb is not None and bench.uncached_peak_mb is not None:
        delta = mem_cached.peak_mb - bench.uncached_peak_mb
    return {
        "stats": stats,
        "cached_calls": cached_calls,
        "uncached_calls": bench.uncached_calls,
        "holder_bytes": holder_bytes,
        "psnr": None if math.isinf(psnr) else psnr,
        "ssim": bench.metrics.ssim(image, reference_img),
        "times_u": times_u,
        "times_c": times_c,
        "times_b": times_b,
        "delta_mb": delta,
    }


def _row(bench, method, setting, inputs, m, kind, compute_fraction, calls_computed, calls_total,
         extra_mb, decisions="") -> Row:
    tu, tc = statistics.median(m["times_u"]), statistics.median(m["times_c"])
    paired = statistics.median(u / c for u, c in zip(m["times_u"], m["times_c"]))
    return Row(model=bench.name, method=method, setting=setting, inputs=inputs,
               compute_fraction=round(compute_fraction, 4), calls_computed=calls_computed,
               calls_total=calls_total, wall_speedup=round(paired, 3), median_speedup=round(tu / tc, 3),
               uncached_s=round(tu, 4),
               cached_s=round(tc, 4), psnr_db=None if m["psnr"] is None else round(m["psnr"], 2),
               ssim=round(m["ssim"], 4), extra_mem_mb=round(extra_mb, 3),
               delta_peak_mb=None if m["delta_mb"] is None else round(m["delta_mb"], 2), kind=kind,
               times_uncached=[round(t, 6) for t in m["times_u"]],
               times_cached=[round(t, 6) for t in m["times_c"]], steps_decisions=decisions,
               **_bound_fields(m))


def _bound_fields(m) -> dict:
    if not m.get("times_b"):
        return {}
    return {"bound_speedup": round(statistics.median(u / b for u, b in zip(m["times_u"], m["times_b"])), 3),
            "of_bound": round(statistics.median(b / c for b, c in zip(m["times_b"], m["times_c"])), 3),
            "times_bound": [round(t, 6) for t in m["times_b"]]}


def _schedule_replay(bench: ModelBench, holder):
    """``bound_fn`` of one of our rows: the replay of its warm-up run's schedule, or None when
    that run cannot be replayed (it is checked to see every evaluation the run had)."""
    from schedule_bound import replay_model, replayable

    def make(stats):
        records, summary = stats["records"], stats["summary"]
        if summary.get("attention_skipped_share") or summary.get("cfg_uncond_skipped"):
            return None     # PAB's attention reuse and CFG-Cache's rebuilt unconds are not in the records
        if not replayable(records, holder.layout, holder.uses_blocks and holder.config.method != "deepcache"):
            return None
        model, cursor = replay_model(bench.base, records, holder.layout if holder.uses_blocks else None,
                                     bool(summary.get("whole_passes")),
                                     bench.pack.cache_core.engine.STREAM_KEYS)
        model = bench.counter.attach(model)
        bench.sample(model)                       # warm-up, and the check that it saw every evaluation
        return model if cursor.index + 1 == len(records) else None
    return make


# CFG-Cache is an input every method takes (cfg_cache_interval); its rows, named "cfg_cache" in --methods
# and in the table: alone (on a method that computes every step) and with TaylorSeer
CFG_CACHE = "cfg_cache"
CFG_CACHE_CASES = (("fixed_interval", {"interval": 1, "cfg_cache_interval": 3}),
                   ("taylorseer", {"interval": 4, "cfg_cache_interval": 3}))


def _our_settings(ours: list[str], profile: str | None, opts: Options):
    """(method, setting, inputs) of every row of ours: each method's sweep, then the CFG-Cache rows."""
    for method in ours:
        if method == CFG_CACHE:
            continue
        knob, values, fixed, extra = sweep_for(method, opts.quick)
        settings = [{knob: value} for value in values] + extra
        for setting in settings:
            inputs = {"method": method, **setting}
            inputs.update({k: (profile if v == CALIBRATED else v) for k, v in fixed.items()})
            yield method, " ".join(f"{k}={fmt_value(v)}" for k, v in setting.items()), inputs
    for method, inputs in opts.settings:
        yield method, " ".join(f"{k}={fmt_value(v)}" for k, v in inputs.items()), {"method": method, **inputs}
    if CFG_CACHE in ours:
        for method, extra in CFG_CACHE_CASES:
            setting = method + " " + " ".join(f"{k}={fmt_value(v)}" for k, v in extra.items())
            yield CFG_CACHE, setting, {"method": method, **extra}


def _cases(bench: ModelBench, ours: list[str], baselines: list[str], profile: str | None, opts: Options):
    """(kind, method, setting, inputs, run) for every row of one model; ``run()`` measures it."""
    import nodes
    pack = bench.pack
    for method, setting, inputs in _our_settings(ours, profile, opts):
        def run(method=method, inputs=inputs, setting=setting):
            cached = bench.counter.attach(pack.nodes.cache_node.build_cached_model(bench.base, **dict(inputs)))
            holder = cached.model_options["transformer_options"]["diffusion_cache"]
            m = _measure(bench, cached, bench.reference, opts.repeats, lambda: holder.last_stats,
                         _schedule_replay(bench, holder))
            records = m["stats"]["records"]
            summary = m["stats"]["summary"]
            row = _row(bench, method, setting, inputs, m, "ours", summary["compute_fraction"],
                       sum(1 for r in records if r["decision"] == "computed"), len(records),
                       summary["peak_cache_mb"], "".join(r["decision"][0].upper() for r in records))
            work = count_cache_work(pack.cache_core.engine, lambda: bench.sample(cached),
                                    bench.latent["samples"].numel())
            row.passes_computed, row.passes_cached = work["passes_computed"], work["passes_cached"]
            row.transient_mb = work["transient_mb"]
            cached_steps = [r for r in records if r["decision"] != "computed"]
            row.whole_steps = bool(cached_steps) and all(whole_step_cached(r) for r in cached_steps)
            row.attention_skipped_share = summary.get("attention_skipped_share")
            row.cfg_uncond_skipped = summary.get("cfg_uncond_skipped")
            return row
        yield "ours", method, setting, inputs, run
    for name in baselines:
        spec = BASELINES[name]
        for value in spec["quick" if opts.quick else "full"]:
            inputs = {spec["knob"]: value, **spec.get("inputs", {})}

            def run(name=name, spec=spec, inputs=inputs, setting=f"{spec['knob']}={fmt_value(value)}"):
                out = nodes.NODE_CLASS_MAPPINGS[spec["node"]].execute(bench.base, **inputs)
                cached = bench.counter.attach(out.result[0] if hasattr(out, "result") else out[0])
                m = _measure(bench, cached, bench.reference, opts.repeats, lambda: None)
                total = m["uncached_calls"]
                return _row(bench, name, setting, {"node": spec["node"], **inputs}, m, "baseline",
                            m["cached_calls"] / total if total else 1.0, m["cached_calls"], total,
                            m["holder_bytes"] / 2 ** 20)
            yield "baseline", name, f"{spec['knob']}={fmt_value(value)}", {"node": spec["node"], **inputs}, run


def run_benchmark(opts: Options) -> dict:
    """Run the benchmark; returns ``{"environment", "config", "rows"}`` (rows as dicts)."""
    opts.repeats = max(3, opts.repeats or 5)
    opts.batch = opts.batch or (4 if opts.quick else 10)
    pack = comfy_host.load_pack()
    import comfy.model_management
    import comfy.utils
    import folder_paths
    import nodes
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(opts.threads)
    settle_server_module()
    comfy.utils.PROGRESS_BAR_ENABLED = False
    logging.getLogger().setLevel(logging.WARNING)
    device = comfy.model_management.get_torch_device()

    ours_all, baselines_all = methods_catalogue()
    wanted = opts.methods or (([] if opts.settings else ours_all) + (baselines_all if opts.baselines else []))
    bad = [m for m, _ in opts.settings if m not in ours_all or m == CFG_CACHE]
    if bad:
        raise SystemExit(f"--setting names unknown method(s) {bad}; choose from {ours_all[:-1]}")
    unknown = [m for m in wanted if m not in ours_all and m not in baselines_all]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {ours_all + baselines_all}")
    ours = [m for m in wanted if m in ours_all]
    # the baselines run unless left out; naming some in --methods runs only those
    baselines = [m for m in wanted if m in baselines_all]
    if opts.baselines and not baselines:
        baselines = list(baselines_all)
    if not opts.baselines:
        baselines = []

    available = pack.nodes.tiny_models.list_tiny_models()
    models = opts.models or available
    missing = [m for m in models if m not in available]
    if missing or not models:
        raise SystemExit(f"tiny model(s) {missing or models} not found in {pack.nodes.tiny_models.TINY_MODELS_DIR}"
                         f" (available: {available or 'none'})")

    env = environment(opts, device)
    config = {"command": " ".join(["python scripts/benchmark.py"] + argv_used(opts)), "quick": opts.quick,
              "repeats": opts.repeats, "batch": opts.batch, "seed": opts.seed,
              "steps": opts.steps, "models": models, "methods": ours, "baselines": baselines}
    rows: list[Row] = []
    started = time.perf_counter()

    # calibrated profiles go to a scratch user directory, never into the user's ComfyUI
    user_dir_before = folder_paths.get_user_directory()
    scratch = tempfile.TemporaryDirectory(prefix="diffusion_cache_bench_")
    folder_paths.set_user_directory(scratch.name)
    try:
        for model_name in models:
            bench = ModelBench(model_name, opts)
            config.setdefault("sampling", {})[model_name] = {
                "sampler_name": bench.sampler, "scheduler": bench.scheduler, "steps": bench.steps, "cfg": bench.cfg}
            log(opts, f"[{model_name}] {bench.steps} steps, cfg {bench.cfg:g}, {bench.sampler}/{bench.scheduler}, "
                      f"batch {opts.batch}, seed {opts.seed}")
            bench.sample(bench.uncached)                      # warm-up
            bench.counter.reset()
            with MemoryProbe(device) as mem:
                ref_samples, _ = bench.sample(bench.uncached)
            bench.uncached_calls = bench.counter.calls
            bench.uncached_peak_mb = mem.peak_mb
            bench.reference = bench.decode(ref_samples)
            again, _ = bench.sample(bench.uncached)
            if not torch.equal(again, ref_samples):
                log(opts, "  warning: two uncached runs differ; sampling is not deterministic here")
            profile = None
            if any(m in ("teacache", "magcache") for m in ours):
                profile = _calibrate(bench, opts)

            for kind, method, setting, inputs, run_case in _cases(bench, ours, baselines, profile, opts):
                try:
                    row = run_case()
                except Exception as e:  # one broken method or baseline must not end the benchmark
                    row = Row(model=model_name, method=method, setting=setting, inputs=inputs, kind=kind,
                              error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
                rows.append(row)
                log(opts, "  " + short_line(row))
    finally:
        folder_paths.set_user_directory(user_dir_before)
        scratch.cleanup()

    env["seconds"] = round(time.perf_counter() - started, 1)
    return {"environment": env, "config": config, "rows": [asdict(r) for r in rows]}


# ----------------------------------------------------------------------------- output

def short_line(row: Row) -> str:
    if row.error:
        return f"{row.method:18s} {row.setting:18s} FAILED: {row.error}"
    psnr = "identical" if row.psnr_db is None else f"{row.psnr_db:.2f} dB"
    return (f"{row.method:18s} {row.setting:18s} calls {row.calls_computed:3d}/{row.calls_total:<3d} "
            f"blocks {row.compute_fraction:.3f}  speedup {row.wall_speedup:.2f}x  PSNR {psnr}  SSIM {row.ssim:.4f}"
            f"{_side_note(asdict(row))}")


COLUMNS_NOTE = (
    "Columns: *calls* = model evaluations computed in full / all evaluations of the run; "
    "*blocks* = transformer block evaluations computed / total (baselines skip whole calls, so it equals "
    "their call fraction); *speedup* = median over interleaved repeats, after a warm-up run, of "
    "uncached / cached wall time of adjacent runs (pairs cancel the machine's drift; the JSON keeps the ratio "
    "of the medians too); *PSNR*, *SSIM* = decoded images vs the uncached images of the same seed "
    "(inf = identical); *cache MB* = peak size of the tensors the cache holds; *delta peak MB* = peak "
    "memory above the run's start during a cached run minus the same for an uncached run (CPU: resident "
    "set size sampled every 2 ms; allocator reuse makes it noisy by a few MB either way; CUDA: allocated memory); "
    "*realised* = speedup x block fraction (1.0 = the whole ideal speedup); *schedule bound* = the speedup of "
    "the row's own decisions replayed with no cache work at all (scripts/schedule_bound.py: computed blocks run, "
    "cached ones hand their inputs back, cached whole steps return their input; wrong images, the time the "
    "schedule costs when the cache costs nothing); *of bound* = median over the same rounds of replay / cached "
    "time, the share of that speedup the cache delivers; *passes/block* = the cache's own "
    "full-tensor passes per block on computed and on cached steps, counted with a torch dispatch mode "
    "(scripts/cache_work.py); *transient MB* = the most the cache's own ops allocate in one evaluation.")


def header_lines(result: dict) -> list[str]:
    env, cfg = result["environment"], result["config"]
    lines = [
        "# Diffusion Cache benchmark",
        "",
        f"- environment: Python {env['python']}, torch {env['torch']} with {env['torch_threads']} thread(s), "
        f"device {env['device']}{' (' + env['gpu'] + ')' if env.get('gpu') else ''}, CPU {env['cpu']} "
        f"({env['cpu_count']} logical cores), ComfyUI {env['comfyui']}, pack commit {env['pack_commit']}",
        f"- sampling: ComfyUI KSampler node, each model's recommended sampler/scheduler/steps/cfg"
        f"{' (steps overridden: ' + str(cfg['steps']) + ')' if cfg['steps'] else ''}, batch {cfg['batch']} "
        f"(digits 0-9 cycled), seed {cfg['seed']}, {cfg['repeats']} timed repeats per setting"
        f"{', quick sweep' if cfg['quick'] else ''}",
    ]
    if any(m in ("teacache", "magcache") for m in cfg["methods"]):
        lines.append("- TeaCache and MagCache use a profile calibrated on the same model and step count "
                     "(Diffusion Cache Calibrate node)")
    if cfg["baselines"]:
        lines.append("- ComfyUI's built-in nodes (" + ", ".join(BASELINES[b]["node"] for b in cfg["baselines"])
                     + ") run with their default window (start 0.15, end 0.95)")
    lines += [
        f"- command: `{cfg['command']}`; total time {env.get('seconds', '?')} s",
    ]
    return lines


def markdown_table(result: dict) -> str:
    head = ("| model | method | setting | calls | blocks | speedup | realised | schedule bound | of bound | PSNR dB | "
            "SSIM | cache MB | delta peak MB | passes/block computed | passes/block cached | transient MB |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = [head]
    for r in result["rows"]:
        if r.get("error"):
            method = r["method"] + (" (ComfyUI)" if r["kind"] == "baseline" else "")
            out.append(f"| {r['model']} | {method} | {r['setting']} | failed: {r['error'][:120]} |"
                       + "  |" * 15)
            continue
        psnr = "inf" if r["psnr_db"] is None else f"{r['psnr_db']:.2f}"
        delta = "n/a" if r["delta_peak_mb"] is None else f"{r['delta_peak_mb']:+.1f}"
        method = r["method"] + (" (ComfyUI)" if r["kind"] == "baseline" else "")
        out.append(f"| {r['model']} | {method} | {r['setting']}{_side_note(r)} | "
                   f"{r['calls_computed']}/{r['calls_total']} | "
                   f"{r['compute_fraction']:.3f} | {r['wall_speedup']:.2f}x | {_fmt(realised(r), '.2f')} | "
                   f"{_fmt(r.get('bound_speedup'), '.2f')}{'x' if r.get('bound_speedup') else ''} | "
                   f"{_fmt(r.get('of_bound'), '.2f')} | {psnr} | "
                   f"{r['ssim']:.4f} | {r['extra_mem_mb']:.3f} | {delta} | {_fmt(r.get('passes_computed'), 'g')} | "
                   f"{_fmt(r.get('passes_cached'), 'g')} | {_fmt(r.get('transient_mb'), '.3f')} |")
    return "\n".join(out)


def _side_note(row: dict) -> str:
    """What PAB and CFG-Cache rows add to their setting: the share of attention calls skipped, the
    unconditional evaluations rebuilt."""
    notes = []
    if row.get("attention_skipped_share") is not None:
        notes.append(f"attention skipped {row['attention_skipped_share']:.0%}")
    if row.get("cfg_uncond_skipped"):
        notes.append(f"uncond rebuilt {row['cfg_uncond_skipped']}x")
    return f" ({', '.join(notes)})" if notes else ""


def _fmt(v, spec) -> str:
    return "n/a" if v is None else format(v, spec)


def realised(row: dict, speedup: str = "wall_speedup") -> float | None:
    """Wall speedup as a fraction of the ideal one (1 / the block fraction computed)."""
    if row.get("error") or not row.get("compute_fraction") or row.get(speedup) is None:
        return None
    return round(row[speedup] * row["compute_fraction"], 3)


FORECASTING = ("taylorseer", "hicache", "foca", "freqca", "speca")


def overhead_lines(result: dict) -> list[str]:
    """Realised / ideal speedup: the median over our rows that skip something, and per forecasting method."""
    ours = [r for r in result["rows"] if r["kind"] == "ours" and realised(r) is not None
            and r["compute_fraction"] < 1.0]
    if not ours:
        return []
    lines = [f"- realised / ideal speedup, median over our {len(ours)} rows that skip work: "
             f"{statistics.median(realised(r) for r in ours):.3f}"]
    for method in FORECASTING:
        vals = [realised(r) for r in ours if r["method"] == method]
        if vals:
            lines.append(f"  - {method}: median {statistics.median(vals):.3f} (lowest {min(vals):.3f})")
    for whole, what in ((True, "whose cached steps run nothing of the model"),
                        (False, "whose cached steps still run part of it (front blocks, embeddings, final layer)")):
        vals = [realised(r) for r in ours if r.get("whole_steps") is whole]
        if vals:
            lines.append(f"  - the {len(vals)} rows {what}: median {statistics.median(vals):.3f}")
    by_median = [realised(r, "median_speedup") for r in ours if r.get("median_speedup") is not None]
    if by_median:
        lines.append(f"  - the same median with the ratio of the median times instead of paired ratios: "
                     f"{statistics.median(by_median):.3f}")
    return lines + bound_lines(ours)


def bound_lines(ours: list[dict]) -> list[str]:
    """The share of each schedule's own speedup the cache delivers (replay time / cached time): what
    the cache's work costs, apart from what the schedule leaves running on its cached steps."""
    rows = [r for r in ours if r.get("of_bound") is not None]
    if not rows:
        return []
    lines = [f"- cache's share of its schedule's speedup (the schedule replayed with no cache work / cached; "
             f"1.0 = the cache costs nothing), median over {len(rows)} rows: "
             f"{statistics.median(r['of_bound'] for r in rows):.3f}"]
    for method in FORECASTING:
        vals = [r["of_bound"] for r in rows if r["method"] == method]
        if vals:
            lines.append(f"  - {method}: median {statistics.median(vals):.3f} (lowest {min(vals):.3f})")
    for whole, what in ((True, "whole-step rows"), (False, "rows running part of the model")):
        vals = [r for r in rows if r.get("whole_steps") is whole]
        if vals:
            lines.append(f"  - the {len(vals)} {what}: median {statistics.median(r['of_bound'] for r in vals):.3f}; "
                         f"the schedule alone realises a median {statistics.median(r['bound_speedup'] * r['compute_fraction'] for r in vals):.3f} "
                         f"of the ideal speedup")
    return lines


def slower_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(fewer, more): pairs of our settings of one method on one model, alike but for the swept knob,
    where the setting that computes fewer blocks measured slower than the one computing more."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] != "ours" or r.get("error") or r.get("wall_speedup") is None or not r.get("compute_fraction"):
            continue
        others = tuple(sorted((k, repr(v)) for k, v in r["inputs"].items()
                              if k not in (r["setting"].split("=")[0], "method")))
        groups.setdefault((r["model"], r["method"], others), []).append(r)
    return [(a, b) for group in groups.values() for a in group for b in group
            if a["compute_fraction"] < b["compute_fraction"] and a["wall_speedup"] < b["wall_speedup"]]


def slower_lines(result: dict) -> list[str]:
    """The goal that fewer computed steps never makes a method slower, checked on every measured sweep."""
    pairs = slower_pairs(result["rows"])
    if not pairs:
        return ["- fewer computed blocks never measured slower within a method's sweep"]
    lines = [f"- {len(pairs)} pair(s) of settings where fewer computed blocks measured slower "
             f"(wall timing moves by about 10 % between runs):"]
    for a, b in sorted(pairs, key=lambda p: p[1]["wall_speedup"] / p[0]["wall_speedup"], reverse=True):
        lines.append(f"  - {a['model']} {a['method']}: {a['setting']} ({a['compute_fraction']:.3f} of the blocks) "
                     f"{a['wall_speedup']:.2f}x against {b['setting']} ({b['compute_fraction']:.3f}) "
                     f"{b['wall_speedup']:.2f}x: {b['wall_speedup'] / a['wall_speedup'] - 1:.0%} slower")
    return lines


def uncached_lines(result: dict) -> list[str]:
    by_model = {}
    for r in result["rows"]:
        if r.get("error"):
            continue
        by_model.setdefault(r["model"], []).extend(r["times_uncached"])
    sampling = result["config"].get("sampling", {})

    def settings(m):
        s = sampling.get(m)
        return f"{s['sampler_name']}/{s['scheduler']}, {s['steps']} steps, cfg {s['cfg']:g}; " if s else ""
    return [f"- {m}: {settings(m)}uncached run median {statistics.median(t):.3f} s over {len(t)} timed runs"
            for m, t in by_model.items()]


# what is known about a baseline's failure, shown under the table when it fails
KNOWN_FAILURES = {
    "comfyui_easycache": "on a skipped step, ComfyUI 0.3.64's EasyCache adds each condition's cached difference "
                         "to the whole batch (comfy_extras/nodes_easycache.py, apply_cache_diff), which fails when "
                         "batched CFG carries more than one image per condition",
}


def failure_lines(result: dict) -> list[str]:
    failed = {}
    for r in result["rows"]:
        if r.get("error"):
            failed.setdefault((r["method"], r["error"]), []).append(f"{r['model']} {r['setting']}")
    return [f"- {method} failed in {len(where)} setting(s) ({', '.join(where)}): `{error}`"
            + (f"; {KNOWN_FAILURES[method]}" if method in KNOWN_FAILURES else "")
            for (method, error), where in failed.items()]


def report(result: dict) -> str:
    lines = header_lines(result) + uncached_lines(result) + overhead_lines(result) + slower_lines(result) + \
        ["", markdown_table(result), "", COLUMNS_NOTE]
    failures = failure_lines(result)
    if failures:
        lines += ["", "Settings that could not run (the exception is reported, the benchmark goes on):", ""]
        lines += failures
    return "\n".join(lines + [""])


PSNR_CAP = 60.0


def plot_pareto(result: dict, path: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    markers = "osD^vP*Xh<>p"
    cmap = plt.get_cmap("tab20")
    colours = [cmap(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
    fig, axes = plt.subplots(2, len(models), figsize=(max(8.0, 6.5 * len(models)), 11.5), squeeze=False)
    for col, model in enumerate(models):
        for row_i, (xkey, xlabel) in enumerate((("wall_speedup", "wall-clock speedup (x)"),
                                                ("ideal", "ideal speedup: 1 / block fraction (x)"))):
            ax = axes[row_i][col]
            for mi, method in enumerate(methods):
                pts = [r for r in rows if r["model"] == model and r["method"] == method and not r.get("error")]
                if not pts:
                    continue
                xs = [r["wall_speedup"] if xkey == "wall_speedup" else 1.0 / max(r["compute_fraction"], 1e-6)
                      for r in pts]
                ys = [PSNR_CAP if r["psnr_db"] is None else min(r["psnr_db"], PSNR_CAP) for r in pts]
                baseline = pts[0]["kind"] == "baseline"
                colour = colours[mi % len(colours)]
                ax.plot(xs, ys, "--" if baseline else "-", color=colour, alpha=0.7, linewidth=1.2,
                        label=(method + (" (ComfyUI)" if baseline else "")) if row_i == 0 and col == 0 else None)
                for j, (x, y, r) in enumerate(zip(xs, ys, pts)):
                    ax.plot(x, y, markers[j % len(markers)], color=colour, markersize=6)
                    ax.annotate(r["setting"].split("=", 1)[-1], (x, y), textcoords="offset points",
                                xytext=(4, 3), fontsize=6, color=colour)
            ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"PSNR vs uncached (dB; identical plotted at {PSNR_CAP:g})")
            ax.set_title(f"{model}: {'measured' if row_i == 0 else 'ideal'} speed vs quality")
            ax.grid(True, alpha=0.3)
    env = result["environment"]
    fig.suptitle(f"Diffusion Cache on the tiny models (torch {env['torch']}, {env['torch_threads']} thread(s), "
                 f"{env['device']})\nmarkers: settings in sweep order, labelled with the knob value; "
                 f"dashed: ComfyUI's built-in nodes", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=8, frameon=False)
    rows_of_legend = math.ceil(len(labels) / 6)
    fig.tight_layout(rect=(0, 0.025 * rows_of_legend + 0.01, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def argv_used(opts: Options) -> list[str]:
    """The command-line options that reproduce ``opts``."""
    out = []
    if opts.quick:
        out.append("--quick")
    for flag, value in (("--models", opts.models), ("--methods", opts.methods)):
        if value:
            out += [flag, ",".join(value)]
    defaults = {"repeats": 5, "batch": 4 if opts.quick else 10, "steps": None, "seed": 0,
                "threads": 1}
    for name, default in defaults.items():
        value = getattr(opts, name)
        if value is not None and value != default:
            out += [f"--{name}", str(value)]
    if not opts.baselines:
        out.append("--no-baselines")
    for method, inputs in opts.settings:
        out += ["--setting", method + ":" + ",".join(f"{k}={fmt_value(v)}" for k, v in inputs.items())]
    return out


def parse_args(argv=None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-json", metavar="PATH",
                   help="do not run: re-render the table / plot / markdown from a JSON written by --json")
    p.add_argument("--quick", action="store_true", help="fewer settings, batch 4 (about ten minutes)")
    p.add_argument("--json", help="write the rows (and environment) as JSON to this path")
    p.add_argument("--plot", help="write a Pareto plot (PNG) to this path")
    p.add_argument("--markdown", help="also write the header and table to this markdown file")
    p.add_argument("--models", help="comma-separated tiny models (default: all shipped)")
    p.add_argument("--methods", help="comma-separated methods and/or baselines "
                                     "(the registry's methods, cache_core/methods/, and "
                                     f"{', '.join(BASELINES)}; default: all)")
    p.add_argument("--no-baselines", action="store_true", help="skip ComfyUI's EasyCache / LazyCache")
    p.add_argument("--repeats", type=int, help="timed repeats per setting, at least 3 (default 5)")
    p.add_argument("--batch", type=int, help="images per run (default 10, quick 4)")
    p.add_argument("--steps", type=int, help="override the model's recommended step count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for the whole run)")
    p.add_argument("--setting", action="append", default=[], metavar="METHOD:KNOB=V[,KNOB=V]",
                   help="one more row of one of our methods with these inputs (repeatable), e.g. "
                        "taylorseer:interval=8,predictor_order=2; without --methods only these rows run "
                        "(and the baselines unless --no-baselines)")
    a = p.parse_args(argv)
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None)
    opts = Options(models=split(a.models), methods=split(a.methods), quick=a.quick, repeats=a.repeats,
                   batch=a.batch, steps=a.steps, seed=a.seed, threads=a.threads, baselines=not a.no_baselines,
                   settings=[parse_setting(t) for t in a.setting])
    return opts, a


def parse_setting(text: str) -> tuple[str, dict]:
    """"taylorseer:interval=8,predictor_order=2" -> ("taylorseer", {"interval": 8, "predictor_order": 2})."""
    method, sep, rest = text.partition(":")
    inputs = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise SystemExit(f"--setting {text!r}: write METHOD:KNOB=VALUE[,KNOB=VALUE]")
        inputs[key.strip()] = _value(value.strip())
    if not sep or not method.strip() or not inputs:
        raise SystemExit(f"--setting {text!r}: write METHOD:KNOB=VALUE[,KNOB=VALUE]")
    return method.strip(), inputs


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv=None) -> int:
    opts, a = parse_args(argv)
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
    else:
        result = run_benchmark(opts)
    text = report(result)
    print(text)
    if a.json and not a.from_json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1))
        log(opts, f"wrote {a.json}")
    if a.plot:
        log(opts, f"wrote {plot_pareto(result, a.plot)}")
    if a.markdown:
        md = Path(a.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        if a.plot:
            rel = os.path.relpath(Path(a.plot).resolve(), md.parent.resolve())
            text += f"\n![PSNR against speedup, one panel per model]({rel})\n"
        md.write_text(text)
        log(opts, f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
