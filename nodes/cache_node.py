"""The "Diffusion Cache" node: MODEL in, cached MODEL out."""
from __future__ import annotations

import logging

from ..cache_core.config import METHODS, config_from_inputs
from . import hooks
from .architectures import identify
from .holder import CacheHolder
from .profile_files import profile_choices, resolve

log = logging.getLogger("diffusion_cache")

METHOD_CHOICES = ["auto"] + list(METHODS)
NEEDS_PROFILE = {"teacache": "teacache", "magcache": "magcache"}
# block-level methods on a model with no per-block hook fall back to these step-level ones
STEP_LEVEL_FALLBACK = {"dbcache": "first_block", "dbcache_hybrid": "first_block", "delta_dit": "fixed_interval",
                       "speca": "taylorseer"}


def choose_method(method: str, architecture, uses_blocks: bool) -> str:
    if method != "auto":
        return method
    return "first_block" if uses_blocks else "easycache"


def diffusion_model_of(model):
    """The MODEL's diffusion model, or None with the one warning both nodes give."""
    try:
        diffusion_model = model.get_model_object("diffusion_model")
    except Exception:
        diffusion_model = None
    if diffusion_model is None:
        log.warning("Diffusion Cache: this MODEL has no diffusion model to cache; passing it through unchanged")
    return diffusion_model


def probe_description(architecture, uses_blocks: bool) -> str:
    """What TeaCache measures on ``architecture``, in words."""
    if not uses_blocks:
        return "the model input"
    return {"modulated_input": "block 0's modulated input", "timestep_embedding": "the timestep modulation"}.get(
        architecture.probe_name, "block 0's input")


def build_cached_model(model, node_id=None, **inputs):
    """Clone ``model`` and attach a cache configured by the node's inputs.

    Raises ValueError with a fix-it message for bad input; returns the model
    untouched (with one warning) when it cannot be cached.
    """
    diffusion_model = diffusion_model_of(model)
    if diffusion_model is None:
        return model
    architecture = identify(diffusion_model)
    layout = architecture.layout(diffusion_model) if architecture.block_lists else None
    uses_blocks = layout is not None and layout.total > 0
    method = choose_method(inputs.pop("method", "auto"), architecture, uses_blocks)
    profile_choice = inputs.pop("profile", "auto")
    threshold = inputs.pop("threshold", 0.0)
    if threshold is not None and threshold < 0:
        raise ValueError(f"threshold must be 0 or more (0 = the method's default); got {threshold}")
    config = config_from_inputs(method=method, threshold=threshold or None, **inputs)
    if method == "easycache" and not architecture.calls_model_wrapper:
        log.warning("Diffusion Cache: EasyCache needs the model-call hook, which %s does not fire; "
                    "passing the model through unchanged (choose first_block, teacache or magcache)",
                    architecture.name)
        return model
    if method == "easycache" and not architecture.tensor_io:
        log.warning("Diffusion Cache: EasyCache compares whole model inputs and outputs, which for %s are lists "
                    "of streams (video and audio); passing the model through unchanged (choose first_block, "
                    "dbcache or a forecasting method)", architecture.name)
        return model
    if METHODS[method].get("needs_blocks") and not uses_blocks:
        fallback = STEP_LEVEL_FALLBACK.get(method, method)
        log.info("Diffusion Cache: %s has no per-block hook in ComfyUI; %s falls back to %s on whole "
                 "model calls (comparing the model input)", architecture.name, METHODS[method]["label"],
                 METHODS[fallback]["label"])
        config = config.with_overrides(method=fallback)
        method = fallback
    if METHODS[method].get("unet_only") and architecture.name != "unet":
        log.info("Diffusion Cache: DeepCache needs a U-Net; %s gets the fixed-interval schedule on whole model calls",
                 architecture.name)
        config = config.with_overrides(method="fixed_interval")
        method = "fixed_interval"
    if method == "deepcache":
        from .unet_deepcache import shallow_limits
        shallow_limits(diffusion_model, config.deepcache_depth)   # raises with the valid range
    if uses_blocks and method in ("dbcache", "dbcache_hybrid"):
        if config.front_blocks + config.back_blocks >= layout.total:
            raise ValueError(f"front_blocks + back_blocks ({config.front_blocks} + {config.back_blocks}) must leave "
                             f"blocks to cache; this {architecture.name} model has {layout.total} blocks")
    profile = resolve(profile_choice, architecture, NEEDS_PROFILE.get(method)) if method in NEEDS_PROFILE else None
    if method == "magcache" and profile is None:
        raise ValueError(f"MagCache has no published magnitude profile for {architecture.name}: use first_block, "
                         "or calibrate first (run the Diffusion Cache Calibrate node once on this model, then "
                         "pick its profile)")
    if method == "teacache" and profile is not None and profile.name == "generic" and profile_choice == "auto":
        log.warning("Diffusion Cache: no published TeaCache polynomial for %s; TeaCache accumulates the raw "
                    "relative change of %s. Use first_block, or calibrate first (Diffusion Cache Calibrate) "
                    "for a fitted polynomial", architecture.name, probe_description(architecture, uses_blocks))
    model = model.clone()
    hooks.attach(model, CacheHolder(config, architecture, layout if uses_blocks else None, profile, node_id))
    return model


