"""The cache when ComfyUI calls the model in less common ways.

* **Extra model passes at one sigma**: skip-layer guidance (SkipLayerGuidanceDiT), PAG and
  SAG call the model a second time inside one sampler evaluation, with other options or
  another input; context windows call it once per window. Each pass keeps its own cached
  state: at a guidance scale of 1e-12 (which leaves the uncached output unchanged) the
  cached output equals the cached output without the guidance node, and a window's frames
  equal the same frames sampled alone.
* **Conditionings of different shapes** (a negative prompt of another length, area
  conditioning, reference latents on the positive only) are cached per branch.
* **DeepCache** with an output-block patch that edits the feature in place (FreeU), and with
  a forecast predictor (only computed features enter the history).
* **Off-schedule sigmas**: a sampler with ``s_churn > 0`` evaluates at ``sigma * (1 + gamma)``.

Each test prints the measured difference (``max |diff|`` or PSNR) it asserts on.
"""
from __future__ import annotations

import inspect
import math

import pytest
import torch


STEPS = 8
EXPECTED_REUSED = [1, 3, 5]          # fixed_interval, interval 2, warm-up 1, last 1, 8 steps


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def build(pack):
    return pack.nodes.cache_node.build_cached_model


def cached(build, model, **inputs):
    inputs = {"warmup_steps": 1, "last_steps_computed": 1, **inputs}
    return build(model, **inputs)


def stats_of(model) -> dict:
    stats = model.model_options["transformer_options"]["diffusion_cache"].last_stats
    assert stats is not None, "the cache recorded no run"
    return stats


def reused_steps(stats) -> list[int]:
    return sorted(r["step"] for r in stats["records"] if r["stage"] == 0 and r["decision"] != "computed")


def ksample(comfy_nodes, tiny, model, steps=STEPS, positive=None, negative=None, latent=None, cfg=2.0,
            sampler="euler", seed=0):
    out = comfy_nodes.KSampler().sample(
        model, seed, steps, cfg, sampler, "simple",
        positive if positive is not None else tiny.positive,
        negative if negative is not None else tiny.negative,
        {"samples": (latent if latent is not None else tiny.latent["samples"]).clone()})
    return out[0]["samples"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of ``a`` against ``b`` over the reference's peak-to-peak range."""
    mse = float((a.float() - b.float()).pow(2).mean())
    peak = float(b.max() - b.min())
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)


def max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def v3_node(node_class, **inputs):
    """Run a ComfyUI V3 node's ``execute`` with its schema's defaults, overridden by ``inputs``
    (the inputs differ between ComfyUI versions); returns its first output."""
    schema = node_class.define_schema()
    kwargs = {}
    for item in schema.inputs:
        name = getattr(item, "id", None) or getattr(item, "name", None)
        if name is not None and getattr(item, "default", None) is not None:
            kwargs[name] = item.default
    kwargs.update(inputs)
    accepted = inspect.signature(node_class.execute).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    out = node_class.execute(**kwargs)
    return out.result[0] if hasattr(out, "result") else out[0]


def without_post_cfg(model):
    """``model`` without its post-CFG functions: the same patches, no guidance pass."""
    m = model.clone()
    m.model_options["sampler_post_cfg_function"] = []
    m.model_options.pop("disable_cfg1_optimization", None)
    return m


# --------------------------------------------------------------------------------------
# 1. extra passes at one sigma: skip-layer guidance, PAG, SAG
# --------------------------------------------------------------------------------------

def slg(model, scale=1e-12):
    import comfy_extras.nodes_slg as nodes_slg
    return v3_node(nodes_slg.SkipLayerGuidanceDiT, model=model, scale=scale, double_layers="0",
                   single_layers="0", start_percent=0.0, end_percent=1.0, rescaling_scale=0.0)


SLG_METHODS = [dict(method="fixed_interval", interval=2), dict(method="easycache", threshold=2.0),
               dict(method="first_block", threshold=0.7), dict(method="taylorseer", interval=3)]


