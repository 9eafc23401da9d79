"""DeepCache for U-Nets: reuse the deep features, recompute only the shallow branch.

A full step runs the whole U-Net and caches the feature that enters the shallow
output blocks; a cached step runs the input blocks down to ``depth``, takes the
cached deep feature, and runs the matching output blocks with fresh skip features.
Full steps come every ``interval`` steps (uniform) or cluster around a centre step
by a power law (non-uniform).
"""
from __future__ import annotations

import math

from .interval import FixedIntervalPolicy


def nonuniform_full_steps(steps: int, interval: int, center: float = 0.5, power: float = 1.2) -> list[int]:
    """Full-compute step indices, denser around ``center`` (fraction of the run).

    The exponent starts at ``power`` and decreases in 0.02 steps until the schedule
    holds at least ceil(steps / interval) distinct steps.
    """
    wanted = min(steps, math.ceil(steps / max(interval, 1)))
    c = center * (steps - 1)
    p = power
    while True:
        half = max(wanted // 2, 1)
        points = {0, steps - 1}
        for k in range(half + 1):
            f = (k / half) ** p
            points.add(int(round(c - c * f)))
            points.add(int(round(c + (steps - 1 - c) * f)))
        if len(points) >= wanted or p <= 0.02:
            return sorted(points)
        p -= 0.02


class DeepCachePolicy(FixedIntervalPolicy):
    name = "deepcache"
    granularity = "deep"

    def __init__(self, interval: int = 3, depth: int = 0, mode: str = "uniform", center: float = 0.5):
        super().__init__(interval)
        self.depth = int(depth)
        self.mode = mode
        self.center = float(center)
        self.full_steps: set[int] | None = None

    def begin_run(self, sigmas) -> None:
        super().begin_run(sigmas)
        steps = max(len(sigmas) - 1, 0)
        self.full_steps = set(nonuniform_full_steps(steps, self.interval, self.center)) \
            if self.mode == "non-uniform" and steps else None

    def due(self, ctx) -> bool:
        return ctx.step in self.full_steps if self.full_steps is not None else super().due(ctx)
