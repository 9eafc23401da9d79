"""The cache's own tensor work on a decision: measurements read their tensors in one pass, probes
and residuals are kept without copies, batched branches are forecast without concatenating."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cache_core.branch_store import BranchStore, batch_view
from cache_core.decisions import StepContext
from cache_core.engine import _owned
from cache_core.forecast import band_split
from cache_core.metrics import l1_norm, mean_abs, mean_abs_diff, rel_l1, rel_l1_per_sample
from cache_core.policies.first_block import FrontResidualPolicy
from cache_core.predictors import ForecastPredictor

from toy import ToyModel, make_run, sample


class _Ops(TorchDispatchMode):
    """The ops whose output has at least ``numel`` elements, by name."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.names = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and isinstance(out, torch.Tensor) and out.numel() >= self.numel:
            self.names.append(func.__name__)
        return out


def _strided(*shape, dtype=torch.float32):
    """A tensor laid out like a transposed block stream (not contiguous)."""
    return torch.randn(shape[0], shape[2], shape[1], dtype=dtype).transpose(1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_relative_change_reads_its_tensors_with_one_full_size_op(dtype):
    a = _strided(4, 16, 8, dtype=dtype)
    b = (a.float() * 1.1 + 0.01).to(dtype)
    assert not a.is_contiguous()
    with _Ops(a.numel()) as ops:
        per_sample = rel_l1_per_sample(a, b)
        whole = rel_l1(a, b)
        diff = mean_abs_diff(a, b)
    assert ops.names == ["sub.Tensor"] * 3      # the differences; no casts, copies or abs tensors
    a64, b64 = a.double().flatten(1), b.double().flatten(1)
    expected = (a64 - b64).abs().mean(1) / b64.abs().mean(1)
    assert per_sample.dtype == torch.float32
    assert torch.allclose(per_sample.double(), expected, rtol=1e-3)
    assert whole == pytest.approx(float((a64 - b64).abs().mean() / b64.abs().mean()), rel=1e-3)
    assert diff == pytest.approx(float((a64 - b64).abs().mean()), rel=1e-3)


def test_a_batch_view_joins_the_chunks_of_a_strided_batch():
    batch = _strided(4, 6, 3)
    chunks = batch.chunk(2)
    joined = batch_view(list(chunks))
    assert joined is not None and torch.equal(joined, batch)
    assert joined.data_ptr() == batch.data_ptr()               # a view, no copy
    assert batch_view([chunks[1], chunks[0]]) is None           # not in the order they were stored
    assert batch_view([chunks[0], chunks[0].clone()]) is None   # not from one batch
    store = BranchStore()
    store.put("S", ("c", "u"), batch)
    with _Ops(batch.numel()) as ops:
        got = store.get("S", ("c", "u"))
    assert ops.names == [] and torch.equal(got, batch)


@pytest.mark.parametrize("kind", ["taylor", "hermite", "freq"])
def test_batched_branches_are_forecast_at_once(kind):
    keys = ("c", "u")
    joint = ForecastPredictor(BranchStore(), kind, order=2)
    alone = {k: ForecastPredictor(BranchStore(), kind, order=2) for k in keys}
    for step in range(3):
        value = _strided(4, 8, 8)            # 4 token-stream samples: 2 per branch
        c = StepContext(1, step, 10, 0, 1.0 - step / 10, step / 10, keys)
        joint.record("S", keys, value, c)
        for k, part in zip(keys, value.chunk(2)):
            alone[k].record("S", (k,), part.contiguous(), c)
    c = StepContext(1, 4, 10, 0, 0.6, 0.4, keys)
    with _Ops(8 * 8) as ops:
        got = joint.predict("S", keys, c)
    assert "cat.default" not in ops.names
    expected = torch.cat([alone[k].predict("S", (k,), c) for k in keys])
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_frequency_split_of_a_batch_is_that_of_each_sample():
    batch = torch.randn(4, 3, 8, 8)
    low, high = band_split(batch)
    for i in range(4):
        lo, hi = band_split(batch[i:i + 1])
        assert torch.allclose(low[i:i + 1], lo, atol=1e-5) and torch.allclose(high[i:i + 1], hi, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 16, 8)])
