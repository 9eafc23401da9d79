"""DBCache hybrid: like DBCache, and below half the threshold skip the back blocks too."""
from dataclasses import dataclass

from . import dbcache
from .spec import Method, threshold_knob


@dataclass(frozen=True)
class DBCacheHybridConfig(dbcache.DBCacheConfig):
    threshold: float = 0.12


METHOD = Method(
    "dbcache_hybrid", "DBCache hybrid (step + block)", "dynamic, step + block",
    "middle blocks, or everything after Fn below half the threshold", "as dbcache",
    "like dbcache, and below half the threshold skip the back blocks too",
    DBCacheHybridConfig, lambda c, ctx: dbcache.make_policy(c, ctx, hybrid=True, name="dbcache_hybrid"),
    knobs=(threshold_knob(0.12, "Relative change of the front blocks' residual; below half of it the whole "
                                "rest of the step is skipped.", "0.1-0.6"), dbcache.FRONT, dbcache.BACK),
    needs_blocks=True, fallback="first_block",
    sweep={"knob": "threshold", "full": [0.12, 0.24, 0.4, 0.6], "quick": [0.24, 0.6]},
)