@pytest.mark.parametrize("inputs", SLG_METHODS, ids=lambda d: d["method"])
def test_skip_layer_guidance_pass_keeps_its_own_cache(inputs, comfy_nodes, get_tiny, build):
    tiny = get_tiny("flux")
    # the premise: at scale 1e-12 the guidance pass leaves the uncached output unchanged
    plain = ksample(comfy_nodes, tiny, tiny.model)
    assert max_diff(ksample(comfy_nodes, tiny, slg(tiny.model)), plain) < 1e-6

    without = cached(build, tiny.model, **inputs)
    expected = ksample(comfy_nodes, tiny, without)
    expected_reused = reused_steps(stats_of(without))
    assert expected_reused, "the settings should reuse some steps"
    for order in ("guidance, then cache", "cache, then guidance"):
        model = cached(build, slg(tiny.model), **inputs) if order.startswith("guidance") \
            else slg(cached(build, tiny.model, **inputs))
        out = ksample(comfy_nodes, tiny, model)
        stats = stats_of(model)
        print(f"SLG 1e-12, {inputs['method']} ({order}): PSNR {psnr(out, expected):.1f} dB against the cached "
              f"run without SLG, max |diff| {max_diff(out, expected):.3g}")
        assert reused_steps(stats) == expected_reused, order
        assert max_diff(out, expected) < 1e-5, order
        # one record per step: the guidance pass is part of its step, not an extra stage
        assert [r["step"] for r in stats["records"]] == list(range(STEPS))


def pag(model, scale=1e-12):
    import comfy_extras.nodes_pag as nodes_pag
    return v3_node(nodes_pag.PerturbedAttentionGuidance, model=model, scale=scale)


def sag(model, scale=1e-12):
    import comfy_extras.nodes_sag as nodes_sag
    return v3_node(nodes_sag.SelfAttentionGuidance, model=model, scale=scale, blur_sigma=2.0)


@pytest.mark.parametrize("guidance", ["pag", "sag"])
@pytest.mark.parametrize("inputs", [dict(method="deepcache", interval=2), dict(method="fixed_interval", interval=2)],
                         ids=lambda d: d["method"])
def test_unet_guidance_pass_keeps_its_own_cache(guidance, inputs, comfy_nodes, get_tiny, build):
    tiny = get_tiny("sd15")
    apply = {"pag": pag, "sag": sag}[guidance]
    guided = apply(tiny.model)
    reference = without_post_cfg(guided)    # the same attention patches, no guidance pass
    plain = ksample(comfy_nodes, tiny, reference)
    assert max_diff(ksample(comfy_nodes, tiny, guided), plain) < 1e-6

    without = cached(build, reference, **inputs)
    expected = ksample(comfy_nodes, tiny, without)
    model = cached(build, guided, **inputs)
    out = ksample(comfy_nodes, tiny, model)
    print(f"{guidance.upper()} 1e-12 with {inputs['method']}: max |diff| {max_diff(out, expected):.3g} against the "
          f"cached run without the guidance pass (uncached: {max_diff(ksample(comfy_nodes, tiny, guided), plain):.3g})")
    assert reused_steps(stats_of(model)) == reused_steps(stats_of(without)) == EXPECTED_REUSED
    assert max_diff(out, expected) < 1e-5


# --------------------------------------------------------------------------------------
# 1b. context windows: each window is cached as the same frames alone
# --------------------------------------------------------------------------------------

def context_windows(model, length, dim):
    import comfy_extras.nodes_context_windows as nodes_cw
    return v3_node(nodes_cw.ContextWindowsManualNode, model=model, context_length=length, context_overlap=0,
                   context_schedule="standard_static", context_stride=1, closed_loop=False, fuse_method="flat",
                   dim=dim, freenoise=False, causal_window_fix=False)


def sample_with_noise(comfy_nodes, tiny, model, noise, steps=STEPS):
    import comfy.sample
    return comfy.sample.sample(model, noise.clone(), steps, 2.0, "euler", "simple", tiny.positive, tiny.negative,
                               torch.zeros_like(noise), seed=0)


@pytest.mark.parametrize("inputs", [dict(method="fixed_interval", interval=2), dict(method="first_block", threshold=0.45),
                                    dict(method="taylorseer", interval=3)], ids=lambda d: d["method"])
