"""Forecasts of a feature from its recorded history: pure functions.

``xs`` are the coordinates of the recorded values (sampler step indices or sigmas,
in any spacing), oldest first; ``values`` the tensors; ``x`` the coordinate to
forecast at.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def band_split(t: torch.Tensor, cutoff: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) frequency bands: over the last two dims of an image-like tensor
    ([B, C, ..., H, W]) or over the token axis of a token stream ([B, T, D])."""
    f = t.float()
    if f.numel() == 0:                 # an empty stream (LTX-2's audio in a video-only run)
        return f.clone(), f.clone()
    dims = (-2, -1) if t.ndim >= 4 else (1,)
    # a real signal's spectrum is symmetric: its last split dim keeps the non-negative half
    spectrum = torch.fft.rfftn(f, dim=dims)
    mask = None                        # the kept frequencies, the size of the split dims alone
    for d in dims:
        n = f.shape[d]
        freqs = torch.fft.rfftfreq(n, device=f.device) if d == dims[-1] else \
            torch.fft.fftfreq(n, device=f.device).abs()
        shape = [1] * f.ndim
        shape[d] = freqs.numel()
        keep = (freqs <= cutoff * 0.5 + 1e-9).view(shape)
        mask = keep if mask is None else mask & keep
    low = torch.fft.irfftn(spectrum * mask, s=[f.shape[d] for d in dims], dim=dims)
    return low, f - low


