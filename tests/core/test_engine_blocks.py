import pytest
import torch

from cache_core.decisions import Decision
from toy import ToyModel, make_run, sample

SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]


def decisions(run):
    return [r.decision for r in run.stats.records]


def test_reused_step_adds_the_residual_cached_at_the_last_full_step():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(2, 4, 8)
    outs = sample(model, run, SIGMAS, x)
    assert decisions(run) == ["computed", "reused", "computed", "reused", "computed"]
    total = sum(model.weights)
    for i, s in enumerate(SIGMAS[:-1]):
        full_step = i if decisions(run)[i] == "computed" else i - 1
        expected = x + SIGMAS[full_step] * total
        assert torch.allclose(outs[i], expected, atol=1e-6), i
    # reused steps ran no block
    per_step = [r.blocks_computed for r in run.stats.records]
    assert per_step == [3, 0, 3, 0, 3]
    assert run.stats.compute_fraction() == pytest.approx(9 / 15)


def test_nothing_skipped_equals_uncached_exactly():
    model = ToyModel([0.3, -1.2, 2.5, 0.7])
    x = torch.randn(2, 5, 8)
    txt = torch.randn(2, 3, 8)
    uncached = sample(model, None, SIGMAS, x, txt=txt)
    run = make_run(model, SIGMAS, interval=1)
    cached = sample(model, run, SIGMAS, x, txt=txt)
    for a, b in zip(uncached, cached):
        assert torch.equal(a, b)
    assert set(decisions(run)) == {"computed"}


def test_residual_reuse_keeps_fresh_input():
    model = ToyModel([1.0, 1.0])
    run = make_run(model, SIGMAS, interval=5, warmup_steps=1, last_steps_computed=0)
    xs = [torch.full((1, 2, 4), float(i)) for i in range(5)]
    out = []
    for i, s in enumerate(SIGMAS[:-1]):
        run.begin_evaluation(s)
        out.append(run.model_call(xs[i], ("c",), lambda: model.forward(run, xs[i], s, ("c",)), s))
        run.end_evaluation()
        run.step_reported(i)
    # step 2 reuses step 0's residual (2 * 1.0) on its own input (2.0)
    assert torch.allclose(out[2], torch.full((1, 2, 4), 2.0 + 2 * 1.0))


def test_two_kind_layout_caches_each_run_of_blocks_separately():
    # two double blocks (img+txt), then two single blocks on img only
    model = ToyModel([1.0, 2.0, 4.0, 8.0], kinds=(("double_block", 2), ("single_block", 2)))
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x, txt = torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)
    outs = sample(model, run, SIGMAS, x, txt=txt)
    assert run.span_runs == {(0, 4): [(0, 1), (2, 3)]}
    assert run.stream_keys == {((0, 4), 0): ("img", "txt"), ((0, 4), 1): ("img",)}
    assert torch.allclose(outs[1], x + SIGMAS[0] * 15.0)


def test_host_additions_between_blocks_are_applied_fresh_not_baked():
    control = {0: torch.full((1, 2, 4), 10.0)}
    model = ToyModel([1.0, 1.0, 1.0], control=control)
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = sample(model, run, SIGMAS, x)
    # computed: 10 + 3*sigma; reused at step 1: fresh control 10 + cached block residual 3*SIGMAS[0]
    assert torch.allclose(outs[0], torch.full_like(x, 10 + 3 * SIGMAS[0]))
    assert torch.allclose(outs[1], torch.full_like(x, 10 + 3 * SIGMAS[0]))

    # control strength changes before a cached step: the new value applies, the old one is not baked in
    run2 = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    control[0] = torch.full((1, 2, 4), 10.0)
    run2.begin_evaluation(SIGMAS[0])
    run2.model_call(x, ("c",), lambda: model.forward(run2, x, SIGMAS[0], ("c",)), SIGMAS[0])
    run2.end_evaluation()
    run2.step_reported(0)
    control[0] = torch.full((1, 2, 4), 20.0)
    run2.begin_evaluation(SIGMAS[1])
    out = run2.model_call(x, ("c",), lambda: model.forward(run2, x, SIGMAS[1], ("c",)), SIGMAS[1])
    run2.end_evaluation()
    assert run2.stats.records[-1].decision == "reused"
    assert torch.allclose(out, torch.full_like(x, 20 + 3 * SIGMAS[0]))


