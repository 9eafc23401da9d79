"""Keep the cache's decisions and cached state out of torch.compile's graphs.

ComfyUI's TorchCompileModel node compiles the whole diffusion model, so the cache's
hooks run inside the compiled region. Its bookkeeping (decisions, statistics, cached
tensors) is Python state that changes every step: traced, it would guard and
recompile on every change. ``eager_methods`` runs a class's methods uncompiled; the
*frames* it names (methods that call the host's model code: a block, the whole model)
run their own code uncompiled while the model code they call is still compiled.
A disabled call costs well under a microsecond when nothing is compiled.
"""
from __future__ import annotations

import inspect

import torch


def eager_methods(*frames: str):
    def decorate(cls):
        for name, fn in list(vars(cls).items()):
            if inspect.isfunction(fn):
                setattr(cls, name, torch.compiler.disable(fn, recursive=name not in frames))
        return cls
    return decorate


def eager_frame(fn):
    """``fn``'s own code runs uncompiled; what it calls may be compiled."""
    return torch.compiler.disable(fn, recursive=False)
