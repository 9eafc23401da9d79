"""A toy transformer driven through CacheRun: block outputs are known by hand.

Block g adds ``weights[g] * sigma`` to the image stream and half that to the text
stream, so a computed step at sigma s adds ``s * sum(weights)`` and a step that
reuses the residual cached at sigma s0 adds ``s0 * sum(weights)`` instead.
"""
from __future__ import annotations

import torch

from cache_core.config import CacheConfig, ScheduleConfig
from cache_core.engine import CacheRun
from cache_core.layout import BlockLayout
from cache_core.policies import make_policy


class ToyModel:
    def __init__(self, weights, kinds=None, control=None, inplace=False, join=False):
        self.weights = list(weights)
        self.join = join                     # single blocks read cat(txt, img) (ComfyUI's Flux)
        self.inplace = inplace               # blocks write into their input stream (as ComfyUI's Flux does)
        self.layout = BlockLayout(tuple(kinds or (("double_block", len(self.weights)),)))
        self.control = control or {}         # block index -> tensor added after that block
        self.block_calls = 0

    def original(self, g, sigma):
        w = self.weights[g]

        def run_block(args):
            self.block_calls += 1
            out = {"img": args["img"].add_(w * sigma) if self.inplace else args["img"] + w * sigma}
            if "txt" in args:
                out["txt"] = args["txt"] + 0.5 * w * sigma
            return out
        return run_block

    def forward(self, run, x, sigma, keys, txt=None):
        img = x.clone()
        t = None if txt is None else txt.clone()
        joined = 0
        for g in range(self.layout.total):
            if self.join and t is not None and not joined and self.layout.kind_of(g) == "single_block":
                joined, img = t.shape[1], torch.cat((t, img), 1)
            args = {"img": img, "vec": torch.full((x.shape[0], 1), sigma)}
            if t is not None and self.layout.kind_of(g) != "single_block":
                args["txt"] = t
            out = run.block(g, args, self.original(g, sigma)) if run else self.original(g, sigma)(args)
            img, t = out["img"], out.get("txt", t)
            if g in self.control:
                img = img + self.control[g]
        return img[:, joined:]


def make_run(model: ToyModel, sigmas, method="fixed_interval", **kw) -> CacheRun:
    """A run of ``method`` on the toy. The toy exercises the block executor, so methods that can
    cache whole calls cache the block span here unless ``cache_level`` says otherwise."""
    kw.setdefault("cache_level", "blocks")
    schedule = ScheduleConfig(**{k: kw.pop(k) for k in list(kw) if k in
                                 ("warmup_steps", "last_steps_computed", "max_consecutive_cached",
                                  "start_percent", "end_percent")})
    config = CacheConfig.build(method=method, schedule=schedule, **kw)
    return CacheRun(config, make_policy(config), sigmas, model.layout)


def sample(model: ToyModel, run, sigmas, x, keys=("cond",), txt=None, report=True):
    """Evaluate once per step at each schedule sigma; returns the outputs."""
    outs = []
    for i, s in enumerate(sigmas[:-1]):
        if run:
            run.begin_evaluation(s, ("cond",))
            outs.append(run.model_call(x, keys, lambda: model.forward(run, x, s, keys, txt), s,
                                       adds_between_blocks=bool(model.control)))
            run.end_evaluation()
            if report:
                run.step_reported(i)
        else:
            outs.append(model.forward(None, x, s, keys, txt))
    return outs