def test_first_block_cache_always_computes_block_zero():
    model = ToyModel([1.0, 2.0, 3.0])
    run = make_run(model, SIGMAS, method="first_block", threshold=10.0, warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = sample(model, run, SIGMAS, x)
    assert decisions(run) == ["computed", "reused", "reused", "reused", "computed"]
    assert [r.blocks_computed for r in run.stats.records] == [3, 1, 1, 1, 3]
    # step 2: block 0 fresh (1 * 0.6) + cached residual of blocks 1..2 from step 0 (5 * 1.0)
    assert torch.allclose(outs[2], torch.full_like(x, 1 * SIGMAS[2] + 5 * SIGMAS[0]))


def test_branches_keep_their_own_residuals_across_batch_layouts():
    model = ToyModel([1.0])
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    cond, uncond = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)

    def forward_with_keyed_weight(x, s, keys):
        # each branch's block adds a different amount: cond +s, uncond +3s
        def call():
            args = {"img": x.clone()}
            scale = torch.tensor([1.0 if k == "c" else 3.0 for k in keys]).view(-1, 1, 1)
            return run.block(0, args, lambda a: {"img": a["img"] + scale * s})["img"]
        return call

    s0, s1 = SIGMAS[0], SIGMAS[1]
    run.begin_evaluation(s0)
    both = torch.cat([cond, uncond])
    run.model_call(both, ("c", "u"), forward_with_keyed_weight(both, s0, ("c", "u")), s0)
    run.end_evaluation()
    run.step_reported(0)
    # next step: split into two calls, uncond first: each gets its own cached residual
    run.begin_evaluation(s1)
    out_u = run.model_call(uncond, ("u",), forward_with_keyed_weight(uncond, s1, ("u",)), s1)
    out_c = run.model_call(cond, ("c",), forward_with_keyed_weight(cond, s1, ("c",)), s1)
    run.end_evaluation()
    assert run.stats.records[-1].decision == "reused"
    assert torch.allclose(out_u, uncond + 3 * s0)
    assert torch.allclose(out_c, cond + 1 * s0)


def test_missing_branch_cache_falls_back_to_compute():
    model = ToyModel([1.0])
    run = make_run(model, SIGMAS, interval=3, warmup_steps=1, last_steps_computed=0)
    x = torch.zeros(1, 2, 4)
    run.begin_evaluation(SIGMAS[0])
    run.model_call(x, ("a",), lambda: model.forward(run, x, SIGMAS[0], ("a",)), SIGMAS[0])
    run.end_evaluation()
    run.step_reported(0)
    run.begin_evaluation(SIGMAS[1])
    out = run.model_call(x, ("b",), lambda: model.forward(run, x, SIGMAS[1], ("b",)), SIGMAS[1])
    run.end_evaluation()
    assert run.stats.records[-1].decision == "computed"
    assert torch.allclose(out, x + SIGMAS[1])


def test_finish_frees_every_cached_tensor():
    model = ToyModel([1.0, 2.0])
    run = make_run(model, SIGMAS, interval=2)
    sample(model, run, SIGMAS, torch.zeros(1, 2, 4))
    assert run.predictor.nbytes() > 0
    stats = run.finish()
    assert run.predictor.nbytes() == 0
    assert stats.peak_cache_bytes > 0


def test_output_granularity_without_blocks_reuses_whole_call():
    from cache_core.config import CacheConfig
    from cache_core.engine import CacheRun
    from cache_core.policies import make_policy
    config = CacheConfig.build(method="fixed_interval", interval=2)
    run = CacheRun(config, make_policy(config), SIGMAS, layout=None)
    calls = []
    outs = []
    for i, s in enumerate(SIGMAS[:-1]):
        run.begin_evaluation(s)
        x = torch.full((1, 4), float(i))
        outs.append(run.model_call(x, ("c",), lambda: calls.append(s) or x * 10 + s, s))
        run.end_evaluation()
        run.step_reported(i)
    assert [r.decision for r in run.stats.records] == ["computed", "reused", "computed", "reused", "computed"]
    assert torch.equal(outs[1], outs[0])     # raw output reused
    assert len(calls) == 3


