"""Count the tensor work the cache itself does, per block, by decision.

A ``TorchDispatchMode`` sees every tensor op of a sampling run. It counts only while the
cache's own code runs (its block, model-call and whole-pass handlers and its end of evaluation);
the blocks and model calls it hands back to the host are paused again, and so is the
sampler's own work. What is counted is the cache's work: copies, residuals, forecasts,
the adds of skipped spans. An op (other than a view) counts
as one *full-tensor pass* when its output has at least half as many elements as the
model's input latent (the streams of a block are larger; modulation vectors are smaller);
an allocation (``empty``) is no pass, and an op writing into a given tensor adds no bytes.
Counts are kept per evaluation and attributed to its decision, then divided by the
blocks of that evaluation. The bytes those ops allocate within one evaluation, at the
most, are the cache's peak transient bytes.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _Counter(TorchDispatchMode):
    def __init__(self, min_numel: int):
        super().__init__()
        self.min_numel = min_numel
        self.paused = 1             # counting only inside the cache's own code (see ``ours``)
        self.passes = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.paused and not func.is_view:        # a view moves no data
            allocates = func.__name__.startswith("empty")     # memory, no pass over it
            writes_into = bool(kwargs and "out" in kwargs)    # into memory already counted
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.numel() >= self.min_numel:
                    self.passes += not allocates
                    self.bytes += 0 if writes_into else t.numel() * t.element_size()
        return out


@contextlib.contextmanager
def _patched(cls, name, make):
    original = getattr(cls, name)
    setattr(cls, name, make(original))
    try:
        yield
    finally:
        setattr(cls, name, original)


def count_cache_work(engine_module, sample, latent_numel: int) -> dict:
    """Run ``sample()`` once with the counter on; returns passes per block on computed and on
    cached evaluations and the peak transient MB of one evaluation."""
    CacheRun = engine_module.CacheRun
    counter = _Counter(max(latent_numel // 2, 1))
    per_eval: list[tuple[str, int, int, int]] = []     # (decision, passes, bytes, blocks)
    mark = {"passes": 0, "bytes": 0}

    def host(fn):
        """The host's code (a block, the model): not the cache's work."""
        def run(*a, **k):
            saved, counter.paused = counter.paused, 1
            try:
                return fn(*a, **k)
            finally:
                counter.paused = saved
        return run

    def ours(fn):
        """The cache's code, also when the host calls it from inside a paused model call."""
        def run(*a, **k):
            saved, counter.paused = counter.paused, 0
            try:
                return fn(*a, **k)
            finally:
                counter.paused = saved
        return run

    def block(original):
        def wrapped(self, g, args, run_block, *a, **k):
            return ours(original)(self, g, args, host(run_block), *a, **k)
        return wrapped

    def model_call(original):
        def wrapped(self, x, keys, run_model, *a, **k):
            shallow = k.get("run_shallow")
            if shallow is not None:
                k["run_shallow"] = host(shallow)
            elif len(a) >= 2 and a[1] is not None:
                a = (a[0], host(a[1])) + a[2:]
            return ours(original)(self, x, keys, host(run_model), *a, **k)
        return wrapped

    def finish_evaluation(original):
        def wrapped(self, *a, **k):
            before = len(self.stats.records)
            out = ours(original)(self, *a, **k)
            if len(self.stats.records) > before:
                r = self.stats.records[-1]
                per_eval.append((r.decision, counter.passes - mark["passes"], counter.bytes - mark["bytes"],
                                 max(r.blocks_total, 1)))
            mark["passes"], mark["bytes"] = counter.passes, counter.bytes
            return out
        return wrapped

    with _patched(CacheRun, "block", block), _patched(CacheRun, "model_call", model_call), \
            _patched(CacheRun, "answer_pass", ours), _patched(CacheRun, "record_pass", ours), \
            _patched(CacheRun, "_finish_evaluation", finish_evaluation), counter:
        sample()

    def per_block(decisions):
        rows = [(p, b) for d, p, _, b in per_eval if d in decisions]
        return None if not rows else round(sum(p for p, _ in rows) / sum(b for _, b in rows), 2)

    return {"passes_computed": per_block({"computed"}), "passes_cached": per_block({"reused", "forecast"}),
            "transient_mb": round(max((by for _, _, by, _ in per_eval), default=0) / 2 ** 20, 3)}
