"""Block-level and forecasting methods on every architecture with per-block hooks."""
import pytest
import torch

import tiny_archs
from tiny_archs import stats_of

BLOCK_ARCHS = ["flux", "chroma", "hunyuan_video", "wan21", "sd3", "ltxv", "qwen_image"]
STEPS = 8


def total_blocks(tiny):
    return sum(tiny.block_kinds.values())


@pytest.mark.parametrize("arch", BLOCK_ARCHS)
def test_dbcache_computes_front_and_back_blocks_on_cached_steps(comfy_nodes, build, tiny_dir, arch):
    tiny = tiny_archs.build(arch, tiny_dir)
    n = total_blocks(tiny)
    back = 1 if n >= 3 else 0
    model = build(tiny.model, method="dbcache", threshold=100.0, front_blocks=1, back_blocks=back)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    records = stats_of(model)["records"]
    expected = "1" + "0" * (n - 1 - back) + "1" * back
    cached = [r for r in records if r["decision"] == "reused"]
    assert len(cached) == STEPS - 2          # warm-up and last step computed
    assert all(r["block_mask"] == expected for r in cached)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", BLOCK_ARCHS)
def test_delta_dit_moves_the_cached_range_from_rear_to_front(comfy_nodes, build, tiny_dir, arch):
    tiny = tiny_archs.build(arch, tiny_dir)
    n = total_blocks(tiny)
    model = build(tiny.model, method="delta_dit", interval=2, delta_cached_blocks=1, delta_boundary=0.5)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    masks = {r["step"]: r["block_mask"] for r in stats_of(model)["records"] if r["decision"] == "reused"}
    assert masks[1] == "1" * (n - 1) + "0"       # early: the rear block is cached
    assert masks[5] == "0" + "1" * (n - 1)       # late: the front block is cached
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", BLOCK_ARCHS)
@pytest.mark.parametrize("method", ["dbcache_hybrid", "taylorseer", "foca", "hicache", "freqca", "speca"])
def test_hybrid_and_forecasting_methods_run(comfy_nodes, build, tiny_dir, arch, method):
    tiny = tiny_archs.build(arch, tiny_dir)
    if method == "dbcache_hybrid" and total_blocks(tiny) < 3:
        pytest.skip("the hybrid needs a front, a middle and a back block")
    inputs = {"dbcache_hybrid": dict(threshold=100.0, back_blocks=1), "speca": dict(threshold=100.0)}.get(
        method, dict(interval=3))
    model = build(tiny.model, method=method, **inputs)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    records = stats_of(model)["records"]
    kinds = {r["decision"] for r in records}
    assert "computed" in kinds and kinds - {"computed"}, kinds
    if method != "dbcache_hybrid":
        assert "forecast" in kinds
    assert torch.isfinite(out).all()
    assert stats_of(model)["summary"]["peak_cache_mb"] > 0


