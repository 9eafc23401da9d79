"""A multi-GPU host names the ranks that must decide alike in transformer_options.

The reduction itself runs on two processes in tests/core/test_distributed.py; here the
host's key reaches every decision of a real sampling run, once per step, and survives
ComfyUI's model clone.
"""
from __future__ import annotations

import pytest
import torch

import tiny_archs

STEPS = 6


@pytest.mark.parametrize("method", ["first_block", "teacache", "easycache", "speca"])
def test_the_named_group_reaches_every_decision(comfy_nodes, pack, tiny_dir, monkeypatch, method):
    distributed = pack.cache_core.distributed
    real = distributed.agree
    seen = []

    def agree(value, how="max", group=None):
        seen.append(group)
        return real(value, how, group)

    monkeypatch.setattr(distributed, "agree", agree)
    tiny = tiny_archs.build("flux", tiny_dir)
    model = pack.nodes.cache_node.build_cached_model(tiny.model, method=method, threshold=0.5)
    group = object()                       # stands for a torch.distributed ProcessGroup
    model.model_options["transformer_options"][distributed.GROUP_KEY] = lambda: group
    model = model.clone()                  # model options are deep-copied: a function survives
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert torch.isfinite(out).all()
    assert len(seen) == STEPS and all(g is group for g in seen), seen   # one agreement per decision

    seen.clear()
    plain = pack.nodes.cache_node.build_cached_model(tiny.model, method=method, threshold=0.5)
    tiny_archs.sample(comfy_nodes, tiny, model=plain, steps=STEPS)
    assert seen == [None] * STEPS          # no key: every rank of torch.distributed, if initialised
