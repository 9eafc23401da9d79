"""CFG-Cache's rebuild and PAB's reuse rule, without a host."""
import torch

from cache_core import cfg_cache
from cache_core.attention_cache import AttentionBroadcast


def test_cfg_cache_unit_weights_rebuild_the_last_difference(monkeypatch):
    monkeypatch.setattr(cfg_cache, "LOW_WEIGHT", 1.0)
    monkeypatch.setattr(cfg_cache, "HIGH_WEIGHT", 1.0)
    g = torch.Generator().manual_seed(0)
    x, c_last, u_last, c_now = (torch.randn(2, 4, 3, 12, 10, generator=g, dtype=torch.float64) for _ in range(4))
    sigma = torch.tensor([0.7, 0.7], dtype=torch.float64)
    cache = cfg_cache.CfgCache(2)
    cache.record("k", x, sigma, c_last, u_last)
    assert cache.wants_skip(1, 500.0, "k", x) and not cache.wants_skip(2, 500.0, "k", x)
    assert not cache.wants_skip(1, 700.0, "k", x) and not cache.wants_skip(0, 500.0, "k", x)
    u = cache.rebuild("k", x, sigma, 500.0, c_now)
    torch.testing.assert_close(u, c_now + (u_last - c_last), rtol=0, atol=1e-5)


def test_cfg_cache_weights_compound():
    x = torch.zeros(1, 1, 10, 10)
    c = torch.zeros_like(x)
    u = torch.ones_like(x)                 # a constant difference: all in the low band
    cache = cfg_cache.CfgCache(5)
    cache.record("k", x, torch.tensor([1.0]), c, u)
    first = cache.rebuild("k", x, torch.tensor([1.0]), 500.0, c)
    second = cache.rebuild("k", x, torch.tensor([1.0]), 500.0, c)
    torch.testing.assert_close(first, u * 1.1)
    torch.testing.assert_close(second, u * 1.1 * 1.1)


def test_pab_rule():
    pab = AttentionBroadcast(self_range=3, cross_range=1, window=(100.0, 800.0))
    q, k = torch.zeros(1, 8, 4), torch.zeros(1, 8, 4)
    ran = []

    def compute():
        ran.append(1)
        return torch.full((1, 8, 4), float(len(ran)))
    outs = [pab.attention(compute, q, k, "id", 500.0) for _ in range(6)]
    assert [float(o[0, 0, 0]) for o in outs] == [1, 1, 1, 2, 2, 2]
    assert pab.skipped == 4 and pab.summary()["attention_skipped_share"] == round(4 / 6, 4)
    pab.attention(compute, q, k, "id", 900.0)        # outside the window: computed
    assert len(ran) == 3
    pab.attention(compute, q, torch.zeros(1, 5, 4), "x", 500.0)   # cross, range 1: always computed
    pab.attention(compute, q, torch.zeros(1, 5, 4), "x", 500.0)
    assert len(ran) == 5 and pab.kinds["cross"] == [2, 0]
