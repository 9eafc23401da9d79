"""The fastest a cache's schedule can run on this host: its decisions replayed with no cache work.

A row's run statistics say, for every sampler evaluation, which blocks ran (``block_mask``)
or that the whole model call or pass was answered from the cache. The replay model is a
clone of the uncached model that makes exactly those calls: a computed block runs, a cached
block hands its input streams back untouched, a cached whole pass or model call returns
its input. Nothing is measured, recorded, forecast or added, so its images are wrong and
its time is what the schedule costs when the cache itself costs nothing: embeddings, the
layers around the blocks and ComfyUI's per-pass work stay, as they do for the cache.

``time(replay) / time(cached)`` of a pair is then the share of the schedule's speedup
that the cache delivers (1.0 = no overhead), independent of how much of the model the
schedule leaves running on its cached steps.
"""
from __future__ import annotations

REPLAY_KEY = "diffusion_cache_schedule_replay"


def whole_step_cached(record: dict) -> bool:
    """A cached evaluation that ran nothing of the model (a whole pass or model call answered)."""
    return record["decision"] != "computed" and not record.get("block_mask") and record["blocks_computed"] == 0


def replayable(records: list, layout, granularity_blocks: bool) -> bool:
    """Whether a run's records can be replayed: one record per sampler evaluation, and block
    masks the size of the layout (U-Net deep-feature caching keeps no block mask)."""
    if not records:
        return False
    for r in records:
        if r["decision"] == "computed" or whole_step_cached(r):
            continue
        if not granularity_blocks or layout is None or len(r.get("block_mask", "")) != layout.total:
            return False
    return True


class _Cursor:
    """Which record the evaluation in progress replays."""

    def __init__(self, records: list):
        self.records = records
        self.index = -1

    def current(self) -> dict | None:
        return self.records[self.index] if 0 <= self.index < len(self.records) else None

    def whole_cached(self) -> bool:
        r = self.current()
        return r is not None and whole_step_cached(r)

    def block_cached(self, g: int) -> bool:
        r = self.current()
        mask = r.get("block_mask", "") if r is not None else ""
        return r is not None and r["decision"] != "computed" and g < len(mask) and mask[g] == "0"


def replay_model(base, records: list, layout, whole_passes: bool, stream_keys=("img", "txt", "x")):
    """(model, cursor): a clone of ``base`` that runs the schedule ``records`` describe at no
    cache cost, and the cursor whose ``index + 1`` after a run is the evaluations it saw (a
    replay is only valid when that equals ``len(records)``). ``whole_passes``: the cache
    answered whole passes (before ComfyUI's per-pass work), else whole model calls;
    ``layout``: the cache's block layout (kinds, counts, global indices)."""
    from comfy.patcher_extension import WrappersMP

    cursor = _Cursor(records)

    def outer_sample(executor, *args, **kwargs):
        cursor.index = -1
        return executor(*args, **kwargs)

    def predict_noise(executor, *args, **kwargs):
        cursor.index += 1
        return executor(*args, **kwargs)

    def calc_cond_batch(executor, *args, **kwargs):
        if whole_passes and cursor.whole_cached():
            conds = args[1] if len(args) > 1 else kwargs["conds"]
            x = args[2] if len(args) > 2 else kwargs["x_in"]
            return [x for _ in conds]
        return executor(*args, **kwargs)

    def diffusion_model(executor, *args, **kwargs):
        if not whole_passes and cursor.whole_cached():
            return args[0] if args else kwargs["x"]
        return executor(*args, **kwargs)

    model = base.clone()
    model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, REPLAY_KEY, outer_sample)
    model.add_wrapper_with_key(WrappersMP.PREDICT_NOISE, REPLAY_KEY, predict_noise)
    model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, REPLAY_KEY, calc_cond_batch)
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, REPLAY_KEY, diffusion_model)
    if layout is not None:
        for kind, count in layout.kinds:
            for i in range(count):
                model.set_model_patch_replace(_block_patch(cursor, layout.global_index(kind, i), stream_keys),
                                              "dit", kind, i)
    return model, cursor


def _block_patch(cursor: _Cursor, g: int, stream_keys):
    def block_patch(args, extra):
        if cursor.block_cached(g):
            return {k: args[k] for k in stream_keys if k in args}
        out = extra["original_block"](args)
        if out is None or isinstance(out, dict):
            return out
        return {next((k for k in stream_keys if k in args), "x"): out}    # a block that returns its tensor
    return block_patch
