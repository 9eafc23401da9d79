"""DeepCache on ComfyUI's real U-Net classes (tiny SD1.5 / SDXL)."""
import importlib

import pytest
import torch

import tiny_archs


@pytest.fixture(scope="module")
def unets(comfy_nodes, pack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unets")
    return {name: tiny_archs.build(name, tmp) for name in ("sd15", "sdxl")}


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("depth", [0, 1])
def test_shallow_branch_around_the_captured_feature_reproduces_the_full_unet(comfy_nodes, pack, unets, arch, depth):
    from comfy.patcher_extension import WrappersMP
    deep = importlib.import_module(f"{pack.__name__}.nodes.unet_deepcache")
    tiny = unets[arch]
    unet = tiny.model.get_model_object("diffusion_model")
    _, first_output = deep.shallow_limits(unet, depth)
    captured = {}

    class Recorder:                       # stands in for the run: receives the deep feature
        def record_deep_feature(self, h):
            captured["h"] = h.clone()

    model = tiny.model.clone()
    model.set_model_output_block_patch(deep.make_capture_patch(first_output))
    calls = {}

    def wrapper(executor, *args, **kwargs):
        options = kwargs.get("transformer_options") or args[-1]
        options[pack.nodes.holder.RUN_KEY] = Recorder()
        full = executor(*args, **kwargs)
        shallow = deep.shallow_forward(executor.class_obj, depth, captured["h"], args, kwargs, options)
        calls.setdefault("pairs", []).append((full, shallow))
        return full

    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test", wrapper)
    tiny_archs.sample(comfy_nodes, tiny, model=model, steps=2)
    assert calls["pairs"]
    for full, shallow in calls["pairs"]:
        assert torch.allclose(full, shallow, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_deepcache_schedule_and_exactness(comfy_nodes, pack, unets, arch):
    tiny = unets[arch]
    build = pack.nodes.cache_node.build_cached_model
    base = tiny_archs.sample(comfy_nodes, tiny, steps=6)
    never = build(tiny.model, method="deepcache", interval=1)
    assert torch.equal(tiny_archs.sample(comfy_nodes, tiny, model=never, steps=6), base)
    cached = build(tiny.model, method="deepcache", interval=2)
    out = tiny_archs.sample(comfy_nodes, tiny, model=cached, steps=6)
    stats = cached.model_options["transformer_options"]["diffusion_cache"].last_stats
    assert [r["decision"] for r in stats["records"]] == ["computed", "reused", "computed", "reused", "computed",
                                                          "computed"]
    assert torch.isfinite(out).all() and not torch.equal(out, base)


def test_deepcache_depth_out_of_range_is_a_clear_error(comfy_nodes, pack, unets):
    with pytest.raises(ValueError, match="deepcache_depth must be between 0 and"):
        pack.nodes.cache_node.build_cached_model(unets["sd15"].model, method="deepcache", deepcache_depth=50)


def test_deepcache_on_a_transformer_falls_back_to_fixed_interval(comfy_nodes, pack, tmp_path, caplog):
    import logging
    tiny = tiny_archs.build("flux", tmp_path)
    with caplog.at_level(logging.INFO):
        model = pack.nodes.cache_node.build_cached_model(tiny.model, method="deepcache", interval=2)
    holder = model.model_options["transformer_options"]["diffusion_cache"]
    assert holder.config.method == "fixed_interval"
    assert any("DeepCache needs a U-Net" in r.message for r in caplog.records)
