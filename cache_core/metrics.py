"""Pure metric functions on tensors."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


_LONG = 1 << 20     # a CPU reduction over more elements per output is split into runs of
_RUN = 1 << 12      # this many, each an fp32 sum in sequence


def l1_norm(t: torch.Tensor, dim=None) -> torch.Tensor:
    """sum |t| (over ``dim``, or everything) accumulated in at least fp32, in one read of the
    tensor: no full-size copy, no cast of it.

    A CPU adds up each output's elements in sequence, and an fp32 sum of ~10^7 terms drifts
    (a 2 x 2048 x 3072 tensor of 0.37 came out 2.5 % low, a 75600 x 1536 stream's 50 %). There a
    reduction over more than 2^20 elements is split, by a view along its outermost dim, into
    runs of at most 2^12 elements, whose sums are then added."""
    acc = torch.promote_types(t.dtype, torch.float32)
    dims = sorted({d % t.ndim for d in ((dim,) if isinstance(dim, int) else dim)}) \
        if dim is not None else list(range(t.ndim))
    n = math.prod(t.shape[d] for d in dims)
    if t.device.type != "cpu" or n <= _LONG:     # a GPU reduces in a tree
        return torch.linalg.vector_norm(t, ord=1, dim=dim, dtype=acc)
    outer = max((d for d in dims if t.shape[d] > 1), key=t.stride)
    size, runs = t.shape[outer], -(-n // _RUN)
    if size < runs:          # too few slices along it: sum each slice, then the slices
        rest = [d for d in dims if d != outer]
        return l1_norm(t, rest).sum(dim=outer - sum(d < outer for d in rest))
    groups = _divisor_from(size, runs)
    parts = torch.linalg.vector_norm(t.unflatten(outer, (groups, size // groups)), ord=1,
                                     dim=[d + (d >= outer) for d in dims], dtype=acc)
    return parts.sum(dim=outer - sum(d < outer for d in dims))


@functools.lru_cache(maxsize=256)
def _divisor_from(size: int, least: int) -> int:
    """The smallest divisor of ``size`` that is at least ``least`` (``size`` itself at most)."""
    return next(k for k in range(least, size + 1) if size % k == 0)


def mean_abs(t: torch.Tensor) -> float:
    """mean |t|, read in one pass."""
    return float(l1_norm(t)) / max(t.numel(), 1)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean |a - b|: one subtraction in the tensors' dtype (exact where a and b are close), then a
    reduction."""
    return mean_abs(a - b)


def rel_l1(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> float:
    """mean|a - b| / mean|b| over all elements."""
    return mean_abs_diff(a, b) / (mean_abs(b) + eps)


def rel_l1_per_sample(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """rel_l1 for each batch element (dim 0), in fp32: one full-size op (the difference)."""
    return rel_difference_per_sample(a - b, b, eps)


def rel_difference_per_sample(difference: torch.Tensor, reference: torch.Tensor,
                              eps: float = 1e-8) -> torch.Tensor:
    """mean|difference| / mean|reference| for each batch element (dim 0), in fp32, for a
    difference the caller already has: reductions only, no full-size op."""
    n = max(reference[0].numel(), 1) if reference.ndim and reference.shape[0] else 1
    dims = tuple(range(1, reference.ndim))   # not flatten(1): that copies a tensor that is not contiguous
    num = l1_norm(difference, dim=dims) / n
    den = l1_norm(reference, dim=dims) / n
    return (num / (den + eps)).float()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def token_norm_ratio(current: torch.Tensor, previous: torch.Tensor, eps: float = 1e-8) -> float:
    """MagCache's gamma: mean over tokens of ||current|| / ||previous|| (L2 over the last dim)."""
    num = current.float().norm(dim=-1)
    den = previous.float().norm(dim=-1)
    return float((num / (den + eps)).mean())


def psnr(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``result`` against ``reference``; inf when identical."""
    mse = float(((result.float() - reference.float()) ** 2).mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0,
         window: int = 7, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) over images shaped [B, H, W, C] (ComfyUI IMAGE) or [B, C, H, W]."""
    x, y = result.float(), reference.float()
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    channels = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    if window % 2 == 0:
        window -= 1
    kernel = _gaussian_window(window, sigma).to(x.device)[None, None].repeat(channels, 1, 1, 1)

    def blur(t):
        return F.conv2d(t, kernel, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())
