"""DeepCache (U-Nets): reuse the deep features, run only the shallow branch."""
from dataclasses import dataclass

from ..policies.deepcache import DeepCachePolicy
from .spec import IntervalConfig, Knob, Method, check, interval_knob


@dataclass(frozen=True)
class DeepCacheConfig(IntervalConfig):
    interval: int = 3
    deepcache_depth: int = 0
    deepcache_mode: str = "uniform"

    def __post_init__(self):
        super().__post_init__()
        check(self.deepcache_depth >= 0, f"deepcache_depth must be 0 or more; got {self.deepcache_depth}")
        check(self.deepcache_mode in ("uniform", "non-uniform"),
              f"deepcache_mode must be 'uniform' or 'non-uniform'; got {self.deepcache_mode!r}")


METHOD = Method(
    "deepcache", "DeepCache (U-Net)", "static, U-Net", "the deep U-Net feature; the shallow branch always runs",
    "every N-th step (or non-uniform)",
    "U-Nets: every N-th step full; otherwise reuse the deep features, run only the shallow branch",
    DeepCacheConfig, lambda c, ctx: DeepCachePolicy(c.interval, c.deepcache_depth, c.deepcache_mode),
    knobs=(interval_knob(3, "compute the whole U-Net every N-th step, only its shallow branch in between"),
           Knob("deepcache_depth", "int", 0, "Deepest U-Net input block still recomputed on cached steps "
                                             "(0 = only the first: fastest; larger = closer to uncached).", 0, 30),
           Knob("deepcache_mode", "combo", "uniform", "Full steps every N (uniform) or denser mid-run "
                                                      "(non-uniform).", choices=("uniform", "non-uniform"))),
    unet_only=True, fallback="fixed_interval",
    sweep={"knob": "interval", "full": [2, 3, 4], "quick": [3]},
)
