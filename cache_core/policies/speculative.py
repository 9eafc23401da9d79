"""Speculative caching in the SpeCa spirit: forecast, verify cheaply, compute when wrong.

Every step after warm-up is a draft. A verified draft runs the front block for real, compares its
residual with the forecast of that same residual from the history of full steps, and accepts
the draft of the rest of the model when the relative L1 error (against the real residual)
stays under the threshold and fewer than ``max_drafts`` drafts ran in a row.

The first draft after a computed step (``unverified_drafts``) is not verified while the last
verification says it would pass: a forecast's error grows at least with the square of its
distance from the computed step, so the last measured error e, made d steps out, stands for
e / d² one step out. Where the host allows whole passes such a draft is answered whole, from
the forecast of the model's prediction. Otherwise it is verified like the others, so a
threshold no draft meets computes every step.
"""
from __future__ import annotations

from typing import Hashable, Sequence

from ..branch_store import BranchStore
from ..metrics import rel_difference_per_sample
from ..predictors import ForecastPredictor
from .base import COMPUTE, REUSE, Policy, Verdict


class SpeculativePolicy(Policy):
    name = "speca"
    probe = "front_residual"
    front_blocks = 1

    def __init__(self, threshold: float, order: int = 2, axis: str = "step", reduce: str = "max",
                 max_drafts: int = 8, unverified_drafts: int = 1):
        self.threshold = float(threshold)
        self.order, self.axis, self.reduce = order, axis, reduce
        self.max_drafts = int(max_drafts)
        self.unverified_drafts = min(max(int(unverified_drafts), 0), self.max_drafts)
        self.begin_run([])

    def begin_run(self, sigmas) -> None:
        self.forecaster = ForecastPredictor(BranchStore("speca probe"), "taylor", self.order, self.axis)
        self.drafts = 0
        self.trusted = False            # the last verification says a one-step draft passes

    def draft_without_probe(self, ctx) -> Verdict | None:
        """The first drafts after a computed step (the reference verifies from the second on),
        while the last verification says they pass."""
        if not self.trusted or self.drafts >= self.unverified_drafts:
            return None
        self.drafts += 1
        return Verdict(REUSE, None, self.threshold)

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        ready = self.forecaster.ready("probe", keys) and not forced and self.drafts < self.max_drafts
        errors = []
        if ready:
            # real minus draft, the forecast's weighted sum started from the real residual
            miss = self.forecaster.predict_onto("probe", keys, ctx, probe, -1.0)
            errors = rel_difference_per_sample(miss, probe).tolist()
        error = self.metric_of(errors, self.reduce)
        if error is not None:
            # a forecast's error grows at least with the square of its distance from the history:
            # the error this draft's would have one step from its computed step
            self.trusted = error / (self.drafts + 1) ** 2 <= self.threshold
            if error <= self.threshold:
                self.drafts += 1
                return Verdict(REUSE, error, self.threshold)
            reason = "draft rejected"
        else:
            reason = forced or ("max drafts" if self.drafts >= self.max_drafts else "no history")
        self.drafts = 0
        self.forecaster.record("probe", keys, probe.detach(), ctx)
        return Verdict(COMPUTE, error, self.threshold, reason)

    def release(self) -> None:
        self.forecaster.clear()
        self.drafts = 0
        self.trusted = False