def _scheduled_control(schedule, hidden):
    """A ControlNet as ComfyUI's apply-ControlNet nodes put it into the conditioning: a
    ``comfy.controlnet.ControlBase`` whose ``get_control`` gives the residuals ComfyUI passes to
    the model call, here with a per-call strength from ``schedule`` (a list consumed per call)."""
    import comfy.controlnet

    class ScheduledControl(comfy.controlnet.ControlBase):
        def get_control(self, x_noisy, *rest, **kwargs):
            strength = schedule.pop(0) if schedule else 0.0
            tokens = (x_noisy.shape[-1] // 2) * (x_noisy.shape[-2] // 2)
            add = torch.full((x_noisy.shape[0], tokens, hidden), strength, dtype=x_noisy.dtype)
            return {"input": [add, add], "output": [add, add], "middle": []}

        def copy(self):
            c = ScheduledControl()
            self.copy_to(c)
            return c

    return ScheduledControl()


def _with_control(conditioning, control):
    return [[t, {**d, "control": control, "control_apply_to_uncond": True}] for t, d in conditioning]


def test_controlnet_residuals_still_apply_fresh_on_cached_steps(comfy_nodes, build, tiny_dir):
    tiny = tiny_archs.build("flux", tiny_dir)
    hidden = tiny.model.model.diffusion_model.hidden_size
    steps = 4   # computed, reused, computed, computed (interval 2, last step computed)

    def run(strengths, cached=True):
        model = build(tiny.model, method="fixed_interval", interval=2 if cached else 1) if cached is not None \
            else tiny.model.clone()
        control = _scheduled_control(list(strengths), hidden)
        out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=steps,
                                positive=_with_control(tiny.positive, control),
                                negative=_with_control(tiny.negative, control))
        return out, model

    constant, model = run([0.5] * steps)
    assert [r["decision"] for r in stats_of(model)["records"]] == ["computed", "reused", "computed", "computed"]
    no_control_on_cached_step, _ = run([0.5, 0.0, 0.5, 0.5])
    # if the control were baked into the cached residual, switching it off on the cached step would not matter
    assert not torch.allclose(constant, no_control_on_cached_step)
    exact_constant, _ = run([0.5] * steps, cached=False)
    uncached, _ = run([0.5] * steps, cached=None)
    assert torch.equal(exact_constant, uncached)
    assert not torch.allclose(uncached, tiny_archs.sample(comfy_nodes, tiny, steps=steps))   # the control acts


def test_lora_patched_model_is_cached_with_its_patches(comfy_nodes, build, tiny_dir):
    tiny = tiny_archs.build("flux", tiny_dir)
    patched = tiny.model.clone()
    key = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    weight = patched.get_model_object("diffusion_model.double_blocks.0.img_attn.qkv").weight
    patched.add_patches({key: (torch.randn_like(weight) * 0.2,)}, strength_patch=1.0)
    plain = tiny_archs.sample(comfy_nodes, tiny, steps=6)
    lora = tiny_archs.sample(comfy_nodes, tiny, model=patched, steps=6)
    assert not torch.allclose(plain, lora)
    nothing_skipped = build(patched, method="dbcache", threshold=1e-6)
    assert torch.equal(tiny_archs.sample(comfy_nodes, tiny, model=nothing_skipped, steps=6), lora)
    cached = build(patched, method="dbcache", threshold=100.0)
    out = tiny_archs.sample(comfy_nodes, tiny, model=cached, steps=6)
    assert any(r["decision"] == "reused" for r in stats_of(cached)["records"])
    # the cache reuses the patched model's residuals: closer to the LoRA result than to the plain one
    assert (out - lora).abs().mean() < (out - plain).abs().mean()


@pytest.mark.parametrize("arch", ["flux", "hunyuan_video", "qwen_image"])
def test_dbcache_with_a_taylor_forecast_of_the_middle_blocks(comfy_nodes, build, tiny_dir, arch):
    tiny = tiny_archs.build(arch, tiny_dir)
    n = total_blocks(tiny)
    # at most 2 cached steps in a row: full steps 0, 3, 6, 7, so later forecasts have two points
    reuse = build(tiny.model, method="dbcache", threshold=100.0, back_blocks=0, max_consecutive_cached=2)
    forecast = build(tiny.model, method="dbcache", threshold=100.0, back_blocks=0, max_consecutive_cached=2,
                     predictor="taylor")
    out_reuse = tiny_archs.sample(comfy_nodes, tiny, model=reuse, steps=STEPS)
    out_forecast = tiny_archs.sample(comfy_nodes, tiny, model=forecast, steps=STEPS)
    records = stats_of(forecast)["records"]
    assert {r["decision"] for r in records} == {"computed", "forecast"}
    assert all(r["block_mask"] == "1" + "0" * (n - 1) for r in records if r["decision"] == "forecast")
    assert torch.isfinite(out_forecast).all() and not torch.allclose(out_forecast, out_reuse)
