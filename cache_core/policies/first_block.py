"""First-Block Cache and DBCache: compute the front blocks, compare their residual with
the one at the last full step, and skip the middle blocks while it barely changes.

First-Block Cache is the case Fn = 1, Bn = 0 (skip everything after block 0). DBCache
(cache-dit's Dual Block Cache) keeps Fn front and Bn back blocks always computed and
caches the residual of the blocks between them. The hybrid variant also skips the
back blocks, the whole rest of the step, when the change is below half the threshold.
"""
from __future__ import annotations

from typing import Hashable, Sequence

from ..branch_store import split_batch
from ..metrics import rel_l1_per_sample
from .base import COMPUTE, REUSE, Policy, Verdict


class FrontResidualPolicy(Policy):
    name = "dbcache"
    probe = "front_residual"

    def __init__(self, threshold: float, front_blocks: int = 1, back_blocks: int = 0, reduce: str = "max",
                 hybrid: bool = False, name: str | None = None):
        self.threshold = float(threshold)
        self.front_blocks = max(int(front_blocks), 1)
        self.back_blocks = max(int(back_blocks), 0)
        self.reduce = reduce
        self.hybrid = hybrid and self.back_blocks > 0
        if name:
            self.name = name
        self.reference: dict = {}   # front residual at the last full step, per branch

    def spans(self, total_blocks: int) -> list[tuple[int, int]]:
        middle = (self.front_blocks, total_blocks - self.back_blocks)
        return [middle, (self.front_blocks, total_blocks)] if self.hybrid else [middle]

    def begin_run(self, sigmas) -> None:
        self.reference = {}
        self.total_blocks = None

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        chunks = split_batch(probe, keys)
        known = [k for k, c in chunks.items() if k in self.reference and self.reference[k].shape == c.shape]
        changes = [v for k in known for v in rel_l1_per_sample(chunks[k], self.reference[k]).tolist()]
        complete = len(known) == len(chunks)
        metric = self.metric_of(changes if complete else [], self.reduce)
        complete = metric is not None     # on every rank
        if not forced and complete and metric < self.threshold:
            if self.hybrid and metric < 0.5 * self.threshold:
                return Verdict(REUSE, metric, self.threshold, span=1)   # the whole rest of the step
            return Verdict(REUSE, metric, self.threshold)
        for k, c in chunks.items():
            self.reference[k] = c.detach()     # the front residual: the cache's own tensor
        return Verdict(COMPUTE, metric, self.threshold, forced or ("residual changed" if complete else "no reference"))


def FirstBlockPolicy(threshold: float, reduce: str = "max") -> FrontResidualPolicy:
    return FrontResidualPolicy(threshold, 1, 0, reduce, name="first_block")
