"""Forecasts of a feature from its recorded history: pure functions.

``xs`` are the coordinates of the recorded values (sampler step indices or sigmas,
in any spacing), oldest first; ``values`` the tensors; ``x`` the coordinate to
forecast at.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def divided_differences(xs: Sequence[float], values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Newton backward divided differences at the newest point: [f[x_n], f[x_n, x_n-1], ...]."""
    n = len(xs)
    table = [v.float() for v in values]
    out = [table[-1]]
    for order in range(1, n):
        table = [(table[i + 1] - table[i]) / (xs[i + order] - xs[i]) for i in range(len(table) - 1)]
        out.append(table[-1])
    return out


def newton_extrapolate(xs: Sequence[float], values: Sequence[torch.Tensor], x: float, order: int) -> torch.Tensor:
    """The polynomial of degree ``order`` through the newest ``order + 1`` points, at ``x``.

    Exact for polynomial trajectories of degree <= order, whatever the spacing.
    For order 1 and unit spacing this is TaylorSeer's first-order forecast.
    """
    k = max(0, min(order, len(xs) - 1))
    xs, values = list(xs)[-(k + 1):], list(values)[-(k + 1):]
    coeffs = divided_differences(xs, values)
    result = coeffs[0].clone()
    basis = 1.0
    for j in range(1, k + 1):
        basis *= (x - xs[-j])
        result = result + coeffs[j] * basis
    return result


def hermite_polynomial(k: int, y: float) -> float:
    """Physicists' Hermite polynomial H_k(y)."""
    h_prev, h = 1.0, 2.0 * y
    if k == 0:
        return h_prev
    for n in range(1, k):
        h_prev, h = h, 2.0 * y * h - 2.0 * n * h_prev
    return h


def hermite_extrapolate(xs: Sequence[float], values: Sequence[torch.Tensor], x: float, order: int,
                        scale: float = 0.5) -> torch.Tensor:
    """HiCache: F + sum_k D_k * H_k(scale * dx) * scale^k / k!, D_k the k-th derivative estimate.

    D_k = k! * f[x_n, ..., x_n-k] (spacing-aware). With order 1 this is the damped
    linear forecast F + 2 scale^2 dx D_1.
    """
    k = max(0, min(order, len(xs) - 1))
    xs, values = list(xs)[-(k + 1):], list(values)[-(k + 1):]
    coeffs = divided_differences(xs, values)
    dx = x - xs[-1]
    result = coeffs[0].clone()
    for j in range(1, k + 1):
        derivative = coeffs[j] * math.factorial(j)
        result = result + derivative * (hermite_polynomial(j, scale * dx) * scale ** j / math.factorial(j))
    return result


def foca_step(anchor: tuple, anchor_prev: tuple | None, recent: tuple, recent_prev: tuple | None,
              x: float) -> torch.Tensor:
    """FoCa's forecast-then-calibrate step (Heun/trapezoid anchored at the last full step).

    ``anchor`` / ``anchor_prev``: (x, value) of the last two full steps; ``recent`` /
    ``recent_prev``: the two newest values of the rolling window, full or forecast.
    F = F_full + (x - x_full) / 2 * (slope_full + slope_recent); with fewer than two
    full steps of history the anchor is reused.
    """
    xa, fa = anchor
    if anchor_prev is None or recent_prev is None:
        return fa.float().clone()
    slope_full = (fa.float() - anchor_prev[1].float()) / (xa - anchor_prev[0])
    slope_recent = (recent[1].float() - recent_prev[1].float()) / (recent[0] - recent_prev[0])
    return fa.float() + (x - xa) / 2.0 * (slope_full + slope_recent)


def band_split(t: torch.Tensor, cutoff: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) frequency bands: over the last two dims of an image-like tensor
    ([B, C, ..., H, W]) or over the token axis of a token stream ([B, T, D])."""
    f = t.float()
    if f.numel() == 0:                 # an empty stream (LTX-2's audio in a video-only run)
        return f.clone(), f.clone()
    dims = (-2, -1) if t.ndim >= 4 else (1,)
    spectrum = torch.fft.fftn(f, dim=dims)
    mask = torch.ones_like(spectrum.real, dtype=torch.bool)
    for d in dims:
        n = f.shape[d]
        freqs = torch.fft.fftfreq(n, device=f.device).abs()
        keep = freqs <= cutoff * 0.5 + 1e-9
        shape = [1] * f.ndim
        shape[d] = n
        mask = mask & keep.view(shape)
    low = torch.fft.ifftn(spectrum * mask, dim=dims).real
    return low, f - low
