"""CFG-Cache (FasterCache, arXiv 2410.19355): skip the unconditional branch on most steps.

On a full step both branches run; the difference ``uncond - cond`` (in the noise-prediction
space ``y = (x - x0) / sigma``, per latent frame over its two spatial axes) is split into a
low-frequency band (a centred disk of radius ``min(H, W) // 5`` after ``fftshift(fft2)``) and
a high-frequency band (the rest), and both are kept. On a cached step only the conditional
branch runs and the unconditional output is rebuilt as ``c + Re iFFT2(iFFTshift(dLF + dHF))``,
where each band is first scaled by its weight (1.1 for the low band while 99 < t < 901, 1.1
for the high band while -1 < t < 301, else 1; the scaling compounds over consecutive cached
steps, as in the reference implementation). ``t`` is the model's timestep (0-1000).

A step is cached when it is not the run's first, ``step % interval != 0`` and t < 641.
This module only computes; the host decides which branch is the unconditional one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

import torch

WINDOW_T = 641.0            # cached only while t is below this
LOW_WEIGHT, LOW_WINDOW = 1.1, (99.0, 901.0)
HIGH_WEIGHT, HIGH_WINDOW = 1.1, (-1.0, 301.0)


def disk_mask(h: int, w: int, device=None) -> torch.Tensor:
    """True inside the low-frequency disk of a shifted (H, W) spectrum."""
    r = min(h, w) // 5
    rows = torch.arange(h, device=device).view(-1, 1) - h // 2
    cols = torch.arange(w, device=device).view(1, -1) - w // 2
    return rows * rows + cols * cols <= r * r


def _spectrum(y: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(y.float()), dim=(-2, -1))


def _to_y(x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return (x.float() - x0.float()) / sigma


def _sigma_view(sigma, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float32, device=like.device).flatten()
    if s.numel() not in (1, like.shape[0]):
        s = s[:1]
    return s.view((-1,) + (1,) * (like.dim() - 1)).clamp_min(1e-8)


@dataclass
class _Bands:
    low: torch.Tensor
    high: torch.Tensor
    shape: tuple
    dtype: torch.dtype


@dataclass
class CfgCache:
    """One run's CFG-Cache state: the frequency bands of the last full step, per pass."""
    interval: int
    bands: dict = field(default_factory=dict)      # pass key -> _Bands
    skipped: int = 0                               # unconditional evaluations rebuilt
    computed: int = 0                              # unconditional evaluations run

    def wants_skip(self, step: int, t: float, key: Hashable, x: torch.Tensor) -> bool:
        """Is the unconditional branch of this evaluation rebuilt rather than run?"""
        if self.interval <= 0 or step <= 0 or step % self.interval == 0 or not t < WINDOW_T:
            return False
        b = self.bands.get(key)
        return b is not None and b.shape == tuple(x.shape) and b.dtype == x.dtype

    def record(self, key: Hashable, x: torch.Tensor, sigma, cond_x0: torch.Tensor, uncond_x0: torch.Tensor):
        """A full step: keep both bands of uncond - cond."""
        s = _sigma_view(sigma, x)
        diff = _spectrum(_to_y(x, uncond_x0, s)) - _spectrum(_to_y(x, cond_x0, s))
        m = disk_mask(x.shape[-2], x.shape[-1], x.device)
        self.bands[key] = _Bands(diff * m, diff * ~m, tuple(x.shape), x.dtype)
        self.computed += 1

    def rebuild(self, key: Hashable, x: torch.Tensor, sigma, t: float, cond_x0: torch.Tensor) -> torch.Tensor:
        """A cached step: the unconditional output (denoised, like ``cond_x0``) from the conditional one."""
        b = self.bands[key]
        if LOW_WINDOW[0] < t < LOW_WINDOW[1]:
            b.low = b.low * LOW_WEIGHT
        if HIGH_WINDOW[0] < t < HIGH_WINDOW[1]:
            b.high = b.high * HIGH_WEIGHT
        s = _sigma_view(sigma, x)
        delta = torch.fft.ifft2(torch.fft.ifftshift(b.low + b.high, dim=(-2, -1))).real
        y_u = _to_y(x, cond_x0, s) + delta
        self.skipped += 1
        return (x.float() - s * y_u).to(cond_x0.dtype)

    def clear(self) -> None:
        self.bands.clear()
