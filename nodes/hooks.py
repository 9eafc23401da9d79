"""The ModelPatcher hooks that attach a cache: keyed wrappers and block patches.

All are registered under one key, so they can be listed and removed together, and
never replace a model's ``forward``.

Block patches chain: where another pack already patched a block, ours wraps its patch
(and ``detach`` puts it back). A node after ours may replace our patches; at the start
of every sampling run ours is made the outermost patch again, wrapping whatever is
there, so the order of the nodes does not matter. A patch of ours reached again inside
another pack's patch (one that chains what it found) runs the block as is.
"""
from __future__ import annotations

import logging

import torch

from ..cache_core import distributed
from ..cache_core.eager import eager_frame
from ..cache_core.engine import STREAM_KEYS
from . import events, guidance
from .passes import branch_keys, pass_variant, predict_noise_wrapper
from .holder import GROUP_KEY, HOLDER_KEY, RUN_KEY

log = logging.getLogger("diffusion_cache")
WRAPPER_KEY = "diffusion_cache"
GUARD_KEY = "diffusion_cache_blocks"      # the run's _BlockGuard, in transformer_options


class _BlockGuard:
    """The blocks whose patch of ours is running (one sampling run); not a dict, so ComfyUI's
    per-call copies of transformer_options share it."""

    def __init__(self):
        self.active: set[int] = set()
        self.warned_unreached = False


def _sampler_args(args, kwargs):
    """The sigma schedule of CFGGuider.outer_sample's arguments."""
    sigmas = args[3] if len(args) > 3 else kwargs.get("sigmas")
    return sigmas


def outer_sample_wrapper(executor, *args, **kwargs):
    """Start a fresh run for this sampling call; free everything when it ends."""
    import comfy.model_patcher

    guider = executor.class_obj
    original_options = guider.model_options
    holder = original_options["transformer_options"].get(HOLDER_KEY)
    if holder is None:
        return executor(*args, **kwargs)
    sigmas = _sampler_args(args, kwargs)
    if sigmas is None or len(sigmas) < 2:
        return executor(*args, **kwargs)     # no step to take (SplitSigmas at an end): nothing to cache
    model = guider.model_patcher.model
    sampler = args[2] if len(args) > 2 else kwargs.get("sampler")
    group = distributed.named_group(original_options["transformer_options"].get(GROUP_KEY))
    run = holder.new_run(sigmas, model.model_sampling, model.diffusion_model, sampler, group=group)

    args = list(args)
    user_callback = args[5] if len(args) > 5 else kwargs.get("callback")

    def callback(step, *rest):
        run.step_reported(step)
        if user_callback is not None:
            return user_callback(step, *rest)

    if len(args) > 5:
        args[5] = callback
    else:
        kwargs["callback"] = callback
    guider.model_options = comfy.model_patcher.create_model_options_clone(original_options)
    options = guider.model_options["transformer_options"]
    options[RUN_KEY] = run
    options[GUARD_KEY] = _BlockGuard()
    _own_block_patches(options, holder)
    guidance.start_cfg_cache(run, holder.config, model.model_sampling)
    if holder.config.method == "pab":
        guidance.start_pab(run, options, holder.config.params, model.model_sampling)
    log.info("Diffusion Cache enabled - %s on %s (%s)", holder.config.describe(), holder.architecture.name,
             "block spans" if run.granularity == "stack" else "whole model calls")
    try:
        return executor(*args, **kwargs)
    finally:
        guider.model_options = original_options
        _end_run(holder, run)


def _end_run(holder, run) -> None:
    """Report the run and free its tensors. Nothing here may replace the sampler's result
    (or the exception that stopped it), so each part logs its own failure."""
    try:
        stats = run.finish()
        guidance.end_run_extras(run, stats)
    except Exception:
        log.exception("Diffusion Cache: ending the run failed")
        return
    try:
        holder.last_stats = stats.to_json()
        log.info(stats.log_line())
        for reason in stats.resets:
            log.info("Diffusion Cache: state was reset during the run: %s", reason)
    except Exception:
        log.exception("Diffusion Cache: the run's summary failed")
    if holder.calibrate_to is not None:
        _save_calibration(holder, run)
    try:
        events.send(events.RUN_EVENT, events.run_payload(holder.node_id, stats))
    except Exception:
        log.exception("Diffusion Cache: sending the run's summary failed")


def _save_calibration(holder, run) -> None:
    from .profile_files import save_profile
    try:
        recorder = run.policy.finish()
        profile = recorder.to_profile(holder.calibrate_to, holder.architecture.name,
                                      holder.architecture.probe_name if run.granularity == "stack" else "model_input")
    except ValueError as e:
        log.warning("Diffusion Cache: calibration not saved: %s", e)
        return
    try:
        path = save_profile(profile)
    except Exception as e:   # a read-only or full user directory: keep the sampled result
        log.error("Diffusion Cache: the calibration profile %r could not be written (%s: %s); the sampled "
                  "result is kept", holder.calibrate_to, type(e).__name__, e)
        return
    log.info("Diffusion Cache: calibration profile written to %s", path)


