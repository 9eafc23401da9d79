"""The same decision on every rank: two CPU processes on the gloo backend, each holding a
different shard of the tokens, as a sequence-parallel host (raylight, xDiT) runs them.

Without the reduction the ranks' measurements differ, and so would their decisions
(one rank skipping while another computes hangs the model's collectives). With it,
every rank decides alike.
"""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest
import torch

from cache_core import distributed
from cache_core.config import CacheConfig, ScheduleConfig
from cache_core.engine import CacheRun
from cache_core.layout import BlockLayout
from cache_core.policies import make_policy
from cache_core.profiles import published_profiles

WORLD = 2
SIGMAS = [1.0, 0.92, 0.84, 0.76, 0.68, 0.6, 0.52, 0.44, 0.36, 0.28, 0.2, 0.0]
# threshold per method: between what the two shards measure
METHODS = {"first_block": 0.4, "dbcache": 0.4, "teacache": 0.15, "easycache": 0.3, "speca": 0.5}


def _shard(rank: int) -> torch.Tensor:
    """This rank's image tokens: rank 0 holds small values, rank 1 large ones."""
    gen = torch.Generator().manual_seed(rank)
    return 3.0 * rank + 0.1 * torch.rand(1, 8, 4, generator=gen)


def _block(g):
    def run_block(args):     # a block whose change over sigma depends on the tokens it holds
        img, s = args["img"], float(args["vec"].flatten()[0])
        return {"img": img + (g + 1) * s ** (1.0 + img.abs())}
    return run_block


def _forward(run, x, s):
    img = x
    for g in range(3):
        args = {"img": img, "vec": torch.full((1, 1), s)}
        img = (run.block(g, args, _block(g)) if run is not None and run.layout else _block(g)(args))["img"]
    return img


def decisions(method: str, rank: int, group) -> list[str]:
    config = CacheConfig.build(method=method, threshold=METHODS[method], front_blocks=1, back_blocks=1,
                         schedule=ScheduleConfig(warmup_steps=1, last_steps_computed=1))
    policy = make_policy(config, published_profiles()["generic"] if method == "teacache" else None)
    policy.group = group
    layout = None if method == "easycache" else BlockLayout((("double_block", 3),))
    run = CacheRun(config, policy, SIGMAS, layout)
    shard = _shard(rank)
    for i, s in enumerate(SIGMAS[:-1]):
        x = shard + s                       # the step's input latent, as this rank sees it
        run.begin_evaluation(s, ("cond",))
        run.model_call(x, ("cond",), lambda: _forward(run, x, s), s)
        run.end_evaluation()
        run.step_reported(i)
    run.finish()
    return [r.decision for r in run.stats.records]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        result = {
            "agree_max": distributed.agree(1.0 + rank, "max"),
            "agree_mean": distributed.agree(1.0 + rank, "mean"),
            "agree_missing": distributed.agree(None if rank == 0 else 2.0, "max"),
            "agree_nan": distributed.agree(math.nan if rank == 1 else 2.0, "mean"),
            "agree_local": distributed.agree(1.0 + rank, "max", group=False),
            "agree_subgroup": distributed.agree(1.0 + rank, "max", group=dist.new_group([0, 1])),
            "agreed": {m: decisions(m, rank, None) for m in METHODS},
            "local": {m: decisions(m, rank, False) for m in METHODS},
        }
        dist.barrier()
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import torch.multiprocessing as mp
    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_agree_reduces_over_the_ranks(ranks):
    for r, result in enumerate(ranks):
        assert result["agree_max"] == 2.0
        assert result["agree_mean"] == 1.5
        assert result["agree_missing"] is None          # a rank with nothing measured: none on any rank
        assert result["agree_nan"] is None
        assert result["agree_local"] == 1.0 + r         # group False: this process alone
        assert result["agree_subgroup"] == 2.0


@pytest.mark.parametrize("method", list(METHODS))
def test_every_rank_decides_alike(ranks, method):
    local = [r["local"][method] for r in ranks]
    agreed = [r["agreed"][method] for r in ranks]
    assert local[0] != local[1], f"the shards should disagree without the reduction: {local}"
    assert agreed[0] == agreed[1], agreed
    assert "computed" in agreed[0] and set(agreed[0]) - {"computed"}, agreed[0]


def test_one_process_needs_no_reduction():
    assert not torch.distributed.is_available() or not torch.distributed.is_initialized()
    assert distributed.participants() is None
    assert distributed.agree(0.25, "max") == 0.25 and distributed.agree(None, "mean") is None
