"""Whole passes: a method that decides from the schedule alone, caching whole outputs, answers a
cached pass over the conditionings before the host prepares any model call. It keeps each
branch's noise prediction y = (x - output) / sigma and returns x - sigma * y (or its forecast)."""
import torch

from toy import ToyModel, make_run

SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
WEIGHTS = [1.0, 2.0, 3.0]


def denoised(x, sigma, y):
    return x - sigma * y


def run_passes(run, xs, ys, branches=("cond", "uncond"), allowed=True, sigma_of=None):
    """One pass per step over ``branches``. The 'model' of branch b at step i returns
    x - sigma * ys[b][i]; counts the model calls that ran."""
    outs, ran = [], 0
    for i, s in enumerate(SIGMAS[:-1]):
        x = xs[i]
        sigma = torch.full((x.shape[0],), s) if sigma_of is None else sigma_of(i, s, x)
        run.begin_evaluation(s, branches)
        assert run.use_pass_level(allowed) == (allowed and run.pass_level_possible)
        answer = run.answer_pass(x, sigma, branches) if run.pass_level else None
        if answer is None:
            answer = {}
            for b in branches:
                def forward(b=b):
                    nonlocal ran
                    ran += 1
                    return denoised(x, s, ys[b][i])
                answer[b] = run.model_call(x, (b,), forward, s, adds_between_blocks=False)
            if run.pass_level:
                run.record_pass(x, sigma, answer)
        outs.append(answer)
        run.end_evaluation()
        run.step_reported(i)
    return outs, ran


def trajectories(steps=5, shape=(2, 4, 8), linear=False):
    torch.manual_seed(0)
    xs = [torch.randn(shape) for _ in range(steps)]
    if linear:
        a, b = torch.randn(shape), torch.randn(shape)
        ys = {k: [a * (j + 1) + b * i * (j + 1) for i in range(steps)] for j, k in enumerate(("cond", "uncond"))}
    else:
        ys = {k: [torch.randn(shape) for _ in range(steps)] for k in ("cond", "uncond")}
    return xs, ys


def test_a_cached_pass_runs_no_model_call_and_returns_x_minus_sigma_times_the_cached_prediction():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    xs, ys = trajectories()
    outs, ran = run_passes(run, xs, ys)
    assert [r.decision for r in run.stats.records] == ["computed", "reused", "computed", "reused", "computed"]
    assert ran == 6                                   # 3 computed passes of 2 branches; cached passes none
    for step, source in ((1, 0), (3, 2)):             # the prediction of the last computed pass, at the new x
        for b in ("cond", "uncond"):
            assert torch.allclose(outs[step][b], denoised(xs[step], SIGMAS[step], ys[b][source]), atol=1e-5)
    # block statistics: a cached pass counts the blocks of the calls the last computed pass made
    assert [r.blocks_computed for r in run.stats.records] == [6, 0, 6, 0, 6]
    assert [r.blocks_total for r in run.stats.records] == [6] * 5
    assert run.stream_keys == {} and "O" not in run.store.slots()     # nothing recorded per model call


def test_a_forecast_of_the_prediction_is_exact_on_a_linear_trajectory():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, method="taylorseer", interval=2, cache_level="output", warmup_steps=1,
                   last_steps_computed=1)
    xs, ys = trajectories(linear=True)
    outs, ran = run_passes(run, xs, ys)
    assert [r.decision for r in run.stats.records] == ["computed", "forecast", "computed", "forecast", "computed"]
    for b in ("cond", "uncond"):                     # step 3 forecast from steps 0 and 2: exact
        assert torch.allclose(outs[3][b], denoised(xs[3], SIGMAS[3], ys[b][3]), atol=1e-4)


def test_the_guard_measures_the_lead_branch_prediction():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, method="guarded_forecast", cache_level="output", warmup_steps=1,
                   last_steps_computed=1)
    seen = []
    run.policy.observe_residuals = lambda ctx, keys, residuals, gain=1.0: seen.append(
        (ctx.step, keys, residuals["Y"] * gain))       # (the prediction handed over with its 1 / sigma)
    xs, ys = trajectories()
    run_passes(run, xs, ys)
    assert seen and all(keys == ("cond",) for _, keys, _ in seen)
    step, _, y = seen[0]
    assert torch.allclose(y, ys["cond"][step], atol=1e-5)