def _own_block_patches(options: dict, holder) -> None:
    """Make this holder's patch the outermost one at each of its block keys, in this run's
    copy of the options: a node after ours may have replaced (or chained) our patches."""
    if not holder.uses_blocks:
        return
    replace = options.get("patches_replace")
    replace = dict(replace) if isinstance(replace, dict) else {}
    dit = dict(replace.get("dit") or {})
    wrapped = 0
    for kind, count in holder.layout.kinds:
        for i in range(count):
            found = dit.get((kind, i))
            if getattr(found, "diffusion_cache_token", None) != holder.token:
                dit[(kind, i)] = make_block_patch(holder.layout.global_index(kind, i), found, holder.token)
                wrapped += found is not None
    if wrapped:
        log.info("Diffusion Cache: %d block patch(es) set after this cache node are wrapped by the cache "
                 "for this run", wrapped)
    replace["dit"] = dit
    options["patches_replace"] = replace


def calc_cond_batch_wrapper(executor, *args, **kwargs):
    """One sampler evaluation: locate it in the schedule before the model runs."""
    model_options = args[-1] if args else kwargs["model_options"]
    run = model_options.get("transformer_options", {}).get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    conds = args[1] if len(args) > 1 else kwargs.get("conds")
    timestep = args[3] if len(args) > 3 else kwargs.get("timestep")
    variant = pass_variant(conds, model_options)
    x = args[2] if len(args) > 2 else kwargs.get("x_in")
    cfg = guidance.cfg_plan(run, conds, x, timestep, variant)      # CFG-Cache: drop the uncond this step?
    if cfg is not None and cfg[0]:
        conds = [conds[0], None]
        args, kwargs = _with_conds(args, kwargs, conds)
    sigma = float(timestep.flatten()[0])
    keys = branch_keys(conds, sigma, timestep.dtype)
    branches = tuple(k[0] for k in keys if k is not None)
    run.begin_evaluation(sigma, branches, variant)
    try:
        whole_pass = run.use_pass_level(getattr(run, "cfg_cache", None) is None
                                        and _pass_can_be_cached(conds, model_options))
        if whole_pass:
            cached = run.answer_pass(x, timestep, tuple(k for k in keys if k is not None))
            if cached is not None:      # none of ComfyUI's per-pass work runs: the cache answers it
                return [torch.zeros_like(x) if k is None else cached[k] for k in keys]
        out = executor(*args, **kwargs)
        if whole_pass:
            run.record_pass(x, timestep, {k: o for k, o in zip(keys, out) if k is not None})
        _warn_if_unreached(run, model_options["transformer_options"].get(GUARD_KEY))
        if cfg is not None:
            out = guidance.cfg_finish(run, cfg, variant, out, x, timestep)
        return out
    finally:
        run.end_evaluation()


def _pass_can_be_cached(conds, model_options) -> bool:
    """May the run's passes be answered whole from the cache (decided at its first pass)? Not with
    a ControlNet (its fresh residuals must reach the blocks: those calls cache the block span) nor
    with ComfyUI's context windows (each window's pass goes through the model call)."""
    if model_options.get("context_handler") is not None:
        return False
    return not any(isinstance(c, dict) and c.get("control") is not None
                   for cond in conds or [] if cond is not None for c in cond)


def _with_conds(args, kwargs, conds):
    if len(args) > 1:
        return (args[0], conds) + tuple(args[2:]), kwargs
    return args, {**kwargs, "conds": conds}


def _warn_if_unreached(run, guard) -> None:
    """An evaluation in which neither a model call nor a block reached the run (a model without
    a model-call hook, SD3, whose block patches were replaced while it ran): say so once."""
    if run.evaluation is None or run.evaluation.calls or guard is None or guard.warned_unreached:
        return
    guard.warned_unreached = True
    log.warning("Diffusion Cache: the model ran without reaching the cache (another node replaced its block "
                "patches, or skipped the model call); those steps are computed and not cached")


def _transformer_options(args, kwargs) -> dict:
    options = kwargs.get("transformer_options")
    if isinstance(options, dict):
        return options
    for a in reversed(args):
        if isinstance(a, dict) and ("sigmas" in a or RUN_KEY in a or "patches_replace" in a):
            return a
    return {}


def _has_control(args, kwargs) -> bool:
    """Does this model call carry ControlNet residuals (added to the streams between blocks)?
    ComfyUI passes them as ``control``, a dict of "input" / "middle" / "output" lists."""
    candidates = [kwargs.get("control")] + [a for a in args if isinstance(a, dict)]
    return any(isinstance(c, dict) and any(c.get(k) for k in ("input", "middle", "output")) for c in candidates)


