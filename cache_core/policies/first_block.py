"""First-Block Cache: compute block 0 and compare its residual with the last full step's."""
from __future__ import annotations

from typing import Hashable, Sequence

from ..branch_store import split_batch
from ..metrics import rel_l1
from .base import COMPUTE, REUSE, Policy, Verdict, reduce_values


class FirstBlockPolicy(Policy):
    name = "first_block"
    probe = "first_block_residual"

    def __init__(self, threshold: float, reduce: str = "max"):
        self.threshold = float(threshold)
        self.reduce = reduce
        self.reference: dict = {}   # block-0 residual at the last full step, per branch

    def begin_run(self, sigmas) -> None:
        self.reference = {}

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        chunks = split_batch(probe, keys)
        changes = [rel_l1(c, self.reference[k]) for k, c in chunks.items()
                   if k in self.reference and self.reference[k].shape == c.shape]
        complete = len(changes) == len(chunks)
        metric = reduce_values(changes, self.reduce) if changes else None
        if not forced and complete and metric < self.threshold:
            return Verdict(REUSE, metric, self.threshold)
        for k, c in chunks.items():
            self.reference[k] = c.detach().clone()
        return Verdict(COMPUTE, metric, self.threshold, forced or ("residual changed" if complete else "no reference"))
