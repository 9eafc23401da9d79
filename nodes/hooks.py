"""The ModelPatcher hooks that attach a cache: keyed wrappers and block patches.

All are registered under one key, so they can be listed and removed together, and
never replace a model's ``forward``.
"""
from __future__ import annotations

import logging

from ..cache_core.engine import STREAM_KEYS
from . import events
from .passes import pass_variant, predict_noise_wrapper
from .holder import HOLDER_KEY, RUN_KEY

log = logging.getLogger("diffusion_cache")
WRAPPER_KEY = "diffusion_cache"


def _sampler_args(args, kwargs):
    """(sigmas, callback position or name) of CFGGuider.outer_sample's arguments."""
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
    model = guider.model_patcher.model
    sampler = args[2] if len(args) > 2 else kwargs.get("sampler")
    run = holder.new_run(sigmas, model.model_sampling, model.diffusion_model, sampler)

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
    guider.model_options["transformer_options"][RUN_KEY] = run
    log.info("Diffusion Cache enabled - %s on %s (%s)", holder.config.describe(), holder.architecture.name,
             "block spans" if run.granularity == "stack" else "whole model calls")
    try:
        return executor(*args, **kwargs)
    finally:
        stats = run.finish()
        holder.last_stats = stats.to_json()
        log.info(stats.log_line())
        for reason in stats.resets:
            log.info("Diffusion Cache: state was reset during the run: %s", reason)
        if holder.calibrate_to is not None:
            _save_calibration(holder, run)
        events.send(events.RUN_EVENT, events.run_payload(holder.node_id, stats))
        guider.model_options = original_options


def _save_calibration(holder, run) -> None:
    from .profile_files import save_profile
    recorder = run.policy.finish()
    try:
        profile = recorder.to_profile(holder.calibrate_to, holder.architecture.name,
                                      holder.architecture.probe_name if run.granularity == "stack" else "model_input")
        path = save_profile(profile)
        log.info("Diffusion Cache: calibration profile written to %s", path)
    except ValueError as e:
        log.warning("Diffusion Cache: calibration not saved: %s", e)


def calc_cond_batch_wrapper(executor, *args, **kwargs):
    """One sampler evaluation: locate it in the schedule before the model runs."""
    model_options = args[-1] if args else kwargs["model_options"]
    run = model_options.get("transformer_options", {}).get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    conds = args[1] if len(args) > 1 else kwargs.get("conds")
    timestep = args[3] if len(args) > 3 else kwargs.get("timestep")
    branches = tuple("cond" if i == 0 else "uncond" if i == 1 else f"cond{i}"
                     for i, c in enumerate(conds or []) if c is not None)
    run.begin_evaluation(float(timestep.flatten()[0]), branches, pass_variant(conds, model_options))
    try:
        return executor(*args, **kwargs)
    finally:
        run.end_evaluation()


def _transformer_options(args, kwargs) -> dict:
    options = kwargs.get("transformer_options")
    if isinstance(options, dict):
        return options
    for a in reversed(args):
        if isinstance(a, dict) and ("sigmas" in a or RUN_KEY in a or "patches_replace" in a):
            return a
    return {}


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
    implicit = run.evaluation is None
    if implicit:
        run.begin_evaluation(sigma if sigma is not None else run.sigmas[0])
    run_shallow = None
    if run.granularity == "deep":
        from .unet_deepcache import shallow_forward
        unet, depth = executor.class_obj, run.config.deepcache_depth

        def run_shallow(feature):
            return shallow_forward(unet, depth, feature, args, kwargs, options)
    try:
        return run.model_call(x, tuple(uuids), lambda: executor(*args, **kwargs), sigma, run_shallow)
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


def make_block_patch(global_index: int, previous=None):
    """A ``patches_replace["dit"]`` function for one block; chains a patch already there."""
    def block_patch(args, extra):
        if previous is not None:
            def original(a):
                return previous(a, extra)
        else:
            original = extra["original_block"]
        original = _returning_streams(original)
        options = args.get("transformer_options") or {}
        run = options.get(RUN_KEY)
        if run is None:
            return original(args)
        return run.block(global_index, args, original, keys=options.get("uuids") or ())
    block_patch.diffusion_cache = True
    return block_patch


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
        _, first_output = shallow_limits(model.get_model_object("diffusion_model"), holder.config.deepcache_depth)
        install_capture_patch(model, first_output)
    if not holder.uses_blocks:
        return
    existing = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for kind, count in holder.layout.kinds:
        for i in range(count):
            previous = existing.get((kind, i))   # another pack's patch: ours wraps it
            model.set_model_patch_replace(make_block_patch(holder.layout.global_index(kind, i), previous),
                                          "dit", kind, i)


def detach(model) -> None:
    """Remove everything ``attach`` registered (the model stays usable)."""
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
        replace["dit"] = {k: fn for k, fn in dit.items() if not getattr(fn, "diffusion_cache", False)}