def test_the_frequency_split_makes_no_full_size_mask(shape):
    t = torch.randn(*shape)
    with _Ops(t.numel() // 2) as ops:             # the benchmark's full-tensor pass: half a latent
        low, high = band_split(t)
    # the half spectrum of the real tensor, its kept part, the low band and the high band; no
    # complex copy of the tensor, and the mask is as small as its dims
    assert ops.names == ["_fft_r2c.default", "mul.Tensor", "_fft_c2r.default", "sub.Tensor"], ops.names
    dims = (-2, -1) if t.ndim >= 4 else (1,)
    spectrum = torch.fft.fftn(t, dim=dims)       # the whole spectrum, masked one dim at a time
    for d in dims:
        kept = torch.fft.fftfreq(t.shape[d]).abs() <= 0.05 + 1e-9
        spectrum = (spectrum.movedim(d, -1) * kept).movedim(-1, d)
    expected = torch.fft.ifftn(spectrum, dim=dims).real
    assert torch.allclose(low, expected, atol=1e-6) and torch.allclose(high, t - expected, atol=1e-6)


def test_front_residual_decisions_keep_the_probe_without_a_copy():
    policy = FrontResidualPolicy(threshold=0.5)
    policy.begin_run([1.0, 0.5, 0.0])
    c = StepContext(1, 0, 2, 0, 1.0, 0.0, ("c",))
    first = torch.randn(2, 16, 8)
    with _Ops(first.numel()) as ops:
        policy.decide(c, ("c",), first, None)
        policy.decide(c, ("c",), first * 1.01, None)
    assert ops.names == ["mul.Tensor", "sub.Tensor"]     # the test's own product, and the measurement
    assert policy.reference["c"].data_ptr() == first.data_ptr()


def test_a_probe_that_is_a_host_argument_is_copied():
    img = torch.randn(2, 4, 3)
    args = {"img": img, "vec": torch.randn(2, 3), "pe": (torch.randn(2), img)}
    assert _owned(img, args) is not img and torch.equal(_owned(img, args), img)
    view = img[:1]
    assert _owned(view, args).data_ptr() != img.data_ptr()      # a view of a host tensor too
    computed = img * 2
    assert _owned(computed, args) is computed                    # computed from them: already the cache's


@pytest.mark.parametrize("inplace", [False, True])
def test_the_front_input_is_read_by_reference_once_the_front_block_leaves_it_alone(inplace):
    sigmas = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.0]

    def run_with(model):
        run = make_run(model, sigmas, method="first_block", threshold=0.2, warmup_steps=1, last_steps_computed=1)
        outs = sample(model, run, sigmas, torch.ones(1, 2, 3))
        return run, outs, [r.decision for r in run.stats.records]

    run, outs, decided = run_with(ToyModel([1.0, 2.0, 3.0], inplace=inplace))
    reference_run, reference_outs, reference = run_with(ToyModel([1.0, 2.0, 3.0]))
    # a front block that writes into its input is noticed, and its probe stays right
    assert run.front_input_survives is (not inplace)
    assert decided == reference and "reused" in decided
    for a, b in zip(outs, reference_outs):
        assert torch.allclose(a, b)


# ---- whole passes: y = (x - out) / sigma recorded as one op, 1 / sigma folded into the predictor ----

def _ctx(step, sigma, total=8):
    return StepContext(0, step, total, 0, sigma, step / (total - 1), ("c", "u"))


@pytest.mark.parametrize("kind,order", [("reuse", 1), ("taylor", 2), ("hermite", 2), ("foca", 1), ("freq", 2),
                                        ("spectrum", 1)])
