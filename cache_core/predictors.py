"""What a cached step returns. A policy says *when* to compute; a predictor says *what*
to return otherwise: the last computed value (reuse) or a forecast from the history of
computed values (Taylor, Hermite, FoCa, frequency split). History is kept per slot and
per branch, bounded, and freed at the end of the run. Only computed values are recorded:
the engine never records what a predictor returned."""
from __future__ import annotations

from typing import Hashable, Sequence

import torch

from .branch_store import BranchStore, batch_view, split_batch
from .decisions import Decision, StepContext
from .forecast import (band_split, chebyshev_basis, foca_step, hermite_extrapolate, newton_extrapolate,
                       ridge_weights, spectrum_weights, weighted_sum)


PREDICTORS = ("reuse", "taylor", "hermite", "foca", "freq", "spectrum")   # what a cached step can return


class ReusePredictor:
    """Keeps the last computed value of each slot, per branch.

    ``record(..., gain=g)`` records ``value * g`` while keeping ``value`` alone: the engine
    folds a scalar (a whole pass's 1 / sigma) into the predictor instead of spending a
    full-tensor op on it. Forecasts fold gains into their weights; ``predict_scaled`` hands
    a reused value back with its gain, so the caller folds it into the op it does anyway."""
    decision = Decision.REUSE
    name = "reuse"

    def __init__(self, store: BranchStore):
        self.store = store
        self.gains: dict[tuple, float] = {}     # (slot, branch) -> gain of the value the store holds

    def record(self, slot: str, keys: Sequence[Hashable], value: torch.Tensor | None, ctx: StepContext,
               gain: float = 1.0) -> None:
        self.store.put(slot, keys, value)
        if gain != 1.0 or self.gains:      # runs that never fold a gain keep no table
            for k in keys:
                self.gains[(slot, k)] = float(gain)

    def ready(self, slot: str, keys: Sequence[Hashable], like: torch.Tensor | None = None) -> bool:
        if like is None:
            return self.store.has(slot, keys)
        return self.store.matches(slot, keys, like)

    def predict(self, slot: str, keys: Sequence[Hashable], ctx: StepContext) -> torch.Tensor | None:
        value, gain = self.predict_scaled(slot, keys, ctx)
        return value if value is None or gain == 1.0 else value * gain

    def predict_scaled(self, slot: str, keys: Sequence[Hashable], ctx: StepContext) -> tuple:
        """(tensor, gain): the prediction is ``tensor * gain``."""
        return self._last_scaled(slot, keys)

    def predict_onto(self, slot: str, keys: Sequence[Hashable], ctx: StepContext, base: torch.Tensor,
                     alpha: float) -> torch.Tensor | None:
        """``base + alpha * prediction`` (None: nothing cached): the caller's one op on the
        prediction, which a forecast folds into its own sum (fp32 values and ``base``)."""
        value, gain = self.predict_scaled(slot, keys, ctx)
        if value is None:
            return None
        return torch.add(base, value.to(base.device), alpha=alpha * gain)

    @staticmethod
    def _foldable(base: torch.Tensor, tensors) -> bool:
        """May a forecast's sum start from ``base``: fp32 everywhere, on one device."""
        return base.dtype == torch.float32 and all(t.dtype == torch.float32 and t.device == base.device
                                                   for t in tensors)

    def _last_scaled(self, slot, keys) -> tuple:
        value = self.store.get(slot, keys)
        if not self.gains:
            return value, 1.0
        gains = [self.gains.get((slot, k), 1.0) for k in keys]
        if value is None or all(g == gains[0] for g in gains):
            return value, (gains[0] if gains else 1.0)
        return torch.cat([c * g for c, g in zip(split_batch(value, keys).values(), gains)], dim=0), 1.0

    def nbytes(self) -> int:
        return self.store.nbytes()

    def forecast_batch(self, slot, keys, ctx, point, sanitise: bool = False):
        """Each branch's ``_forecast(slot, key, point)``, reassembled as the batch; the last computed
        value when a branch has no forecast yet. ``sanitise``: no inf or nan before a narrow dtype."""
        out = self._forecast_joined(slot, keys, point) if len(keys) > 1 else None
        if out is None:
            parts = []
            for key in keys:
                f = self._forecast(slot, key, point)
                if f is None:
                    value, gain = self._last_scaled(slot, keys)
                    return value if value is None or gain == 1.0 else value * gain
                parts.append(f)
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        last = self.store.get(slot, keys)
        if last is None:
            return out
        if sanitise and last.dtype.is_floating_point and last.dtype.itemsize < 4:
            big = torch.finfo(last.dtype).max
            out = torch.nan_to_num(out, nan=0.0, posinf=big, neginf=-big).clamp(-big, big)
        return out.to(last.dtype)

    def _forecast_joined(self, slot, keys, point) -> torch.Tensor | None:
        """The forecast of the whole batch at once, when the branches' histories are chunks of the
        same recorded batches (no per-branch forecasts to concatenate); None: forecast per branch."""
        return None

    def clear(self) -> None:
        self.store.reset()
        self.gains.clear()


