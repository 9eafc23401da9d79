import math

import pytest
import torch

from cache_core.decisions import Decision, StepContext
from cache_core.policies.easycache import EasyCachePolicy
from cache_core.policies.first_block import FirstBlockPolicy
from cache_core.policies.interval import FixedIntervalPolicy, StepMaskPolicy, parse_step_mask
from cache_core.policies.magcache import MagCachePolicy
from cache_core.policies.teacache import TeaCachePolicy, polyval
from cache_core.profiles import MagnitudeCurve


def ctx(step, total=10, sigma=None):
    return StepContext(1, step, total, 0, 1.0 - step / total if sigma is None else sigma, step / max(total - 1, 1))


def decide_and_run(policy, c, forced=None):
    """What the engine does each step: ask the policy, then tell it what ran."""
    verdict = policy.decide(c, ("c",), None, forced)
    policy.ran(c, verdict.decision == Decision.COMPUTE)
    return verdict


def test_polyval_highest_power_first():
    assert polyval([2.0, 0.0, 1.0], 3.0) == 19.0
    assert polyval([0, 0, 0, 1, 0], 0.25) == 0.25


def test_teacache_accumulates_rescaled_change_and_resets_on_compute():
    policy = TeaCachePolicy(threshold=0.25, coefficients=[0, 0, 0, 1, 0])  # identity: acc += rel_l1
    policy.begin_run([])
    base = torch.ones(1, 4)
    verdicts = []
    for i, scale in enumerate([1.0, 1.1, 1.2, 1.3, 1.4]):  # rel_l1 steps ~0.09, 0.083, 0.077, 0.071
        verdicts.append(policy.decide(ctx(i), ("c",), base * scale, None))
    assert [v.decision for v in verdicts] == [Decision.COMPUTE, Decision.REUSE, Decision.REUSE,
                                             Decision.COMPUTE, Decision.REUSE]
    assert verdicts[2].metric == pytest.approx(0.1 / 1.0 + 0.1 / 1.1)
    assert policy.accumulator.total == pytest.approx(0.1 / 1.3)


def test_teacache_forced_step_resets_accumulator():
    policy = TeaCachePolicy(threshold=1.0, coefficients=[0, 0, 0, 1, 0])
    policy.begin_run([])
    policy.decide(ctx(0), ("c",), torch.ones(1, 3), None)
    policy.decide(ctx(1), ("c",), torch.ones(1, 3) * 1.5, None)
    assert policy.accumulator.total > 0
    v = policy.decide(ctx(2), ("c",), torch.ones(1, 3) * 2, "warm-up")
    assert v.decision == Decision.COMPUTE and policy.accumulator.total == 0.0


def test_teacache_takes_the_most_changed_branch_by_default():
    policy = TeaCachePolicy(threshold=0.3, coefficients=[0, 0, 0, 1, 0], reduce="max")
    policy.begin_run([])
    policy.decide(ctx(0), ("c", "u"), torch.tensor([[1.0], [1.0]]), None)
    v = policy.decide(ctx(1), ("c", "u"), torch.tensor([[1.0], [1.5]]), None)   # u changed by 0.5
    assert v.decision == Decision.COMPUTE
    mean_policy = TeaCachePolicy(threshold=0.3, coefficients=[0, 0, 0, 1, 0], reduce="mean")
    mean_policy.begin_run([])
    mean_policy.decide(ctx(0), ("c", "u"), torch.tensor([[1.0], [1.0]]), None)
    v = mean_policy.decide(ctx(1), ("c", "u"), torch.tensor([[1.0], [1.5]]), None)
    assert v.decision == Decision.REUSE and v.metric == pytest.approx(0.25)


def test_magcache_rule_from_known_ratios():
    sigmas = [1.0 - i / 8 for i in range(9)]
    ratios = [1.0, 0.99, 0.98, 0.97, 0.96, 0.90, 0.8, 0.7]
    curve = MagnitudeCurve.from_step_ratios(sigmas[:-1], ratios)
    policy = MagCachePolicy(threshold=0.1, curve=curve, max_skips=2, retention=0.25)
    policy.begin_run(sigmas)
    assert policy.ratios == pytest.approx(ratios)
    d = [policy.decide(ctx(i, 8, sigmas[i]), ("c",), None, None) for i in range(8)]
    assert [v.decision for v in d[:2]] == [Decision.COMPUTE, Decision.COMPUTE]   # retention: int(0.25*8+0.5)=2
    # step 2: ratio .98 -> err .02 reuse; step 3: ratio .98*.97 -> err .02+.0494 = .0694 reuse;
    # step 4: third skip exceeds K=2 -> compute
    assert d[2].decision == Decision.REUSE and d[2].metric == pytest.approx(0.02)
    assert d[3].decision == Decision.REUSE and d[3].metric == pytest.approx(0.02 + (1 - 0.98 * 0.97))
    assert d[4].decision == Decision.COMPUTE


def test_magnitude_curve_ratios_compose_across_step_counts():
    curve = MagnitudeCurve([1.0, 0.75, 0.5, 0.25], [0.0, 0.1, 0.05, -0.3])
    a, b, c = 0.9, 0.6, 0.3
    assert curve.ratio(a, c) == pytest.approx(curve.ratio(a, b) * curve.ratio(b, c))
    assert curve.ratio(1.0, 0.75) == pytest.approx(math.exp(0.1))
    assert curve.ratio(0.75, 0.625) == pytest.approx(math.exp(-0.025))   # linear in sigma between points


