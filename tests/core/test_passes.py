"""Several model passes in one sampler evaluation; churned sigmas; the deep feature's copies.

A sampler evaluation (``begin_sampler_evaluation``) may hold several passes
(``begin_evaluation(..., variant=...)``): a guidance pass with other patches, a pass on
another input (SAG), one pass per context window. Each keeps its own cached state.
"""
import pytest
import torch

from cache_core.engine import PassKey
from cache_core.schedule import StepLocator
from toy import ToyModel, make_run

SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]


def _step(run, i, s, passes):
    """One sampler evaluation at ``s`` with ``passes``: [(variant, model, x, keys)]; returns the outputs."""
    run.begin_sampler_evaluation(s)
    outs = []
    for variant, model, x, keys in passes:
        run.begin_evaluation(s, ("cond",), variant)
        outs.append(run.model_call(x, keys, lambda: model.forward(run, x, s, keys), s))
        run.end_evaluation()
    run.end_sampler_evaluation()
    run.step_reported(i)
    return outs


def test_a_guidance_pass_keeps_its_own_residual():
    main, skipped = ToyModel([1.0, 2.0]), ToyModel([1.0, 20.0])      # the guidance pass changes a block
    run = make_run(main, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = [_step(run, i, s, [("main", main, x, ("c",)), ("slg", skipped, x, ("c",))])
            for i, s in enumerate(SIGMAS[:-1])]
    assert [r.decision for r in run.stats.records] == ["computed", "reused", "computed", "reused", "computed"]
    assert [r.step for r in run.stats.records] == [0, 1, 2, 3, 4]        # one record per step
    # step 1 reuses step 0's residual, each pass its own
    assert torch.allclose(outs[1][0], x + SIGMAS[0] * 3.0)
    assert torch.allclose(outs[1][1], x + SIGMAS[0] * 21.0)
    assert run.store.branches() == {"c", PassKey(("slg", 0), "c")}


def test_a_repeated_variant_is_another_pass():
    # SAG: the same options again, on another input, within one evaluation
    model = ToyModel([1.0])
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x, degraded = torch.zeros(1, 2, 4), torch.full((1, 2, 4), 5.0)
    outs = [_step(run, i, s, [("v", model, x, ("u",)), ("v", model, degraded, ("u",))])
            for i, s in enumerate(SIGMAS[:-1])]
    assert run.stats.records[1].decision == "reused"
    assert torch.allclose(outs[1][0], x + SIGMAS[0]) and torch.allclose(outs[1][1], degraded + SIGMAS[0])
    assert len(run.store.branches()) == 2


def test_a_pass_with_nothing_cached_computes_and_says_so():
    main, guided = ToyModel([1.0]), ToyModel([3.0])
    run = make_run(main, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    _step(run, 0, SIGMAS[0], [("main", main, x, ("c",))])
    out_main, out_guided = _step(run, 1, SIGMAS[1], [("main", main, x, ("c",)), ("late", guided, x, ("c",))])
    record = run.stats.records[-1]
    assert (record.decision, record.reason) == ("computed", "nothing cached for a pass")
    assert torch.allclose(out_main, x + SIGMAS[0]) and torch.allclose(out_guided, x + 3 * SIGMAS[1])


def test_passes_without_a_sampler_evaluation_keep_their_state_apart():
    # a host without the sampler-level event: each pass is its own evaluation (an extra stage
    # when at the same sigma), and still never overwrites the main pass's residual
    main, skipped = ToyModel([1.0]), ToyModel([10.0])
    run = make_run(main, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = []
    for i, s in enumerate(SIGMAS[:-1]):
        for variant, model in (("main", main), ("slg", skipped)):
            run.begin_evaluation(s, ("cond",), variant)
            outs.append(run.model_call(x, ("c",), lambda: model.forward(run, x, s, ("c",)), s))
            run.end_evaluation()
        run.step_reported(i)
    assert [(r.step, r.stage) for r in run.stats.records][:4] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert torch.allclose(outs[2], x + SIGMAS[0])          # step 1, main pass: step 0's main residual


@pytest.mark.parametrize("gamma", [0.05, 0.2, 2 ** 0.5 - 1])
def test_churned_sigmas_are_located_on_their_steps(gamma):
    sigmas = [14.6, 7.0, 3.5, 1.6, 0.7, 0.3, 0.0]
    loc = StepLocator(sigmas, expect_reports=True)
    got = []
    for i, s in enumerate(sigmas[:-1]):
        got.append(loc.locate(s * (1 + gamma)))
        loc.step_reported(i)
    assert [(g.step, g.stage) for g in got] == [(i, 0) for i in range(6)]
    assert loc.churn == pytest.approx(gamma)


def test_churned_heun_and_steps_outside_the_churn_range():
    sigmas = [8.0, 4.0, 2.0, 1.0, 0.0]
    loc = StepLocator(sigmas, expect_reports=True, corrector_at_next_sigma=True)
    seq = []
    for i, s in enumerate(sigmas[:-1]):
        churned = s * 1.1 if s > 1.5 else s         # s_tmin: the last step keeps its sigma
        seq.append(loc.locate(churned))
        loc.step_reported(i)
        if sigmas[i + 1] > 0:
            seq.append(loc.locate(sigmas[i + 1]))   # the corrector, at the next schedule sigma
    assert [(g.step, g.stage) for g in seq] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]


def test_midpoints_are_not_taken_for_churn():
    loc = StepLocator([1.0, 0.75, 0.5, 0.25, 0.0], expect_reports=True)
    a = loc.locate(1.0)
    loc.step_reported(0)
    b = loc.locate(0.9)                 # a midpoint of step 0 (below sigma[0]): an extra stage
    c = loc.locate(0.75)
    assert [(g.step, g.stage) for g in (a, b, c)] == [(0, 0), (0, 1), (1, 0)] and loc.churn is None


def test_deep_feature_only_computed_and_handed_out_as_a_copy():
    from cache_core.config import CacheConfig
    from cache_core.engine import CacheRun
    from cache_core.policies import make_policy

    config = CacheConfig.build(method="deepcache", interval=3, predictor="taylor")
    run = CacheRun(config, make_policy(config), SIGMAS)
    given = []

    def full(i):
        def run_model():
            feature = torch.full((1, 2), float(i + 1))
            run.record_deep_feature(feature)
            feature.mul_(100.0)            # a later patch edits the host's feature in place
            return feature
        return run_model

    def shallow(feature):
        run.record_deep_feature(feature)   # the capture patch sees the cached feature again
        given.append(feature.clone())
        feature.mul_(100.0)                # FreeU-style in-place edit of what it was handed
        return feature

    history = []
    for i, s in enumerate(SIGMAS[:-1]):
        run.begin_sampler_evaluation(s)
        run.begin_evaluation(s, ("cond",))
        run.model_call(torch.zeros(1, 2), ("c",), full(i), s, shallow)
        run.end_evaluation()
        run.end_sampler_evaluation()
        run.step_reported(i)
        history.append([(x, float(v.flatten()[0])) for x, v, *_ in run.predictor.history[("deep", "c")]])
    assert [r.decision for r in run.stats.records] == ["computed", "forecast", "forecast", "computed", "computed"]
    # the stored feature is the computed one (1.0), not what a patch made of it later
    assert torch.equal(given[0], torch.ones(1, 2)) and torch.equal(given[1], torch.ones(1, 2))
    # the history holds computed features only: the forecasts at steps 1 and 2 never enter it
    assert history[:3] == [[(0.0, 1.0)]] * 3
    assert history[3] == [(0.0, 1.0), (3.0, 4.0)]
