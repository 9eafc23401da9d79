"""The model families released after ComfyUI 0.3.64, loaded through ComfyUI's own loader.

ComfyUI 0.33 loads them under older model classes (Flux 2 is a ``Flux``, Z-Image a
``NextDiT``, HunyuanVideo 1.5 a ``HunyuanVideo``, Wan 2.2 5B a ``WanModel``, LTX-2 a
subclass of ``LTXVModel``), so the pack tells them apart by structure. For each family:

* the architecture it is identified as, and its TeaCache probe;
* ``profile=auto`` never picks another family's published coefficients or curves;
* every method that applies is bit-exact when it skips nothing, and skips when asked;
* LTX-2's tuple stream (video, audio) gets a residual per element.

Families a ComfyUI's detection does not know are skipped there, with the reason.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_archs  # noqa: E402

FAMILIES = tiny_archs.NEW_FAMILIES
STEPS = 5

# tiny arch -> (architecture name, TeaCache probe, block hooks used)
EXPECTED = {
    "flux2": ("flux2", "modulated_input", True),
    "chroma_radiance": ("chroma_radiance", "modulated_input", True),
    "z_image": ("z_image", "block_input", False),
    "hunyuan_video15": ("hunyuan_video15", "modulated_input", True),
    "wan22_5b": ("wan22_5b", "timestep_embedding", True),
    "qwen_image_edit": ("qwen_image_edit", "block_input", True),
    "kandinsky5": ("kandinsky5", "block_input", None),     # None: blocks where ComfyUI's dit patches work
    "ltx2": ("ltx2", "block_input", True),
    # the older families they load as keep their own entries
    "flux": ("flux", "modulated_input", True),
    "chroma": ("chroma", "modulated_input", True),
    "lumina2": ("lumina2", "block_input", False),
    "hunyuan_video": ("hunyuan_video", "modulated_input", True),
    "wan21": ("wan21", "timestep_embedding", True),
    "ltxv": ("ltxv", "modulated_input", True),
    "qwen_image": ("qwen_image", "block_input", True),
}
# the published TeaCache fit each family may get from profile=auto (None: none is published)
OWN_TEACACHE = {"flux": "flux", "hunyuan_video": "hunyuan_video", "wan21": "wan2.1_t2v_1.3b_e0",
                "ltxv": "ltx_video", "lumina2": None}

# inputs that skip nothing / that skip, per method (threshold 1e-6: every change is too large; the
# interval is for the step-level method a block method falls back to on models without block hooks)
NO_SKIP = {
    "fixed_interval": dict(interval=1), "step_mask": dict(step_mask="1" * STEPS), "delta_dit": dict(interval=1),
    "first_block": dict(threshold=1e-6), "dbcache": dict(threshold=1e-6), "dbcache_hybrid": dict(threshold=1e-6),
    "teacache": dict(threshold=1e-6), "easycache": dict(threshold=1e-6), "taylorseer": dict(interval=1),
    "hicache": dict(interval=1), "foca": dict(interval=1), "freqca": dict(interval=1), "speca": dict(threshold=1e-6, interval=1),
}
SKIP = {
    "fixed_interval": dict(interval=2), "step_mask": dict(step_mask="10101"),
    "delta_dit": dict(interval=2, delta_cached_blocks=1), "first_block": dict(threshold=100.0),
    "dbcache": dict(threshold=100.0), "dbcache_hybrid": dict(threshold=100.0), "teacache": dict(threshold=100.0),
    "easycache": dict(threshold=100.0), "taylorseer": dict(interval=2), "hicache": dict(interval=2),
    "foca": dict(interval=2), "freqca": dict(interval=2), "speca": dict(threshold=100.0, interval=2),
}
COMMON = dict(warmup_steps=1, last_steps_computed=1, front_blocks=1, back_blocks=0)


@pytest.fixture(scope="module")
def build(comfy_nodes, pack):
    return pack.nodes.cache_node.build_cached_model


@pytest.fixture(autouse=True)
def _empty_user_directory(comfy_nodes, monkeypatch, tmp_path):
    """No calibrated profile: profile=auto can only pick a published one."""
    import folder_paths
    monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))


def _tiny(arch, tiny_dir):
    return tiny_archs.build(arch, tiny_dir)       # skips where this ComfyUI does not know the family


def _stats(model):
    return model.model_options["transformer_options"]["diffusion_cache"].last_stats


_REFERENCE: dict = {}


def _reference(comfy_nodes, tiny, steps=STEPS):
    key = (tiny.name, steps)
    if key not in _REFERENCE:
        _REFERENCE[key] = tiny_archs.sample(comfy_nodes, tiny, steps=steps)
    return _REFERENCE[key]


def _applies(method, tiny, architecture) -> bool:
    """Methods that claim the family (EasyCache needs tensor model input and output)."""
    return method != "easycache" or architecture.tensor_io


# --------------------------------------------------------------------------------------
# identification, probes and profiles
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", list(EXPECTED))
def test_identified_from_the_models_structure(arch, comfy_nodes, pack, tiny_dir):
    tiny = _tiny(arch, tiny_dir)
    name, probe_name, uses_blocks = EXPECTED[arch]
    dm = tiny.model.model.diffusion_model
    architecture = pack.nodes.architectures.identify(dm)
    assert architecture.name == name, (type(dm).__name__, architecture)
    assert architecture.probe_name == probe_name
    layout = architecture.layout(dm) if architecture.block_lists else None
    total = layout.total if layout else 0
    if uses_blocks is None:              # Kandinsky 5: blocks exactly where ComfyUI's dit patches work
        uses_blocks = not tiny.dit_patches_fail
    assert (total > 0) == uses_blocks
    assert total == sum(tiny.block_kinds.values())


@pytest.mark.parametrize("arch", [a for a in EXPECTED if EXPECTED[a][1] != "block_input"])
def test_the_probe_reads_block_0(arch, comfy_nodes, pack, tiny_dir):
    """The architecture's probe runs on block 0's real arguments and gives one row per sample."""
    tiny = _tiny(arch, tiny_dir)
    dm = tiny.model.model.diffusion_model
    architecture = pack.nodes.architectures.identify(dm)
    block0 = architecture.first_block(dm)
    kind = architecture.block_lists[0][0]
    probes = []

    def patch(args, extra):
        probes.append(architecture.probe(block0, args))
        return extra["original_block"](args)

    model = tiny.model.clone()
    model.set_model_patch_replace(patch, "dit", kind, 0)
    out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=2)
    assert torch.equal(out, _reference(comfy_nodes, tiny, steps=2)), "the probe must not change the result"
    assert probes and all(isinstance(p, torch.Tensor) and torch.isfinite(p).all() for p in probes)
    assert {p.shape[0] for p in probes} == {2}            # cond and uncond batched: 2 rows
    assert not torch.equal(probes[0], probes[-1]), "the probe must change with the step"


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_profile_auto_never_picks_another_familys_coefficients(arch, comfy_nodes, pack, tiny_dir, build, caplog):
    tiny = _tiny(arch, tiny_dir)
    architecture = pack.nodes.architectures.identify(tiny.model.model.diffusion_model)
    own = OWN_TEACACHE.get(arch)
    profile = pack.nodes.profile_files.resolve("auto", architecture, "teacache")
    assert profile.name == (own or "generic"), profile.name
    with caplog.at_level(logging.WARNING, logger="diffusion_cache"):
        model = build(tiny.model, method="teacache")
    assert model.model_options["transformer_options"]["diffusion_cache"].profile.name == (own or "generic")
    warned = [r.getMessage() for r in caplog.records if "no published TeaCache" in r.getMessage()]
    if own is None:                        # it says so at the node, and what to do instead
        assert len(warned) == 1 and "first_block" in warned[0] and "calibrate" in warned[0], warned
    else:
        assert not warned
    magcache = pack.nodes.profile_files.resolve("auto", architecture, "magcache")
    if arch in ("flux", "hunyuan_video", "wan21"):
        assert magcache is not None and magcache.name == OWN_TEACACHE[arch]
    else:
        assert magcache is None
        with pytest.raises(ValueError) as info:
            build(tiny.model, method="magcache")
        message = str(info.value)
        assert architecture.name in message and "first_block" in message and "calibrate" in message, message


# --------------------------------------------------------------------------------------
# every method: exact when nothing is skipped, skipping when asked
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", list(NO_SKIP))
@pytest.mark.parametrize("arch", FAMILIES)
def test_every_method_exact_when_nothing_is_skipped_and_skips_when_asked(arch, method, comfy_nodes, pack,
                                                                         tiny_dir, build):
    tiny = _tiny(arch, tiny_dir)
    architecture = pack.nodes.architectures.identify(tiny.model.model.diffusion_model)
    if not _applies(method, tiny, architecture):
        pytest.skip(f"{method} does not apply to {arch}")
    ref = _reference(comfy_nodes, tiny)

    exact = build(tiny.model, method=method, **{**COMMON, **NO_SKIP[method]})
    out = tiny_archs.sample(comfy_nodes, tiny, model=exact, steps=STEPS)
    records = _stats(exact)["records"]
    assert [r["step"] for r in records if r["stage"] == 0] == list(range(STEPS))
    assert all(r["decision"] == "computed" for r in records), records
    assert torch.equal(out, ref), f"{arch} {method}: a cache that skips nothing changed the output"

    cached = build(tiny.model, method=method, **{**COMMON, **SKIP[method]})
    out = tiny_archs.sample(comfy_nodes, tiny, model=cached, steps=STEPS)
    records = _stats(cached)["records"]
    skipped = [r for r in records if r["decision"] != "computed"]
    assert skipped, records
    assert all(r["blocks_computed"] < r["blocks_total"] for r in skipped)
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    if method == "teacache":
        assert any(r["metric"] is not None for r in records), "TeaCache never measured its probe"


def test_easycache_on_ltx2_passes_through_with_one_warning(comfy_nodes, tiny_dir, build, caplog):
    tiny = _tiny("ltx2", tiny_dir)
    with caplog.at_level(logging.WARNING, logger="diffusion_cache"):
        out = build(tiny.model, method="easycache")
    assert out is tiny.model
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "diffusion_cache"]
    assert len(warnings) == 1 and "ltx2" in warnings[0] and "first_block" in warnings[0], warnings
    # auto picks a block method, which works
    model = build(tiny.model, method="auto")
    tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert _stats(model)["summary"]["method"] == "first_block"


# --------------------------------------------------------------------------------------
# LTX-2: the (video, audio) stream
# --------------------------------------------------------------------------------------

def _av_latent(tiny):
    from comfy.nested_tensor import NestedTensor
    video = torch.zeros(tiny.latent["samples"].shape)
    audio = torch.zeros(1, 8, 4, 16)                 # [B, channels, frames, frequency bins]
    return NestedTensor([video, audio])


def _sample_av(comfy_nodes, tiny, model, steps=STEPS):
    out = comfy_nodes.KSampler().sample(model, 0, steps, 2.0, "euler", "simple", tiny.positive, tiny.negative,
                                        {"samples": _av_latent(tiny)})
    return out[0]["samples"].unbind()


def test_ltx2_caches_video_and_audio_residuals(comfy_nodes, pack, tiny_dir, build, monkeypatch):
    tiny = _tiny("ltx2", tiny_dir)
    ref_video, ref_audio = _sample_av(comfy_nodes, tiny, tiny.model)
    assert ref_audio.shape == (1, 8, 4, 16) and ref_audio.abs().max() > 0

    exact = build(tiny.model, method="fixed_interval", interval=1)
    video, audio = _sample_av(comfy_nodes, tiny, exact)
    assert torch.equal(video, ref_video) and torch.equal(audio, ref_audio)

    engine = pack.cache_core.engine
    streams = set()
    slot = engine._slot

    def spy(span, run, stream):
        streams.add(stream)
        return slot(span, run, stream)

    monkeypatch.setattr(engine, "_slot", spy)
    for method, inputs in (("fixed_interval", dict(interval=2)), ("dbcache", dict(threshold=100.0)),
                           ("taylorseer", dict(interval=2))):
        cached = build(tiny.model, method=method, **inputs)
        video, audio = _sample_av(comfy_nodes, tiny, cached)
        assert any(r["decision"] != "computed" for r in _stats(cached)["records"]), method
        for got, ref in ((video, ref_video), (audio, ref_audio)):
            assert got.shape == ref.shape and torch.isfinite(got).all() and not torch.equal(got, ref), method
    assert {"img.0", "img.1"} <= streams, streams      # one residual per element of the tuple