def test_easycache_transformation_rate_rule():
    policy = EasyCachePolicy(threshold=0.5)
    policy.begin_run([])
    keys = ("c",)
    x0, o0 = torch.full((1, 4), 1.0), torch.full((1, 4), 2.0)
    assert policy.decide(ctx(0), keys, x0, None).decision == Decision.COMPUTE
    policy.observe_output(ctx(0), keys, x0, o0)
    x1, o1 = torch.full((1, 4), 0.9), torch.full((1, 4), 2.2)
    assert policy.decide(ctx(1), keys, x1, None).decision == Decision.COMPUTE   # no rate yet
    policy.observe_output(ctx(1), keys, x1, o1)
    assert policy.rate == pytest.approx(0.2 / 0.1)      # k = |do| / |dx|
    x2 = torch.full((1, 4), 0.8)
    v = policy.decide(ctx(2), keys, x2, None)
    assert v.metric == pytest.approx(2.0 * 0.1 / 2.2)     # k * |dx| / |o_last|
    assert v.decision == Decision.REUSE
    v = policy.decide(ctx(3), keys, torch.full((1, 4), 0.2), None)   # x_prev updated on the reused step
    assert v.decision == Decision.COMPUTE and v.metric == pytest.approx(2.0 * 0.1 / 2.2 + 2.0 * 0.6 / 2.2)
    assert policy.accumulator.total == 0.0
    o3 = torch.full((1, 4), 2.6)
    policy.observe_output(ctx(3), keys, torch.full((1, 4), 0.2), o3)
    assert policy.rate == pytest.approx(0.4 / 0.7)      # |dx| since the last full step (1), not step 2
    x4, o4 = torch.full((1, 4), 0.1), torch.full((1, 4), 2.65)
    policy.decide(ctx(4), keys, x4, None)
    policy.observe_output(ctx(4), keys, x4, o4)
    assert policy.rate == pytest.approx(0.05 / 0.1, rel=1e-5)   # right after a full step: the decision's |dx|


def test_first_block_compares_with_last_full_step_not_last_step():
    policy = FirstBlockPolicy(threshold=0.15)
    policy.begin_run([])
    r = torch.ones(1, 4)
    assert policy.decide(ctx(0), ("c",), r, None).decision == Decision.COMPUTE
    assert policy.decide(ctx(1), ("c",), r * 1.1, None).decision == Decision.REUSE
    # drift accumulates against the stored reference: 1.2 vs 1.0 is 0.2 > 0.15
    v = policy.decide(ctx(2), ("c",), r * 1.2, None)
    assert v.decision == Decision.COMPUTE and v.metric == pytest.approx(0.2)
    assert policy.decide(ctx(3), ("c",), r * 1.25, None).decision == Decision.REUSE


def test_fixed_interval_counts_from_the_last_compute():
    p = FixedIntervalPolicy(3)
    p.begin_run([])
    out = [decide_and_run(p, ctx(i), "warm-up" if i == 0 else None).decision for i in range(7)]
    assert out == [Decision.COMPUTE, Decision.REUSE, Decision.REUSE, Decision.COMPUTE,
                   Decision.REUSE, Decision.REUSE, Decision.COMPUTE]


def test_step_mask_presets_and_resampling():
    medium = parse_step_mask("medium", 28)
    assert len(medium) == 28 and sum(medium) == 15 and medium[:6] == [1] * 6 and medium[-1] == 1
    assert sum(parse_step_mask("ultra", 28)) == 8
    assert parse_step_mask("1100", 4) == [1, 1, 0, 1]            # last step always computed
    stretched = parse_step_mask("10", 5)
    assert stretched[0] == 1 and stretched[-1] == 1
    with pytest.raises(ValueError, match="preset"):
        parse_step_mask("12x", 10)
    p = StepMaskPolicy("1010")
    p.begin_run([1.0, 0.75, 0.5, 0.25, 0.0])
    assert [p.decide(ctx(i, 4), ("c",), None, None).decision for i in range(4)] == \
        [Decision.COMPUTE, Decision.REUSE, Decision.COMPUTE, Decision.COMPUTE]


def test_deepcache_uniform_and_nonuniform_schedules():
    from cache_core.policies.deepcache import DeepCachePolicy, nonuniform_full_steps
    p = DeepCachePolicy(interval=3)
    p.begin_run([1.0 - i / 9 for i in range(10)])
    assert [decide_and_run(p, ctx(i, 9)).decision for i in range(9)] == \
        [Decision.COMPUTE, Decision.REUSE, Decision.REUSE] * 3
    steps = nonuniform_full_steps(50, 5, center=0.5)
    assert len(steps) >= 10 and steps[0] == 0 and steps[-1] == 49
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    middle = [g for a, g in zip(steps, gaps) if 15 <= a <= 34]
    edges = [g for a, g in zip(steps, gaps) if a < 8 or a > 40]
    assert max(middle) <= min(edges) + 1 and sum(middle) / len(middle) < sum(edges) / len(edges)
    q = DeepCachePolicy(interval=5, mode="non-uniform")
    q.begin_run([1.0 - i / 50 for i in range(51)])
    decided = [i for i in range(50) if decide_and_run(q, ctx(i, 50)).decision == Decision.COMPUTE]
    assert decided == steps