def test_a_recorded_gain_gives_the_forecast_of_the_scaled_values(kind, order):
    from cache_core.predictors import make_predictor
    torch.manual_seed(0)
    plain, folded = (make_predictor(kind, BranchStore(), order) for _ in range(2))
    keys = ("c", "u")
    for step, gain in enumerate((1.0, 1.6, 2.5, 4.0)):
        value = torch.randn(2, 3, 8, 8)
        plain.record("Y", keys, value * gain, _ctx(step, 1 / gain))
        folded.record("Y", keys, value, _ctx(step, 1 / gain), gain=gain)
    for step in (4, 5):      # the batch at once (joined) and each branch
        for ks in (keys, ("c",), ("u",)):
            expected = plain.predict("Y", ks, _ctx(step, 0.2))
            assert torch.allclose(folded.predict("Y", ks, _ctx(step, 0.2)), expected, rtol=1e-4, atol=1e-5)
            tensor, gain = folded.predict_scaled("Y", ks, _ctx(step, 0.2))
            assert torch.allclose(tensor * gain, expected, rtol=1e-4, atol=1e-5)
    _, gain = folded.predict_scaled("Y", keys, _ctx(4, 0.2))
    assert gain == (4.0 if kind == "reuse" else 1.0)      # reuse hands its gain to the caller's op


def _whole_pass_run(method, **kw):
    model = ToyModel([1.0, 2.0])
    return make_run(model, [1.0, 0.8, 0.6, 0.4, 0.2, 0.0], method=method, cache_level="output",
                    warmup_steps=1, last_steps_computed=1, **kw)


def _drive_whole_passes(run, sigmas, xs, ys):
    """Sample ``sigmas`` with whole passes of two branches whose model gives y = ys[branch][step]:
    (the full-size ops of each computed pass's record, [(step, last computed step, answer)])."""
    branches = tuple(ys)
    recorded, answers, last = [], [], None
    for i, s in enumerate(sigmas):
        x, sigma = xs[i], torch.full((2,), s)
        run.begin_evaluation(s, branches)
        assert run.use_pass_level(True)
        answer = run.answer_pass(x, sigma, branches)
        if answer is None:
            outs = {b: run.model_call(x, (b,), lambda b=b: x - s * ys[b][i], s, adds_between_blocks=False)
                    for b in branches}
            with _Ops(x.numel()) as ops:
                run.record_pass(x, sigma, outs)
            recorded.append(ops.names)
            last = i
        else:
            answers.append((i, last, answer))
        run.end_evaluation()
        run.step_reported(i)
    return recorded, answers


@pytest.mark.parametrize("method,kw", [("fixed_interval", dict(interval=2)), ("taylorseer", dict(interval=2))])
def test_a_computed_whole_pass_records_one_full_size_op_per_branch_and_a_cached_one_gives_the_same_output(method, kw):
    torch.manual_seed(0)
    run = _whole_pass_run(method, **kw)
    branches = ("cond", "uncond")
    ys = {b: [torch.randn(2, 4, 8) for _ in range(5)] for b in branches}
    xs = [torch.randn(2, 4, 8) for _ in range(5)]
    recorded, answers = _drive_whole_passes(run, [1.0, 0.8, 0.6, 0.4, 0.2], xs, ys)
    assert recorded and all(names == ["sub.Tensor"] * 2 for names in recorded)   # x - out, per branch
    assert answers
    for i, _, answer in answers:       # y kept as (x - out) with 1 / sigma: the same prediction as before
        s, prev = [1.0, 0.8, 0.6, 0.4, 0.2][i], i - 1
        for b in branches:
            if method == "fixed_interval":
                assert torch.allclose(answer[b], xs[i] - s * ys[b][prev], atol=1e-5)
            else:
                assert torch.isfinite(answer[b]).all()


def test_a_pass_with_a_noise_level_per_sample_divides_as_before():
    run = _whole_pass_run("fixed_interval", interval=2)
    torch.manual_seed(1)
    x, y = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    sigma = torch.tensor([1.0, 0.5])
    run.begin_evaluation(1.0, ("cond",))
    run.use_pass_level(True)
    assert run.answer_pass(x, sigma, ("cond",)) is None
    out = {"cond": run.model_call(x, ("cond",), lambda: x - sigma.view(2, 1, 1) * y, 1.0, adds_between_blocks=False)}
    with _Ops(x.numel()) as ops:
        run.record_pass(x, sigma, out)
    assert ops.names == ["sub.Tensor", "div.Tensor"]
    run.end_evaluation()
    run.step_reported(0)
    x2 = torch.randn(2, 4, 8)
    run.begin_evaluation(0.8, ("cond",))
    out = run.answer_pass(x2, torch.tensor([0.8, 0.4]), ("cond",))
    assert out is not None
    assert torch.allclose(out["cond"], x2 - torch.tensor([0.8, 0.4]).view(2, 1, 1) * y, atol=1e-5)


