"""MagCache: accumulate the error predicted by the residual-magnitude curve.

The rule (MagCache, and the MagCache ComfyUI node): the first ``int(steps * retention)``
steps are computed; after that each step multiplies the running ratio by the curve's
ratio for this step, counts one more skip, and adds ``|1 - ratio|`` to the error. The
step reuses the cached residual while the error stays below the threshold and at most
K steps were skipped in a row; otherwise it computes and the three start again from
(1, 0, 0). A forced step (warm-up, last steps, the window) computes and starts again too.

The ratio of a step is read from the curve by sigma: the magnitude change between the
previous step's sigma and this one, whatever the step count.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..profiles import MagnitudeCurve
from .base import COMPUTE, REUSE, Policy, Verdict


def step_mapped_ratios(curve: MagnitudeCurve, steps: int) -> list[float]:
    """The MagCache node's reading of a recorded curve: step i of ``steps`` takes the recorded
    per-step ratio at index int(i * (L - 1) / (steps - 1)) (i itself when the counts agree)."""
    logs = curve.log_magnitude
    recorded = [1.0] + [math.exp(b - a) for a, b in zip(logs, logs[1:])]
    n = len(recorded)
    if steps == n:
        return recorded
    return [recorded[int(i * ((n - 1) / (steps - 1)))] if steps > 1 else 1.0 for i in range(steps)]


class MagCachePolicy(Policy):
    name = "magcache"

    def __init__(self, threshold: float, curve: MagnitudeCurve, max_skips: int = 4, retention: float = 0.1,
                 ratio_index: str = "sigma"):
        self.threshold = float(threshold)
        self.ratio_index = ratio_index
        self.curve = curve
        self.max_skips = int(max_skips)
        self.retention = float(retention)
        self.ratios: list[float] = []
        self.retained_steps = 0
        self._reset_accumulators()

    def _reset_accumulators(self) -> None:
        self.ratio, self.skips, self.error = 1.0, 0, 0.0

    def begin_run(self, sigmas: Sequence[float]) -> None:
        steps = max(len(sigmas) - 1, 0)
        if self.ratio_index == "step":
            self.ratios = step_mapped_ratios(self.curve, steps)
        else:
            self.ratios = [1.0] + [self.curve.ratio(sigmas[i - 1], sigmas[i]) for i in range(1, steps)]
        self.retained_steps = int(steps * self.retention)     # as the MagCache node counts them
        self._reset_accumulators()

    def decide(self, ctx, keys, probe, forced) -> Verdict:
        if forced or ctx.step < self.retained_steps:
            self._reset_accumulators()
            return Verdict(COMPUTE, None, self.threshold, forced or "retention")
        self.ratio *= self.ratios[ctx.step] if ctx.step < len(self.ratios) else 1.0
        self.skips += 1
        self.error += abs(1.0 - self.ratio)
        if self.error < self.threshold and self.skips <= self.max_skips:
            return Verdict(REUSE, self.error, self.threshold)
        metric = self.error
        self._reset_accumulators()
        return Verdict(COMPUTE, metric, self.threshold, "predicted error over threshold")
