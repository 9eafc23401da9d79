"""Errors stay at the node, and whatever the node accepts samples without an exception.

* a profile without the data the method needs is rejected at the node, with the choices;
* the calibration node passes a MODEL without a diffusion model through, as the cache node does;
* a one-sigma schedule (SplitSigmas at an end, then SamplerCustom) passes through;
* a calibration profile that cannot be written is logged; the sampled result is kept;
* every method, with each input at the ends of its range, samples.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import tiny_archs

STEPS = 4


@pytest.fixture(scope="module")
def build(comfy_nodes, pack):
    return pack.nodes.cache_node.build_cached_model


@pytest.fixture(scope="module")
def calibrate(comfy_nodes, pack):
    return pack.nodes.calibrate_node.build_calibrating_model


def stats_of(model):
    return model.model_options["transformer_options"]["diffusion_cache"].last_stats


def _messages(caplog, level=logging.WARNING):
    return [r.getMessage() for r in caplog.records if r.name == "diffusion_cache" and r.levelno >= level]


# --------------------------------------------------------------------------------------
# profiles without the method's data
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["mochi", "generic", "ltx_video", "hidream_i1_dev"])
def test_magcache_with_a_profile_without_a_curve_fails_at_the_node(comfy_nodes, build, tiny_dir, profile):
    tiny = tiny_archs.build("flux", tiny_dir)
    with pytest.raises(ValueError) as info:
        build(tiny.model, method="magcache", profile=profile)
    message = str(info.value)
    assert repr(profile) in message and "magnitude curve" in message, message
    for valid in ("flux", "hunyuan_video", "wan2.1_t2v_1.3b", "user:<name>"):
        assert valid in message, message
    assert "mochi" not in message.split("choose")[-1]


def test_every_published_profile_the_node_accepts_samples(comfy_nodes, build, tiny_dir, pack):
    tiny = tiny_archs.build("flux", tiny_dir)
    for method in ("teacache", "magcache"):
        for name in pack.cache_core.profiles.published_profiles():
            try:
                model = build(tiny.model, method=method, profile=name)
            except ValueError:
                continue
            out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
            assert torch.isfinite(out).all(), (method, name)


def test_a_calibrated_profile_without_a_curve_fails_at_the_node(comfy_nodes, build, tiny_dir, pack, tmp_path,
                                                                monkeypatch):
    _user_directory(monkeypatch, tmp_path)
    profiles = pack.cache_core.profiles
    no_curve = profiles.Profile(name="no_curve", architecture="flux", teacache_coefficients=[0, 0, 0, 1, 0])
    pack.nodes.profile_files.save_profile(no_curve)
    tiny = tiny_archs.build("flux", tiny_dir)
    with pytest.raises(ValueError, match="no_curve.*magnitude curve"):
        build(tiny.model, method="magcache", profile="user:no_curve")
    no_polynomial = profiles.Profile(name="no_poly", architecture="flux",
                                     magnitude=profiles.MagnitudeCurve([1.0, 0.5], [0.0, 0.1]))
    pack.nodes.profile_files.save_profile(no_polynomial)
    with pytest.raises(ValueError, match="no_poly.*polynomial"):
        build(tiny.model, method="teacache", profile="user:no_poly")


# --------------------------------------------------------------------------------------
# the calibration node and a MODEL without a diffusion model
# --------------------------------------------------------------------------------------

def test_calibration_node_passes_a_model_without_diffusion_model_through(comfy_nodes, build, calibrate, caplog):
    import comfy.model_patcher
    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="diffusion_cache"):
        assert build(patcher, method="first_block") is patcher
        cache_warning = _messages(caplog)
        caplog.clear()
        assert calibrate(patcher, "my_model") is patcher
        calibrate_warning = _messages(caplog)
    assert len(cache_warning) == len(calibrate_warning) == 1
    assert calibrate_warning == cache_warning and "passing it through" in calibrate_warning[0]


# --------------------------------------------------------------------------------------
# a schedule with one sigma
# --------------------------------------------------------------------------------------

def _sample_custom(tiny, model, sigmas):
    """What SamplerCustom does with these sigmas (euler, cfg 2, seed 0)."""
    import comfy.sample
    import comfy.samplers
    latent = tiny.latent["samples"].clone()
    noise = comfy.sample.prepare_noise(latent, 0)
    return comfy.sample.sample_custom(model, noise, 2.0, comfy.samplers.sampler_object("euler"), sigmas,
                                      tiny.positive, tiny.negative, latent, seed=0)


@pytest.mark.parametrize("end", ["first", "last"])
def test_one_sigma_schedule_passes_through(comfy_nodes, build, calibrate, tiny_dir, end):
    import comfy.samplers
    tiny = tiny_archs.build("flux", tiny_dir)
    sigmas = comfy.samplers.calculate_sigmas(tiny.model.get_model_object("model_sampling"), "simple", STEPS)
    one = sigmas[:1] if end == "first" else sigmas[-1:]          # SplitSigmas at step 0 / at the last index
    expected = _sample_custom(tiny, tiny.model, one)
    for model in (build(tiny.model, method="first_block"), build(tiny.model, method="magcache", profile="flux"),
                  build(tiny.model, method="step_mask"), calibrate(tiny.model, "one_sigma")):
        assert torch.equal(_sample_custom(tiny, model, one), expected)
    # and the same cached model still caches a real schedule afterwards
    model = build(tiny.model, method="fixed_interval", interval=2)
    _sample_custom(tiny, model, one)
    _sample_custom(tiny, model, sigmas)
    assert [r["decision"] for r in stats_of(model)["records"]] == ["computed", "reused", "computed", "computed"]


# --------------------------------------------------------------------------------------
# a calibration profile that cannot be written
# --------------------------------------------------------------------------------------

def _user_directory(monkeypatch, path):
    import folder_paths
    monkeypatch.setattr(folder_paths, "user_directory", folder_paths.get_user_directory())
    if hasattr(folder_paths, "set_user_directory"):
        folder_paths.set_user_directory(str(path))
    else:
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(path))


def test_failed_calibration_save_keeps_the_sampled_result(comfy_nodes, calibrate, tiny_dir, tmp_path, monkeypatch,
                                                          caplog):
    # the profiles folder cannot be created: a file stands where it should be (root ignores read-only modes)
    (tmp_path / "diffusion_cache").write_text("not a folder")
    _user_directory(monkeypatch, tmp_path)
    tiny = tiny_archs.build("flux", tiny_dir)
    expected = tiny_archs.sample(comfy_nodes, tiny, steps=STEPS)
    model = calibrate(tiny.model, "read_only")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=STEPS)
    assert torch.equal(out, expected)
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1 and "read_only" in errors[0] and "could not be written" in errors[0], errors
    assert not Path(tmp_path / "diffusion_cache").is_dir()


# --------------------------------------------------------------------------------------
# every input the node accepts samples
# --------------------------------------------------------------------------------------

def _edge_values(pack) -> list[tuple[str, object]]:
    """Each input of the node's schema at the ends of its range (every option of a combo)."""
    schema = pack.nodes.cache_node.cache_node_class().define_schema()
    edges = []
    for spec in schema.inputs:
        name = spec.id
        if name in ("model", "method", "profile"):
            continue
        if getattr(spec, "options", None):
            edges += [(name, v) for v in spec.options]
        elif isinstance(getattr(spec, "default", None), bool):
            edges.append((name, not spec.default))
        elif getattr(spec, "min", None) is not None and getattr(spec, "max", None) is not None:
            edges += [(name, spec.min), (name, spec.max)]
        else:      # the step mask: a string
            edges += [(name, v) for v in ("1", "0", "ultra", "0" * 40)]
    return edges


