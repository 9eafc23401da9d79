"""Cached tensors keyed by conditioning identity, not batch position.

A model call's batch holds one chunk per conditioning (ComfyUI's ``uuids``). The
store keeps each chunk under its key, so a later call that batches the conds in
another order, or alone (split CFG), finds its own tensors. Shape, dtype and device
are kept per slot *and branch*: conditionings of different shapes (a negative prompt
of another length, an area, reference latents on one branch) each keep their own
state. When a branch's chunk changes shape, that branch alone is reset, with its
reason logged once.
"""
from __future__ import annotations

import logging
from typing import Callable, Hashable, Sequence

import torch

log = logging.getLogger("diffusion_cache")


def split_batch(tensor: torch.Tensor, keys: Sequence[Hashable]) -> dict:
    """Split dim 0 of ``tensor`` into equal chunks, one per key."""
    n = len(keys)
    if n == 0 or tensor.shape[0] % n != 0:
        raise ValueError(f"batch of {tensor.shape[0]} cannot be split into {n} equal conditioning chunks")
    return dict(zip(keys, tensor.chunk(n, dim=0)))


def _describe(meta: tuple) -> str:
    return f"{list(meta[0])} {meta[1]} {meta[2]}"


class BranchStore:
    """slot name -> branch key -> tensor, with metadata checked per slot and branch."""

    def __init__(self, name: str = "cache"):
        self.name = name
        self._slots: dict[str, dict[Hashable, torch.Tensor]] = {}
        self._meta: dict[tuple[str, Hashable], tuple] = {}     # (slot, branch) -> (shape, dtype, device)
        self.resets: list[str] = []                           # each distinct reason, once
        self.reset_count = 0
        self.listeners: list[Callable[[Hashable], None]] = []  # told the branch a reset dropped

    @staticmethod
    def _metadata(t: torch.Tensor) -> tuple:
        return (tuple(t.shape), t.dtype, t.device)

    def put(self, slot: str, keys: Sequence[Hashable], tensor: torch.Tensor | None) -> None:
        """Store ``tensor`` (batched over ``keys``) chunk by chunk.

        Nothing is kept while a CUDA graph is being captured (a host's per-run static
        allocation, such as ComfyUI 0.33's model prefetch): memory allocated there belongs
        to the graph's pool and is overwritten when the graph replays."""
        if _capturing():
            return
        if tensor is None:
            table = self._slots.setdefault(slot, {})
            for k in keys:
                table[k] = None
            return
        for k, chunk in split_batch(tensor, keys).items():
            meta = self._metadata(chunk)
            old = self._meta.get((slot, k))
            if old is not None and old != meta:
                self.reset_branch(k, f"{slot} of branch {_short(k)}: chunk changed from shape {_describe(old)} "
                                     f"to {_describe(meta)}")
            self._meta[(slot, k)] = meta
            self._slots.setdefault(slot, {})[k] = chunk.detach()

    def has(self, slot: str, keys: Sequence[Hashable]) -> bool:
        table = self._slots.get(slot)
        return table is not None and all(k in table for k in keys)

    def get(self, slot: str, keys: Sequence[Hashable]) -> torch.Tensor | None:
        """Reassemble the batch for ``keys`` in their current order."""
        table = self._slots[slot]
        parts = [table[k] for k in keys]
        if any(p is None for p in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        joined = batch_view(parts)
        return joined if joined is not None else torch.cat(parts, dim=0)

    def matches(self, slot: str, keys: Sequence[Hashable], like: torch.Tensor) -> bool:
        """True when ``slot`` holds every key with chunks shaped like ``like``'s chunks."""
        if not self.has(slot, keys):
            return False
        return self.fits(slot, keys, like.shape, like.dtype, like.device)

    def fits(self, slot: str, keys: Sequence[Hashable], shape, dtype, device) -> bool:
        """True when ``slot`` holds every key with chunks of a batch shaped ``shape``."""
        if not self.has(slot, keys):
            return False
        n = len(keys)
        if n == 0 or shape[0] % n != 0:
            return False
        chunk = ((shape[0] // n,) + tuple(shape[1:]), dtype, device)
        return all(self._meta.get((slot, k), chunk) == chunk for k in keys)

    def slots(self) -> list[str]:
        return list(self._slots)

    def branches(self) -> set:
        return {k for table in self._slots.values() for k in table}

    def nbytes(self) -> int:
        total = 0
        for table in self._slots.values():
            for t in table.values():
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    def _note(self, reason: str) -> None:
        self.reset_count += 1
        if reason not in self.resets:
            log.info("Diffusion Cache: %s reset (%s)", self.name, reason)
            self.resets.append(reason)

    def reset_branch(self, key: Hashable, reason: str | None = None) -> None:
        """Drop every slot of one branch; the other branches keep theirs."""
        if reason:
            self._note(reason)
        for table in self._slots.values():
            table.pop(key, None)
        for slot_key in [sk for sk in self._meta if sk[1] == key]:
            del self._meta[slot_key]
        for listener in self.listeners:
            listener(key)

    def reset(self, reason: str | None = None) -> None:
        if reason:
            self._note(reason)
        self._slots.clear()
        self._meta.clear()


def batch_view(parts: list) -> torch.Tensor | None:
    """The batch that ``parts`` are consecutive chunks of (along dim 0, in this order: they were
    stored from one batch), as a view without a copy; None when they are not. The chunks of a
    batch keep its strides, contiguous or not (a block's stream may be a transposed view)."""
    first = parts[0]
    if first.ndim == 0:
        return None
    storage, start, stride = first.untyped_storage().data_ptr(), first.storage_offset(), first.stride()
    step = first.shape[0] * stride[0]
    for i, p in enumerate(parts[1:], 1):
        if p.shape != first.shape or p.dtype != first.dtype or p.stride() != stride or \
                p.untyped_storage().data_ptr() != storage or p.storage_offset() != start + i * step:
            return None
    shape = (first.shape[0] * len(parts),) + tuple(first.shape[1:])
    return first.as_strided(shape, stride, start)


def _short(key) -> str:
    text = str(key)
    return text if len(text) <= 40 else text[:37] + "..."


_CUDA = None


def _capturing() -> bool:
    """Is a CUDA graph being captured on the current stream? (False without CUDA, cheaply.)"""
    global _CUDA
    if _CUDA is None:
        _CUDA = torch.cuda.is_available()
    return _CUDA and torch.cuda.is_current_stream_capturing()