def test_context_windows_are_cached_like_their_frames_alone(inputs, comfy_nodes, get_tiny, build):
    tiny = get_tiny("wan21")
    frames, length = 4, 2
    shape = list(tiny.latent["samples"].shape)
    shape[2] = frames
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(7))

    # the premise: uncached, non-overlapping windows equal their frames sampled alone
    windowed = sample_with_noise(comfy_nodes, tiny, context_windows(tiny.model, length, 2), noise)
    for w in range(frames // length):
        part = slice(w * length, (w + 1) * length)
        alone = sample_with_noise(comfy_nodes, tiny, tiny.model, noise[:, :, part])
        assert max_diff(windowed[:, :, part], alone) < 1e-5

    model = cached(build, context_windows(tiny.model, length, 2), **inputs)
    out = sample_with_noise(comfy_nodes, tiny, model, noise)
    stats = stats_of(model)
    for w in range(frames // length):
        part = slice(w * length, (w + 1) * length)
        alone_model = cached(build, tiny.model, **inputs)
        alone = sample_with_noise(comfy_nodes, tiny, alone_model, noise[:, :, part])
        print(f"context window {w} ({inputs['method']}): max |diff| {max_diff(out[:, :, part], alone):.3g} "
              f"against its frames cached alone")
        assert reused_steps(stats) == reused_steps(stats_of(alone_model))
        assert max_diff(out[:, :, part], alone) < 1e-5, w
    assert reused_steps(stats), "the settings should reuse some steps"
    assert [r["step"] for r in stats["records"]] == list(range(STEPS))     # the windows are one evaluation


# --------------------------------------------------------------------------------------
# 2. conditionings of different shapes
# --------------------------------------------------------------------------------------

def _conds(tiny, case):
    import copy
    positive, negative = copy.copy(tiny.positive), copy.copy(tiny.negative)
    gen = torch.Generator().manual_seed(3)
    if case == "longer_negative":
        ctx, extras = negative[0]
        negative = [[torch.randn(1, 13, ctx.shape[-1], generator=gen), dict(extras)]]
    elif case == "area":
        ctx, extras = positive[0]
        area = dict(extras, area=(8, 12, 0, 0), strength=1.0, set_area_to_bounds=False)   # latent units
        positive = [positive[0], [torch.randn(ctx.shape, generator=gen), area]]
    elif case == "reference_latent":
        ctx, extras = positive[0]
        ref = torch.randn(tiny.latent["samples"].shape, generator=gen)
        positive = [[ctx, dict(extras, reference_latents=[ref])]]
    return positive, negative


@pytest.mark.parametrize("case", ["longer_negative", "area", "reference_latent"])
@pytest.mark.parametrize("inputs", [dict(method="fixed_interval", interval=2), dict(method="taylorseer", interval=2),
                                    dict(method="easycache", threshold=100.0)],   # whole-call caching
                         ids=lambda d: d["method"])
def test_conditionings_of_different_shapes_are_cached_per_branch(case, inputs, comfy_nodes, get_tiny, build):
    tiny = get_tiny("flux")
    equal = cached(build, tiny.model, **inputs)
    ksample(comfy_nodes, tiny, equal)                  # conditionings of equal shapes
    positive, negative = _conds(tiny, case)
    model = cached(build, tiny.model, **inputs)
    out = ksample(comfy_nodes, tiny, model, positive=positive, negative=negative)
    stats = stats_of(model)
    print(f"{case} ({inputs['method']}): {len(reused_steps(stats))} cached steps, "
          f"{len(stats['summary']['resets'])} resets (equal shapes: {len(reused_steps(stats_of(equal)))} cached)")
    assert reused_steps(stats) == reused_steps(stats_of(equal))
    assert len(reused_steps(stats)) >= 3
    assert stats["summary"]["resets"] == []
    assert all(r["blocks_computed"] == 0 for r in stats["records"] if r["decision"] != "computed")
    assert torch.isfinite(out).all()
    uncached = ksample(comfy_nodes, tiny, tiny.model, positive=positive, negative=negative)
    assert psnr(out, uncached) > 15


# --------------------------------------------------------------------------------------
# 3. DeepCache: output-block patches that write in place; forecasts are not history
# --------------------------------------------------------------------------------------

def freeu(model, version):
    import comfy_extras.nodes_freelunch as freelunch
    node = freelunch.FreeU() if version == "FreeU" else freelunch.FreeU_V2()
    return node.patch(model, 1.3, 1.4, 0.9, 0.2)[0]


def out_of_place(model):
    """The same output-block patches, each handed copies (so none can write into the caller's tensor)."""
    m = model.clone()
    patches = m.model_options["transformer_options"]["patches"]
    patches["output_block_patch"] = [
        (lambda p: (lambda h, hsp, opts: p(h.clone(), hsp.clone(), opts)))(p)
        for p in patches["output_block_patch"]]
    return m


@pytest.mark.parametrize("version", ["FreeU", "FreeU_V2"])
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_deepcache_with_an_in_place_output_block_patch(arch, version, comfy_nodes, get_tiny, build):
    tiny = get_tiny(arch)
    # depth 1: FreeU scales the feature entering the first recomputed output block on these U-Nets
    inputs = dict(method="deepcache", interval=3, deepcache_depth=1)
    patched = freeu(tiny.model, version)
    assert max_diff(ksample(comfy_nodes, tiny, patched), ksample(comfy_nodes, tiny, tiny.model)) > 1e-3
    # correct by construction: the patch sees the feature entering the block, on copies, once per step
    expected = ksample(comfy_nodes, tiny, out_of_place(freeu(cached(build, tiny.model, **inputs), version)))
    for order in ("patch, then cache", "cache, then patch", "patch on copies, then cache"):
        if order == "patch, then cache":
            model = cached(build, patched, **inputs)
        elif order == "cache, then patch":
            model = freeu(cached(build, tiny.model, **inputs), version)
        else:
            model = cached(build, out_of_place(patched), **inputs)
        out = ksample(comfy_nodes, tiny, model)
        print(f"DeepCache + {version} on {arch} ({order}): max |diff| {max_diff(out, expected):.3g} against "
              f"the patch applied once, to copies")
        assert reused_steps(stats_of(model)) == [1, 2, 4, 5]
        assert max_diff(out, expected) < 1e-4, order


def test_deepcache_forecasts_only_from_computed_features(comfy_nodes, get_tiny, build, pack):
    tiny = get_tiny("sd15")
    unet = tiny.model.get_model_object("diffusion_model")
    first_output = len(unet.output_blocks) - 1
    seen = []

    def watch(h, hsp, transformer_options):
        if transformer_options.get("block") == ("output", first_output):
            seen.append(h.detach().clone())
        return h, hsp

    watched = tiny.model.clone()
    watched.set_model_output_block_patch(watch)
    model = cached(build, watched, method="deepcache", interval=3, predictor="taylor", predictor_order=1)
    ksample(comfy_nodes, tiny, model)
    records = [r for r in stats_of(model)["records"] if r["stage"] == 0]
    assert len(seen) == len(records) == STEPS           # one batched call per step
    decisions = [r["decision"] for r in records]
    assert decisions == ["computed", "forecast", "forecast", "computed", "forecast", "forecast", "computed",
                         "computed"]
    newton = pack.cache_core.forecast.newton_extrapolate
    worst = 0.0
    for k, decision in enumerate(decisions):
        if decision != "forecast":
            continue
        history = [i for i in range(k) if decisions[i] == "computed"][-2:]
        want = newton([float(i) for i in history], [seen[i] for i in history], float(k), 1)
        worst = max(worst, max_diff(seen[k], want))
    print(f"DeepCache + taylor: max |diff| {worst:.3g} between the forecasts and the Newton forecast of the "
          f"computed features")
    assert worst < 1e-4


# --------------------------------------------------------------------------------------
# 4. off-schedule sigmas: s_churn
# --------------------------------------------------------------------------------------

def churn_sample(comfy_nodes, tiny, model, s_churn, sampler="euler", steps=STEPS):
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.sample
    import comfy.samplers
    function = getattr(k_sampling, f"sample_{sampler}")
    sampler_object = comfy.samplers.KSAMPLER(function, extra_options={"s_churn": s_churn})
    sigmas = comfy.samplers.calculate_sigmas(tiny.model.get_model_object("model_sampling"), "simple", steps)
    latent = tiny.latent["samples"]
    noise = comfy.sample.prepare_noise(latent, 11)
    return comfy.sample.sample_custom(model, noise, 2.0, sampler_object, sigmas, tiny.positive, tiny.negative,
                                      latent.clone(), seed=11)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_churned_sigmas_are_located_on_their_steps(sampler, comfy_nodes, get_tiny, build):
    tiny = get_tiny("flux")
    reference = churn_sample(comfy_nodes, tiny, tiny.model, 1.0, sampler)
    exact = cached(build, tiny.model, method="fixed_interval", interval=1)
    assert torch.equal(churn_sample(comfy_nodes, tiny, exact, 1.0, sampler), reference)
    model = cached(build, tiny.model, method="fixed_interval", interval=2)
    out = churn_sample(comfy_nodes, tiny, model, 1.0, sampler)
    stats = stats_of(model)
    stage0 = [r for r in stats["records"] if r["stage"] == 0]
    print(f"s_churn 1.0, {sampler}: {len(stage0)} evaluations located on steps, cached steps {reused_steps(stats)}")
    assert [r["step"] for r in stage0] == list(range(STEPS))
    assert reused_steps(stats) == EXPECTED_REUSED
    assert torch.isfinite(out).all()
