"""cache_level "output": methods whose decisions need nothing from inside the model call skip
whole calls (every layer, not just the blocks); a call with ControlNet residuals still caches
the block span so that they apply fresh."""
import pytest
import torch

from cache_core.config import CacheConfig
from cache_core.methods import METHODS
from toy import ToyModel, make_run

SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
WEIGHTS = [1.0, 2.0, 3.0]


class Calls:
    """Counts the toy's model calls that actually ran."""
    def __init__(self, model):
        self.model, self.ran = model, 0

    def __call__(self, run, x, s, keys, txt=None):
        def forward():
            self.ran += 1
            return self.model.forward(run, x, s, keys, txt)
        return forward


def run_steps(model, run, x, control_at=()):
    """One evaluation per step; ``control_at``: the steps whose call carries ControlNet residuals."""
    calls, outs = Calls(model), []
    for i, s in enumerate(SIGMAS[:-1]):
        run.begin_evaluation(s, ("cond",))
        outs.append(run.model_call(x, ("cond",), calls(run, x, s, ("cond",)), s,
                                   adds_between_blocks=i in control_at))
        run.end_evaluation()
        run.step_reported(i)
    return outs, calls.ran


def test_skipped_steps_skip_the_whole_call_and_return_the_cached_output():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    assert run.whole_calls
    x = torch.randn(2, 4, 8)
    outs, ran = run_steps(model, run, x)
    assert [r.decision for r in run.stats.records] == ["computed", "reused", "computed", "reused", "computed"]
    assert ran == 3 and model.block_calls == 9           # a skipped step ran nothing of the model
    total = sum(WEIGHTS)
    assert torch.allclose(outs[1], x + SIGMAS[0] * total)     # step 0's output, as it was
    assert torch.allclose(outs[3], x + SIGMAS[2] * total)
    assert outs[1].data_ptr() != outs[0].data_ptr()          # a copy: the host may write into it
    assert [r.blocks_computed for r in run.stats.records] == [3, 0, 3, 0, 3]   # counted in blocks
    assert all(r.block_mask == "" for r in run.stats.records)
    assert run.stream_keys == {}                             # no block residual was recorded


def test_a_forecast_of_the_output_is_exact_on_a_linear_trajectory():
    # the toy's output is x + sigma * sum(w), linear in the step: order 1 forecasts it exactly
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, method="taylorseer", interval=2, cache_level="output", warmup_steps=1,
                   last_steps_computed=1)
    x = torch.randn(1, 4, 8)
    outs, ran = run_steps(model, run, x)
    assert ran == 3
    assert [r.decision for r in run.stats.records][3] == "forecast"
    assert torch.allclose(outs[3], x + SIGMAS[3] * sum(WEIGHTS), atol=1e-5)


def test_blocks_level_keeps_the_block_executor():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="blocks", warmup_steps=1, last_steps_computed=1)
    assert not run.whole_calls
    x = torch.randn(2, 4, 8)
    _, ran = run_steps(model, run, x)
    assert ran == 5 and model.block_calls == 9            # every call ran; skipped ones skipped the blocks
    assert run.stream_keys


def test_a_call_with_controlnet_residuals_caches_the_block_span_and_gets_them_fresh():
    control = torch.full((1, 4, 8), 0.5)
    model = ToyModel(WEIGHTS, control={1: control})
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 4, 8)
    outs, ran = run_steps(model, run, x, control_at=range(5))
    assert ran == 5                                       # block span: every call runs its embeddings
    assert [r.decision for r in run.stats.records][1] == "reused"
    # step 1 reuses the blocks' own residual and adds the fresh ControlNet residual
    assert torch.allclose(outs[1], x + SIGMAS[0] * sum(WEIGHTS) + control)


def test_switching_to_controlnet_mid_run_computes_until_the_block_span_is_cached():
    control = torch.full((1, 4, 8), 0.25)
    model = ToyModel(WEIGHTS, control={0: control})
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=0)
    x = torch.zeros(1, 4, 8)
    outs, _ = run_steps(model, run, x, control_at=(1, 2, 3, 4))
    records = run.stats.records
    # step 1 would reuse, but its call carries ControlNet residuals and only a whole output is cached
    assert records[1].decision == "computed"
    assert torch.allclose(outs[1], x + SIGMAS[1] * sum(WEIGHTS) + control)
    # the interval counts from what ran: the block span recorded at step 1 serves step 2
    assert [r.decision for r in records] == ["computed", "computed", "reused", "computed", "reused"]
    assert torch.allclose(outs[2], x + SIGMAS[1] * sum(WEIGHTS) + control)


def test_the_guard_measures_the_cached_output_of_whole_calls():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, method="guarded_forecast", cache_level="output", warmup_steps=1,
                   last_steps_computed=1)
    assert run.whole_calls
    x = torch.randn(1, 4, 8)
    run_steps(model, run, x)
    assert run.policy.history and run.policy.history[-1][1].shape == (1, 32)   # the outputs it saw


def test_methods_that_look_inside_the_call_never_skip_whole_calls():
    model = ToyModel(WEIGHTS)
    for method in ("first_block", "dbcache", "speca", "delta_dit", "easycache"):
        run = make_run(model, SIGMAS, method=method, cache_level="output")
        assert not run.whole_calls, method


def test_cache_level_is_checked_with_a_message_that_names_the_choices():
    with pytest.raises(ValueError, match="cache_level must be one of output, blocks"):
        CacheConfig.build(method="fixed_interval", cache_level="everything")
    levelled = [m for m, spec in METHODS.items() if any(k.name == "cache_level" for k in spec.knobs)]
    assert sorted(levelled) == sorted(["fixed_interval", "taylorseer", "hicache", "foca", "freqca",
                                       "guarded_forecast", "spectrum", "step_mask", "budget", "magcache"])
