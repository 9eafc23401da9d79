"""teacache / magcache make the decisions of the TeaCache and MagCache ComfyUI nodes.

Each reference below is the node's rule written out from reading its code (not copied):
  - TeaCache: welltop-cn/ComfyUI-TeaCache, nodes.py (teacache_flux_forward, the
    update_cache_state of teacache_wanmodel_forward, and TeaCache.apply_teacache's
    unet wrapper for the step index and the start/end window);
  - MagCache: Zehong-Ma/ComfyUI-MagCache, nodes.py (magcache_flux_forward,
    magcache_wanmodel_forward's update_cache_state, and MagCache.apply_magcache's unet
    wrapper for retention and the ratio index).
The policies are driven the way the engine drives them with last_steps_computed=0 (the
nodes force no last step): the first step is the warm-up, nothing else is forced.
"""
import math
import random

import pytest
import torch

from cache_core.decisions import Decision, StepContext
from cache_core.policies.magcache import MagCachePolicy, step_mapped_ratios
from cache_core.policies.teacache import TeaCachePolicy
from cache_core.profiles import (FLUX_MAG_RATIOS, TEACACHE_COEFFICIENTS, MagnitudeCurve, flux_shift_sigmas,
                                 published_profiles)


def _ctx(step, total, sigma):
    return StepContext(1, step, total, 0, sigma, step / max(total - 1, 1))


def _letters(verdicts):
    return "".join("C" if v.decision == Decision.COMPUTE else "R" for v in verdicts)


# ----------------------------------------------------------------------------- TeaCache

def teacache_node_rule(probes, coefficients, threshold, absolute):
    """The TeaCache node: one state per branch, the first call computes (no previous input);
    then acc += P(mean|m - m_prev| / mean|m_prev|) (|P| on the Flux path); reuse while
    acc < threshold, else compute and acc = 0. m_prev is updated on every call."""
    out, acc, prev = [], 0.0, None
    for m in probes:
        calc = True
        if prev is not None:
            rel = float((m - prev).abs().mean() / prev.abs().mean())
            p = sum(c * rel ** (len(coefficients) - 1 - k) for k, c in enumerate(coefficients))
            acc += abs(p) if absolute else p
            if acc < threshold:
                calc = False
            else:
                acc = 0.0
        prev = m
        out.append("C" if calc else "R")
    return "".join(out)


def _drive_teacache(policy, probes):
    policy.begin_run([])
    n = len(probes)
    return _letters([policy.decide(_ctx(i, n, 1.0 - i / n), ("c",), m, "warm-up" if i == 0 else None)
                     for i, m in enumerate(probes)])


def _trajectory(n, seed, shape=(1, 6, 8), jitter=0.05):
    """A probe that drifts smoothly with uneven step sizes, like a modulated input."""
    g = torch.Generator().manual_seed(seed)
    base, direction = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    rnd = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rnd.uniform(0.2, 1.5) * jitter
        out.append(base + t * direction + 0.01 * torch.randn(shape, generator=g))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.1, 0.25, 0.4, 0.6])
def test_teacache_flux_matches_the_node(seed, threshold):
    coefficients = TEACACHE_COEFFICIENTS["flux"]
    probes = _trajectory(20, seed, jitter=0.01)
    expected = teacache_node_rule(probes, coefficients, threshold, absolute=True)
    assert _drive_teacache(TeaCachePolicy(threshold, coefficients), probes) == expected
    assert expected.count("C") > 1 and (threshold < 0.25 or "R" in expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.2, 0.3])
def test_teacache_wan_matches_the_node_signed(seed, threshold):
    """Wan's published fits dip below 0 for small changes; the node adds P as it is."""
    coefficients = TEACACHE_COEFFICIENTS["wan2.1_t2v_1.3b_e0"]
    probes = _trajectory(20, seed, jitter=0.004)
    expected = teacache_node_rule(probes, coefficients, threshold, absolute=False)
    assert _drive_teacache(TeaCachePolicy(threshold, coefficients, signed=True), probes) == expected


def test_teacache_signed_fit_lets_small_changes_pay_back():
    # P(0.001) < 0 for the Wan e0 fit: the node's sum goes down on near-still steps
    coefficients = TEACACHE_COEFFICIENTS["wan2.1_t2v_1.3b_e0"]
    policy = TeaCachePolicy(0.05, coefficients, signed=True)
    assert policy.rescaled(0.001) < 0 < TeaCachePolicy(0.05, coefficients).rescaled(0.001)


# ----------------------------------------------------------------------------- MagCache

