"""Block streams the engine treats as data: a tuple stream (LTX-2's img = (video, audio)),
a stream named "x" (Kandinsky 5), and whole model calls whose output is shaped unlike the
input (conditioning channels concatenated to it)."""
import torch

from cache_core.config import CacheConfig, ScheduleConfig
from cache_core.engine import CacheRun
from cache_core.layout import BlockLayout
from cache_core.policies import make_policy
from cache_core.profiles import published_profiles

SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
WEIGHTS = [1.0, 2.0, 4.0]


def _run(method="fixed_interval", blocks=True, **kw):
    config = CacheConfig.build(method=method, schedule=ScheduleConfig(warmup_steps=1, last_steps_computed=1), **kw)
    layout = BlockLayout((("double_block", len(WEIGHTS)),)) if blocks else None
    profile = published_profiles()["generic"] if method == "teacache" else None
    return CacheRun(config, make_policy(config, profile), SIGMAS, layout)


def _tuple_model(run, x, sigma):
    """Blocks on img = (video, audio): video += w * sigma, audio -= w * sigma (in place, as LTX-2 does)."""
    video, audio = x[0].clone(), x[1].clone()
    for g, w in enumerate(WEIGHTS):
        def block(args, w=w):
            v, a = args["img"]
            v.add_(w * sigma)
            a.sub_(w * sigma)
            return {"img": (v, a)}
        args = {"img": (video, audio), "v_timestep": object()}     # an argument the engine must not touch
        out = run.block(g, args, block) if run else block(args)
        video, audio = out["img"]
    return [video, audio]


def _sample(run, model, inputs):
    """``inputs``: the model input of every step, or a function of the step index."""
    outs = []
    for i, s in enumerate(SIGMAS[:-1]):
        x = inputs(i) if callable(inputs) else inputs
        if run is None:
            outs.append(model(None, x, s))
            continue
        run.begin_evaluation(s, ("cond",))
        outs.append(run.model_call(x, ("cond",), lambda: model(run, x, s), s))
        run.end_evaluation()
        run.step_reported(i)
    return outs


def test_tuple_stream_gets_a_residual_per_element():
    x = [torch.zeros(1, 3, 4), torch.zeros(1, 2, 6)]            # video and audio tokens
    exact = _sample(_run(interval=1), _tuple_model, x)
    for got, ref in zip(exact, _sample(None, _tuple_model, x)):
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
    run = _run(interval=2)
    outs = _sample(run, _tuple_model, x)
    assert [r.decision for r in run.stats.records] == ["computed", "reused", "computed", "reused", "computed"]
    assert run.stream_keys == {((0, 3), 0): ("img.0", "img.1")}
    total = sum(WEIGHTS)
    # step 1 reuses step 0's residuals: +total on video, -total on audio
    assert torch.allclose(outs[1][0], torch.full((1, 3, 4), SIGMAS[0] * total))
    assert torch.allclose(outs[1][1], torch.full((1, 2, 6), -SIGMAS[0] * total))


def test_tuple_stream_with_an_empty_element():
    """LTX-2 sampling video only hands its blocks an empty audio stream."""
    x = [torch.zeros(2, 3, 4), torch.zeros(2, 0, 6)]
    run = _run(method="first_block", threshold=100.0)
    outs = _sample(run, _tuple_model, x)
    assert "reused" in [r.decision for r in run.stats.records]
    assert outs[-1][1].shape == (2, 0, 6)


def _x_model(run, x, sigma):
    """Kandinsky 5's visual blocks: the stream is called "x"."""
    h = x.clone()
    for g, w in enumerate(WEIGHTS):
        def block(args, w=w):
            return {"x": args["x"] + w * sigma}
        args = {"x": h, "context": torch.ones(1, 2, 4)}
        out = run.block(g, args, block) if run else block(args)
        h = out["x"]
    return h


def test_a_stream_named_x_is_cached_and_probed():
    x = torch.zeros(1, 3, 4)
    exact = _sample(_run(method="first_block", threshold=1e-9), _x_model, x)
    assert all(torch.equal(a, b) for a, b in zip(exact, _sample(None, _x_model, x)))
    run = _run(method="first_block", threshold=100.0)
    outs = _sample(run, _x_model, x)
    assert [r.decision for r in run.stats.records][1] == "reused"
    # block 0 runs fresh at sigma 0.8 (its residual is the probe); blocks 1-2 add step 0's residual
    assert torch.allclose(outs[1], torch.full((1, 3, 4), 1.0 * SIGMAS[1] + 6.0 * SIGMAS[0]))
    teacache = _run(method="teacache", threshold=100.0)
    _sample(teacache, _x_model, x)
    assert any(r.metric is not None for r in teacache.stats.records)        # the probe was read


def _concat_model(run, x, sigma):
    """A whole model call on [noise, image condition] channels that returns noise channels only."""
    return x[:, :2] * 0.5 + sigma


def test_whole_calls_whose_output_is_shaped_unlike_the_input():
    def x(i):                                                    # 2 noise + 3 conditioning channels
        return torch.cat([torch.full((1, 2, 4, 4), 1.0 - 0.1 * i), torch.ones(1, 3, 4, 4)], dim=1)
    for method, inputs in (("fixed_interval", dict(interval=2)), ("easycache", dict(threshold=100.0))):
        run = _run(method=method, blocks=False, **inputs)
        outs = _sample(run, _concat_model, x)
        assert "reused" in [r.decision for r in run.stats.records], method
        assert all(o.shape == (1, 2, 4, 4) for o in outs), method
