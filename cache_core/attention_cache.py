"""PAB (Pyramid Attention Broadcast, arXiv 2408.12588): reuse attention outputs over a range of steps.

The host calls ``attention(compute, q, k, v, block, ordinal, branches, t)`` for every attention
kernel call, with the transformer block it runs in (``block``), the call's ordinal within that
block and the conditionings of its batch. Each call id (block, ordinal, branches, shape,
dtype) has a counter that increments on every call; the output is recomputed when nothing
is cached, when t lies outside the window (lo, hi), or when ``counter % range == 0``;
otherwise the cached output is returned. Ranges per attention kind ("the pyramid"): self
(spatial) 2, cross 6 by default; temporal attention (factorised video models) has its own
range, used for calls the host marks temporal. Cross-attention is a call whose key sequence
length differs from its query's. Caching the kernel output is exact to the paper: the output
projection that follows is linear and runs on every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch


@dataclass
class AttentionBroadcast:
    self_range: int = 2
    cross_range: int = 6
    temporal_range: int = 4
    window: tuple = (100.0, 800.0)          # (lo, hi) on the 0-1000 timestep scale
    cache: dict = field(default_factory=dict)     # call id -> (counter, output)
    calls: int = 0
    skipped: int = 0
    kinds: dict = field(default_factory=dict)     # kind -> [calls, skipped]

    def range_of(self, kind: str) -> int:
        return {"self": self.self_range, "cross": self.cross_range, "temporal": self.temporal_range}[kind]

    def attention(self, compute: Callable[[], torch.Tensor], q: torch.Tensor, k: torch.Tensor,
                  call_id: Hashable, t: float | None, seq_axis: int = 1, temporal: bool = False) -> torch.Tensor:
        kind = "temporal" if temporal else ("cross" if k.shape[seq_axis] != q.shape[seq_axis] else "self")
        key = (call_id, kind, tuple(q.shape), tuple(k.shape), q.dtype)
        counts = self.kinds.setdefault(kind, [0, 0])
        self.calls += 1
        counts[0] += 1
        rng = self.range_of(kind)
        counter, cached = self.cache.get(key, (0, None))
        inside = t is not None and self.window[0] < t < self.window[1]
        self.cache[key] = (counter + 1, cached)
        if cached is not None and inside and rng > 1 and counter % rng != 0:
            self.skipped += 1
            counts[1] += 1
            return cached
        out = compute()
        self.cache[key] = (counter + 1, out)
        return out

    def summary(self) -> dict:
        return {"attention_calls": self.calls, "attention_skipped": self.skipped,
                "attention_skipped_share": round(self.skipped / self.calls, 4) if self.calls else 0.0,
                "attention_by_kind": {k: {"calls": c, "skipped": s} for k, (c, s) in self.kinds.items()}}

    def clear(self) -> None:
        self.cache.clear()
