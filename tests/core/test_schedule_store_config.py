import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_core.branch_store import BranchStore
from cache_core.calibration import CalibrationRecorder, fit_teacache_polynomial
from cache_core.config import CacheConfig, ScheduleConfig, config_from_inputs
from cache_core.metrics import psnr, rel_l1, ssim
from cache_core.profiles import Profile, published_profiles
from cache_core.schedule import StepLocator

SIG = [1.0, 0.75, 0.5, 0.25, 0.0]


def test_euler_each_sigma_is_its_step():
    loc = StepLocator(SIG, expect_reports=True)
    got = []
    for i in range(4):
        got.append(loc.locate(SIG[i]))
        loc.step_reported(i)
    assert [(g.step, g.stage) for g in got] == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_heun_corrector_at_next_sigma_is_an_extra_stage():
    # ComfyUI's sample_heun: evaluate sigma[i], report i, then correct at sigma[i+1]
    loc = StepLocator(SIG, expect_reports=True, corrector_at_next_sigma=True)
    seq = []
    for i in range(4):
        seq.append(loc.locate(SIG[i]))
        loc.step_reported(i)
        if i < 3:                      # the last step is plain Euler (sigma goes to 0)
            seq.append(loc.locate(SIG[i + 1]))
    assert [(g.step, g.stage) for g in seq] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]


def test_without_corrector_knowledge_the_next_sigma_starts_the_next_step():
    loc = StepLocator(SIG, expect_reports=True)
    a = loc.locate(1.0)
    loc.step_reported(0)
    b = loc.locate(0.75)
    c = loc.locate(0.75)           # evaluated again within the step: an extra stage
    assert [(g.step, g.stage) for g in (a, b, c)] == [(0, 0), (1, 0), (1, 1)]


def test_midpoint_sigmas_are_extra_stages():
    loc = StepLocator(SIG, expect_reports=True)
    a = loc.locate(1.0)
    b = loc.locate(0.9)
    loc.step_reported(0)
    c = loc.locate(0.75)
    assert (a.step, a.stage, b.step, b.stage, c.step, c.stage) == (0, 0, 0, 1, 1, 0)


def test_without_progress_reports_sigma_alone_decides():
    loc = StepLocator(SIG, expect_reports=True)
    steps = [loc.locate(s) for s in SIG[:4]]     # the sampler never reports
    assert [(g.step, g.stage) for g in steps][2:] == [(2, 0), (3, 0)]
    assert loc.expect_reports is False


def test_repeated_sigma_without_reports_is_an_extra_stage():
    loc = StepLocator(SIG)
    assert (loc.locate(1.0).stage, loc.locate(1.0).stage, loc.locate(0.75).stage) == (0, 1, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 50.0), min_size=2, max_size=30, unique=True))
def test_locator_maps_every_schedule_sigma_to_its_index(values):
    sigmas = sorted(values, reverse=True) + [0.0]
    loc = StepLocator(sigmas, expect_reports=True)
    for i, s in enumerate(sigmas[:-1]):
        got = loc.locate(s)
        assert (got.step, got.stage) == (i, 0)
        loc.step_reported(i)


def test_store_is_keyed_by_branch_and_resets_with_a_reason(caplog):
    store = BranchStore("test")
    store.put("R", ("c", "u"), torch.stack([torch.zeros(3), torch.ones(3)]))
    assert torch.equal(store.get("R", ("u", "c")), torch.stack([torch.ones(3), torch.zeros(3)]))
    assert store.matches("R", ("u",), torch.zeros(1, 3))
    assert not store.matches("R", ("u",), torch.zeros(1, 4))
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        store.put("R", ("c",), torch.zeros(1, 5))
    assert store.resets and "shape" in store.resets[0]
    # the reset is the changed branch's alone: the other branch keeps its tensor
    assert store.has("R", ("u",)) and store.matches("R", ("u",), torch.zeros(1, 3))
    assert store.matches("R", ("c",), torch.zeros(1, 5)) and not store.matches("R", ("c",), torch.zeros(1, 3))
    assert any("reset" in r.message for r in caplog.records)


def test_branches_of_different_shapes_coexist_and_a_reset_is_logged_once(caplog):
    store = BranchStore("test")
    keys = []
    store.listeners.append(keys.append)
    for _ in range(5):                                  # cond and uncond of different lengths, alternating
        store.put("txt", ("c",), torch.zeros(1, 8, 4))
        store.put("txt", ("u",), torch.ones(1, 12, 4))
        store.put("img", ("c", "u"), torch.zeros(2, 16, 4))
    assert store.resets == [] and keys == []
    assert store.get("txt", ("c",)).shape == (1, 8, 4) and store.get("txt", ("u",)).shape == (1, 12, 4)
    with caplog.at_level(logging.INFO, logger="diffusion_cache"):
        for n in (9, 8, 9, 8):                            # branch c changes shape back and forth
            store.put("txt", ("c",), torch.zeros(1, n, 4))
    assert store.reset_count == 4 and keys == ["c"] * 4
    assert len(store.resets) == 2                       # one line per distinct reason
    assert len([r for r in caplog.records if "reset" in r.getMessage()]) == 2
    assert store.has("img", ("u",)) and not store.has("img", ("c",))   # c's other slots went with it
    assert store.get("txt", ("u",)).shape == (1, 12, 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4)), min_size=1, max_size=8))
def test_store_never_returns_a_tensor_of_the_wrong_shape(puts):
    store = BranchStore()
    for batch, width in puts:
        keys = tuple(f"k{i}" for i in range(batch))
        store.put("S", keys, torch.zeros(batch, width))
        assert store.matches("S", keys, torch.zeros(batch, width))
        assert store.get("S", keys).shape == (batch, width)


