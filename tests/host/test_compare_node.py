"""The Diffusion Cache Compare node on the bundled tiny Flux model, in a real ComfyUI.

* its PSNR and SSIM are ``cache_core.metrics`` on its own cached and uncached outputs,
  and its speedup is the ratio of the two sampler runs' seconds;
* its uncached run is the MODEL without the cache: bit for bit what KSampler gives on
  the loader's model;
* with nothing skipped (fixed_interval, interval 1) the two runs are identical:
  infinite PSNR, SSIM 1, a black difference image;
* the difference image is ``|cached - uncached| * amplify``, clipped to 1;
* the two-input modes (latents or images made upstream, e.g. by a two-stage graph)
  sample nothing and give the same figures;
* every method runs through it; through ComfyUI's executor its figures reach the
  history as JSON (no NaN or Infinity), also for a two-stage graph.
"""
from __future__ import annotations

import json
import math

import pytest

from cache_core.methods import METHODS  # noqa: E402  (cache_core imports no ComfyUI)
import torch

STEPS = 8
CFG = 2.0
DIGITS = "07"
CACHE_DEFAULTS = dict(threshold=0.0, interval=2, step_mask="medium", profile="auto", start_percent=0.0,
                      end_percent=1.0, warmup_steps=1, last_steps_computed=1, max_consecutive_cached=0)
EVERY_METHOD = list(METHODS)        # the registry's methods, every one through the Compare node
SAMPLING = dict(seed=3, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="simple", denoise=1.0)


@pytest.fixture(scope="module")
def tiny(pack):
    names = pack.nodes.tiny_models.list_tiny_models()
    if "flux_tiny" not in names:
        pytest.skip(f"no tiny Flux weights in {pack.nodes.tiny_models.TINY_MODELS_DIR} "
                    "(scripts/train_tiny.py writes them)")
    t = pack.nodes.tiny_models
    model = t.load_tiny_model("flux_tiny")
    positive, negative = t.class_conditioning("flux_tiny", DIGITS)
    return {"module": t, "model": model, "positive": positive, "negative": negative,
            "latent": t.empty_latent("flux_tiny", len(DIGITS))}


@pytest.fixture(scope="module")
def compare(comfy_nodes, pack):
    return comfy_nodes.NODE_CLASS_MAPPINGS["DiffusionCacheCompare"]


@pytest.fixture(scope="module")
def metrics(pack):
    import importlib
    return importlib.import_module(f"{pack.__name__}.cache_core.metrics")


def cached(comfy_nodes, model, method, **inputs):
    node = comfy_nodes.NODE_CLASS_MAPPINGS["DiffusionCache"]
    return node.execute(model=model, method=method, **{**CACHE_DEFAULTS, **inputs}).result[0]


def run(compare, tiny, model=None, **inputs):
    """The node's execute: ``(cached, uncached, difference), figures``."""
    kwargs = {**SAMPLING, "tiny_model": "flux_tiny", **inputs}
    if model is not None:
        kwargs.update(model=model, positive=tiny["positive"], negative=tiny["negative"],
                      latent_image=tiny["latent"])
    out = compare.execute(**kwargs)
    assert set(out.ui) == {"diffusion_cache_compare"} and len(out.ui["diffusion_cache_compare"]) == 1
    return out.result, out.ui["diffusion_cache_compare"][0]


def ksampler(comfy_nodes, model, tiny):
    return comfy_nodes.common_ksampler(model, SAMPLING["seed"], STEPS, CFG, "euler", "simple", tiny["positive"],
                                       tiny["negative"], tiny["latent"], denoise=1.0)[0]


def test_schema(compare):
    schema = compare.GET_SCHEMA()
    assert schema.category == "Diffusion Cache" and schema.display_name == "Diffusion Cache Compare"
    assert all(i.tooltip for i in schema.inputs)
    info = compare.GET_NODE_INFO_V1()      # what /object_info serves
    assert info["output"] == ["IMAGE", "IMAGE", "IMAGE"]
    assert info["output_name"] == ["cached", "uncached", "difference"]
    assert set(info["input"]["required"]) == {"seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"}
    for name in ("model", "positive", "negative", "latent_image", "vae", "tiny_model", "uncached_model",
                 "cached_latent", "uncached_latent", "cached_image", "uncached_image"):
        assert name in info["input"]["optional"], name


def test_figures_are_the_metrics_of_its_outputs(comfy_nodes, compare, tiny, metrics):
    model = cached(comfy_nodes, tiny["model"], "fixed_interval", interval=3)
    (a, b, diff), figures = run(compare, tiny, model, amplify=4.0)
    assert a.shape == b.shape == diff.shape == (len(DIGITS), 64, 64, 3)
    assert a.dtype == b.dtype == diff.dtype == torch.float32
    assert figures["mode"] == "sampled" and figures["cache_attached"] is True
    assert figures["images"] == len(DIGITS)
    assert not figures["identical"] and math.isfinite(figures["psnr"])
    assert figures["psnr"] == metrics.psnr(a, b)
    assert figures["ssim"] == metrics.ssim(a, b)
    assert 10.0 < figures["psnr"] < 80.0 and 0.0 < figures["ssim"] < 1.0
    assert figures["seconds_cached"] > 0 and figures["seconds_uncached"] > 0
    assert figures["speedup"] == pytest.approx(figures["seconds_uncached"] / figures["seconds_cached"])
    assert torch.equal(diff, ((a - b).abs() * 4.0).clamp(0, 1))
    json.dumps(figures, allow_nan=False)     # what the executed event carries to the browser


