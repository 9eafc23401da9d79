"""TeaCache: accumulate the rescaled change of the first block's modulated input.

The rule (TeaCache, and the TeaCache ComfyUI node): the first call computes; every later
call adds P(rel_l1(m_i, m_{i-1})) to the accumulator, where m is the probe (block 0's
modulated input, or Wan's timestep modulation), rel_l1 = mean|m_i - m_{i-1}| / mean|m_{i-1}|
and P the profile's polynomial; it reuses while the sum stays below the threshold, else it
computes and the sum starts again from 0. m_{i-1} is the previous call's probe, computed or
not. A forced step computes and starts the sum again.

``signed``: add P as it is (the published Wan, HunyuanVideo, LTX, Lumina and HiDream code
does; a fit can dip below 0 for tiny changes) rather than |P| (the ComfyUI node's Flux path).
"""
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

    def __init__(self, threshold: float, coefficients: Sequence[float], reduce: str = "max",
                 signed: bool = False):
        self.threshold = float(threshold)
        self.coefficients = [float(c) for c in coefficients]
        self.reduce = reduce
        self.signed = bool(signed)
        self.previous: dict = {}
        self.accumulator = Accumulator(threshold)

    def begin_run(self, sigmas) -> None:
        self.previous = {}
        self.accumulator.reset()

    def rescaled(self, change: float) -> float:
        value = polyval(self.coefficients, change)
        return value if self.signed else abs(value)

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        changes = []
        for key, chunk in split_batch(probe, keys).items():
            before = self.previous.get(key)
            if before is not None and before.shape == chunk.shape:
                changes.extend(rel_l1_per_sample(chunk, before).tolist())
            self.previous[key] = chunk.detach()     # the cache's own tensor (the engine's probe)
        change = self.metric_of(changes, self.reduce)
        if forced or change is None:
            self.accumulator.reset()
            return Verdict(COMPUTE, None, self.threshold, forced or "no previous probe")
        return self.accumulator.add(self.rescaled(change))
