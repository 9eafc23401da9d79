import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_core.branch_store import BranchStore
from cache_core.decisions import StepContext
from cache_core.forecast import band_split, foca_step, hermite_extrapolate, hermite_polynomial, newton_extrapolate
from cache_core.predictors import ForecastPredictor


def poly(coeffs, x):
    return sum(c * x ** i for i, c in enumerate(coeffs))


@settings(max_examples=60, deadline=None)
@given(order=st.integers(1, 4), coeffs=st.lists(st.floats(-3, 3), min_size=5, max_size=5),
       gaps=st.lists(st.floats(0.2, 2.0), min_size=4, max_size=4), ahead=st.floats(0.1, 3.0))
def test_newton_forecast_is_exact_for_polynomials_up_to_its_order_on_any_spacing(order, coeffs, gaps, ahead):
    coeffs = coeffs[:order + 1]
    xs = [0.0]
    for g in gaps[:order]:
        xs.append(xs[-1] + g)
    values = [torch.tensor([poly(coeffs, x)], dtype=torch.float64) for x in xs]
    x = xs[-1] + ahead
    got = newton_extrapolate(xs, values, x, order)
    assert float(got) == pytest.approx(poly(coeffs, x), rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_taylor_forecast_of_a_sinusoid_meets_the_interpolation_error_bound(order):
    xs = [0.0, 0.3, 0.5, 0.9, 1.2][:order + 1]
    values = [torch.tensor([math.sin(x)]) for x in xs]
    for ahead in (0.1, 0.4, 0.8):
        x = xs[-1] + ahead
        bound = math.prod(abs(x - xi) for xi in xs) / math.factorial(order + 1)   # |sin^(k+1)| <= 1
        assert abs(float(newton_extrapolate(xs, values, x, order)) - math.sin(x)) <= bound + 1e-6


def test_taylor_uses_actual_spacing_not_uniform():
    # linear trajectory sampled at uneven steps: uniform-spacing assumption would miss
    xs, slope = [0.0, 1.0, 4.0], 2.0
    values = [torch.tensor([slope * x]) for x in xs]
    assert float(newton_extrapolate(xs, values, 6.0, 1)) == pytest.approx(12.0)


def test_hermite_polynomials_and_the_damped_linear_case():
    assert [hermite_polynomial(k, 0.5) for k in range(4)] == [1.0, 1.0, -1.0, -5.0]
    xs = [0.0, 1.0]
    values = [torch.tensor([1.0]), torch.tensor([3.0])]          # derivative 2
    # order 1: F + 2 * s^2 * dx * D1 with s = 0.5 -> 3 + 0.5 * dx * 2
    assert float(hermite_extrapolate(xs, values, 3.0, 1, 0.5)) == pytest.approx(3.0 + 0.5 * 2.0 * 2.0)


def test_foca_is_exact_on_linear_trajectories_and_reuses_with_one_full_step():
    f = lambda x: torch.tensor([2.0 * x + 1.0])  # noqa: E731
    anchor, anchor_prev = (3.0, f(3.0)), (0.0, f(0.0))
    assert float(foca_step(anchor, anchor_prev, anchor, anchor_prev, 4.0)) == pytest.approx(9.0)
    assert float(foca_step(anchor, None, anchor, None, 4.0)) == pytest.approx(7.0)   # reuse


def test_band_split_reconstructs_and_separates():
    t = torch.randn(2, 16, 8)
    low, high = band_split(t)
    assert torch.allclose(low + high, t, atol=1e-5)
    flat = torch.ones(1, 16, 4)
    assert torch.allclose(band_split(flat)[1], torch.zeros_like(flat), atol=1e-6)
    alternating = torch.tensor([(-1.0) ** i for i in range(16)]).view(1, 16, 1).repeat(1, 1, 4)
    assert torch.allclose(band_split(alternating)[0], torch.zeros_like(alternating), atol=1e-6)
    image = torch.randn(1, 3, 8, 8)
    lo, hi = band_split(image)
    assert torch.allclose(lo + hi, image, atol=1e-5)


def ctx(step, sigma=None, stage=0):
    return StepContext(1, step, 20, stage, 1.0 - step / 20 if sigma is None else sigma, step / 19)


def test_forecast_predictor_history_is_bounded_per_branch_and_freed():
    p = ForecastPredictor(BranchStore(), "taylor", order=2)
    for i in range(6):
        p.record("R", ("c", "u"), torch.full((2, 3), float(i)), ctx(i))
    assert all(len(h) == 3 for h in p.history.values()) and len(p.history) == 2
    assert p.nbytes() == 2 * 3 * 3 * 4 + 2 * 3 * 4          # history + the last value
    forecast = p.predict("R", ("u", "c"), ctx(8))
    assert torch.allclose(forecast, torch.full((2, 3), 8.0))
    p.clear()
    assert p.nbytes() == 0 and not p.history


def test_forecast_predictor_ignores_extra_stages_and_can_use_sigma():
    p = ForecastPredictor(BranchStore(), "taylor", order=1, axis="sigma")
    p.record("R", ("c",), torch.tensor([[1.0]]), ctx(0, sigma=1.0))
    p.record("R", ("c",), torch.tensor([[99.0]]), ctx(0, sigma=0.9, stage=1))
    p.record("R", ("c",), torch.tensor([[0.5]]), ctx(1, sigma=0.5))
    assert [x for x, *_ in p.history[("R", "c")]] == [1.0, 0.5]
    assert float(p.predict("R", ("c",), ctx(2, sigma=0.25))) == pytest.approx(0.25)


class _FullTensorOps(TorchDispatchMode):
    """Counts the ops whose output has ``numel`` elements (full-tensor passes)."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.numel() == self.numel:
            self.count += 1
        return out


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_forecast_touches_each_recorded_value_once(order):
    # the weights depend on the coordinates alone: one full-tensor op per value
    xs = [0.0, 1.5, 2.0, 4.0][-(order + 1):]
    values = [torch.randn(2, 16, 8) for _ in xs]
    for forecast in (lambda: newton_extrapolate(xs, values, 5.0, order),
                     lambda: hermite_extrapolate(xs, values, 5.0, order, 0.5)):
        with _FullTensorOps(values[0].numel()) as ops:
            forecast()
        assert 1 <= ops.count <= order + 1     # a value whose weight is zero is skipped
    with _FullTensorOps(values[0].numel()) as ops:
        foca_step((2.0, values[-1]), (1.5, values[-2]), (2.0, values[-1]), (1.5, values[-2]), 3.0)
    assert ops.count == 2             # the anchor and its predecessor, each once


def test_weighted_forecasts_match_the_divided_difference_form():
    # the Newton form written out for three unevenly spaced points
    xs, x = [0.0, 1.0, 3.0], 4.5
    values = [torch.randn(3, 5) for _ in xs]
    d1 = [(values[1] - values[0]) / (xs[1] - xs[0]), (values[2] - values[1]) / (xs[2] - xs[1])]
    d2 = (d1[1] - d1[0]) / (xs[2] - xs[0])
    expected = values[2] + d1[1] * (x - xs[2]) + d2 * (x - xs[2]) * (x - xs[1])
    assert torch.allclose(newton_extrapolate(xs, values, x, 2), expected, atol=1e-5)
    s, dx = 0.5, x - xs[2]
    expected_h = values[2] + d1[1] * hermite_polynomial(1, s * dx) * s + 2 * d2 * hermite_polynomial(2, s * dx) * s ** 2 / 2
    assert torch.allclose(hermite_extrapolate(xs, values, x, 2, s), expected_h, atol=1e-5)
