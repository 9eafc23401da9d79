"""The "Diffusion Cache" node: MODEL in, cached MODEL out."""
from __future__ import annotations

import logging

from ..cache_core import methods as registry
from ..cache_core.config import METHODS, CacheConfig
from . import hooks
from .architectures import identify
from .holder import CacheHolder
from .profile_files import profile_choices, resolve

log = logging.getLogger("diffusion_cache")

METHOD_CHOICES = ["auto"] + list(METHODS)


def choose_method(method: str, architecture, uses_blocks: bool) -> str:
    if method != "auto":
        return method
    return registry.AUTO[0] if uses_blocks else registry.AUTO[1]   # first_block, else easycache


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
    inputs["threshold"] = threshold
    config = CacheConfig.build(method=method, **inputs)
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
    spec = METHODS[method]
    if spec.needs_blocks and not uses_blocks:
        fallback = spec.fallback or method
        log.info("Diffusion Cache: %s has no per-block hook in ComfyUI; %s falls back to %s on whole "
                 "model calls (comparing the model input)", architecture.name, spec.label, METHODS[fallback].label)
        config, method = config.with_method(fallback, inputs), fallback
    elif spec.unet_only and architecture.name != "unet":
        log.info("Diffusion Cache: %s needs a U-Net; %s gets %s on whole model calls",
                 spec.label.split(" (")[0], architecture.name, METHODS[spec.fallback].label)
        config, method = config.with_method(spec.fallback, inputs), spec.fallback
    params = config.params
    if method == "deepcache":
        from .unet_deepcache import shallow_limits
        shallow_limits(diffusion_model, params.deepcache_depth)   # raises with the valid range
    if uses_blocks and hasattr(params, "front_blocks"):
        if params.front_blocks + params.back_blocks >= layout.total:
            raise ValueError(f"front_blocks + back_blocks ({params.front_blocks} + {params.back_blocks}) must leave "
                             f"blocks to cache; this {architecture.name} model has {layout.total} blocks")
    needs = METHODS[method].needs_profile
    profile = resolve(profile_choice, architecture, needs) if needs else None
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


def _node_input(io, knob):
    """The ComfyUI input of one knob; the tooltip names what it means for each method that reads it."""
    meanings = {}
    for method in METHODS.values():
        for k in method.all_knobs():
            if k.name == knob.name:
                meanings.setdefault(k.tooltip, []).append(method.id)
    if len(meanings) == 1:
        tooltip = knob.tooltip
    else:
        tooltip = " | ".join(f"{', '.join(ids)}: {text}" for text, ids in meanings.items())
    common = dict(tooltip=tooltip, optional=knob.name not in REQUIRED_INPUTS)
    if knob.kind == "float":
        return io.Float.Input(knob.name, default=knob.default, min=knob.min, max=knob.max, step=knob.step, **common)
    if knob.kind == "int":
        return io.Int.Input(knob.name, default=knob.default, min=knob.min, max=knob.max, **common)
    if knob.kind == "combo":
        options = profile_choices() if knob.name == "profile" else list(knob.choices)
        return io.Combo.Input(knob.name, options=options, default=knob.default, **common)
    if knob.kind == "bool":
        return io.Boolean.Input(knob.name, default=knob.default, **common)
    return io.String.Input(knob.name, default=knob.default, **common)


# the inputs saved workflows have always had as required; every later one is optional
REQUIRED_INPUTS = ("threshold", "interval", "step_mask", "profile", "start_percent", "end_percent", "warmup_steps",
                   "last_steps_computed", "max_consecutive_cached")


def cache_node_class():
    from comfy_api.latest import io

    class DiffusionCacheNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            method_help = "; ".join(f"{m.id}: {m.about}" for m in METHODS.values())
            return io.Schema(
                node_id="DiffusionCache",
                display_name="Diffusion Cache",
                category="Diffusion Cache",
                description="Speeds up sampling by reusing transformer work across denoising steps. "
                            "Put it between the model loader and the sampler. The node shows the inputs of the "
                            "chosen method; 'advanced' shows the rest.",
                inputs=[io.Model.Input("model", tooltip="The diffusion model to accelerate."),
                        io.Combo.Input("method", options=METHOD_CHOICES, default="auto",
                                       tooltip="auto: First-Block Cache on transformers, EasyCache otherwise. "
                                               + method_help)]
                + [_node_input(io, knob) for knob in registry.node_inputs()],
                outputs=[io.Model.Output(tooltip="The model with the cache attached.")],
                hidden=[io.Hidden.unique_id],
                not_idempotent=True,   # the output carries this node's id (events), so never share it
            )

        @classmethod
        def execute(cls, model, method="auto", **knobs) -> io.NodeOutput:
            cached = build_cached_model(model, node_id=cls.hidden.unique_id if cls.hidden else None,
                                        method=method, **knobs)
            return io.NodeOutput(cached)

    return DiffusionCacheNode