@pytest.mark.parametrize("kind,order,ops_per_branch", [("reuse", 1, 1), ("taylor", 1, 2), ("taylor", 2, 3),
                                                       ("hermite", 2, 3), ("freq", 2, 4), ("foca", 1, None),
                                                       ("spectrum", 1, 6)])
def test_a_forecast_onto_the_pass_input_folds_the_callers_op_into_its_sum(kind, order, ops_per_branch):
    """``predict_onto(base, alpha)`` is ``base + alpha * predict``; a forecast from fp32 values starts
    its sum from ``base``: one op per term, none for the caller (reuse: the caller's op alone)."""
    from cache_core.predictors import make_predictor
    torch.manual_seed(0)
    pred = make_predictor(kind, BranchStore(), order)
    for step, gain in enumerate((1.0, 1.6, 2.5, 4.0)):
        pred.record("Y", ("c", "u"), torch.randn(2, 3, 8, 8), _ctx(step, 1 / gain), gain=gain)
    base = torch.randn(1, 3, 8, 8)
    for step in (4, 5):
        expected = base - 0.3 * pred.predict("Y", ("c",), _ctx(step, 0.2))
        with _Ops(base.numel()) as ops:
            got = pred.predict_onto("Y", ("c",), _ctx(step, 0.2), base, -0.3)
        assert got is not base and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
        if ops_per_branch is not None:
            assert len(ops.names) == ops_per_branch, ops.names
    assert torch.equal(base, base.clone())       # the caller's tensor is left alone


def test_a_cached_whole_pass_of_a_forecast_is_its_terms_alone():
    """TaylorSeer (order 1) answers a cached pass with x - sigma * forecast in two ops per branch:
    no separate forecast tensor, no multiply by sigma; the answer is the same."""
    torch.manual_seed(0)
    sigmas = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    run = make_run(ToyModel([1.0, 2.0]), sigmas + [0.0], method="taylorseer", cache_level="output",
                   warmup_steps=1, last_steps_computed=1, interval=2)
    branches = ("cond", "uncond")
    ys = {b: [torch.randn(2, 4, 8) for _ in sigmas] for b in branches}
    xs = [torch.randn(2, 4, 8) for _ in sigmas]
    done, folded = [], 0
    for i, s in enumerate(sigmas):
        x, sigma = xs[i], torch.full((2,), s)
        run.begin_evaluation(s, branches)
        run.use_pass_level(True)
        with _Ops(x.numel()) as ops:
            answer = run.answer_pass(x, sigma, branches)
        if answer is None:
            outs = {b: run.model_call(x, (b,), lambda b=b: x - s * ys[b][i], s, adds_between_blocks=False)
                    for b in branches}
            run.record_pass(x, sigma, outs)
            done.append(i)
        elif len(done) >= 2:
            folded += 1
            assert ops.names == ["add.Tensor", "add_.Tensor"] * 2, ops.names
            j0, j1 = done[-2:]
            for b in branches:
                forecast = ys[b][j1] + (i - j1) / (j1 - j0) * (ys[b][j1] - ys[b][j0])
                assert torch.allclose(answer[b], x - s * forecast, atol=1e-4)
        else:                          # one computed value: it is reused, in the one op of the answer
            assert ops.names == ["add.Tensor"] * 2, ops.names
            for b in branches:
                assert torch.allclose(answer[b], x - s * ys[b][done[-1]], atol=1e-5)
        run.end_evaluation()
        run.step_reported(i)
    assert folded


