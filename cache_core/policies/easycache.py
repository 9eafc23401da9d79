"""EasyCache as the paper defines it: the runtime transformation rate of the output.

Cached value: ``D = o - x`` per branch; on a reused step ``o = x + D``. ``x_prev``
updates on every step (the paper; ComfyUI's port only on full steps). The first
branch of the run decides, the others follow.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import torch

from .base import COMPUTE, Accumulator, Policy, Verdict


def _mean_abs(t: torch.Tensor) -> float:
    return float(t.float().abs().mean())


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
        self.x_last = None
        self.o_last = None
        self.rate = None            # k, the transformation rate
        self.accumulator.reset()

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        x = self.lead_slice(keys, probe)
        if x is None:
            return Verdict(COMPUTE, None, self.threshold, "deciding branch absent")
        dx = None if self.x_prev is None or self.x_prev.shape != x.shape else _mean_abs(x - self.x_prev)
        self.x_prev = x.detach().clone()
        estimate = None
        if dx is not None and self.rate is not None and self.o_last is not None:
            estimate = self.rate * dx / max(_mean_abs(self.o_last), 1e-8)
        estimate = self.agreed(estimate, "mean")
        if forced or estimate is None:
            self.accumulator.reset()
            return Verdict(COMPUTE, None, self.threshold, forced or "no transformation rate yet")
        return self.accumulator.add(estimate)

    def observe_output(self, ctx, keys, x, output) -> None:
        xs, os_ = self.lead_slice(keys, x), self.lead_slice(keys, output)
        if xs is None:
            return
        if self.o_last is not None and self.x_last is not None and self.o_last.shape == os_.shape:
            dx = _mean_abs(xs - self.x_last)
            if dx > 0:
                self.rate = _mean_abs(os_ - self.o_last) / dx
        self.o_last = os_.detach().clone()
        self.x_last = xs.detach().clone()