@pytest.mark.parametrize("kwargs, message", [
    (dict(threshold=-0.2), "threshold must be 0 or more"),
    (dict(method="nope"), "unknown method 'nope'; choose one of"),
    (dict(interval=0), "interval must be 1 or more"),
    (dict(method="step_mask", step_mask="abc"), "step_mask must be a preset"),
    (dict(start_percent=0.5, end_percent=0.5), "start_percent (0.5) must be below end_percent (0.5)"),
    (dict(end_percent=1.5), "end_percent must be in [0, 1]"),
    (dict(warmup_steps=-1), "warmup_steps must be 0 or more"),
    (dict(reduce="median"), "reduce must be one of"),
])
def test_config_errors_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError) as e:
        config_from_inputs(**kwargs)
    assert message in str(e.value)


def test_config_defaults_and_description():
    c = CacheConfig.build(method="teacache")
    assert c.effective_threshold == 0.4
    assert "teacache" in c.describe() and "threshold=0.4" in c.describe()
    assert config_from_inputs(method="fixed_interval", interval=3, warmup_steps=2).schedule == ScheduleConfig(warmup_steps=2)


def test_polynomial_fit_recovers_a_known_polynomial():
    xs = [0.01 * i for i in range(1, 30)]
    truth = [3.0, -2.0, 0.5, 1.5, 0.01]
    ys = [sum(c * x ** (4 - i) for i, c in enumerate(truth)) for x in xs]
    assert fit_teacache_polynomial(xs, ys) == pytest.approx(truth, rel=1e-4, abs=1e-6)


def test_calibration_profile_round_trip(tmp_path):
    rec = CalibrationRecorder()
    for i, s in enumerate([1.0, 0.8, 0.6, 0.4, 0.2]):
        rec.add(s, None if i == 0 else 0.1 * i, None if i == 0 else 0.05 * i, 1.0 + 0.01 * i)
    profile = rec.to_profile("mine", "flux", "modulated_input")
    path = profile.save(tmp_path / "mine.json")
    loaded = Profile.load(path)
    assert loaded.architecture == "flux" and len(loaded.teacache_coefficients) == 5
    assert loaded.magnitude.ratio(0.8, 0.6) == pytest.approx(1.02)
    with pytest.raises(ValueError, match="calibration node"):
        Profile.from_json({"nothing": 1})


def test_published_profiles_carry_spec_numbers():
    p = published_profiles()
    assert p["flux"].teacache_coefficients[0] == pytest.approx(498.651651)
    assert p["flux"].magnitude.ratio(p["flux"].magnitude.sigmas[1], p["flux"].magnitude.sigmas[2]) == pytest.approx(1.11719)
    assert p["wan2.1_t2v_1.3b_e0"].teacache_probe == "timestep_embedding"


def test_metrics():
    a = torch.rand(2, 8, 8, 3)
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-3)
    assert ssim(a, torch.rand(2, 8, 8, 3)) < 0.5
    assert rel_l1(torch.full((4,), 1.1), torch.ones(4)) == pytest.approx(0.1)


def test_published_magcache_curves_reproduce_their_ratios_on_their_schedule():
    from cache_core.profiles import flow_shift_sigmas
    p = published_profiles()
    hv = p["hunyuan_video"].magnitude
    sig = flow_shift_sigmas(7.0, 50)
    assert hv.ratio(sig[1], sig[2]) == pytest.approx(1.27807)
    wan = p["wan2.1_t2v_1.3b_e0"].magnitude          # cond entries of an interleaved array
    sig = flow_shift_sigmas(5.0, 50)
    assert wan.ratio(sig[2], sig[3]) == pytest.approx(0.99791)
    assert p["wan2.1_t2v_1.3b"].magnitude is wan


@pytest.mark.parametrize("kwargs, present, absent", [
    (dict(method="fixed_interval", interval=3), "interval=3", "step_mask"),
    (dict(method="step_mask", step_mask="fast"), "step_mask=fast", "threshold"),
    (dict(method="dbcache", front_blocks=2, back_blocks=1), "F2B1", "step_mask"),
    (dict(method="taylorseer", interval=4, predictor_order=2), "predictor=taylor(order 2, step)", "step_mask"),
])
def test_describe_names_exactly_the_settings_in_use(kwargs, present, absent):
    text = CacheConfig.build(**kwargs).describe()
    assert present in text and absent not in text


def test_store_hands_back_a_batch_it_was_given_without_copying():
    from cache_core.branch_store import BranchStore
    store = BranchStore()
    batch = torch.randn(4, 3, 5)
    store.put("R", ("c", "u"), batch)
    same = store.get("R", ("c", "u"))
    assert torch.equal(same, batch) and same.data_ptr() == batch.data_ptr()   # a view, not a copy
    swapped = store.get("R", ("u", "c"))                                     # another order: a new batch
    assert torch.equal(swapped, torch.cat([batch[2:], batch[:2]])) and swapped.data_ptr() != batch.data_ptr()
    store.put("R", ("u",), torch.zeros(2, 3, 5))                             # one branch replaced
    mixed = store.get("R", ("c", "u"))
    assert torch.equal(mixed, torch.cat([batch[:2], torch.zeros(2, 3, 5)]))


def test_a_decision_record_as_json_is_every_field_json_safe():
    import json
    from dataclasses import asdict

    from cache_core.engine import PassKey
    from cache_core.run_stats import DecisionRecord
    record = DecisionRecord(3, 0, float("inf"), ["c", PassKey(("v", 1), "u")], "reused", float("nan"), 0.1,
                            0, 4, "", "0000")
    expected = asdict(record)
    expected.update(sigma=None, metric=None)
    assert record.to_json() == expected
    json.dumps(record.to_json(), allow_nan=False)
