"""SpeCa's first draft after a computed step is not verified while the last verification passed:
where the host allows whole passes it is answered whole, before any model call, from the forecast
of the prediction y = (x - out) / sigma of the computed passes. Every other draft runs the real
first block and is verified on it."""
import torch

from toy import ToyModel, make_run

SIGMAS = [1.0 - i / 12 for i in range(13)]     # 12 steps


def drive(model, run, xs, allowed=True, change_at=None):
    """One pass per step over one branch; returns the outputs and the block calls of each step."""
    outs, calls = [], []
    for i, s in enumerate(SIGMAS[:-1]):
        if change_at is not None and i == change_at:
            model.weights[0] = 4.0              # the first block changes: the next verified draft misses
        x, sigma = xs[i], torch.full((xs[i].shape[0],), s)
        before = model.block_calls
        run.begin_evaluation(s, ("c",))
        answer = run.answer_pass(x, sigma, ("c",)) if run.use_pass_level(allowed) else None
        if answer is None:
            out = run.model_call(x, ("c",), lambda: model.forward(run, x, s, ("c",)), s,
                                 adds_between_blocks=False)
            if run.pass_level:
                run.record_pass(x, sigma, {"c": out})
            answer = {"c": out}
        run.end_evaluation()
        run.step_reported(i)
        outs.append(answer["c"])
        calls.append(model.block_calls - before)
    return outs, calls


def inputs():
    torch.manual_seed(0)
    return [torch.randn(2, 4, 8) for _ in SIGMAS[:-1]]


def test_the_first_draft_after_a_computed_step_runs_no_block_and_later_drafts_run_the_first():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, method="speca", threshold=10.0, warmup_steps=1, last_steps_computed=1,
                   max_consecutive_cached=2)
    assert run.pass_level_possible
    decided = []
    original = run.policy.decide
    run.policy.decide = lambda ctx, *a: decided.append(ctx.step) or original(ctx, *a)
    xs = inputs()
    outs, calls = drive(model, run, xs)
    records = run.stats.records
    assert "".join(r.decision[0] for r in records) == "cffcffcffcfc"
    # step 1 is verified (no verification has passed yet); after that the first draft of each
    # stretch runs nothing, the second runs block 0 and is verified
    assert calls == [3, 1, 1, 3, 0, 1, 3, 0, 1, 3, 0, 3]
    unverified = (4, 7, 10)
    assert not set(unverified) & set(decided) and {1, 2, 5, 8} <= set(decided)   # no probe, no decision
    for i in unverified:
        r = records[i]
        assert r.block_mask == "" and r.blocks_computed == 0 and r.blocks_total == 3 and r.metric is None
        # y = (x - out) / sigma is -sum(w) on every computed step, so its forecast answers exactly
        assert torch.allclose(outs[i], xs[i] + SIGMAS[i] * 6.0, atol=1e-5)
    assert records[5].block_mask == "100" and records[5].metric is not None
    assert run.finish().extra["whole_passes"] is True


def test_only_fully_computed_passes_feed_the_prediction_forecast():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, method="speca", threshold=10.0, warmup_steps=1, last_steps_computed=1,
                   max_consecutive_cached=2)
    recorded = []
    original = run.predictor.record
    run.predictor.record = lambda slot, keys, value, ctx, **k: (recorded.append(ctx.step) if slot == "Y" else None,
                                                                original(slot, keys, value, ctx, **k))[1]
    drive(model, run, inputs())
    computed = [r.step for r in run.stats.records if r.decision == "computed"]
    assert recorded == computed == [0, 3, 6, 9, 11]


def test_after_a_rejection_the_first_draft_is_verified_until_one_passes():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, method="speca", threshold=0.05, warmup_steps=1, last_steps_computed=1,
                   max_consecutive_cached=2)
    outs, calls = drive(model, run, inputs(), change_at=5)
    d = {r.step: r for r in run.stats.records}
    assert d[1].reason == "draft rejected"          # constant forecast from one full step: 9 % off
    # 5: trusted, answered whole (it cannot see that block 0 changed); 6: the verified draft misses;
    # 7: the first draft after that computed step is verified, and misses (the history jumped);
    # 8: verified, passes
    assert calls == [3, 3, 1, 1, 3, 0, 3, 3, 1, 1, 3, 3]
    assert d[5].decision == "forecast" and d[5].metric is None
    assert all(d[i].reason == "draft rejected" and d[i].metric is not None for i in (6, 7))
    assert d[8].decision == "forecast" and d[8].metric is not None


def test_without_whole_passes_every_draft_is_verified():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, method="speca", threshold=10.0, warmup_steps=1, last_steps_computed=1,
                   max_consecutive_cached=2)
    xs = inputs()
    outs, calls = drive(model, run, xs, allowed=False)     # a ControlNet, context windows, CFG-Cache
    assert run.pass_level is False
    assert "".join(r.decision[0] for r in run.stats.records) == "cffcffcffcfc"
    assert calls == [3, 1, 1, 3, 1, 1, 3, 1, 1, 3, 1, 3]
    assert "Y" not in run.store.slots()
    # block 0 fresh, blocks 1-2 their residual of step 0 (one full step: the forecast is that residual)
    assert torch.allclose(outs[1], xs[1] + 1.0 * SIGMAS[1] + 5.0 * SIGMAS[0], atol=1e-5)


def test_a_rejected_draft_keeps_the_trust_when_its_error_one_step_out_would_pass():
    """The error of a forecast grows at least with the square of its distance from the computed step:
    a draft two steps out that misses by less than 4x the threshold would pass one step out."""
    from cache_core.decisions import StepContext
    from cache_core.policies.speculative import SpeculativePolicy

    def ctx(step):
        return StepContext(1, step, 10, 0, 1.0 - step / 10, step / 10, ("c",))

    def after_a_miss_by(scale):
        policy = SpeculativePolicy(threshold=0.1, order=1)
        one = torch.ones(1, 4, 8)
        assert policy.decide(ctx(0), ("c",), one, "warm-up").decision.value == "computed"
        assert policy.draft_without_probe(ctx(1)) is None            # nothing verified yet
        assert policy.decide(ctx(1), ("c",), one, None).decision.value == "reused"     # exact draft
        assert policy.draft_without_probe(ctx(2)) is None            # the first draft was this one
        missed = policy.decide(ctx(2), ("c",), one * scale, None)     # two steps out: real - draft = scale - 1
        assert missed.decision.value == "computed" and missed.reason == "draft rejected"
        assert abs(missed.metric - (scale - 1) / scale) < 1e-6
        return policy.draft_without_probe(ctx(3))

    kept = after_a_miss_by(1.3)              # 0.23 at distance 2: 0.058 one step out
    assert kept is not None and kept.decision.value == "reused" and kept.metric is None
    assert after_a_miss_by(2.0) is None      # 0.5 at distance 2: 0.125 one step out