class ForecastPredictor(ReusePredictor):
    """Forecasts each slot from its last ``order + 1`` computed values.

    ``axis`` is "step" (sampler step index) or "sigma" (the noise level): the
    coordinate the history is recorded on and forecast at.
    """
    decision = Decision.PREDICT

    def __init__(self, store: BranchStore, kind: str = "taylor", order: int = 1, axis: str = "step",
                 hermite_scale: float = 0.5, cutoff: float = 0.1):
        super().__init__(store)
        if kind not in PREDICTORS[1:-1]:
            raise ValueError(f"unknown predictor {kind!r}; choose one of {PREDICTORS}")
        self.name = kind
        self.order = max(1, min(int(order), 4))
        self.axis = axis
        self.hermite_scale = hermite_scale
        self.cutoff = cutoff
        self.history: dict[tuple, list] = {}       # (slot, key) -> [(x, tensor, gain), ...] full values
        #                                            (the frequency split keeps their high band)
        self.window: dict[tuple, list] = {}        # FoCa's rolling window, full or forecast
        self.low: dict[tuple, list] = {}           # the frequency split: [(x, low band of the last value)]
        store.listeners.append(self.forget_branch)

    @property
    def depth(self) -> int:
        return 2 if self.name in ("foca",) else self.order + 1

    def _x(self, ctx: StepContext) -> float:
        return float(ctx.sigma) if self.axis == "sigma" else float(ctx.step)

    def record(self, slot, keys, value, ctx, gain: float = 1.0) -> None:
        super().record(slot, keys, value, ctx, gain)     # the last value, for readiness and shapes
        if value is None or ctx.stage > 0:         # extra sampler stages sit between steps: not history
            return
        x = self._x(ctx)
        value = value.detach()
        lows = None
        if self.name == "freq":                    # split once, when recorded, not at every forecast (per
            low, value = band_split(value, self.cutoff)     # sample: the batch at once)
            lows = split_batch(low, keys)
        for key, chunk in split_batch(value, keys).items():
            h = self.history.setdefault((slot, key), [])
            if h and h[-1][1].shape != chunk.shape:
                h.clear()                          # a new shape starts a new history
            if h and h[-1][0] == x:
                h.pop()                            # the same point computed again: keep the newest
            if lows is not None:
                self.low[(slot, key)] = [(x, lows[key], float(gain))]
            h.append((x, chunk, float(gain)))
            del h[:-self.depth]
            if self.name == "foca":
                self.window[(slot, key)] = [(x, chunk.detach(), float(gain))]

    def _extrapolate(self, xs, vs, x, gains, low=None, onto=None, alpha: float = 1.0) -> torch.Tensor:
        if self.name == "taylor":
            return newton_extrapolate(xs, vs, x, self.order, gains, onto, alpha)
        if self.name == "hermite":
            return hermite_extrapolate(xs, vs, x, self.order, self.hermite_scale, gains, onto, alpha)
        # the frequency split: the last low band (x, tensor, gain), and the high band forecast
        high = hermite_extrapolate(xs, vs, x, min(self.order, 2), self.hermite_scale, gains, onto, alpha)
        if onto is not None:
            return high.add_(low[1], alpha=alpha * low[2])
        return low[1] + high if low[2] == 1.0 else high.add_(low[1], alpha=low[2])

    def _series(self, slot, keys) -> tuple | None:
        """(xs, values, gains, low band) of the batch ``keys``: one branch's history, or the
        branches' histories joined as views when they are chunks of the same recorded batches;
        None when there is none, or it cannot be joined (FoCa keeps a rolling window per branch)."""
        if self.name == "foca":
            return None
        hs = [self.history.get((slot, k)) for k in keys]
        if not hs or not all(hs) or any([(p[0], p[2]) for p in h] != [(p[0], p[2]) for p in hs[0]]
                                        for h in hs[1:]):
            return None
        vs = [p[1] for p in hs[0]] if len(hs) == 1 else [batch_view([h[i][1] for h in hs]) for i in range(len(hs[0]))]
        low = None
        if self.name == "freq":
            lows = [self.low[(slot, k)][0] for k in keys]
            if any(e[2] != lows[0][2] for e in lows):
                return None
            joined = lows[0][1] if len(lows) == 1 else batch_view([e[1] for e in lows])
            if joined is None:
                return None
            low = (lows[0][0], joined, lows[0][2])
        if any(v is None for v in vs):
            return None
        return [p[0] for p in hs[0]], vs, [p[2] for p in hs[0]], low

    def _forecast_joined(self, slot, keys, x) -> torch.Tensor | None:
        series = self._series(slot, keys)
        if series is None:
            return None
        xs, vs, gains, low = series
        return self._extrapolate(xs, vs, x, gains, low)

    def _forecast(self, slot, key, x) -> torch.Tensor | None:
        h = self.history.get((slot, key))
        if not h:
            return None
        xs, vs, gains = [p[0] for p in h], [p[1] for p in h], [p[2] for p in h]
        if self.name != "foca":
            return self._extrapolate(xs, vs, x, gains, self.low[(slot, key)][0] if self.name == "freq" else None)
        # foca
        window = self.window.setdefault((slot, key), [h[-1]])
        anchor, anchor_prev = h[-1], (h[-2] if len(h) > 1 else None)
        recent = window[-1]
        recent_prev = window[-2] if len(window) > 1 else (h[-2] if len(h) > 1 else None)
        value = foca_step(anchor, anchor_prev, recent, recent_prev, x)
        if recent[0] != x:
            window.append((x, value))
            del window[:-2]
        return value

    def predict(self, slot, keys, ctx):
        return self.forecast_batch(slot, keys, ctx, self._x(ctx))

    def predict_scaled(self, slot, keys, ctx) -> tuple:
        return self.predict(slot, keys, ctx), 1.0     # the gains are in the forecast's weights

    def predict_onto(self, slot, keys, ctx, base, alpha):
        series = self._series(slot, keys)       # (the store's metadata says the shapes fit: no join)
        if series is None or not self.store.matches(slot, keys, base) or not self._foldable(
                base, list(series[1]) + ([series[3][1]] if series[3] is not None else [])):
            return super().predict_onto(slot, keys, ctx, base, alpha)
        xs, vs, gains, low = series
        return self._extrapolate(xs, vs, self._x(ctx), gains, low, base, alpha)

    def forget_branch(self, key) -> None:
        """The store reset branch ``key``: its history goes too (the other branches keep theirs)."""
        for table in (self.history, self.window, self.low):
            for slot_key in [sk for sk in table if sk[1] == key]:
                del table[slot_key]

    def nbytes(self) -> int:
        total = super().nbytes()
        for table in (self.history, self.window, self.low):
            for entries in table.values():
                total += sum(e[1].numel() * e[1].element_size() for e in entries)
        return total

    def clear(self) -> None:
        super().clear()
        self.history.clear()
        self.window.clear()
        self.low.clear()


