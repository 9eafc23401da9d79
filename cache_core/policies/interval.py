"""Static schedules: fixed interval (FORA-style) and an explicit step mask (SCM)."""
from __future__ import annotations

import math
from typing import Hashable, Sequence

from .base import COMPUTE, REUSE, Policy, Verdict

# cache-dit's 28-step presets: alternating compute / cache bins, compute first
MASK_PRESETS: dict[str, tuple[list[int], list[int]]] = {
    "slow": ([8, 3, 3, 2, 1, 1], [1, 2, 2, 2, 3]),
    "medium": ([6, 2, 2, 2, 2, 1], [1, 3, 3, 3, 3]),
    "fast": ([6, 1, 1, 1, 1, 1], [1, 3, 4, 5, 4]),
    "ultra": ([4, 1, 1, 1, 1], [2, 5, 6, 7]),
}


def _mask_from_bins(compute_bins: list[int], cache_bins: list[int]) -> list[int]:
    mask: list[int] = []
    for i, c in enumerate(compute_bins):
        mask += [1] * c
        if i < len(cache_bins):
            mask += [0] * cache_bins[i]
    return mask


def parse_step_mask(spec: str, steps: int) -> list[int]:
    """A preset name or a string of 0/1 (1 = compute), resampled to ``steps`` steps.

    A mask of another length is stretched or shrunk along the run's progress; the
    last step is always computed.
    """
    text = str(spec).strip().lower()
    if text in MASK_PRESETS:
        base = _mask_from_bins(*MASK_PRESETS[text])
    else:
        digits = text.replace(",", "").replace(" ", "")
        if not digits or any(c not in "01" for c in digits):
            raise ValueError(f"step_mask must be a preset ({', '.join(MASK_PRESETS)}) or a string of 0 and 1 "
                             f"such as '1110101011'; got {spec!r}")
        base = [int(c) for c in digits]
    if steps <= 0:
        return []
    if len(base) == steps:
        mask = list(base)
    else:
        n = len(base)
        mask = [base[min(n - 1, round(i * (n - 1) / max(steps - 1, 1)))] for i in range(steps)]
    mask[-1] = 1
    return mask


class FixedIntervalPolicy(Policy):
    """Compute at every forced step and then every ``interval``-th step; reuse in between."""
    name = "fixed_interval"

    def __init__(self, interval: int):
        self.interval = int(interval)
        self.last_computed: int | None = None

    def begin_run(self, sigmas) -> None:
        self.last_computed = None

    def due(self, ctx) -> bool:
        """Is a full step due at ``ctx.step``?"""
        return self.last_computed is None or ctx.step - self.last_computed >= self.interval

    def decide(self, ctx, keys: Sequence[Hashable], probe, forced) -> Verdict:
        since = None if self.last_computed is None else ctx.step - self.last_computed
        if forced or self.due(ctx):
            return Verdict(COMPUTE, since, self.interval, forced or "interval reached")
        return self.reuse(ctx, since)

    def reuse(self, ctx, since) -> Verdict:
        return Verdict(REUSE, since, self.interval)

    def ran(self, ctx, computed: bool) -> None:
        if computed:
            self.last_computed = ctx.step


class StepMaskPolicy(Policy):
    """Compute exactly where the mask says 1 (guards still force their steps)."""
    name = "step_mask"

    def __init__(self, spec: str):
        self.spec = spec
        self.mask: list[int] = []

    def begin_run(self, sigmas) -> None:
        self.mask = parse_step_mask(self.spec, max(len(sigmas) - 1, 0))

    def decide(self, ctx, keys, probe, forced) -> Verdict:
        bit = self.mask[ctx.step] if ctx.step < len(self.mask) else 1
        if forced or bit:
            return Verdict(COMPUTE, float(bit), None, forced or "mask")
        return Verdict(REUSE, float(bit), None)


def spectrum_warmup(warmup: int, steps: int) -> int:
    """Spectrum's warm-up (5 published), capped at a quarter of a short run so that it still caches."""
    return max(0, min(int(warmup), max(1, steps // 4)))


class AdaptiveWindowPolicy(FixedIntervalPolicy):
    """Spectrum's schedule: the first ``warmup`` steps computed, then a fixed interval that grows
    by ``alpha`` after every computed step past the warm-up (intervals floor(N0 + k alpha))."""
    name = "spectrum"

    def __init__(self, window: int = 2, alpha: float = 0.75, warmup: int = 5):
        super().__init__(window)
        self.window, self.alpha, self.warmup = int(window), float(alpha), int(warmup)
        self.warmup_steps = self.warmup
        self.size = float(window)

    def begin_run(self, sigmas) -> None:
        super().begin_run(sigmas)
        self.warmup_steps = spectrum_warmup(self.warmup, max(len(sigmas) - 1, 0))
        self.size = float(self.window)
        self.interval = self.window

    def due(self, ctx) -> bool:
        return ctx.step < self.warmup_steps or super().due(ctx)

    def ran(self, ctx, computed: bool) -> None:
        super().ran(ctx, computed)
        if computed and ctx.step >= self.warmup_steps:
            self.size += self.alpha
            self.interval = max(1, int(math.floor(self.size + 1e-9)))


def simulate(policy: Policy, steps: int, sigmas: Sequence[float] | None = None) -> list[int]:
    """The steps ``policy`` computes in a run of ``steps`` steps when nothing else forces one."""
    from ..decisions import StepContext
    sigmas = list(sigmas) if sigmas is not None else [1.0 - i / steps for i in range(steps)] + [0.0]
    policy.begin_run(sigmas)
    computed = []
    for step in range(steps):
        ctx = StepContext(0, step, steps, 0, float(sigmas[step]), step / max(steps - 1, 1))
        verdict = policy.decide(ctx, ("cond",), None, None)
        policy.ran(ctx, verdict.decision == COMPUTE)
        if verdict.decision == COMPUTE:
            computed.append(step)
    return computed