def _reads(method: str, name: str, shared: bool, methods: dict) -> bool:
    """Does ``method`` read input ``name`` (its own knobs; the shared ones only when ``shared``)?"""
    if method not in methods:                        # auto: no knob of its own beyond the shared ones
        own = set()
    else:
        own = {k.name for k in methods[method].knobs}
    common = {k.name for k in methods[next(iter(methods))].all_knobs()} - {
        k.name for m in methods.values() for k in m.knobs}
    return name in own or (shared and name in common)


@pytest.mark.parametrize("arch", ["flux", "wan21", "sd3", "sd15"])
def test_every_accepted_input_samples(comfy_nodes, pack, build, tiny_dir, arch):
    """Each method with each input it reads at an end of its range: the node either rejects
    it with a message, or the sampler runs. The inputs every method shares vary on Flux."""
    tiny = tiny_archs.build(arch, tiny_dir)
    methods = pack.cache_core.config.METHODS
    edges = _edge_values(pack)
    failures, accepted = [], 0
    for method in ["auto"] + list(methods):
        base = {"method": method, "profile": "flux" if method == "magcache" and arch == "flux" else "auto"}
        cases = [{}] + [{name: value} for name, value in edges
                        if _reads(method, name, arch == "flux", methods)]
        for case in cases:
            try:
                model = build(tiny.model, **base, **case)
            except ValueError:
                continue                 # rejected at the node, with its message
            accepted += 1
            try:
                out = tiny_archs.sample(comfy_nodes, tiny, model=model, steps=3)
                assert torch.isfinite(out).all(), "not finite"
            except Exception as e:       # noqa: BLE001 - report them all
                failures.append(f"{method} {case}: {type(e).__name__}: {e}")
    assert accepted > len(methods)
    assert not failures, "\n".join(failures[:20])