def test_a_skipped_span_adds_its_forecast_residual_inside_the_forecasts_sum():
    """Block-level TaylorSeer: a forecast call's skipped span ends with its stream plus the
    forecast residual made as the forecast's own sum (one op per recorded value it weighs, none
    for the add); the toy's residual is linear in the step, so the forecast is exact."""
    sigmas = [1.0 - i / 10 for i in range(10)] + [0.0]
    model = ToyModel([1.0, 2.0])
    run = make_run(model, sigmas, method="taylorseer", interval=3, warmup_steps=1, last_steps_computed=1)
    x = torch.randn(1, 64, 8)
    folded = 0
    for i, s in enumerate(sigmas[:-1]):
        run.begin_evaluation(s, ("cond",))
        before = model.block_calls
        with _Ops(x.numel()) as ops:
            out = run.model_call(x, ("cond",), lambda: model.forward(run, x, s, ("cond",)), s,
                                 adds_between_blocks=False)
        run.end_evaluation()
        run.step_reported(i)
        computed = [r for r in run.stats.records if r.decision == "computed"]
        if model.block_calls == before and len(computed) >= 2:
            folded += 1
            assert [n for n in ops.names if n != "clone.default"] == ["add.Tensor", "add_.Tensor"], ops.names
        if model.block_calls > before or len(computed) >= 2:
            assert torch.allclose(out, x + s * 3.0, atol=1e-5)
    assert folded


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_speca_verifies_a_draft_inside_the_forecasts_sum(dtype):
    """SpeCa's error of a draft is mean|real - draft| / mean|real| per sample, and the difference is
    the forecast's sum started from the real residual: one op per forecast term, no separate draft
    tensor and no subtraction (from fp32 values; from bf16 ones the draft is made, then added with -1)."""
    from cache_core.policies.base import COMPUTE, REUSE
    from cache_core.policies.speculative import SpeculativePolicy
    torch.manual_seed(0)
    policy = SpeculativePolicy(threshold=10.0, order=1)
    keys = ("c", "u")
    history = [torch.randn(4, 16, 8) for _ in range(2)]
    for step, value in enumerate(history):
        verdict = policy.decide(_ctx(step, 1.0 - step / 10), keys, value.to(dtype), forced="warm-up")
        assert verdict.decision == COMPUTE
    real = (2 * history[1] - history[0] + 0.1 * torch.randn(4, 16, 8)).to(dtype)
    draft = 2 * history[1].to(dtype).double() - history[0].to(dtype).double()   # order 1, unit steps
    r = real.double()
    expected = max(((r - draft).abs().flatten(1).mean(1) / r.abs().flatten(1).mean(1)).tolist())
    with _Ops(real.numel()) as ops:
        verdict = policy.decide(_ctx(2, 0.8), keys, real, forced=None)
    assert verdict.decision == REUSE
    assert verdict.metric == pytest.approx(expected, rel=1e-3 if dtype == torch.float32 else 1e-2)
    if dtype == torch.float32:
        assert ops.names == ["add.Tensor", "add_.Tensor"], ops.names
    else:           # the forecast made in fp32 and kept as the store's dtype, then one add onto the real
        assert "sub.Tensor" not in ops.names and ops.names[-1] == "add.Tensor", ops.names


def test_the_guarded_forecast_measures_its_miss_inside_the_forecasts_sum():
    """The guarded forecast's error of its own forecast (the order-1 draft of the value it records)
    is the same number as before, made as the forecast's sum started from the value: one op per term."""
    from cache_core.metrics import rel_l1_per_sample
    from cache_core.policies.guarded import GuardedForecastPolicy
    torch.manual_seed(0)
    values = [torch.randn(2, 64) for _ in range(3)]
    policy = GuardedForecastPolicy(threshold=0.1, order=1)
    for step, value in enumerate(values[:2]):
        policy._measure(_ctx(step, 1.0 - step / 10), value)
    with _Ops(values[2].numel()) as ops:
        policy._measure(_ctx(2, 0.8), values[2])
    draft = 2 * values[1] - values[0]
    assert policy.pending == pytest.approx(rel_l1_per_sample(draft, values[2]).tolist(), rel=1e-5)
    assert ops.names == ["add.Tensor", "add_.Tensor"], ops.names