def test_max_consecutive_cached_forces_compute():
    model = ToyModel([1.0])
    sigmas = [1.0 - i / 10 for i in range(11)]
    run = make_run(model, sigmas, interval=100, warmup_steps=1, last_steps_computed=1, max_consecutive_cached=2)
    sample(model, run, sigmas, torch.zeros(1, 2, 2))
    d = decisions(run)
    assert d[:7] == ["computed", "reused", "reused", "computed", "reused", "reused", "computed"]
    assert all(r.reason == "max consecutive cached" for r in run.stats.records if r.step in (3, 6))


def test_window_by_sigma():
    model = ToyModel([1.0])
    sigmas = [1.0 - i / 10 for i in range(11)]
    from cache_core.config import CacheConfig, ScheduleConfig
    from cache_core.engine import CacheRun
    from cache_core.policies import make_policy
    config = CacheConfig.build(method="fixed_interval", interval=100, schedule=ScheduleConfig(warmup_steps=0, last_steps_computed=0))
    run = CacheRun(config, make_policy(config), sigmas, model.layout, window_sigmas=(0.75, 0.35))
    sample(model, run, sigmas, torch.zeros(1, 2, 2))
    reasons = {r.step: r.reason for r in run.stats.records}
    assert reasons[0] == "before start_percent" and reasons[1] == "before start_percent"
    assert reasons[7] == "after end_percent"
    assert decisions(run)[3] == "reused"


