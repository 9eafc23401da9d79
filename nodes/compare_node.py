"""The "Diffusion Cache Compare" node: what the cache cost, measured on the same inputs.

It samples the same latent twice with the same seed, sampler and conditionings,
once with the cached MODEL and once with that MODEL without the cache (a clone with
the pack's hooks detached, so every other patch stays), through ComfyUI's own
``common_ksampler`` (what the KSampler node runs). Or it takes two latents or two
images made upstream (two-stage graphs such as Wan 2.2's high- and low-noise
samplers, built once cached and once uncached) and only compares them.

It decodes both (a VAE, or the exact decoder of a bundled tiny model), computes PSNR
and SSIM of the cached images against the uncached ones in [0, 1]
(``cache_core.metrics``) and the wall-clock speedup of the two sampler runs, shows
them on the node (the ``ui`` output, drawn by web/diffusion_cache.js) and outputs
the cached, the uncached and an amplified difference image.
"""
from __future__ import annotations

import logging
import math
import time

from ..cache_core import metrics
from . import hooks
from .holder import HOLDER_KEY

log = logging.getLogger("diffusion_cache")

NODE_ID = "DiffusionCacheCompare"
UI_KEY = "diffusion_cache_compare"     # the key of the node's ui output (and of the executed event's output)
NO_TINY = "none"


def has_cache(model) -> bool:
    """Does this MODEL carry a cache of this pack?"""
    options = getattr(model, "model_options", None) or {}
    return options.get("transformer_options", {}).get(HOLDER_KEY) is not None


def without_cache(model):
    """A clone of ``model`` with the pack's hooks detached: the same model, every other patch kept."""
    reference = model.clone()
    hooks.detach(reference)
    return reference


def difference_image(cached, uncached, amplify: float):
    """``|cached - uncached| * amplify``, clipped to [0, 1]."""
    return ((cached.float() - uncached.float()).abs() * float(amplify)).clamp(0.0, 1.0)


def compare_images(cached, uncached) -> dict:
    """PSNR (dB; None when identical) and SSIM of ``cached`` against ``uncached`` ([B, H, W, C] in [0, 1])."""
    if tuple(cached.shape) != tuple(uncached.shape):
        raise ValueError(f"the cached and uncached images differ in shape ({list(cached.shape)} vs "
                         f"{list(uncached.shape)}): compare outputs of the same graph, sampled alike")
    psnr = metrics.psnr(cached, uncached)
    ssim = metrics.ssim(cached, uncached)
    return {"psnr": None if math.isinf(psnr) else psnr, "identical": math.isinf(psnr), "ssim": ssim}


def decode(samples: dict, vae=None, tiny_model: str = NO_TINY):
    """A LATENT -> IMAGE [N, H, W, C] (video frames become batch entries)."""
    if vae is not None:
        import nodes   # ComfyUI's nodes.py: its VAEDecode, as the graph would decode
        return nodes.VAEDecode().decode(vae, samples)[0]
    if tiny_model and tiny_model != NO_TINY:
        from .tiny_models import decode_latent
        return decode_latent(tiny_model, samples["samples"])
    raise ValueError("Diffusion Cache Compare needs a VAE to decode the latents: connect the VAE "
                     "(or, for a bundled tiny model, pick it in tiny_model)")


def _synchronize():
    """Wait for the device before reading the clock (the samples usually are on the CPU already)."""
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise):
    """One KSampler run through ComfyUI's own ``common_ksampler``; ``(latent, seconds)``."""
    import nodes   # ComfyUI's nodes.py (0.3.64 to 0.33.0 all have common_ksampler with this signature)
    started = time.perf_counter()
    (latent,) = nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                      latent_image, denoise=denoise)
    _synchronize()
    return latent, time.perf_counter() - started


def _pair(name, cached, uncached):
    if (cached is None) != (uncached is None):
        given, missing = (f"cached_{name}", f"uncached_{name}") if cached is not None else (
            f"uncached_{name}", f"cached_{name}")
        raise ValueError(f"Diffusion Cache Compare: {given} is connected but {missing} is not; connect both "
                         f"to compare two {name}s made upstream, or neither to sample here")
    return cached is not None


def run_compare(model=None, seed=0, steps=20, cfg=7.0, sampler_name="euler", scheduler="simple", positive=None,
                negative=None, latent_image=None, denoise=1.0, vae=None, tiny_model=NO_TINY, amplify=4.0,
                uncached_model=None, cached_latent=None, uncached_latent=None, cached_image=None,
                uncached_image=None):
    """``(cached image, uncached image, difference image, figures)``; figures is the ui payload."""
    figures = {"mode": None, "seconds_cached": None, "seconds_uncached": None, "speedup": None,
               "cache_attached": None, "amplify": float(amplify)}
    if _pair("image", cached_image, uncached_image):
        figures["mode"] = "images"
        cached, uncached = cached_image, uncached_image
    elif _pair("latent", cached_latent, uncached_latent):
        figures["mode"] = "latents"
        cached, uncached = decode(cached_latent, vae, tiny_model), decode(uncached_latent, vae, tiny_model)
    else:
        missing = [n for n, v in (("model", model), ("positive", positive), ("negative", negative),
                                  ("latent_image", latent_image)) if v is None]
        if missing:
            raise ValueError("Diffusion Cache Compare: connect " + ", ".join(missing) + " to sample cached and "
                             "uncached here, or connect cached_/uncached_ latents or images made upstream")
        figures["mode"] = "sampled"
        attached = has_cache(model)
        figures["cache_attached"] = attached
        if not attached:
            log.warning("Diffusion Cache Compare: this MODEL has no Diffusion Cache attached; both runs are "
                        "uncached (connect the MODEL output of a Diffusion Cache node)")
        reference = uncached_model if uncached_model is not None else without_cache(model)
        args = (seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise)
        # the cached run first: on a first queue it also carries the model's loading and warm-up,
        # so the speedup is never overstated
        cached_latent_out, t_cached = sample(model, *args)
        uncached_latent_out, t_uncached = sample(reference, *args)
        figures.update(seconds_cached=t_cached, seconds_uncached=t_uncached,
                       speedup=t_uncached / t_cached if t_cached > 0 else None)
        cached = decode(cached_latent_out, vae, tiny_model)
        uncached = decode(uncached_latent_out, vae, tiny_model)
    cached = cached.float().clamp(0.0, 1.0)
    uncached = uncached.float().clamp(0.0, 1.0)
    figures.update(compare_images(cached, uncached))
    figures["images"] = int(cached.shape[0])
    log.info("Diffusion Cache Compare (%s): PSNR %s, SSIM %.4f%s", figures["mode"],
             "inf (identical)" if figures["identical"] else f"{figures['psnr']:.2f} dB", figures["ssim"],
             f", speedup {figures['speedup']:.2f}x" if figures["speedup"] else "")
    return cached, uncached, difference_image(cached, uncached, amplify), figures