def cache_node_class():
    from comfy_api.latest import io

    class DiffusionCacheNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            method_help = "; ".join(f"{k}: {v['about']}" for k, v in METHODS.items())
            return io.Schema(
                node_id="DiffusionCache",
                display_name="Diffusion Cache",
                category="Diffusion Cache",
                description="Speeds up sampling by reusing transformer work across denoising steps. "
                            "Put it between the model loader and the sampler.",
                inputs=[
                    io.Model.Input("model", tooltip="The diffusion model to accelerate."),
                    io.Combo.Input("method", options=METHOD_CHOICES, default="auto",
                                   tooltip="auto: First-Block Cache on transformers, EasyCache otherwise. " + method_help),
                    io.Float.Input("threshold", default=0.0, min=0.0, max=10.0, step=0.005,
                                   tooltip="first_block / teacache / magcache / easycache: how much change may "
                                           "accumulate before the model runs again. Larger = faster, lower quality. "
                                           "0 = the method's recommended default."),
                    io.Int.Input("interval", default=2, min=1, max=100,
                                 tooltip="fixed_interval: compute every N-th step and reuse in between."),
                    io.String.Input("step_mask", default="medium",
                                    tooltip="step_mask: a preset (slow, medium, fast, ultra) or a string of 0/1 "
                                            "per step, 1 = compute; stretched to the run's step count."),
                    io.Combo.Input("profile", options=profile_choices(), default="auto",
                                   tooltip="teacache / magcache: the calibration profile. auto = a profile you "
                                           "calibrated for this architecture, else the published one."),
                    io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                                   tooltip="Caching starts at this fraction of the denoising (by sigma)."),
                    io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                                   tooltip="Caching stops at this fraction of the denoising (by sigma)."),
                    io.Int.Input("warmup_steps", default=1, min=0, max=1000,
                                 tooltip="The first N steps of each sampler run are always computed."),
                    io.Int.Input("last_steps_computed", default=1, min=0, max=1000,
                                 tooltip="The last N steps of each sampler run are always computed."),
                    io.Int.Input("max_consecutive_cached", default=0, min=0, max=1000,
                                 tooltip="Never cache more than N steps in a row (0 = no limit)."),
                    io.Int.Input("max_cached_steps", default=0, min=0, max=1000, optional=True,
                                 tooltip="Never cache more than N steps in a run (0 = no limit)."),
                    io.Int.Input("front_blocks", default=1, min=1, max=200, optional=True,
                                 tooltip="dbcache: Fn, blocks always computed first; their residual decides."),
                    io.Int.Input("back_blocks", default=0, min=0, max=200, optional=True,
                                 tooltip="dbcache: Bn, blocks always computed last (they correct the cached middle)."),
                    io.Int.Input("delta_cached_blocks", default=0, min=0, max=200, optional=True,
                                 tooltip="delta_dit: blocks cached per phase (0 = half of the model's blocks)."),
                    io.Float.Input("delta_boundary", default=0.5, min=0.0, max=1.0, step=0.05, optional=True,
                                   tooltip="delta_dit: progress where caching moves from the rear blocks to the front blocks."),
                    io.Combo.Input("predictor", options=["auto", "reuse", "taylor", "hermite", "foca", "freq"],
                                   default="auto", optional=True,
                                   tooltip="What cached steps return. auto = the method's own (reuse for reuse "
                                           "methods, a forecast for taylorseer/hicache/foca/freqca/speca). A forecast "
                                           "with dbcache gives the DBCache + TaylorSeer hybrid."),
                    io.Int.Input("predictor_order", default=1, min=1, max=4, optional=True,
                                 tooltip="taylor / hermite: order of the forecast (1 = linear)."),
                    io.Combo.Input("predictor_axis", options=["step", "sigma"], default="step", optional=True,
                                   tooltip="Forecast along the step index or along sigma (the noise level)."),
                    io.Int.Input("deepcache_depth", default=0, min=0, max=30, optional=True,
                                 tooltip="deepcache: deepest U-Net input block still recomputed on cached steps "
                                         "(0 = only the first: fastest)."),
                    io.Combo.Input("deepcache_mode", options=["uniform", "non-uniform"], default="uniform",
                                   optional=True,
                                   tooltip="deepcache: full steps every N (uniform) or denser mid-run (non-uniform)."),
                    io.Int.Input("magcache_max_skips", default=4, min=0, max=100, optional=True,
                                 tooltip="magcache: K, the most steps skipped before the error resets."),
                    io.Float.Input("magcache_retention", default=0.1, min=0.0, max=0.99, step=0.01, optional=True,
                                   tooltip="magcache: the fraction of first steps never skipped."),
                    io.Boolean.Input("verbose", default=False, optional=True,
                                     tooltip="Log every step's decision and metric."),
                ],
                outputs=[io.Model.Output(tooltip="The model with the cache attached.")],
                hidden=[io.Hidden.unique_id],
                not_idempotent=True,   # the output carries this node's id (events), so never share it
            )

        @classmethod
        def execute(cls, model, method, threshold, interval, step_mask, profile, start_percent, end_percent,
                    warmup_steps, last_steps_computed, max_consecutive_cached, max_cached_steps=0,
                    front_blocks=1, back_blocks=0, delta_cached_blocks=0, delta_boundary=0.5,
                    deepcache_depth=0, deepcache_mode="uniform", predictor="auto", predictor_order=1,
                    predictor_axis="step", magcache_max_skips=4, magcache_retention=0.1, verbose=False) -> io.NodeOutput:
            cached = build_cached_model(
                model, node_id=cls.hidden.unique_id if cls.hidden else None, method=method, threshold=threshold,
                interval=interval, step_mask=step_mask, profile=profile, start_percent=start_percent,
                end_percent=end_percent, warmup_steps=warmup_steps, last_steps_computed=last_steps_computed,
                max_consecutive_cached=max_consecutive_cached, max_cached_steps=max_cached_steps,
                front_blocks=front_blocks, back_blocks=back_blocks, delta_cached_blocks=delta_cached_blocks,
                delta_boundary=delta_boundary, deepcache_depth=deepcache_depth, deepcache_mode=deepcache_mode,
                predictor=predictor, predictor_order=predictor_order, predictor_axis=predictor_axis,
                magcache_max_skips=magcache_max_skips,
                magcache_retention=magcache_retention, verbose=verbose)
            return io.NodeOutput(cached)

    return DiffusionCacheNode