def test_a_run_decides_once_whether_it_caches_whole_passes():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output")
    assert run.use_pass_level(True) is True
    assert run.use_pass_level(False) is True          # fixed at the first pass: caches never mix
    run = make_run(model, SIGMAS, interval=2, cache_level="output")
    assert run.use_pass_level(False) is False and run.use_pass_level(True) is False


def test_the_host_refusing_whole_passes_keeps_whole_model_calls():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    xs, ys = trajectories()
    outs, ran = run_passes(run, xs, ys, allowed=False)
    assert ran == 6 and "Y" not in run.store.slots() and "O" in run.store.slots()
    assert torch.allclose(outs[1]["cond"], denoised(xs[0], SIGMAS[0], ys["cond"][0]))   # the output, as it was


def test_methods_that_look_inside_the_call_or_cache_blocks_never_cache_whole_passes():
    model = ToyModel(WEIGHTS)
    assert not make_run(model, SIGMAS, interval=2, cache_level="blocks").pass_level_possible
    assert not make_run(model, SIGMAS, method="first_block").pass_level_possible
    assert not make_run(model, SIGMAS, method="dbcache").pass_level_possible


def test_easycache_decides_on_the_pass_input_and_keeps_the_change_of_the_prediction():
    # EasyCache measures the model input and caches the output's change: D = y - x, y = x + D
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, method="easycache", threshold=100.0, warmup_steps=1, last_steps_computed=1)
    assert run.pass_level_possible
    probes = []
    decide = run.policy.decide
    run.policy.decide = lambda ctx, keys, probe, forced: probes.append((keys, probe)) or decide(ctx, keys, probe, forced)
    xs, ys = trajectories()
    outs, ran = run_passes(run, xs, ys)
    decisions = [r.decision for r in run.stats.records]
    assert decisions[0] == decisions[-1] == "computed" and "reused" in decisions
    assert all(keys == ("cond",) and torch.equal(probe, xs[i]) for i, (keys, probe) in enumerate(probes))
    last = 0
    for i, d in enumerate(decisions):
        if d == "computed":
            last = i
            continue
        for b in ("cond", "uncond"):
            change = ys[b][last] - xs[last]
            assert torch.allclose(outs[i][b], denoised(xs[i], SIGMAS[i], xs[i] + change), atol=1e-5)


def test_per_sample_noise_levels_scale_each_sample():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    xs, ys = trajectories()

    def sigma_of(i, s, x):
        return torch.tensor([s, s * 0.5])

    # the toy host's outputs use one sigma; what matters is the round trip x - sigma_i * y_i per sample
    outs, _ = run_passes(run, xs, ys, sigma_of=sigma_of)
    y0 = (xs[0] - denoised(xs[0], SIGMAS[0], ys["cond"][0])) / torch.tensor([1.0, 0.5]).view(2, 1, 1)
    expected = xs[1] - torch.tensor([0.8, 0.4]).view(2, 1, 1) * y0
    assert torch.allclose(outs[1]["cond"], expected, atol=1e-5)


def test_a_pass_without_a_usable_cache_computes_and_says_so():
    model = ToyModel(WEIGHTS)
    run = make_run(model, SIGMAS, interval=2, cache_level="output", warmup_steps=1, last_steps_computed=1)
    xs, ys = trajectories()
    xs[1] = torch.randn(4, 4, 8)          # another latent shape at step 1: the cached prediction does not fit
    for b in ys:
        ys[b][1] = torch.randn(4, 4, 8)
    outs, ran = run_passes(run, xs, ys)
    assert run.stats.records[1].decision == "computed"
    assert run.stats.records[1].reason == "nothing cached yet"
    assert torch.allclose(outs[1]["cond"], denoised(xs[1], SIGMAS[1], ys["cond"][1]))