def test_dbcache_computes_front_and_back_blocks_and_caches_the_middle():
    model = ToyModel([1.0, 2.0, 4.0, 8.0, 16.0])
    run = make_run(model, SIGMAS, method="dbcache", threshold=10.0, front_blocks=1, back_blocks=2,
                   warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = sample(model, run, SIGMAS, x)
    assert decisions(run) == ["computed", "reused", "reused", "reused", "computed"]
    assert [r.block_mask for r in run.stats.records] == ["11111", "10011", "10011", "10011", "11111"]
    # step 2: front (1) and back (8 + 16) blocks fresh at 0.6, middle (2 + 4) cached from step 0 at 1.0
    assert torch.allclose(outs[2], torch.full_like(x, 25 * SIGMAS[2] + 6 * SIGMAS[0]))


def test_dbcache_front_residual_is_the_probe():
    model = ToyModel([1.0, 1.0, 1.0, 1.0])
    run = make_run(model, SIGMAS, method="dbcache", threshold=0.1, front_blocks=2, back_blocks=1,
                   warmup_steps=1, last_steps_computed=0)
    x = torch.zeros(1, 2, 4)
    sample(model, run, SIGMAS, x)
    # the front residual is 2 * sigma: its relative change vs the last full step is |s - s0| / s0
    rec = run.stats.records
    assert rec[1].metric == pytest.approx(abs(SIGMAS[1] - SIGMAS[0]) / SIGMAS[0])
    assert [r.decision for r in rec] == ["computed", "computed", "computed", "computed", "computed"]


def test_hybrid_skips_the_whole_rest_below_half_threshold():
    model = ToyModel([1.0, 2.0, 4.0, 8.0])
    sigmas = [1.0, 0.99, 0.9, 0.0]
    run = make_run(model, sigmas, method="dbcache_hybrid", threshold=0.2, front_blocks=1, back_blocks=1,
                   warmup_steps=1, last_steps_computed=0)
    x = torch.zeros(1, 2, 4)
    outs = sample(model, run, sigmas, x)
    masks = [r.block_mask for r in run.stats.records]
    assert masks == ["1111", "1000", "1001"]     # change 0.01 < 0.1: whole rest; 0.1 <= change < 0.2: middle
    assert torch.allclose(outs[1], torch.full_like(x, 1 * 0.99 + 14 * 1.0))
    assert torch.allclose(outs[2], torch.full_like(x, 9 * 0.9 + 6 * 1.0))


def test_delta_dit_caches_rear_blocks_early_and_front_blocks_late():
    model = ToyModel([1.0, 2.0, 4.0, 8.0])
    sigmas = [1.0 - i / 8 for i in range(9)]
    run = make_run(model, sigmas, method="delta_dit", interval=2, delta_cached_blocks=2, delta_boundary=0.5,
                   warmup_steps=1, last_steps_computed=1)
    x = torch.zeros(1, 2, 4)
    outs = sample(model, run, sigmas, x)
    masks = [r.block_mask for r in run.stats.records]
    assert masks == ["1111", "1100", "1111", "1100", "1111", "0011", "1111", "1111"]
    # step 5 (late): front blocks (1 + 2) cached from step 4, rear (4 + 8) fresh
    assert torch.allclose(outs[5], torch.full_like(x, 3 * sigmas[4] + 12 * sigmas[5]))


def test_forecasting_methods_record_forecast_decisions_and_extrapolate_the_residual():
    model = ToyModel([1.0, 2.0, 3.0])
    sigmas = [1.0 - i / 10 for i in range(11)]
    run = make_run(model, sigmas, method="taylorseer", interval=3, warmup_steps=1)
    outs = sample(model, run, sigmas, torch.zeros(1, 2, 2))
    assert [r.decision for r in run.stats.records][3:6] == ["computed", "forecast", "forecast"]
    # the residual is linear in the step: after two full steps the forecast is exact
    for i in (4, 5, 7, 8):
        assert torch.allclose(outs[i], torch.full((1, 2, 2), 6 * sigmas[i]), atol=1e-5)
    reuse = make_run(model, sigmas, method="fixed_interval", interval=3, warmup_steps=1)
    reused = sample(model, reuse, sigmas, torch.zeros(1, 2, 2))
    assert not torch.allclose(reused[4], outs[4])


def test_speculative_mode_rejects_a_draft_that_misses():
    model = ToyModel([1.0, 1.0, 1.0])
    sigmas = [1.0 - i / 10 for i in range(11)]
    run = make_run(model, sigmas, method="speca", threshold=0.05, warmup_steps=1, last_steps_computed=0)
    x = torch.zeros(1, 2, 2)
    for i, s in enumerate(sigmas[:-1]):
        if i == 6:
            model.weights[0] = 3.0          # the first block suddenly changes: its draft misses
        run.begin_evaluation(s)
        run.model_call(x, ("c",), lambda: model.forward(run, x, s, ("c",)), s)
        run.end_evaluation()
        run.step_reported(i)
    d = {r.step: r for r in run.stats.records}
    assert d[3].decision == "forecast" and d[6].decision == "computed" and d[6].reason == "draft rejected"


@pytest.mark.parametrize("inplace", [False, True])
def test_span_residual_is_its_output_minus_its_input(inplace):
    """Without host additions between blocks a span records one residual, its output minus its
    input. Blocks that write into their input (ComfyUI's Flux) are noticed on the run's first
    computed step, and their input is copied from then on; others are read by reference."""
    model = ToyModel([1.0, 2.0, 3.0], kinds=(("double_block", 2), ("single_block", 1)), inplace=inplace)
    run = make_run(model, SIGMAS, interval=2, warmup_steps=1, last_steps_computed=1)
    x = torch.randn(2, 4, 8)
    outs = sample(model, run, SIGMAS, x)
    assert decisions(run) == ["computed", "reused", "computed", "reused", "computed"]
    total = sum(model.weights)
    for i, out in enumerate(outs):
        full_step = i if decisions(run)[i] == "computed" else i - 1
        assert torch.allclose(out, x + SIGMAS[full_step] * total, atol=1e-5), i
    # learned per block and stream, for the first block of each run of the span (0 and 2 here)
    assert run.inputs_survive and all(v is (not inplace) for v in run.inputs_survive.values())
    assert {g for g, _ in run.inputs_survive} == {0, 2}
