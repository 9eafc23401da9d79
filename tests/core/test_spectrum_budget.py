"""Spectrum (Chebyshev ridge forecast, growing intervals) and the compute budget (planned steps)."""
import itertools
import random

import pytest
import torch

from cache_core import budget as planner
from cache_core.branch_store import BranchStore
from cache_core.decisions import StepContext
from cache_core.forecast import chebyshev_basis
from cache_core.policies.budget import BudgetPolicy
from cache_core.policies.interval import AdaptiveWindowPolicy, simulate
from cache_core.predictors import SpectrumPredictor


def ctx(step, n):
    return StepContext(0, step, n, 0, 1.0 - step / n, step / (n - 1))


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_spectrum_ridge_exact_on_polynomials_without_ridge(degree):
    n = 28
    torch.manual_seed(degree)
    coeffs = [torch.randn(3, 4) for _ in range(degree + 1)]

    def poly(t):
        return sum(c * t ** p for p, c in enumerate(coeffs))
    pred = SpectrumPredictor(BranchStore("t"), degree=4, lam=0.0, weight=1.0)
    for step in (0, 1, 2, 3, 4, 6, 8, 11, 15):          # the published schedule's computed steps
        pred.record("s", ("cond",), poly(step / (n - 1)).unsqueeze(0), ctx(step, n))
    for step in (16, 17, 18, 19):                        # the forecasts until the next computed step
        got = pred.predict("s", ("cond",), ctx(step, n))[0]
        assert torch.allclose(got, poly(step / (n - 1)), rtol=1e-3, atol=1e-3)


def test_spectrum_blend_ridge_and_bounded_history():
    n = 10
    pred = SpectrumPredictor(BranchStore("t"))          # published: M=4, lambda=0.1, w=0.5
    for step in range(6):
        pred.record("s", ("cond",), torch.full((1, 2), float(step)), ctx(step, n))
    fit = pred.fits[("s", "cond")]
    assert fit["xth"].shape == (5, 1, 2) and fit["count"] == 6 and fit["prev"][0] < fit["last"][0]
    out = pred.predict("s", ("cond",), ctx(6, n))
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    assert 4.5 < float(out[0, 0]) < 6.5                        # the ridge (lambda 0.1) pulls the fit back a little
    pred.record("s", ("cond",), torch.full((1, 2), 5.5), ctx(5, n))   # the same step again: replaced
    assert pred.fits[("s", "cond")]["count"] == 6
    assert chebyshev_basis(0.5, 5) == [1.0, 0.5, -0.5, -1.0, -0.5]


def test_spectrum_sanitises_for_narrow_dtypes():
    n = 10
    pred = SpectrumPredictor(BranchStore("t"), lam=0.0, weight=1.0)
    for step in range(5):
        pred.record("s", ("cond",), torch.full((1, 2), 1e4 * (step + 1), dtype=torch.float16), ctx(step, n))
    out = pred.predict("s", ("cond",), ctx(9, n))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


@pytest.mark.parametrize("steps, alpha, expected", [
    (50, 0.75, [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25, 31, 38, 46]),
    (50, 3.0, [0, 1, 2, 3, 4, 6, 11, 19, 30, 44]),
    (28, 0.75, [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25]),
])
def test_spectrum_schedule_as_published(steps, alpha, expected):
    assert simulate(AdaptiveWindowPolicy(2, alpha, 5), steps) == expected


def test_spectrum_warmup_capped_on_short_runs():
    computed = simulate(AdaptiveWindowPolicy(2, 0.75, 5), 8)
    assert computed[:2] == [0, 1] and len(computed) < 8


def test_budget_met_exactly():
    for n in range(1, 41):
        for k in range(1, n + 1):
            forced = planner.forced_steps(n)
            path = planner.plan(n, k, planner.default_cost(n), forced)
            assert len(path) == max(k, len(forced)) and path == sorted(set(path))
            assert set(forced) <= set(path) and path[0] == 0 and path[-1] == n - 1
            if n >= 3 and n - 2 <= planner.MAX_SPAN * (len(path) - 2):
                assert max(b - a for a, b in zip(path, path[1:])) <= planner.MAX_SPAN


def brute(n, k, cost, forced, span, gamma):
    best = None
    for inner in itertools.combinations(range(1, n - 1), k - 2):
        path = [0, *inner, n - 1]
        if not set(forced) <= set(path) or any(b - a > span for a, b in zip(path, path[1:])):
            continue
        c = planner.path_cost(path, cost, gamma)
        if best is None or c < best[0]:
            best = (c, path)
    return best


def test_budget_dp_optimal_against_brute_force():
    rng = random.Random(0)
    for _ in range(150):
        n = rng.randint(4, 11)
        forced = sorted({0, n - 1} | {f for f in range(n) if rng.random() < 0.15})
        span = rng.randint(2, 5)
        k = rng.randint(len(forced), n)
        table = {(i, j): rng.random() * (j - i - 1) for i in range(n) for j in range(i + 1, n)}
        gamma = rng.choice([1.0, 2.0])
        expected = brute(n, k, lambda i, j: table[(i, j)], forced, span, gamma)
        if expected is None:
            continue
        got = planner.plan(n, k, lambda i, j: table[(i, j)], forced, span, gamma)
        assert len(got) == k
        assert planner.path_cost(got, lambda i, j: table[(i, j)], gamma) == pytest.approx(expected[0])


def test_budget_uniform_cost_is_even_and_default_shape():
    path = planner.plan(13, 5, lambda i, j: j - i - 1, [0, 12])
    assert path == [0, 3, 6, 9, 12]
    assert planner.plan(50, 50, planner.default_cost(50)) == list(range(50))
    lemica_like = planner.plan(50, 10, planner.default_cost(50), planner.forced_steps(50))
    gaps = [b - a for a, b in zip(lemica_like, lemica_like[1:])]
    assert gaps[0] == 1 and gaps[1] < gaps[3] and max(gaps) <= planner.MAX_SPAN


def test_budget_policy_counts_and_profile_plan():
    sigmas = [1.0 - i / 28 for i in range(29)]
    assert len(simulate(BudgetPolicy(compute_steps=8), 28, sigmas)) == 8
    assert len(simulate(BudgetPolicy(target_speedup=3.0), 28, sigmas)) == 10
    # a profile on this grid whose feature only changes in the second half: the plan goes there
    lags = [[(0.0 if k < 14 else 1.0) * d for d in range(1, min(k, 8) + 1)] for k in range(28)]

    class P:
        name, recorded = "mine", {"sigmas": sigmas[:28], "residual_lag_changes": lags}
    policy = BudgetPolicy(compute_steps=8, profile=P())
    computed = simulate(policy, 28, sigmas)
    assert len(computed) == 8 and policy.source == "profile mine"
    assert sum(s >= 14 for s in computed) > sum(s < 14 for s in computed)
    other = BudgetPolicy(compute_steps=8, profile=P())
    assert len(simulate(other, 20, [1.0 - i / 20 for i in range(21)])) == 8 and other.source == "default"


def test_budget_pays_back_steps_the_engine_forces():
    sigmas = [1.0 - i / 20 for i in range(21)]
    policy = BudgetPolicy(compute_steps=6)
    policy.begin_run(sigmas)
    computed = 0
    for step in range(20):
        c = ctx(step, 20)
        verdict = policy.decide(c, ("cond",), None, "guard" if step in (5, 6) else None)
        ran = verdict.decision.value == "computed"
        policy.ran(c, ran)
        computed += ran
    assert computed == 6