def magcache_node_rule(ratios, steps, threshold, k, retention, strict=True):
    """The MagCache node: steps before int(steps * retention) compute; after that the ratio
    of step i is the recorded one at i (same count) or at int(i * (L - 1) / (steps - 1));
    ratio *= r, n += 1, err += |1 - ratio|; reuse while err < threshold (Wan: <=) and
    n <= K, else compute and (ratio, n, err) = (1, 0, 0). The Flux path's extra rule (a
    compute at recorded index 11 of 28) is a model-specific hack and is left out."""
    length, out = len(ratios), []
    ratio, n, err = 1.0, 0, 0.0
    for i in range(steps):
        if i < int(steps * retention):
            out.append("C")
            continue
        j = i if steps == length else int(i * ((length - 1) / (steps - 1)))
        ratio *= ratios[j]
        n += 1
        err += abs(1 - ratio)
        if (err < threshold if strict else err <= threshold) and n <= k:
            out.append("R")
        else:
            ratio, n, err = 1.0, 0, 0.0
            out.append("C")
    return "".join(out)


def _drive_magcache(policy, sigmas):
    policy.begin_run(sigmas)
    n = len(sigmas) - 1
    return _letters([policy.decide(_ctx(i, n, sigmas[i]), ("c",), None, "warm-up" if i == 0 else None)
                     for i in range(n)])


FLUX_CURVE = MagnitudeCurve.from_step_ratios(flux_shift_sigmas(1.15, 28), FLUX_MAG_RATIOS)


@pytest.mark.parametrize("threshold", [0.03, 0.06, 0.12, 0.24, 0.5])
@pytest.mark.parametrize("k,retention", [(2, 0.2), (4, 0.1), (5, 0.1), (6, 0.3)])
def test_magcache_flux_at_the_recorded_step_count_matches_the_node(threshold, k, retention):
    sigmas = flux_shift_sigmas(1.15, 28) + [0.0]
    expected = magcache_node_rule(FLUX_MAG_RATIOS, 28, threshold, k, retention)
    assert _drive_magcache(MagCachePolicy(threshold, FLUX_CURVE, k, retention), sigmas) == expected


@pytest.mark.parametrize("steps", [10, 20, 25, 30, 50])
@pytest.mark.parametrize("threshold", [0.06, 0.12, 0.24])
def test_magcache_flux_at_other_step_counts_matches_the_node_by_step(steps, threshold):
    sigmas = flux_shift_sigmas(1.15, steps) + [0.0]
    expected = magcache_node_rule(FLUX_MAG_RATIOS, steps, threshold, 4, 0.1)
    policy = MagCachePolicy(threshold, FLUX_CURVE, 4, 0.1, ratio_index="step")
    assert _drive_magcache(policy, sigmas) == expected


def test_magcache_wan_matches_the_node():
    # the published Wan curves are the cond branch of the interleaved recording, on its own schedule
    profile = published_profiles()["wan2.1_t2v_1.3b"]
    curve = profile.magnitude
    steps = len(curve.sigmas)
    recorded = step_mapped_ratios(curve, steps)
    sigmas = list(curve.sigmas) + [0.0]
    for threshold in (0.02, 0.06, 0.12, 0.24):
        expected = magcache_node_rule(recorded, steps, threshold, 4, 0.2, strict=False)
        assert _drive_magcache(MagCachePolicy(threshold, curve, 4, 0.2), sigmas) == expected


def test_retention_counts_steps_as_the_node_does():
    policy = MagCachePolicy(1.0, FLUX_CURVE, 4, 0.1)
    policy.begin_run(flux_shift_sigmas(1.15, 25) + [0.0])
    assert policy.retained_steps == int(25 * 0.1) == 2


def test_step_mapped_ratios_read_the_recorded_list():
    assert step_mapped_ratios(FLUX_CURVE, 28) == pytest.approx(FLUX_MAG_RATIOS)
    mapped = step_mapped_ratios(FLUX_CURVE, 20)
    assert mapped == pytest.approx([FLUX_MAG_RATIOS[int(i * 27 / 19)] for i in range(20)])
    assert math.isclose(mapped[0], 1.0)


def test_published_fits_are_added_as_their_code_adds_them():
    from types import SimpleNamespace

    from cache_core.methods.teacache import TeaCacheConfig, make_policy
    from cache_core.profiles import Profile
    published = published_profiles()

    def signed(profile):
        return make_policy(TeaCacheConfig(), SimpleNamespace(profile=profile, reduce="max")).signed
    assert signed(published["wan2.1_t2v_1.3b_e0"]) and signed(published["hunyuan_video"])
    assert not signed(published["flux"]) and not signed(published["flux_kontext"])   # the node's Flux path: |P|
    assert not signed(Profile("mine", "wan21", teacache_coefficients=[1.0, -0.1], source="calibrated"))
