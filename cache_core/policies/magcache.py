"""MagCache: accumulate the error predicted by the residual-magnitude curve."""
from __future__ import annotations

from typing import Sequence

from ..profiles import MagnitudeCurve
from .base import COMPUTE, REUSE, Policy, Verdict


class MagCachePolicy(Policy):
    name = "magcache"

    def __init__(self, threshold: float, curve: MagnitudeCurve, max_skips: int = 4, retention: float = 0.1):
        self.threshold = float(threshold)
        self.curve = curve
        self.max_skips = int(max_skips)
        self.retention = float(retention)
        self.ratios: list[float] = []
        self._reset_accumulators()

    def _reset_accumulators(self) -> None:
        self.ratio, self.skips, self.error = 1.0, 0, 0.0

    def begin_run(self, sigmas: Sequence[float]) -> None:
        steps = max(len(sigmas) - 1, 0)
        self.ratios = [1.0] + [self.curve.ratio(sigmas[i - 1], sigmas[i]) for i in range(1, steps)]
        self.retained_steps = int(self.retention * steps + 0.5)
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
