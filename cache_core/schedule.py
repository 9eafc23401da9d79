"""Locate a model evaluation in its run: step from the sigma's place in the schedule.

The step index is never found by counting model calls (that breaks with split CFG,
Heun-type samplers and interrupted runs). It is the position of the evaluation's
sigma in the run's sigma schedule. Samplers report step ``i`` right after its
first evaluation (ComfyUI's progress callback); evaluations after that report and
before step ``i + 1`` begins are extra stages of step ``i``: midpoints that are not
on the schedule (DPM++ 2S), and, for samplers known to correct at the next sigma
(Heun), the first evaluation at sigma[i + 1].

Samplers with churn (``s_churn > 0`` in k-diffusion's Euler, Heun and DPM-2) evaluate
step ``i`` at ``sigma_hat = sigma[i] * (1 + gamma)``, one gamma for the whole run (steps
outside ``s_tmin``..``s_tmax`` keep ``sigma[i]``). That sigma is off the schedule; the
first evaluation of a churning run lies above ``sigma[0]``, where no midpoint,
corrector or restart lies: it gives gamma, and from then on ``sigma[i] * (1 + gamma)``
locates step ``i`` like ``sigma[i]`` does. (A run whose first step is outside the churn
range keeps treating churned evaluations as extra stages: always computed.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MAX_CHURN = math.sqrt(2.0) - 1.0      # k-diffusion caps gamma at sqrt(2) - 1


@dataclass(frozen=True)
class StepLocation:
    step: int
    stage: int


class StepLocator:
    def __init__(self, sigmas, expect_reports: bool = False, corrector_at_next_sigma: bool = False,
                 rel_tol: float = 1e-4):
        values = [float(x) for x in sigmas]
        if len(values) < 2:
            raise ValueError("a sampling schedule needs at least 2 sigmas (one step)")
        self.sigmas = values
        self.total_steps = len(values) - 1
        self.rel_tol = rel_tol
        self.expect_reports = expect_reports      # the host forwards the sampler's step reports
        self.corrector_at_next_sigma = corrector_at_next_sigma
        self.last_report = -1
        self._corrected: set[int] = set()
        self._last_stage0: tuple[int, float] | None = None
        self.churn: float | None = None           # gamma of a churning sampler, once seen
        self._evaluations = 0

    def step_reported(self, index: int) -> None:
        """The sampler reports step ``index`` (after the step's first evaluation)."""
        self.last_report = max(self.last_report, int(index))

    def _close(self, a: float, b: float) -> bool:
        return abs(a - b) <= self.rel_tol * max(abs(a), abs(b), 1e-8)

    def _exact_index(self, sigma: float) -> int | None:
        k = min(range(self.total_steps), key=lambda i: abs(self.sigmas[i] - sigma))
        if self._close(sigma, self.sigmas[k]):
            return k
        if self.churn is not None:
            scale = 1.0 + self.churn
            k = min(range(self.total_steps), key=lambda i: abs(self.sigmas[i] * scale - sigma))
            if self._close(sigma, self.sigmas[k] * scale):
                return k
        return None

    def _infer_churn(self, sigma: float) -> bool:
        """The run's first evaluation, off the schedule above sigma[0]: a churned step 0."""
        if self.churn is not None or self._evaluations > 0 or self.sigmas[0] <= 0:
            return False
        gamma = sigma / self.sigmas[0] - 1.0
        if self.rel_tol < gamma <= MAX_CHURN * (1 + self.rel_tol):
            self.churn = gamma
            return True
        return False

    def locate(self, sigma: float) -> StepLocation:
        """Return (step, stage) of an evaluation at ``sigma``."""
        sigma = float(sigma)
        exact = self._exact_index(sigma)
        if exact is None and self._infer_churn(sigma):
            exact = self._exact_index(sigma)
        self._evaluations += 1
        if exact is None:
            # between schedule points: an extra stage of the step whose interval holds it
            return StepLocation(self._interval_of(sigma), 1)
        if self.expect_reports:
            reported = self.last_report
            if exact > reported + 1:          # the sampler does not report progress: sigma alone decides
                self.expect_reports = False
            elif exact <= reported:           # a schedule point revisited after its report: an extra stage
                return StepLocation(exact, 1)
            elif (self.corrector_at_next_sigma and reported >= 0 and exact == reported + 1
                  and reported not in self._corrected):
                self._corrected.add(reported)  # Heun's corrector of the reported step
                return StepLocation(reported, 1)
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
