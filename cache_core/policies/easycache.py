"""EasyCache as the paper defines it: the runtime transformation rate of the output.

Cached value: ``D = o - x`` per branch; on a reused step ``o = x + D``. ``x_prev``
updates on every step (the paper; ComfyUI's port only on full steps). The first
branch of the run decides, the others follow.
"""
from __future__ import annotations

from typing import Hashable, Sequence

from ..metrics import mean_abs, mean_abs_diff
from .base import COMPUTE, Accumulator, Policy, Verdict


class EasyCachePolicy(Policy):
    name = "easycache"
    probe = "model_input"
    granularity = "output"
    caches_output_change = True

    def __init__(self, threshold: float):
        self.threshold = float(threshold)
        self.accumulator = Accumulator(threshold)
        self.begin_run([])

    def begin_run(self, sigmas) -> None:
        self.x_prev = None
        self.x_prev_step = None     # the step whose input x_prev is (a computed step's x_last is the same)
        self.x_last = None
        self.change_since_full = None      # this step's mean |x - x_last|, when its decision measured it
        self.o_last = None
        self.o_last_size = 0.0      # mean |o_last|
        self.rate = None            # k, the transformation rate
        self.accumulator.reset()

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        x = self.lead_slice(keys, probe)
        if x is None:
            return Verdict(COMPUTE, None, self.threshold, "deciding branch absent")
        dx = None if self.x_prev is None or self.x_prev.shape != x.shape else mean_abs_diff(x, self.x_prev)
        self.change_since_full = dx if self.x_prev is self.x_last else None   # the last step was full
        self.x_prev = x.detach().clone()      # the host's latent: samplers may update it in place
        self.x_prev_step = ctx.step
        estimate = None
        if dx is not None and self.rate is not None and self.o_last is not None:
            estimate = self.rate * dx / max(self.o_last_size, 1e-8)
        estimate = self.agreed(estimate, "mean")
        if forced or estimate is None:
            self.accumulator.reset()
            return Verdict(COMPUTE, None, self.threshold, forced or "no transformation rate yet")
        return self.accumulator.add(estimate)

    def observe_output(self, ctx, keys, x, output, owned: bool = False) -> None:
        xs, os_ = self.lead_slice(keys, x), self.lead_slice(keys, output)
        if xs is None:
            return
        same = self.x_prev_step == ctx.step and self.x_prev is not None and self.x_prev.shape == xs.shape
        if self.o_last is not None and self.x_last is not None and self.o_last.shape == os_.shape:
            dx = self.change_since_full if same else None
            if dx is None:                  # cached steps since the last full one: measure it
                dx = mean_abs_diff(xs, self.x_last)
            if dx > 0:
                self.rate = mean_abs_diff(os_, self.o_last) / dx
        self.o_last = os_.detach() if owned else os_.detach().clone()   # (the host's output: a copy)
        self.o_last_size = mean_abs(self.o_last)
        self.x_last = self.x_prev if same else xs.detach().clone()   # this step's input, copied once
