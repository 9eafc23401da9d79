"""Delta-DiT: cache a phase-dependent range of blocks at a fixed interval.

Early in sampling (outline phase, progress below the boundary) the rear blocks are
cached; later (detail phase) the front blocks. Every ``interval``-th step is computed
in full and refreshes both ranges' residuals.
"""
from __future__ import annotations

from .base import REUSE, Verdict
from .interval import FixedIntervalPolicy


class DeltaDiTPolicy(FixedIntervalPolicy):
    name = "delta_dit"

    def __init__(self, interval: int = 2, cached_blocks: int = 0, boundary: float = 0.5):
        super().__init__(interval)
        self.cached_blocks = int(cached_blocks)
        self.boundary = float(boundary)

    def _count(self, total: int) -> int:
        n = self.cached_blocks if self.cached_blocks > 0 else total // 2
        return max(1, min(n, total))

    def spans(self, total_blocks: int) -> list[tuple[int, int]]:
        n = self._count(total_blocks)
        return [(total_blocks - n, total_blocks), (0, n)]

    def reuse(self, ctx, since) -> Verdict:
        rear_phase = ctx.progress < self.boundary
        return Verdict(REUSE, since, self.interval, span=0 if rear_phase else 1)
