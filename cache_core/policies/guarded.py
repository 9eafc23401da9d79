"""A quality guard for forecasting: forecast by default, compute when the forecast drifts.

The guard costs no model work. At every computed step the real residual of the
deciding branch is compared with what the forecast from the earlier computed steps
would have returned there: that is the error the skipped steps just before it made
(the forecast error grows with the horizon). Like an ODE solver's step-size control,
the next interval follows from it: with an error ~ h^(k+1) for a forecast of order k
over h steps, the next interval is ``h * (threshold / error) ** (1 / (k + 1))``,
at most twice the last one and at most ``max_interval``. The interval grows while the
check passes and shrinks at once after a failure, per run.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import torch

from ..forecast import newton_extrapolate
from ..metrics import rel_difference_per_sample
from .base import COMPUTE, REUSE, Policy, Verdict


class GuardedForecastPolicy(Policy):
    name = "guarded_forecast"
    probe = None
    wants_residuals = True          # the engine reports the deciding branch's residuals of full steps

    def __init__(self, threshold: float, max_interval: int = 8, order: int = 1, axis: str = "step",
                 reduce: str = "max", start_interval: int = 8, safety: float = 0.9, growth: float = 2.0):
        self.threshold = float(threshold)
        self.max_interval = max(1, int(max_interval))
        self.order = max(1, min(int(order), 4))
        self.axis, self.reduce = axis, reduce
        self.start_interval = max(1, min(int(start_interval), self.max_interval))
        self.safety, self.growth = float(safety), float(growth)
        self.begin_run([])

    def begin_run(self, sigmas) -> None:
        self.history: list[tuple[float, torch.Tensor, float]] = []   # (x, residual, gain) of full steps
        self.pending: list[float] = []     # per-sample errors measured at the last computed step
        self.pending_order = 0             # the order of the forecast those errors measured
        self.last_computed: int | None = None
        self.gap: int | None = None        # steps from the computed step before the last to the last
        self.interval = self.start_interval
        self.failures = 0

    def _x(self, ctx) -> float:
        return float(ctx.sigma) if self.axis == "sigma" else float(ctx.step)

    # ---- what ran ------------------------------------------------------------------
    def observe_residuals(self, ctx, keys: Sequence[Hashable], residuals: dict, gain: float = 1.0) -> None:
        """``gain``: each residual is the tensor times ``gain`` (a whole pass's 1 / sigma)."""
        values = [v for v in residuals.values() if v is not None]
        if values:          # the recorded residuals: the cache's own tensors, kept without a copy
            flat = [v.detach().flatten(1) for v in values]
            self._measure(ctx, flat[0] if len(flat) == 1 else torch.cat(flat, dim=1), gain)

    def observe_output(self, ctx, keys, x, output, owned: bool = False) -> None:
        if self.granularity == "output" and output is not None:    # whole calls cached: their output
            flat = output.detach().flatten(1)
            self._measure(ctx, flat if owned else flat.clone())     # the host's output: a copy

    def _measure(self, ctx, value: torch.Tensor, gain: float = 1.0) -> None:
        """The error of the forecast of ``value * gain`` from the history, relative to it: with
        every value scaled by 1 / gain, ``value`` itself starts the sum (the gain cancels)."""
        if ctx.stage > 0:
            return
        x = self._x(ctx)
        h = [p for p in self.history if p[0] != x and p[1].shape == value.shape]
        if h:
            k = min(self.order, len(h) - 1)
            xs, values, gains = [p[0] for p in h], [p[1] for p in h], [p[2] / gain for p in h]
            if value.dtype == torch.float32:   # real minus draft: the forecast's sum started from the value
                miss = newton_extrapolate(xs, values, x, k, gains=gains, onto=value, alpha=-1.0)
            else:                              # (a low-precision start would round the difference)
                miss = newton_extrapolate(xs, values, x, k, gains=gains) - value
            self.pending = rel_difference_per_sample(miss, value).tolist()
            self.pending_order = k
        h.append((x, value, gain))
        self.history = h[-(self.order + 1):]

    def ran(self, ctx, computed: bool) -> None:
        if computed:
            if self.last_computed is not None:
                self.gap = ctx.step - self.last_computed
            self.last_computed = ctx.step

    # ---- the decision --------------------------------------------------------------
    def _adapt(self, error: float) -> None:
        gap = self.gap or self.interval
        if error > self.threshold:
            self.failures += 1
        if self.pending_order == 0:       # a plain reuse was measured (one point of history): it says
            self.interval = max(1, gap // 2)    # little of the forecast; halve the first interval
            return
        if error <= 0:
            size = gap * self.growth
        else:
            size = gap * self.safety * (self.threshold / error) ** (1.0 / (self.pending_order + 1))
        size = min(size, gap * self.growth)
        self.interval = max(1, min(self.max_interval, int(math.floor(size + 1e-9))))

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        error = self.metric_of(self.pending, self.reduce)      # once per decision, agreed across ranks
        self.pending = []
        if error is not None:
            self._adapt(error)
        since = None if self.last_computed is None else ctx.step - self.last_computed
        if forced or since is None or since >= self.interval:
            reason = forced or ("no history" if since is None else f"interval {self.interval} reached")
            return Verdict(COMPUTE, error, self.threshold, reason)
        return Verdict(REUSE, error, self.threshold)

    def release(self) -> None:
        self.begin_run([])
