"""The benchmark's schedule bound: a cached run's decisions replayed with no cache work.

The replay (scripts/schedule_bound.py) must make exactly the block and model calls the
cached run made, and nothing else of the cache: then its time is what the schedule costs.
Both are counted with forward pre-hooks on the model's own block modules.
"""
from __future__ import annotations

import contextlib

import pytest

import tiny_archs
from tiny_archs import stats_of

STEPS = 8


@contextlib.contextmanager
def counting_blocks(holder, diffusion_model):
    """Counts every call of the model's transformer blocks (the modules the cache patches)."""
    calls = {"blocks": 0}
    handles = []
    for _, attr in holder.architecture.block_lists:
        for module in getattr(diffusion_model, attr, ()) or ():
            handles.append(module.register_forward_pre_hook(lambda *_: calls.__setitem__("blocks", calls["blocks"] + 1)))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _replay_of(model, base):
    from schedule_bound import replay_model, replayable
    holder = model.model_options["transformer_options"]["diffusion_cache"]
    stats = stats_of(model)
    assert replayable(stats["records"], holder.layout, holder.uses_blocks)
    replay, cursor = replay_model(base, stats["records"], holder.layout if holder.uses_blocks else None,
                                  bool(stats["summary"]["whole_passes"]))
    return holder, replay, cursor


CASES = [("fixed_interval", dict(interval=3)),                                   # whole passes
         ("dbcache", dict(threshold=100.0, front_blocks=1, back_blocks=0)),      # the front block runs
         ("teacache", dict(threshold=100.0)),                                    # every block skipped
         ("delta_dit", dict(interval=2, delta_cached_blocks=1))]                 # one block skipped


@pytest.mark.parametrize("arch", ["flux", "wan21"])
@pytest.mark.parametrize("method,inputs", CASES, ids=[c[0] for c in CASES])
def test_the_replay_makes_the_cached_runs_block_calls_and_no_others(comfy_nodes, build, tiny_dir, arch,
                                                                    method, inputs):
    tiny = tiny_archs.build(arch, tiny_dir)
    model = build(tiny.model, method=method, **inputs)
    diffusion_model = tiny.model.get_model_object("diffusion_model")
    holder = model.model_options["transformer_options"]["diffusion_cache"]
    with counting_blocks(holder, diffusion_model) as cached_calls:
        tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    with counting_blocks(holder, diffusion_model) as uncached_calls:
        tiny_archs.sample(comfy_nodes, tiny, steps=STEPS)
    records = stats_of(model)["records"]
    assert any(r["decision"] != "computed" for r in records), records
    assert cached_calls["blocks"] < uncached_calls["blocks"]

    _, replay, cursor = _replay_of(model, tiny.model)
    with counting_blocks(holder, diffusion_model) as replay_calls:
        tiny_archs.sample(comfy_nodes, tiny, model=replay, steps=STEPS)
    assert cursor.index + 1 == len(records)                  # one sampler evaluation per record
    assert replay_calls["blocks"] == cached_calls["blocks"], (method, records)
    assert stats_of(model)["summary"]["whole_passes"] is (method == "fixed_interval")


def test_a_run_without_block_masks_is_not_replayed_at_block_level():
    from schedule_bound import replayable
    computed = {"decision": "computed", "block_mask": "", "blocks_computed": 4}
    whole = {"decision": "reused", "block_mask": "", "blocks_computed": 0}
    partial = {"decision": "reused", "block_mask": "1000", "blocks_computed": 1}

    class Layout:
        total = 4

    assert replayable([computed, whole], None, False)            # whole steps need no layout
    assert replayable([computed, partial], Layout(), True)
    assert not replayable([computed, partial], Layout(), False)   # U-Net deep features: no block mask
    assert not replayable([computed, {**partial, "block_mask": "10"}], Layout(), True)
    assert not replayable([], Layout(), True)
