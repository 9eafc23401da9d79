"""Calibration: always compute, and record what TeaCache and MagCache need."""
from __future__ import annotations

from typing import Hashable, Sequence

import torch

from ..budget import LAGS
from ..calibration import CalibrationRecorder
from ..metrics import rel_l1, token_norm_ratio
from .base import COMPUTE, Policy, Verdict


def _tokens_last(t: torch.Tensor) -> torch.Tensor:
    """[B, C, ...spatial] latent -> [B, tokens, C]; transformer streams are already [B, T, D]."""
    return t.flatten(2).transpose(1, 2) if t.ndim >= 4 else t


def _pooled(rows: torch.Tensor) -> torch.Tensor:
    """[tokens, C] averaged over groups of 8 tokens: what the budget's edge costs compare."""
    n = rows.shape[0] // 8 * 8
    return rows[:n].reshape(-1, 8, rows.shape[-1]).mean(1) if n else rows


class CalibrationPolicy(Policy):
    name = "calibrate"
    probe = "modulated_input"
    probe_optional = True           # a step without a readable probe is still recorded
    wants_residuals = True

    def __init__(self, granularity: str = "stack"):
        self.granularity = granularity
        self.recorder = CalibrationRecorder()
        self.begin_run([])

    def begin_run(self, sigmas) -> None:
        self.prev_probe = self.prev_output = self.prev_residual = None
        self.pending = None
        self.recent: list = []      # the last LAGS residuals, pooled by 8 over tokens (budget plans)

    def _flush(self) -> None:
        if self.pending is not None:
            self.recorder.add(*self.pending)
            self.pending = None

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        self._flush()
        change = None
        p = self.lead_slice(keys, probe) if probe is not None else None
        if p is not None:
            if self.prev_probe is not None and self.prev_probe.shape == p.shape:
                change = rel_l1(p, self.prev_probe)
            self.prev_probe = p.detach().clone()
        self.pending = [ctx.sigma, change, None, None, None]
        return Verdict(COMPUTE, change, None, "calibration")

    def observe_output(self, ctx, keys, x, output, owned: bool = False) -> None:
        o = self.lead_slice(keys, output)
        if o is None or self.pending is None:
            return
        if self.prev_output is not None and self.prev_output.shape == o.shape:
            self.pending[2] = rel_l1(o, self.prev_output)
        self.prev_output = o.detach().clone()
        if self.granularity == "output" and output.shape == x.shape:
            self.observe_residuals(ctx, keys, {"D": output - x})

    def observe_residuals(self, ctx, keys, residuals: dict, gain: float = 1.0) -> None:
        """``gain``: each residual is the tensor times ``gain`` (a whole pass's 1 / sigma)."""
        parts = []
        for value in residuals.values():
            if value is None:
                continue
            if gain != 1.0:
                value = value * gain
            lead = self.lead_slice(keys, value)
            if lead is not None:
                parts.append(_tokens_last(lead).float().reshape(-1, _tokens_last(lead).shape[-1]))
        if not parts or self.pending is None:
            return
        widths = {p.shape[-1] for p in parts}
        current = torch.cat(parts, 0) if len(widths) == 1 else parts[-1]
        if self.prev_residual is not None and self.prev_residual.shape == current.shape:
            self.pending[3] = token_norm_ratio(current, self.prev_residual)
        self.prev_residual = current.detach().clone()
        pooled = _pooled(current.detach())
        self.recent = [r for r in self.recent if r.shape == pooled.shape]
        self.pending[4] = [rel_l1(r, pooled) for r in reversed(self.recent)]
        self.recent = (self.recent + [pooled])[-LAGS:]

    def release(self) -> None:
        self._flush()
        self.prev_probe = self.prev_output = self.prev_residual = None
        self.recent = []

    def finish(self) -> CalibrationRecorder:
        self._flush()
        return self.recorder
