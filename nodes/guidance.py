"""CFG-Cache and PAB on ComfyUI's public hooks.

* CFG-Cache (every method's ``cfg_cache_interval``): inside the CALC_COND_BATCH wrapper, on a
  cached step the unconditional conditioning is dropped from the batch ComfyUI evaluates
  (``conds[1]``, as ``sampling_function`` passes it) and its output is rebuilt from the
  conditional one (``cache_core.cfg_cache``). Batched or split CFG and any latent batch size
  are the same to it: it works on ``calc_cond_batch``'s per-conditioning outputs.
* PAB (method ``pab``): ``transformer_options["optimized_attention_override"]`` sees every
  optimized-attention call; the cache's block patches tell it the block it runs in
  (``cursor_of(options).enter_block``), and ``cache_core.attention_cache`` decides.
"""
from __future__ import annotations

import logging

from ..cache_core.attention_cache import AttentionBroadcast
from ..cache_core.cfg_cache import CfgCache
from ..cache_core.eager import eager_frame

log = logging.getLogger("diffusion_cache")
CURSOR_KEY = "diffusion_cache_attention"     # the run's _Cursor, in transformer_options


def timestep_of(model_sampling, sigma: float) -> float:
    """The 0-1000 timestep of ``sigma``: 1000·sigma for flow models (sigma in [0, 1]), the
    discrete timestep for VP models."""
    try:
        sigma_max = float(model_sampling.sigma_max)
    except Exception:
        sigma_max = 1.0
    if sigma_max <= 1.0 + 1e-3:
        return 1000.0 * float(sigma)
    import torch
    return float(model_sampling.timestep(torch.tensor([float(sigma)])).flatten()[0])


# ---- CFG-Cache ---------------------------------------------------------------------------

class CfgState:
    def __init__(self, interval: int, model_sampling):
        self.cache = CfgCache(interval)
        self.model_sampling = model_sampling
        self.said_no_uncond = False


def start_cfg_cache(run, config, model_sampling) -> None:
    run.cfg_cache = CfgState(config.cfg_cache_interval, model_sampling) if config.cfg_cache_interval else None


def cfg_plan(run, conds, x, timestep, variant):
    """(drop the uncond?, the state) for one calc_cond_batch call; None when CFG-Cache is not in play."""
    state = getattr(run, "cfg_cache", None)
    if state is None or conds is None or len(conds) != 2 or conds[0] is None:
        return None
    if conds[1] is None:
        if not state.said_no_uncond:
            state.said_no_uncond = True
            log.info("Diffusion Cache: CFG-Cache has no unconditional branch to cache (cfg 1, or a "
                     "guidance-distilled model); passing it through")
        return None
    ev = run.evaluation
    if ev is None or not getattr(ev, "explicit", False):
        return None       # not inside a sampler evaluation: the step is not known yet
    sigma = float(timestep.flatten()[0])
    t = timestep_of(state.model_sampling, sigma)
    skip = state.cache.wants_skip(ev.ctx.step, t, variant, x)
    return skip, t


def cfg_finish(run, plan, variant, out, x, timestep):
    """After the executor: record a full step's bands, or rebuild the dropped uncond output."""
    state = run.cfg_cache
    skip, t = plan
    if skip:
        out = list(out)
        out[1] = state.cache.rebuild(variant, x, timestep, t, out[0])
        return out
    state.cache.record(variant, x, timestep, out[0], out[1])
    return out


# ---- PAB -----------------------------------------------------------------------------------

class _Cursor:
    """Where attention runs: the block a patch of ours entered, and the call's ordinal in it."""

    def __init__(self, broadcast: AttentionBroadcast, model_sampling):
        self.broadcast = broadcast
        self.model_sampling = model_sampling
        self.block = None
        self.ordinal = 0
        self.sigma_seen = (None, None)        # (id of the sigmas tensor, its timestep)

    def enter_block(self, g) -> None:
        self.block, self.ordinal = g, 0

    def timestep(self, options) -> float | None:
        sigmas = options.get("sigmas")
        if sigmas is None:
            return None
        if self.sigma_seen[0] != id(sigmas):
            self.sigma_seen = (id(sigmas), timestep_of(self.model_sampling, float(sigmas.flatten()[0])))
        return self.sigma_seen[1]


def cursor_of(options):
    return options.get(CURSOR_KEY) if isinstance(options, dict) else None


def attention_supported() -> bool:
    """Does this ComfyUI consult ``transformer_options["optimized_attention_override"]``?"""
    try:
        import comfy.ldm.modules.attention as attention
    except Exception:
        return False
    return hasattr(attention, "wrap_attn")


def start_pab(run, options: dict, params, model_sampling) -> None:
    """Install the attention override for this run (in the run's copy of the options)."""
    if not attention_supported():
        log.warning("Diffusion Cache: this ComfyUI has no optimized_attention_override hook; PAB computes "
                    "every attention call")
        run.attention = None
        return
    broadcast = AttentionBroadcast(params.pab_self_range, params.pab_cross_range, params.pab_temporal_range,
                                   (float(params.pab_window_start), float(params.pab_window_end)))
    cursor = _Cursor(broadcast, model_sampling)
    run.attention = broadcast
    options[CURSOR_KEY] = cursor
    options["optimized_attention_override"] = make_override(cursor, options.get("optimized_attention_override"))


def make_override(cursor: _Cursor, previous=None):
    @eager_frame
    def attention_override(func, *args, **kwargs):
        if previous is not None:
            def compute():
                return previous(func, *args, **kwargs)
        else:
            def compute():
                return func(*args, **kwargs)
        options = kwargs.get("transformer_options") or {}
        q = args[0] if args else kwargs.get("q")
        k = args[1] if len(args) > 1 else kwargs.get("k")
        if q is None or k is None or not hasattr(q, "shape"):
            return compute()
        if cursor.block is None:
            where = ("unet", tuple(options.get("block") or ()), options.get("block_index"),
                     options.get("transformer_index"))
        else:
            where = ("block", cursor.block)
        ordinal = cursor.ordinal
        cursor.ordinal += 1
        branches = tuple(options.get("cond_or_uncond") or ())
        seq_axis = 2 if kwargs.get("skip_reshape") else 1
        return cursor.broadcast.attention(compute, q, k, (where, ordinal, branches), cursor.timestep(options),
                                          seq_axis=seq_axis)
    attention_override.diffusion_cache = True
    return attention_override


def end_run_extras(run, stats) -> None:
    """The run's CFG-Cache and PAB counts, into its statistics; free their tensors."""
    state = getattr(run, "cfg_cache", None)
    if state is not None:
        stats.extra.update(cfg_uncond_skipped=state.cache.skipped, cfg_uncond_computed=state.cache.computed)
        state.cache.clear()
    broadcast = getattr(run, "attention", None)
    if broadcast is not None:
        stats.extra.update(broadcast.summary())
        broadcast.clear()
