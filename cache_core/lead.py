"""The branch whose measurements decide, and its slice of a batch.

Policies measure one branch, the same whether ComfyUI batches the conditionings into
one call or splits them over several: the run's first conditioning key. One
``LeadBranch`` per run serves the engine and every policy that looks at tensors.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import torch

from .branch_store import split_batch


class LeadBranch:
    def __init__(self):
        self.key: Hashable | None = None

    def slice(self, keys: Sequence[Hashable], tensor: torch.Tensor) -> torch.Tensor | None:
        """The lead branch's part of ``tensor`` (batch laid out by ``keys``), or None if absent."""
        keys = tuple(keys)
        if self.key is None and keys:
            self.key = keys[0]
        if self.key not in keys:
            return None
        return tensor if len(keys) == 1 else split_batch(tensor, keys)[self.key]

    def view(self, keys: Sequence[Hashable], tensor: torch.Tensor | None):
        """``(keys, tensor)`` narrowed to the lead branch when this call has it and others."""
        keys = tuple(keys)
        if tensor is None:
            if self.key is None and keys:
                self.key = keys[0]
            return keys, tensor
        part = self.slice(keys, tensor)
        if part is None or len(keys) == 1:
            return keys, tensor
        return (self.key,), part
