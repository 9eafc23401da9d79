"""Locate a model evaluation in its run: step from the sigma's place in the schedule.

The step index is never found by counting model calls (that breaks with split CFG,
Heun-type samplers and interrupted runs). It is the position of the evaluation's
sigma in the run's sigma schedule. A multi-stage sampler evaluates points that are
not on the schedule (DPM++ 2S midpoints: stage >= 1 of the step they fall in) or
evaluates the next step's sigma before that step begins (Heun's corrector). The
sampler's own per-step progress report (``step_finished``) separates the two.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepLocation:
    step: int
    stage: int


class StepLocator:
    def __init__(self, sigmas, expect_reports: bool = False, rel_tol: float = 1e-4):
        values = [float(s) for s in sigmas]
        if len(values) < 2:
            raise ValueError("a sampling schedule needs at least 2 sigmas (one step)")
        self.sigmas = values
        self.total_steps = len(values) - 1
        self.rel_tol = rel_tol
        self.expect_reports = expect_reports  # the host forwards the sampler's step reports
        self.steps_finished = 0
        self._last_stage0: tuple[int, float] | None = None

    def step_finished(self, index: int) -> None:
        """The sampler reports that step ``index`` is complete."""
        self.steps_finished = max(self.steps_finished, int(index) + 1)

    def _close(self, a: float, b: float) -> bool:
        return abs(a - b) <= self.rel_tol * max(abs(a), abs(b), 1e-8)

    def _exact_index(self, sigma: float) -> int | None:
        k = min(range(self.total_steps), key=lambda i: abs(self.sigmas[i] - sigma))
        return k if self._close(sigma, self.sigmas[k]) else None

    def locate(self, sigma: float) -> StepLocation:
        """Return (step, stage) of an evaluation at ``sigma``; records stage-0 evaluations."""
        sigma = float(sigma)
        exact = self._exact_index(sigma)
        if exact is None:
            # between schedule points: an extra stage of the step whose interval holds it
            return StepLocation(self._interval_of(sigma), 1)
        if self.expect_reports:
            current = min(self.steps_finished, self.total_steps - 1)
            if exact == current + 1:     # next step's sigma evaluated before the step began (Heun)
                return StepLocation(current, 1)
            if exact < current:          # an earlier point evaluated late: an extra stage
                return StepLocation(exact, 1)
            if exact > current + 1:      # the sampler does not report progress: sigma alone decides
                self.expect_reports = False
        if self._last_stage0 is not None and self._last_stage0[0] == exact:
            return StepLocation(exact, 1)   # the same point again within one step
        self._last_stage0 = (exact, sigma)
        return StepLocation(exact, 0)

    def _interval_of(self, sigma: float) -> int:
        for k in range(self.total_steps):
            hi, lo = self.sigmas[k], self.sigmas[k + 1]
            if min(hi, lo) <= sigma <= max(hi, lo):
                return k
        return 0 if abs(sigma - self.sigmas[0]) < abs(sigma - self.sigmas[-1]) else self.total_steps - 1

    def progress(self, step: int) -> float:
        return 0.0 if self.total_steps <= 1 else step / (self.total_steps - 1)
