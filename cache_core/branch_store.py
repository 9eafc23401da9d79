"""Cached tensors keyed by conditioning identity, not batch position.

A model call's batch holds one chunk per conditioning (ComfyUI's ``uuids``). The
store keeps each chunk under its key, so a later call that batches the conds in
another order, or alone (split CFG), finds its own tensors. It resets itself, with
a logged reason, when shape, dtype, device or the batch layout changes.
"""
from __future__ import annotations

import logging
from typing import Hashable, Sequence

import torch

log = logging.getLogger("diffusion_cache")


def split_batch(tensor: torch.Tensor, keys: Sequence[Hashable]) -> dict:
    """Split dim 0 of ``tensor`` into equal chunks, one per key."""
    n = len(keys)
    if n == 0 or tensor.shape[0] % n != 0:
        raise ValueError(f"batch of {tensor.shape[0]} cannot be split into {n} equal conditioning chunks")
    return dict(zip(keys, tensor.chunk(n, dim=0)))


class BranchStore:
    """slot name -> branch key -> tensor, with metadata checks."""

    def __init__(self, name: str = "cache"):
        self.name = name
        self._slots: dict[str, dict[Hashable, torch.Tensor]] = {}
        self._meta: dict[str, tuple] = {}
        self.resets: list[str] = []

    @staticmethod
    def _metadata(t: torch.Tensor) -> tuple:
        return (tuple(t.shape), t.dtype, t.device)

    def put(self, slot: str, keys: Sequence[Hashable], tensor: torch.Tensor | None) -> None:
        """Store ``tensor`` (batched over ``keys``) chunk by chunk."""
        if tensor is None:
            self._slots.setdefault(slot, {})
            for k in keys:
                self._slots[slot][k] = None
            return
        chunks = split_batch(tensor, keys)
        meta = self._metadata(next(iter(chunks.values())))
        old = self._meta.get(slot)
        if old is not None and old != meta:
            self.reset(f"{slot}: chunk changed from shape {list(old[0])} {old[1]} {old[2]} "
                       f"to {list(meta[0])} {meta[1]} {meta[2]}")
        self._meta[slot] = meta
        target = self._slots.setdefault(slot, {})
        for k, chunk in chunks.items():
            target[k] = chunk.detach()

    def has(self, slot: str, keys: Sequence[Hashable]) -> bool:
        table = self._slots.get(slot)
        return table is not None and all(k in table for k in keys)

    def get(self, slot: str, keys: Sequence[Hashable]) -> torch.Tensor | None:
        """Reassemble the batch for ``keys`` in their current order."""
        table = self._slots[slot]
        parts = [table[k] for k in keys]
        if any(p is None for p in parts):
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def matches(self, slot: str, keys: Sequence[Hashable], like: torch.Tensor) -> bool:
        """True when ``slot`` holds every key with chunks shaped like ``like``'s chunks."""
        if not self.has(slot, keys):
            return False
        meta = self._meta.get(slot)
        if meta is None:
            return True
        n = len(keys)
        chunk_shape = (like.shape[0] // n,) + tuple(like.shape[1:])
        return meta == (chunk_shape, like.dtype, like.device)

    def slots(self) -> list[str]:
        return list(self._slots)

    def nbytes(self) -> int:
        total = 0
        for table in self._slots.values():
            for t in table.values():
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    def reset(self, reason: str | None = None) -> None:
        if reason:
            log.info("Diffusion Cache: %s reset (%s)", self.name, reason)
            self.resets.append(reason)
        self._slots.clear()
        self._meta.clear()
