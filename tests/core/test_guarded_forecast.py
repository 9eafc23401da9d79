"""Guarded forecast on the toy model: the interval follows the forecast's error measured at
each computed step (exact decisions on known trajectories)."""
import pytest
import torch

from cache_core.methods import METHODS
from toy import ToyModel, make_run

SIGMAS = [1.0 - i / 20 for i in range(21)]     # 20 steps, sigma linear in the step


def _run(model, threshold, change_at=None, **kw):
    run = make_run(model, SIGMAS, method="guarded_forecast", threshold=threshold, warmup_steps=1,
                   last_steps_computed=1, **kw)
    x = torch.zeros(1, 2, 2)
    for i, s in enumerate(SIGMAS[:-1]):
        if i == change_at:
            model.weights[0] = 3.0              # the trajectory bends: the linear forecast drifts
        run.begin_evaluation(s, ("cond",))
        run.model_call(x, ("cond",), lambda: model.forward(run, x, s, ("cond",)), s)
        run.end_evaluation()
        run.step_reported(i)
    return run


def computed(run):
    return [r.step for r in run.stats.records if r.decision == "computed"]


def test_a_forecast_that_holds_lengthens_the_interval():
    """First interval 8 (reuse measured at step 8: halve it), then a linear trajectory the
    forecast meets exactly: the interval doubles (capped at 8) until the last step."""
    run = _run(ToyModel([1.0, 1.0, 1.0]), threshold=0.1)
    assert computed(run) == [0, 8, 12, 19]
    d = {r.step: r for r in run.stats.records}
    assert d[13].metric == pytest.approx(0.0, abs=1e-6)      # the error measured at step 12
    assert all(d[s].decision == "forecast" for s in range(13, 19))


def test_a_drifting_forecast_shortens_the_interval_then_recovers():
    """The residual is 3 sigma until step 10, then 5 sigma. At step 12 the forecast from steps
    0 and 8 (1.2) misses the real 2.0 by 0.4: interval 4 * 0.9 * (0.1/0.4)^(1/2) -> 1. At 13 the
    forecast from 8 and 12 (2.05) misses 1.75 by 0.171: still 1. At 14 it is exact (1.5): 2,
    then 4 (step 19 is the last, computed anyway)."""
    run = _run(ToyModel([1.0, 1.0, 1.0]), threshold=0.1, change_at=10)
    assert computed(run) == [0, 8, 12, 13, 14, 16, 19]
    d = {r.step: r for r in run.stats.records}
    assert d[13].metric == pytest.approx(0.4, rel=1e-4)
    assert d[14].metric == pytest.approx(0.3 / 1.75, rel=1e-4)
    assert d[15].metric == pytest.approx(0.0, abs=1e-6)


def test_a_looser_threshold_shortens_the_interval_less_after_the_same_drift():
    """Threshold 0.4: the miss of 0.4 at step 12 gives 4 * 0.9 = 3.6 -> 3. At 15 the forecast
    from 8 and 12 (2.15) misses 1.25 by 0.72: 3 * 0.9 * (0.4/0.72)^(1/2) = 2.01 -> 2. At 17 the
    forecast from 12 and 15 is exact; step 19 is the last."""
    run = _run(ToyModel([1.0, 1.0, 1.0]), threshold=0.4, change_at=10)
    assert computed(run) == [0, 8, 12, 15, 17, 19]
    d = {r.step: r for r in run.stats.records}
    assert d[16].metric == pytest.approx(0.72, rel=1e-4)


def test_registered_with_a_sweep_and_taylor_by_default():
    m = METHODS["guarded_forecast"]
    assert m.predictor == "taylor" and m.sweep["knob"] == "threshold"
    assert min(m.sweep["full"]) < m.config().threshold < max(m.sweep["full"])
    with pytest.raises(ValueError):
        m.config(threshold=-1)