def weighted_sum(values: Sequence[torch.Tensor], weights: Sequence[float],
                 onto: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
    """sum_i weights[i] * values[i], in fp32, one full-tensor op per value with a nonzero weight.

    Every forecast here is linear in the recorded values: its weights depend on the
    coordinates alone, so they are worked out on scalars and the tensors are touched once.
    ``onto``: ``onto + alpha * sum`` instead, the caller's op folded into the first term
    (``onto`` an fp32 tensor the shape of the values: the sum stays in fp32)."""
    out = onto
    for v, w in zip(values, weights):
        if w == 0.0 and out is not None:
            continue
        if out is None:
            out = v.float() * w
        elif out is onto:
            out = torch.add(onto, v, alpha=alpha * w)
        else:
            out.add_(v, alpha=w if onto is None else alpha * w)
    return onto.clone() if out is onto else out      # (no term: never the caller's own tensor)


def _difference_weights(xs: Sequence[float]) -> list[list[float]]:
    """Newton backward divided differences at the newest point, as weights on the values:
    row j gives f[x_n, ..., x_n-j] = sum_i row[i] * f(x_i)."""
    n = len(xs)
    table = [[1.0 if i == j else 0.0 for i in range(n)] for j in range(n)]    # value j as weights
    out = [table[-1]]
    for order in range(1, n):
        table = [[(a - b) / (xs[i + order] - xs[i]) for a, b in zip(table[i + 1], table[i])]
                 for i in range(len(table) - 1)]
        out.append(table[-1])
    return out


def _combine(rows: Sequence[Sequence[float]], factors: Sequence[float]) -> list[float]:
    return [sum(f * row[i] for row, f in zip(rows, factors)) for i in range(len(rows[0]))]


def newton_weights(xs: Sequence[float], x: float) -> list[float]:
    """Weights on the values at ``xs`` of the polynomial through all of them, at ``x``."""
    factors, basis = [1.0], 1.0
    for j in range(1, len(xs)):
        basis *= (x - xs[-j])
        factors.append(basis)
    return _combine(_difference_weights(xs), factors)


def _gained(weights: Sequence[float], gains: Sequence[float] | None) -> list[float]:
    """Weights on values recorded as ``value * gain`` (the scalar the engine folds in) when the
    tensors hold ``value`` alone."""
    return list(weights) if gains is None else [w * g for w, g in zip(weights, gains)]


def newton_extrapolate(xs: Sequence[float], values: Sequence[torch.Tensor], x: float, order: int,
                       gains: Sequence[float] | None = None, onto: torch.Tensor | None = None,
                       alpha: float = 1.0) -> torch.Tensor:
    """The polynomial of degree ``order`` through the newest ``order + 1`` points, at ``x``.

    Exact for polynomial trajectories of degree <= order, whatever the spacing.
    For order 1 and unit spacing this is TaylorSeer's first-order forecast. ``gains``: each
    value is ``values[i] * gains[i]`` (default 1); ``onto``, ``alpha``: as ``weighted_sum``.
    """
    k = max(0, min(order, len(xs) - 1))
    xs, values = list(xs)[-(k + 1):], list(values)[-(k + 1):]
    gains = None if gains is None else list(gains)[-(k + 1):]
    return weighted_sum(values, _gained(newton_weights(xs, x), gains), onto, alpha)


def hermite_polynomial(k: int, y: float) -> float:
    """Physicists' Hermite polynomial H_k(y)."""
    h_prev, h = 1.0, 2.0 * y
    if k == 0:
        return h_prev
    for n in range(1, k):
        h_prev, h = h, 2.0 * y * h - 2.0 * n * h_prev
    return h


def hermite_extrapolate(xs: Sequence[float], values: Sequence[torch.Tensor], x: float, order: int,
                        scale: float = 0.5, gains: Sequence[float] | None = None,
                        onto: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
    """HiCache: F + sum_k D_k * H_k(scale * dx) * scale^k / k!, D_k the k-th derivative estimate.

    D_k = k! * f[x_n, ..., x_n-k] (spacing-aware). With order 1 this is the damped
    linear forecast F + 2 scale^2 dx D_1.
    """
    k = max(0, min(order, len(xs) - 1))
    xs, values = list(xs)[-(k + 1):], list(values)[-(k + 1):]
    gains = None if gains is None else list(gains)[-(k + 1):]
    dx = x - xs[-1]
    # D_j * H_j(scale dx) scale^j / j! with D_j = j! f[...]: the j! cancel
    factors = [1.0] + [hermite_polynomial(j, scale * dx) * scale ** j for j in range(1, k + 1)]
    return weighted_sum(values, _gained(_combine(_difference_weights(xs), factors), gains), onto, alpha)


def foca_step(anchor: tuple, anchor_prev: tuple | None, recent: tuple, recent_prev: tuple | None,
              x: float) -> torch.Tensor:
    """FoCa's forecast-then-calibrate step (Heun/trapezoid anchored at the last full step).

    ``anchor`` / ``anchor_prev``: (x, value) of the last two full steps; ``recent`` /
    ``recent_prev``: the two newest values of the rolling window, full or forecast. An entry
    may carry a third element, the gain its value was recorded at (value * gain; default 1).
    F = F_full + (x - x_full) / 2 * (slope_full + slope_recent); with fewer than two
    full steps of history the anchor is reused.
    """
    xa, fa = anchor[0], anchor[1]
    if anchor_prev is None or recent_prev is None:
        return fa.float() * _gain_of(anchor)
    half = (x - xa) / 2.0
    full, rec = half / (xa - anchor_prev[0]), half / (recent[0] - recent_prev[0])
    terms: list = []            # (tensor, weight), the same tensor once
    for e, w in ((anchor, 1.0 + full), (anchor_prev, -full), (recent, rec), (recent_prev, -rec)):
        t, w = e[1], w * _gain_of(e)
        same = next((i for i, (u, _) in enumerate(terms) if u is t), None)
        if same is None:
            terms.append((t, w))
        else:
            terms[same] = (t, terms[same][1] + w)
    return weighted_sum([t for t, _ in terms], [w for _, w in terms])


def _gain_of(entry: tuple) -> float:
    return entry[2] if len(entry) > 2 else 1.0


def chebyshev_basis(tau: float, size: int) -> list[float]:
    """[T_0(tau), ..., T_{size-1}(tau)]: T_0 = 1, T_1 = tau, T_m = 2 tau T_{m-1} - T_{m-2}."""
    out = [1.0, float(tau)][:max(size, 0)]
    while len(out) < size:
        out.append(2.0 * tau * out[-1] - out[-2])
    return out


DTYPE = torch.float32          # the published solve: fp32 Cholesky


def ridge_weights(xtx: torch.Tensor, basis: Sequence[float], lam: float) -> torch.Tensor:
    """a = (X^T X + lam I)^-1 T(tau*): the forecast is sum_p a_p (X^T H)_p = T(tau*) C.

    Solved in fp32 by Cholesky; on failure a jitter of 1e-6 * mean(diag) (growing tenfold) is
    added, and a least-squares solve is the last resort."""
    p = len(basis)
    a = xtx[:p, :p].to(DTYPE) + float(lam) * torch.eye(p, dtype=DTYPE)
    b = torch.tensor(basis, dtype=DTYPE).unsqueeze(1)
    jitter = 1e-6 * float(a.diagonal().mean().abs()) or 1e-6
    for attempt in range(4):
        factor, info = torch.linalg.cholesky_ex(a if attempt == 0 else a + jitter * torch.eye(p, dtype=DTYPE))
        if int(info) == 0:
            return torch.cholesky_solve(b, factor).squeeze(1)
        if attempt:
            jitter *= 10.0
    return torch.linalg.lstsq(a.double(), b.double()).solution.squeeze(1).float()


def spectrum_weights(ridge: Sequence[float], last: tuple, prev: tuple | None, x: float,
                     weight: float) -> tuple[list[float], list[float]]:
    """Spectrum's forecast (1 - w) * h_lin + w * h_cheb as weights: on the P sums (X^T H)_p,
    ``w * ridge[p]``; on (h_last, h_prev), the order-1 Newton term h_last + k (h_last - h_prev),
    k = (x - x_last) / (x_last - x_prev), times 1 - w (h_last alone with one point)."""
    x_last = last[0]
    k = 0.0 if prev is None or prev[0] == x_last else (x - x_last) / (x_last - prev[0])
    return [weight * a for a in ridge], [(1.0 - weight) * (1.0 + k), -(1.0 - weight) * k]