def test_easycache_records_a_whole_pass_in_one_op_per_branch_and_answers_with_the_outputs_change():
    """EasyCache keeps the change of the output, y - x, per branch: a computed pass records it as
    the one op out - (1 - sigma) x (gain -1 / sigma), makes y once for its measurement and keeps it
    without a copy; a reused pass answers x - sigma * (x + (y - x)) from the last computed pass."""
    torch.manual_seed(0)
    sigmas = [1.0, 0.8, 0.6, 0.4, 0.2]
    run = make_run(ToyModel([1.0, 2.0]), sigmas + [0.0], method="easycache", threshold=100.0,
                   warmup_steps=2, last_steps_computed=1)
    branches = ("cond", "uncond")
    ys = {b: [torch.randn(2, 4, 8) for _ in sigmas] for b in branches}
    xs = [torch.randn(2, 4, 8) for _ in sigmas]
    recorded, answers = _drive_whole_passes(run, sigmas, xs, ys)
    # per branch one add; one more for the lead's y; the measurement's differences (from the 2nd
    # on): the output's change, and the input's since the last computed step, which right after a
    # computed step is the change the step's decision measured (steps 0, 1 and 4 compute)
    assert recorded == [["add.Tensor"] * 3, ["add.Tensor"] * 3 + ["sub.Tensor"],
                        ["add.Tensor"] * 3 + ["sub.Tensor"] * 2], recorded
    assert answers
    for i, c, answer in answers:
        for b in branches:
            change = ys[b][c] - xs[c]
            assert torch.allclose(answer[b], xs[i] - sigmas[i] * (xs[i] + change), atol=1e-5)


def test_the_guarded_forecast_takes_a_whole_pass_with_its_gain_and_measures_the_same_error():
    """A whole pass hands the guard x - out with 1 / sigma, unmultiplied: the guard's error of its
    forecast is that of the predictions y themselves, and no op makes y."""
    from cache_core.metrics import rel_l1_per_sample
    from cache_core.policies.guarded import GuardedForecastPolicy
    torch.manual_seed(0)
    ds, gains = [torch.randn(2, 64) for _ in range(3)], [1.25, 2.0, 4.0]
    scaled = GuardedForecastPolicy(threshold=0.1, order=1)
    plain = GuardedForecastPolicy(threshold=0.1, order=1)
    for step, (d, g) in enumerate(zip(ds, gains)):
        ctx = _ctx(step, 1.0 - step / 10)
        if step == 2:
            with _Ops(d.numel()) as ops:
                scaled.observe_residuals(ctx, ("c",), {"Y": d}, gain=g)
        else:
            scaled.observe_residuals(ctx, ("c",), {"Y": d}, gain=g)
        plain.observe_residuals(ctx, ("c",), {"Y": d * g})
    ys = [d * g for d, g in zip(ds, gains)]
    expected = rel_l1_per_sample(2 * ys[1] - ys[0], ys[2]).tolist()
    assert scaled.pending == pytest.approx(expected, rel=1e-5)
    assert plain.pending == pytest.approx(expected, rel=1e-5)
    assert ops.names == ["add.Tensor", "add_.Tensor"], ops.names      # no y made, no subtraction


@pytest.mark.parametrize("strided", [False, True])
def test_a_long_measurement_on_the_cpu_does_not_drift(strided):
    # 12.6 M elements per sample, the size of a 1024 x 1024 Flux stream: one fp32 sum of them in
    # sequence came out 2.5 % low
    shape = (2, 2048, 3072)
    t = torch.full((shape[0], shape[2], shape[1]), 0.37).transpose(1, 2) if strided else torch.full(shape, 0.37)
    t[1] *= 2.0
    per_element = float(torch.tensor(0.37))
    n = shape[1] * shape[2]
    with _Ops(n) as ops:
        per_sample = rel_l1_per_sample(t, t * 0.5)      # |t - t/2| / |t/2|: 1 for each sample
        whole = mean_abs(t[0])
    assert ops.names == ["mul.Tensor", "sub.Tensor"]        # the test's t * 0.5 and the difference
    # a run of 2^12 equal terms rounds the same way each time: up to ~1e-4 without SIMD lanes
    assert torch.allclose(per_sample, torch.ones(2), rtol=5e-4)
    assert whole == pytest.approx(per_element, rel=5e-4)
    assert float(l1_norm(t)) == pytest.approx(3 * per_element * n, rel=5e-4)
    assert l1_norm(t, dim=(1, 2)).tolist() == pytest.approx([per_element * n, 2 * per_element * n], rel=5e-4)
