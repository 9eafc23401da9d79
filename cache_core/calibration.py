"""Fit TeaCache's polynomial and MagCache's magnitude curve from one uncached run."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .profiles import MagnitudeCurve, Profile


def fit_teacache_polynomial(input_changes: Sequence[float], output_changes: Sequence[float],
                            degree: int = 4) -> list[float]:
    """Least-squares polynomial mapping probe change to output change, highest power first."""
    x = np.asarray(input_changes, dtype=np.float64)
    y = np.asarray(output_changes, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ValueError("calibration needs at least 3 recorded steps; sample with more steps")
    degree = min(degree, len(x) - 1)
    coeffs = np.polyfit(x, y, degree)
    return [0.0] * (4 - degree) + [float(c) for c in coeffs]


class CalibrationRecorder:
    """Collects, per stage-0 step, the probe change, output change and residual ratio."""

    def __init__(self):
        self.sigmas: list[float] = []
        self.input_changes: list[float] = []
        self.output_changes: list[float] = []
        self.residual_ratios: list[float] = []
        self.lag_changes: list[list] = []      # per step: rel_l1(y_{k-d}, y_k) for d = 1, 2, ... (budget plans)

    def add(self, sigma: float, input_change: float | None, output_change: float | None,
            residual_ratio: float | None, lag_changes=None) -> None:
        self.sigmas.append(float(sigma))
        self.input_changes.append(np.nan if input_change is None else float(input_change))
        self.output_changes.append(np.nan if output_change is None else float(output_change))
        self.residual_ratios.append(1.0 if residual_ratio is None else float(residual_ratio))
        self.lag_changes.append(_clean(lag_changes or []))

    def to_profile(self, name: str, architecture: str, probe: str) -> Profile:
        if len(self.sigmas) < 3:
            raise ValueError(f"calibration recorded {len(self.sigmas)} steps; it needs at least 3")
        coeffs = fit_teacache_polynomial(self.input_changes[1:], self.output_changes[1:])
        ratios = [1.0] + self.residual_ratios[1:]
        curve = MagnitudeCurve.from_step_ratios(self.sigmas, ratios)
        recorded = {"sigmas": self.sigmas, "input_changes": _clean(self.input_changes),
                    "output_changes": _clean(self.output_changes), "residual_ratios": ratios}
        if any(self.lag_changes):
            recorded["residual_lag_changes"] = self.lag_changes
        return Profile(name=name, architecture=architecture, teacache_coefficients=coeffs,
                       teacache_probe=probe, magnitude=curve, source="calibrated", recorded=recorded)


def _clean(values):
    return [None if not np.isfinite(v) else float(v) for v in values]
