"""DeepCache on ComfyUI's U-Net (SD1.5, SDXL): the shallow branch around a cached deep feature.

ComfyUI's U-Net offers no hook that can skip its deep blocks, so a cached step is
served from the DIFFUSION_MODEL wrapper (keyed "diffusion_cache", removable): it runs
the U-Net's own input blocks down to ``depth`` and the matching output blocks, with
ComfyUI's ``forward_timestep_embed``, around the deep feature captured at the last
full step. Full steps run the model untouched; an ``output_block_patch`` (ComfyUI's
patch point before each output block), registered first, captures the deep feature on
the way, before other patches edit it. A cached step hands the shallow branch a copy of
the cached feature, and every output-block patch (FreeU's included) applies to it once.
"""
from __future__ import annotations

import torch

from .holder import RUN_KEY


def shallow_limits(unet, depth: int) -> tuple[int, int]:
    """(last recomputed input block, first recomputed output block) for ``depth``."""
    n_in, n_out = len(unet.input_blocks), len(unet.output_blocks)
    if not 0 <= depth <= n_in - 2:
        raise ValueError(f"deepcache_depth must be between 0 and {n_in - 2} for this U-Net "
                         f"({n_in} input blocks); got {depth}")
    return depth, n_out - depth - 1


def make_capture_patch(first_output: int):
    """An output_block_patch that hands the feature entering output block ``first_output`` to the run
    (which keeps a copy, and only on a computed call)."""
    def capture(h, hsp, transformer_options):
        run = transformer_options.get(RUN_KEY)
        if run is not None and transformer_options.get("block") == ("output", first_output):
            run.record_deep_feature(h)
        return h, hsp
    capture.diffusion_cache = True
    return capture


def install_capture_patch(model, first_output: int) -> None:
    """Register the capture patch as the *first* output_block_patch: it must see the feature
    as the block above produced it, before any other patch (FreeU scales it, in place) acts.
    The cached feature then goes through every other patch once per step, fresh, like the
    skip feature does. Patches registered later (nodes after this one) come after it anyway."""
    model.set_model_output_block_patch(make_capture_patch(first_output))
    patches = model.model_options["transformer_options"]["patches"]
    ours = [p for p in patches["output_block_patch"] if getattr(p, "diffusion_cache", False)]
    others = [p for p in patches["output_block_patch"] if not getattr(p, "diffusion_cache", False)]
    patches["output_block_patch"] = ours[-1:] + others     # a new list: the old one may be shared


def _unet_inputs(args, kwargs):
    x = args[0]
    timesteps = args[1] if len(args) > 1 else kwargs.get("timesteps")
    context = args[2] if len(args) > 2 else kwargs.get("context")
    y = args[3] if len(args) > 3 else kwargs.get("y")
    control = args[4] if len(args) > 4 else kwargs.get("control")
    return x, timesteps, context, y, control


def shallow_forward(unet, depth: int, deep_feature: torch.Tensor, args, kwargs, transformer_options: dict):
    """The U-Net's shallow branch: input blocks 0..depth, then the cached deep feature
    through the matching output blocks with fresh skip features."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import apply_control, forward_timestep_embed, \
        timestep_embedding

    x, timesteps, context, y, control = _unet_inputs(args, kwargs)
    last_input, first_output = shallow_limits(unet, depth)
    patches = transformer_options.get("patches", {})
    transformer_options["original_shape"] = list(x.shape)
    transformer_options["transformer_index"] = 0
    extra = {k: kwargs.get(k) for k in ("time_context", "num_video_frames", "image_only_indicator")}
    if extra["num_video_frames"] is None:
        extra["num_video_frames"] = getattr(unet, "default_num_video_frames", None)

    emb = unet.time_embed(timestep_embedding(timesteps, unet.model_channels, repeat_only=False).to(x.dtype))
    for p in patches.get("emb_patch", []):
        emb = p(emb, unet.model_channels, transformer_options)
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)

    h, hs = x, []
    for i in range(last_input + 1):
        transformer_options["block"] = ("input", i)
        h = forward_timestep_embed(unet.input_blocks[i], h, emb, context, transformer_options, **extra)
        h = apply_control(h, control, "input")
        for p in patches.get("input_block_patch", []):
            h = p(h, transformer_options)
        hs.append(h)
        for p in patches.get("input_block_patch_after_skip", []):
            h = p(h, transformer_options)

    if control is not None and "output" in control:
        for _ in range(min(first_output, len(control["output"]))):
            control["output"].pop()       # the deep output blocks' control is in the cached feature
    h = deep_feature.to(device=x.device, dtype=h.dtype)
    for j in range(first_output, len(unet.output_blocks)):
        transformer_options["block"] = ("output", j)
        hsp = apply_control(hs.pop(), control, "output")
        for p in patches.get("output_block_patch", []):
            h, hsp = p(h, hsp, transformer_options)
        h = torch.cat([h, hsp], dim=1)
        output_shape = hs[-1].shape if hs else None
        h = forward_timestep_embed(unet.output_blocks[j], h, emb, context, transformer_options, output_shape, **extra)
    h = h.type(x.dtype)
    return unet.id_predictor(h) if unet.predict_codebook_ids else unet.out(h)