class SpectrumPredictor(ReusePredictor):
    """Spectrum: a Chebyshev ridge regression over every computed value of the run, blended
    with the linear term. Per slot and branch it keeps the running sums X^T X (P x P) and
    X^T H (P values of the feature's shape, fp32) and the last two computed values, not the
    history. tau = 2 * step / (N - 1) - 1: the run's own steps span [-1, 1].

    Defaults as published: degree M = 4, ridge lambda = 0.1 (it also penalises T_0), blend
    w = 0.5. With fewer computed values than M + 1 the fit uses the lowest terms only.
    """
    decision = Decision.PREDICT
    name = "spectrum"

    def __init__(self, store: BranchStore, degree: int = 4, lam: float = 0.1, weight: float = 0.5):
        super().__init__(store)
        self.size = int(degree) + 1
        self.lam = float(lam)
        self.weight = float(weight)
        self.fits: dict[tuple, dict] = {}         # (slot, key) -> {"xtx", "xth", "count", "last", "prev"}
        store.listeners.append(self.forget_branch)

    @staticmethod
    def tau(ctx: StepContext) -> float:
        return 2.0 * float(ctx.progress) - 1.0

    def _add(self, fit: dict, tau: float, value: torch.Tensor, sign: float, gain: float = 1.0) -> None:
        basis = torch.tensor(chebyshev_basis(tau, self.size), dtype=torch.float64)
        fit["xtx"] += sign * torch.outer(basis, basis)
        v = value.float()
        for p, b in enumerate(basis.tolist()):
            fit["xth"][p].add_(v, alpha=sign * b * gain)
        fit["count"] += 1 if sign > 0 else -1

    def record(self, slot, keys, value, ctx, gain: float = 1.0) -> None:
        super().record(slot, keys, value, ctx, gain)
        if value is None or ctx.stage > 0:
            return
        tau = self.tau(ctx)
        for key, chunk in split_batch(value, keys).items():
            chunk = chunk.detach()
            fit = self.fits.get((slot, key))
            if fit is None or fit["last"][1].shape != chunk.shape or fit["last"][1].device != chunk.device:
                fit = self.fits[(slot, key)] = {
                    "xtx": torch.zeros(self.size, self.size, dtype=torch.float64),
                    "xth": torch.zeros((self.size,) + tuple(chunk.shape), dtype=torch.float32, device=chunk.device),
                    "count": 0, "last": (tau, chunk, float(gain)), "prev": None}
            elif fit["last"][0] == tau:               # the same step computed again: keep the newest
                self._add(fit, tau, fit["last"][1], -1.0, fit["last"][2])
            else:
                fit["prev"] = fit["last"]
            self._add(fit, tau, chunk, 1.0, gain)
            fit["last"] = (tau, chunk, float(gain))

    def _forecast(self, slot, key, tau, onto=None, alpha: float = 1.0) -> torch.Tensor | None:
        fit = self.fits.get((slot, key))
        if fit is None or fit["count"] <= 0:
            return None
        size = min(self.size, fit["count"])
        a = ridge_weights(fit["xtx"], chebyshev_basis(tau, size), self.lam).tolist()
        on_sums, on_last = spectrum_weights(a, fit["last"], fit["prev"], tau, self.weight)
        last, prev = fit["last"], fit["prev"] or fit["last"]
        on_last = [on_last[0] * last[2], on_last[1] * prev[2]]     # the gains of the kept values
        return weighted_sum([fit["xth"][p] for p in range(size)] + [last[1], prev[1]], on_sums + on_last,
                            onto, alpha)

    def predict(self, slot, keys, ctx):
        return self.forecast_batch(slot, keys, ctx, self.tau(ctx), sanitise=True)

    def predict_scaled(self, slot, keys, ctx) -> tuple:
        return self.predict(slot, keys, ctx), 1.0     # the gains are in the fit

    def predict_onto(self, slot, keys, ctx, base, alpha):
        fit = self.fits.get((slot, keys[0])) if len(keys) == 1 else None
        if fit is None or fit["count"] <= 0 or not self.store.matches(slot, keys, base) or not self._foldable(
                base, [fit["xth"], fit["last"][1]] + ([fit["prev"][1]] if fit["prev"] is not None else [])):
            return super().predict_onto(slot, keys, ctx, base, alpha)
        return self._forecast(slot, keys[0], self.tau(ctx), base, alpha)

    def forget_branch(self, key) -> None:
        for slot_key in [sk for sk in self.fits if sk[1] == key]:
            del self.fits[slot_key]

    def nbytes(self) -> int:
        total = super().nbytes()
        for fit in self.fits.values():
            total += fit["xth"].numel() * 4
            total += sum(e[1].numel() * e[1].element_size() for e in (fit["last"], fit["prev"]) if e is not None)
        return total

    def clear(self) -> None:
        super().clear()
        self.fits.clear()


def make_predictor(kind: str, store: BranchStore, order: int = 1, axis: str = "step") -> ReusePredictor:
    if kind == "reuse":
        return ReusePredictor(store)
    if kind == "spectrum":
        return SpectrumPredictor(store)
    return ForecastPredictor(store, kind, order, axis)