def test_uncached_run_is_the_model_without_the_cache(comfy_nodes, compare, tiny):
    model = cached(comfy_nodes, tiny["model"], "first_block", threshold=0.3)
    (a, b, _), figures = run(compare, tiny, model)
    plain = tiny["module"].decode_latent("flux_tiny", ksampler(comfy_nodes, tiny["model"], tiny)["samples"])
    assert torch.equal(b, plain)
    on_cache = tiny["module"].decode_latent("flux_tiny", ksampler(comfy_nodes, model, tiny)["samples"])
    assert torch.equal(a, on_cache)
    # the cached MODEL itself keeps its cache
    assert model.model_options["transformer_options"].get("diffusion_cache") is not None
    assert not figures["identical"]


def test_nothing_skipped_is_identical(comfy_nodes, compare, tiny):
    model = cached(comfy_nodes, tiny["model"], "fixed_interval", interval=1)
    (a, b, diff), figures = run(compare, tiny, model)
    assert torch.equal(a, b)
    assert figures["identical"] is True and figures["psnr"] is None
    assert figures["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert diff.abs().max().item() == 0.0
    json.dumps(figures, allow_nan=False)


def test_difference_is_amplified_and_clipped(comfy_nodes, compare, tiny):
    model = cached(comfy_nodes, tiny["model"], "fixed_interval", interval=4)
    (a, b, diff), _ = run(compare, tiny, model, amplify=50.0)
    raw = (a - b).abs()
    assert torch.equal(diff, (raw * 50.0).clamp(0, 1))
    assert diff.max().item() == 1.0 and (raw * 50.0).max().item() > 1.0     # something was clipped
    assert diff.min().item() >= 0.0


def test_two_latents_mode(comfy_nodes, compare, tiny):
    model = cached(comfy_nodes, tiny["model"], "fixed_interval", interval=3)
    (a, b, diff), sampled = run(compare, tiny, model)
    lat_c, lat_u = ksampler(comfy_nodes, model, tiny), ksampler(comfy_nodes, tiny["model"], tiny)
    (a2, b2, diff2), figures = run(compare, tiny, cached_latent=lat_c, uncached_latent=lat_u)
    assert figures["mode"] == "latents" and figures["speedup"] is None and figures["seconds_cached"] is None
    assert torch.equal(a, a2) and torch.equal(b, b2) and torch.equal(diff, diff2)
    assert (figures["psnr"], figures["ssim"]) == (sampled["psnr"], sampled["ssim"])


def test_two_images_mode(compare, tiny, metrics):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 32, 32, 3, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    (a, b, diff), figures = run(compare, tiny, cached_image=y, uncached_image=x, amplify=2.0)
    assert figures["mode"] == "images" and figures["images"] == 3 and figures["speedup"] is None
    assert torch.equal(a, y) and torch.equal(b, x)
    assert figures["psnr"] == metrics.psnr(y, x) and figures["ssim"] == metrics.ssim(y, x)
    assert torch.equal(diff, ((y - x).abs() * 2.0).clamp(0, 1))
    _, same = run(compare, tiny, cached_image=x, uncached_image=x.clone())
    assert same["identical"] and same["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_vae_decodes_video_frames_into_the_batch(compare, tiny):
    class FakeVAE:     # what VAEDecode calls: decode(latent) -> [B, T, H, W, C] for a video VAE
        def decode(self, latent):
            return latent[:, :3].movedim(1, -1).sigmoid().reshape(latent.shape[0], 1, *latent.shape[2:], 3) \
                .repeat(1, 2, 1, 1, 1)

    g = torch.Generator().manual_seed(1)
    lat = {"samples": torch.randn(2, 4, 8, 8, generator=g)}
    other = {"samples": lat["samples"] + 0.1}
    (a, b, _), figures = run(compare, tiny, cached_latent=lat, uncached_latent=other, vae=FakeVAE(),
                             tiny_model="none")
    assert a.shape == b.shape == (4, 8, 8, 3) and figures["images"] == 4
    assert not figures["identical"]


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_every_method(comfy_nodes, compare, tiny, metrics, method):
    model = cached(comfy_nodes, tiny["model"], method)
    (a, b, _), figures = run(compare, tiny, model)
    assert figures["cache_attached"] is True
    assert figures["ssim"] == metrics.ssim(a, b) and 0.0 < figures["ssim"] <= 1.0 + 1e-6
    assert figures["identical"] or figures["psnr"] == metrics.psnr(a, b)
    assert figures["speedup"] > 0


def test_bad_inputs_say_what_to_connect(comfy_nodes, compare, tiny):
    with pytest.raises(ValueError, match="connect model, positive, negative, latent_image"):
        run(compare, tiny)
    with pytest.raises(ValueError, match="cached_latent is connected but uncached_latent is not"):
        run(compare, tiny, cached_latent=tiny["latent"])
    with pytest.raises(ValueError, match="differ in shape"):
        run(compare, tiny, cached_image=torch.zeros(1, 8, 8, 3), uncached_image=torch.zeros(2, 8, 8, 3))
    with pytest.raises(ValueError, match="needs a VAE"):
        run(compare, tiny, cached_latent=tiny["latent"], uncached_latent=tiny["latent"], tiny_model="none")


def test_model_without_cache_compares_with_itself(compare, tiny):
    (a, b, _), figures = run(compare, tiny, tiny["model"])
    assert figures["cache_attached"] is False and figures["identical"] and torch.equal(a, b)


# ---- through ComfyUI's prompt executor ----------------------------------------------------------

def _prompt(two_stage: bool) -> dict:
    p = {
        "1": {"class_type": "DiffusionCacheTinyModelLoader", "inputs": {"model_name": "flux_tiny"}},
        "2": {"class_type": "DiffusionCacheTinyDigits", "inputs": {"model_name": "flux_tiny", "digits": DIGITS}},
        "3": {"class_type": "DiffusionCache", "inputs": {"model": ["1", 0], "method": "fixed_interval",
                                                         **{**CACHE_DEFAULTS, "interval": 3}}},
    }
    common = {"positive": ["2", 0], "negative": ["2", 1], "seed": 0, "steps": STEPS, "cfg": CFG,
              "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}
    if not two_stage:
        p["4"] = {"class_type": "DiffusionCacheCompare", "inputs": {
            "model": ["3", 0], "latent_image": ["2", 2], "tiny_model": "flux_tiny", "amplify": 4.0, **common}}
    else:
        adv = {k: v for k, v in common.items() if k not in ("seed", "denoise")} | {"noise_seed": 0}
        for first, second, model in (("10", "11", "3"), ("20", "21", "1")):    # cached, uncached
            p[first] = {"class_type": "KSamplerAdvanced", "inputs": {
                **adv, "model": [model, 0], "latent_image": ["2", 2], "add_noise": "enable", "start_at_step": 0,
                "end_at_step": STEPS // 2, "return_with_leftover_noise": "enable"}}
            p[second] = {"class_type": "KSamplerAdvanced", "inputs": {
                **adv, "model": [model, 0], "latent_image": [first, 0], "add_noise": "disable",
                "start_at_step": STEPS // 2, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
        p["4"] = {"class_type": "DiffusionCacheCompare", "inputs": {
            "cached_latent": ["11", 0], "uncached_latent": ["21", 0], "tiny_model": "flux_tiny", **common}}
    p["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["4", 2]}}
    return p


@pytest.mark.parametrize("two_stage", [False, True], ids=["one_sampler", "two_stage"])
def test_through_the_executor(pack, tiny, metrics, two_stage):
    compat = pack.nodes.compat
    executor, _ = compat.run_prompt(_prompt(two_stage))
    assert executor.success, [d for e, d in executor.status_messages if e == "execution_error"]
    ui = executor.history_result["outputs"]["4"]["diffusion_cache_compare"][0]
    json.dumps(ui, allow_nan=False)
    assert ui["mode"] == ("latents" if two_stage else "sampled")
    a, b, diff = (compat.node_outputs(executor, "4")[i][0] for i in range(3))
    assert ui["psnr"] == metrics.psnr(a, b) and ui["ssim"] == metrics.ssim(a, b)
    assert (ui["speedup"] is None) == two_stage
    assert diff.shape == (len(DIGITS), 64, 64, 3)


def test_video_model_frames_become_images(comfy_nodes, compare, pack, metrics):
    """Tiny Wan 2.1 (5-D video latents): every frame is an image of the comparison."""
    t = pack.nodes.tiny_models
    if "wan_tiny" not in t.list_tiny_models():
        pytest.skip("no tiny Wan weights")
    base = t.load_tiny_model("wan_tiny")
    positive, negative = t.class_conditioning("wan_tiny", DIGITS)
    latent = t.empty_latent("wan_tiny", len(DIGITS))
    model = cached(comfy_nodes, base, "first_block", threshold=0.3)
    out = compare.execute(**{**SAMPLING, "steps": 6}, model=model, positive=positive, negative=negative,
                          latent_image=latent, tiny_model="wan_tiny")
    a, b, diff = out.result
    figures = out.ui["diffusion_cache_compare"][0]
    frames = latent["samples"].shape[2]
    assert a.shape == b.shape == diff.shape == (len(DIGITS) * frames, 64, 64, 3)
    assert figures["images"] == len(DIGITS) * frames
    assert figures["ssim"] == metrics.ssim(a, b)
    assert figures["identical"] or figures["psnr"] == metrics.psnr(a, b)
