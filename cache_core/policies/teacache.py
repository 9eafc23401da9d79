"""TeaCache: accumulate the rescaled change of the first block's modulated input."""
from __future__ import annotations

from typing import Hashable, Sequence

from ..branch_store import split_batch
from ..metrics import rel_l1_per_sample
from .base import COMPUTE, Accumulator, Policy, Verdict


def polyval(coefficients: Sequence[float], x: float) -> float:
    """Evaluate a polynomial given highest power first (numpy.polyval order)."""
    out = 0.0
    for c in coefficients:
        out = out * x + float(c)
    return out


class TeaCachePolicy(Policy):
    name = "teacache"
    probe = "modulated_input"

    def __init__(self, threshold: float, coefficients: Sequence[float], reduce: str = "max"):
        self.threshold = float(threshold)
        self.coefficients = [float(c) for c in coefficients]
        self.reduce = reduce
        self.previous: dict = {}
        self.accumulator = Accumulator(threshold)

    def begin_run(self, sigmas) -> None:
        self.previous = {}
        self.accumulator.reset()

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        changes = []
        for key, chunk in split_batch(probe, keys).items():
            before = self.previous.get(key)
            if before is not None and before.shape == chunk.shape:
                changes.extend(rel_l1_per_sample(chunk, before).tolist())
            self.previous[key] = chunk.detach().clone()
        change = self.metric_of(changes, self.reduce)
        if forced or change is None:
            self.accumulator.reset()
            return Verdict(COMPUTE, None, self.threshold, forced or "no previous probe")
        return self.accumulator.add(abs(polyval(self.coefficients, change)))