def compare_node_class():
    from comfy_api.latest import io
    import comfy.samplers

    from .tiny_models import list_tiny_models

    class DiffusionCacheCompareNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            return io.Schema(
                node_id=NODE_ID,
                display_name="Diffusion Cache Compare",
                category="Diffusion Cache",
                description="Shows what caching cost: samples the same inputs with the cached MODEL and with the "
                            "same MODEL without the cache (same seed and sampler), then shows PSNR, SSIM and the "
                            "wall-clock speedup on the node and outputs both images and their amplified "
                            "difference. With cached_/uncached_ latents or images connected (two-stage graphs) "
                            "it samples nothing and only compares them.",
                inputs=[
                    io.Model.Input("model", optional=True,
                                   tooltip="The cached MODEL (the output of a Diffusion Cache node). The uncached "
                                           "run uses the same MODEL with the cache detached."),
                    io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                                 tooltip="The noise seed of both runs."),
                    io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampler steps of both runs."),
                    io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                                   tooltip="Classifier-free guidance scale of both runs."),
                    io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS),
                                   tooltip="The sampler of both runs."),
                    io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS),
                                   tooltip="The scheduler of both runs."),
                    io.Conditioning.Input("positive", optional=True, tooltip="The positive conditioning."),
                    io.Conditioning.Input("negative", optional=True, tooltip="The negative conditioning."),
                    io.Latent.Input("latent_image", optional=True, tooltip="The latent to denoise (both runs)."),
                    io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                                   tooltip="Denoise strength of both runs."),
                    io.Vae.Input("vae", optional=True,
                                 tooltip="Decodes both latents; PSNR and SSIM are measured on the decoded images."),
                    io.Combo.Input("tiny_model", options=[NO_TINY] + list_tiny_models(), default=NO_TINY,
                                   optional=True,
                                   tooltip="Without a VAE: decode with this bundled tiny model's exact decoder."),
                    io.Float.Input("amplify", default=4.0, min=1.0, max=100.0, step=0.5, optional=True,
                                   tooltip="The difference image is |cached - uncached| x this, clipped to 1."),
                    io.Model.Input("uncached_model", optional=True,
                                   tooltip="The reference MODEL for the uncached run (default: the cached MODEL "
                                           "with the cache detached)."),
                    io.Latent.Input("cached_latent", optional=True,
                                    tooltip="Compare mode: a latent sampled upstream with the cache (e.g. the last "
                                            "sampler of a two-stage graph). With uncached_latent, nothing is sampled."),
                    io.Latent.Input("uncached_latent", optional=True,
                                    tooltip="Compare mode: the same graph's latent sampled without the cache."),
                    io.Image.Input("cached_image", optional=True,
                                   tooltip="Compare mode: an image made upstream with the cache. With "
                                           "uncached_image, nothing is sampled or decoded."),
                    io.Image.Input("uncached_image", optional=True,
                                   tooltip="Compare mode: the same graph's image made without the cache."),
                ],
                outputs=[
                    io.Image.Output(display_name="cached", tooltip="The images sampled with the cache."),
                    io.Image.Output(display_name="uncached", tooltip="The images sampled without the cache."),
                    io.Image.Output(display_name="difference",
                                    tooltip="|cached - uncached| x amplify, clipped to 1 (black = identical)."),
                ],
                not_idempotent=True,
            )

        @classmethod
        def execute(cls, seed, steps, cfg, sampler_name, scheduler, denoise, model=None, positive=None,
                    negative=None, latent_image=None, vae=None, tiny_model=NO_TINY, amplify=4.0,
                    uncached_model=None, cached_latent=None, uncached_latent=None, cached_image=None,
                    uncached_image=None) -> io.NodeOutput:
            cached, uncached, difference, figures = run_compare(
                model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                positive=positive, negative=negative, latent_image=latent_image, denoise=denoise, vae=vae,
                tiny_model=tiny_model, amplify=amplify, uncached_model=uncached_model,
                cached_latent=cached_latent, uncached_latent=uncached_latent, cached_image=cached_image,
                uncached_image=uncached_image)
            return io.NodeOutput(cached, uncached, difference, ui={UI_KEY: [figures]})

    return DiffusionCacheCompareNode
