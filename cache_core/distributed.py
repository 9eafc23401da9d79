"""The same cache decision on every rank of a multi-GPU run.

Sequence-parallel hosts (raylight, xDiT-style Ulysses or ring attention) run one copy
of the model per GPU, each on a shard of the tokens, and the shards meet in
collectives inside the model. A decision measured on a local shard can differ between
ranks: one rank would skip a step while another computes it, and the computing rank
would wait forever in a collective. So when ``torch.distributed`` is initialised, the
scalar a policy derives from its measurement (the front-residual change, TeaCache's
probe change, EasyCache's rate estimate, SpeCa's draft error) is reduced across the
ranks before the policy compares it with its threshold, and every rank decides alike.

Which ranks: the host may name them in ``transformer_options`` under ``GROUP_KEY``:
  - a ``torch.distributed`` process group (the ranks that shard one model call, when
    the world holds several such groups), or a function that returns one: ComfyUI's
    ``ModelPatcher.clone`` deep-copies the model options, which a process group does not
    survive, and a function does;
  - ``False`` where each process samples on its own (data-parallel workers, which must
    not wait for each other).
Without the key, every rank of the default group takes part. One process, or an
uninitialised ``torch.distributed``, costs nothing.
"""
from __future__ import annotations

import math

import torch

GROUP_KEY = "diffusion_cache_process_group"


def _initialised():
    try:
        import torch.distributed as dist
    except ImportError:      # a torch built without distributed support
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def named_group(value):
    """The group a host named under ``GROUP_KEY``: the value, or what a function there returns."""
    return value() if callable(value) else value


def participants(group=None):
    """``(torch.distributed, group)`` when decisions must agree across ranks, else None."""
    if group is False:
        return None
    dist = _initialised()
    if dist is None or dist.get_world_size(group) < 2:
        return None
    return dist, group


def _device(dist, group) -> torch.device:
    """Where the collective's tensor must live: the CPU for gloo, the current GPU for NCCL and the like."""
    backend = str(dist.get_backend(group)).lower()
    if "gloo" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def agree(value: float | None, how: str = "max", group=None) -> float | None:
    """``value`` reduced over the ranks of ``group``: their maximum (``how="max"``) or their
    mean (``"mean"``). A rank without a value (None or NaN) makes it None on every rank.

    Every rank must call this the same number of times, in the same order, which holds
    because the engine asks the policy once per step on every rank.
    """
    ranks = participants(group)
    if ranks is None:
        return value
    dist, group = ranks
    missing = value is None or math.isnan(value)
    if how == "max":
        data = [-math.inf if missing else float(value), 1.0 if missing else 0.0]
        op = dist.ReduceOp.MAX
    else:
        data = [0.0 if missing else float(value), 1.0 if missing else 0.0]
        op = dist.ReduceOp.SUM
    t = torch.tensor(data, dtype=torch.float64, device=_device(dist, group))
    dist.all_reduce(t, op=op, group=group)
    total, absent = t.tolist()
    if absent > 0:
        return None
    return total if how == "max" else total / dist.get_world_size(group)
