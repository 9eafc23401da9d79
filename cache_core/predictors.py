"""What a cached step returns. A policy says *when* to compute; a predictor says *what*
to return otherwise. Plain reuse returns the last computed value."""
from __future__ import annotations

from typing import Hashable, Sequence

import torch

from .branch_store import BranchStore
from .decisions import Decision, StepContext


class ReusePredictor:
    """Keeps the last computed value of each slot, per branch."""
    decision = Decision.REUSE

    def __init__(self, store: BranchStore):
        self.store = store

    def record(self, slot: str, keys: Sequence[Hashable], value: torch.Tensor | None, ctx: StepContext) -> None:
        self.store.put(slot, keys, value)

    def ready(self, slot: str, keys: Sequence[Hashable], like: torch.Tensor | None = None) -> bool:
        if like is None:
            return self.store.has(slot, keys)
        return self.store.matches(slot, keys, like)

    def predict(self, slot: str, keys: Sequence[Hashable], ctx: StepContext) -> torch.Tensor | None:
        return self.store.get(slot, keys)

    def nbytes(self) -> int:
        return self.store.nbytes()

    def clear(self) -> None:
        self.store.reset()
