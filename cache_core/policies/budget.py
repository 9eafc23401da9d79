"""A compute budget: exactly K of the run's N steps computed, chosen by ``cache_core.budget.plan``."""
from __future__ import annotations

import logging

from .. import budget as planner
from .base import COMPUTE, REUSE, Policy, Verdict

log = logging.getLogger(__name__)


def profile_lags(profile, sigmas) -> list | None:
    """The profile's per-step feature distances when it was recorded on this run's sigma grid."""
    recorded = getattr(profile, "recorded", None) or {}
    lags, grid = recorded.get("residual_lag_changes"), recorded.get("sigmas")
    n = len(sigmas) - 1
    if not lags or not grid or len(grid) != n or len(lags) != n:
        return None
    if any(abs(float(a) - float(b)) > 1e-4 * max(abs(float(b)), 1e-3) for a, b in zip(grid, sigmas)):
        return None
    return lags


class BudgetPolicy(Policy):
    """Compute the planned steps, predict the others. The plan is made per run from its sigmas.

    Steps the engine computes outside the plan (its guards, an empty cache) are paid back by
    predicting the next planned step that is not forced, so the run still computes K steps."""
    name = "budget"

    def __init__(self, compute_steps: int = 0, target_speedup: float = 2.5, profile=None, schedule=None,
                 max_span: int = planner.MAX_SPAN, gamma: float = planner.GAMMA):
        self.compute_steps = int(compute_steps)
        self.target_speedup = float(target_speedup)
        self.profile = profile
        self.warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
        self.last = int(getattr(schedule, "last_steps_computed", 0) or 0)
        self.max_span, self.gamma = int(max_span), float(gamma)
        self.planned: list[int] = []
        self.source = "none"
        self.begin_run([])

    def begin_run(self, sigmas) -> None:
        n = max(len(sigmas) - 1, 0)
        self.forced = planner.forced_steps(n, self.warmup, self.last)
        self.budget = planner.budget_size(n, self.compute_steps, self.target_speedup, len(self.forced))
        if self.compute_steps and n and self.compute_steps < len(self.forced):
            log.warning("Diffusion Cache: compute_steps %d is below the %d steps always computed; computing %d",
                        self.compute_steps, len(self.forced), self.budget)
        self.owed = 0              # steps computed outside the plan, to be paid back
        self.skipping = None       # a planned step this policy asked to predict
        self.computed = 0
        if n == 0:
            self.planned, self.plan_set = [], set()
            return
        lags = profile_lags(self.profile, sigmas) if self.profile is not None else None
        if lags is not None:
            cost, self.source = planner.profile_cost(sigmas, lags), f"profile {self.profile.name}"
        else:
            if self.profile is not None and n > 1:
                log.info("Diffusion Cache: profile %r was not recorded on this run's %d-step sigma grid; the "
                         "budget uses its model-independent plan (calibrate this setup for a planned one)",
                         getattr(self.profile, "name", "?"), n)
            cost, self.source = planner.default_cost(n), "default"
        self.planned = planner.plan(n, self.budget, cost, self.forced, self.max_span, self.gamma)
        self.plan_set = set(self.planned)

    def decide(self, ctx, keys, probe, forced) -> Verdict:
        planned = ctx.step in self.plan_set
        self.skipping = None
        if forced:
            return Verdict(COMPUTE, float(self.computed), float(self.budget), forced)
        if planned and self.owed > 0 and ctx.step not in self.forced:
            self.skipping = ctx.step
            return Verdict(REUSE, float(self.computed), float(self.budget))
        if planned:
            return Verdict(COMPUTE, float(self.computed), float(self.budget), "planned")
        return Verdict(REUSE, float(self.computed), float(self.budget))

    def ran(self, ctx, computed: bool) -> None:
        if ctx.stage > 0:
            return
        if computed:
            self.computed += 1
            if ctx.step not in self.plan_set:
                self.owed += 1
        elif self.skipping == ctx.step:
            self.owed -= 1
        self.skipping = None

    def describe(self) -> str:
        return f"budget {self.budget} ({self.source}): {self.planned}"