@eager_frame
def diffusion_model_wrapper(executor, *args, **kwargs):
    """One model call (one batch of conditioning chunks)."""
    options = _transformer_options(args, kwargs)
    run = options.get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    x = args[0]
    uuids = options.get("uuids") or ["batch"]
    sigmas = options.get("sigmas")
    sigma = float(sigmas.flatten()[0]) if sigmas is not None else None
    cursor = guidance.cursor_of(options)
    if cursor is not None:
        cursor.enter_block(None)       # attention before the first block (refiners) is its own
    implicit = run.evaluation is None
    if implicit:
        run.begin_evaluation(sigma if sigma is not None else run.sigmas[0])
    run_shallow = None
    if run.granularity == "deep":
        from .unet_deepcache import shallow_forward
        unet, depth = executor.class_obj, run.config.params.deepcache_depth

        def run_shallow(feature):
            return shallow_forward(unet, depth, feature, args, kwargs, options)
    try:
        return run.model_call(x, tuple(uuids), lambda: executor(*args, **kwargs), sigma, run_shallow,
                              adds_between_blocks=_has_control(args, kwargs))
    finally:
        if implicit:
            run.end_evaluation()


def _returning_streams(run_block):
    """``run_block`` giving back a dict of streams. Kandinsky 5's original block returns its
    tensor, while its forward reads ``["x"]`` from what the patch returns."""
    def run(args):
        out = run_block(args)
        if out is None or isinstance(out, dict):
            return out
        return {next((k for k in STREAM_KEYS if k in args), "x"): out}
    return run


def make_block_patch(global_index: int, previous=None, token: str | None = None):
    """A ``patches_replace["dit"]`` function for one block; chains a patch already there.

    ``token`` names the holder it belongs to; ``diffusion_cache_wraps`` is the patch it chains."""
    def block_patch(args, extra):
        if previous is not None:
            def original(a):
                return previous(a, extra)
        else:
            original = extra["original_block"]
        original = _returning_streams(original)
        options = args.get("transformer_options") or {}
        run, guard = options.get(RUN_KEY), options.get(GUARD_KEY)
        if run is None or guard is None or global_index in guard.active:
            return original(args)     # not sampling with a cache, or a copy of ours inside another pack's patch
        guard.active.add(global_index)
        cursor = guidance.cursor_of(options)
        if cursor is not None:
            cursor.enter_block(global_index)     # PAB: the block the attention calls run in
        try:
            return run.block(global_index, args, original, keys=options.get("uuids") or ())
        finally:
            guard.active.discard(global_index)
    block_patch = eager_frame(block_patch)      # its own code stays out of torch.compile's graphs
    block_patch.diffusion_cache = True
    block_patch.diffusion_cache_token = token
    block_patch.diffusion_cache_wraps = previous
    return block_patch


def _unwrapped(fn):
    """The first patch under our chain of patches (None: there was none)."""
    while fn is not None and getattr(fn, "diffusion_cache", False):
        fn = getattr(fn, "diffusion_cache_wraps", None)
    return fn


def attach(model, holder) -> None:
    """Register the holder, wrappers and block patches on a cloned ModelPatcher."""
    from comfy.patcher_extension import WrappersMP

    detach(model)   # a second Diffusion Cache node on the same model replaces the first
    model.model_options.setdefault("transformer_options", {})[HOLDER_KEY] = holder
    model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, outer_sample_wrapper)
    model.add_wrapper_with_key(WrappersMP.PREDICT_NOISE, WRAPPER_KEY, predict_noise_wrapper)
    model.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, WRAPPER_KEY, calc_cond_batch_wrapper)
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, diffusion_model_wrapper)
    if holder.config.method == "deepcache":
        from .unet_deepcache import install_capture_patch, shallow_limits
        _, first_output = shallow_limits(model.get_model_object("diffusion_model"), holder.config.params.deepcache_depth)
        install_capture_patch(model, first_output)
    if not holder.uses_blocks:
        return
    existing = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for kind, count in holder.layout.kinds:
        for i in range(count):
            previous = existing.get((kind, i))   # another pack's patch: ours wraps it
            model.set_model_patch_replace(make_block_patch(holder.layout.global_index(kind, i), previous,
                                                           holder.token), "dit", kind, i)


def detach(model) -> None:
    """Remove everything ``attach`` registered (the model stays usable); another pack's
    patch that ours wrapped is put back."""
    from comfy.patcher_extension import WrappersMP
    for wrapper_type in (WrappersMP.OUTER_SAMPLE, WrappersMP.PREDICT_NOISE, WrappersMP.CALC_COND_BATCH,
                         WrappersMP.DIFFUSION_MODEL):
        model.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
    options = model.model_options.get("transformer_options", {})
    options.pop(HOLDER_KEY, None)
    patches = options.get("patches", {})
    if patches.get("output_block_patch"):
        patches = dict(patches)
        patches["output_block_patch"] = [p for p in patches["output_block_patch"]
                                         if not getattr(p, "diffusion_cache", False)]
        options["patches"] = patches
    replace = options.get("patches_replace", {})
    dit = replace.get("dit")
    if dit:
        # copy on write: the dict may be shared with the model this one was cloned from
        restored = {k: _unwrapped(fn) for k, fn in dit.items()}
        replace["dit"] = {k: fn for k, fn in restored.items() if fn is not None}
