"""MagCache: accumulate the error predicted by the residual-magnitude curve."""
from dataclasses import dataclass

from ..policies.magcache import MagCachePolicy
from .spec import CACHE_LEVEL_KNOB, CacheLevelConfig, Knob, Method, ThresholdConfig, check, threshold_knob
from .teacache import PROFILE_KNOB


@dataclass(frozen=True)
class MagCacheConfig(CacheLevelConfig, ThresholdConfig):
    threshold: float = 0.12
    magcache_max_skips: int = 4
    magcache_retention: float = 0.1

    def __post_init__(self):
        super().__post_init__()     # the cache level's and the threshold's checks
        check(self.magcache_max_skips >= 0, f"magcache_max_skips must be 0 or more; got {self.magcache_max_skips}")
        check(0.0 <= self.magcache_retention < 1.0,
              f"magcache_retention must be in [0, 1); got {self.magcache_retention}")


def make_policy(c, ctx):
    if ctx.profile is None or ctx.profile.magnitude is None:
        raise ValueError("MagCache needs a magnitude profile; pick 'flux' for Flux models or "
                         "calibrate this model with the Diffusion Cache Calibrate node")
    return MagCachePolicy(c.threshold, ctx.profile.magnitude, c.magcache_max_skips, c.magcache_retention)


METHOD = Method(
    "magcache", "MagCache", "dynamic", "model output (stack residual with cache_level blocks or a ControlNet)",
    "accumulated error predicted by the residual-magnitude curve ≥ threshold, or more than K skips",
    "accumulate the error predicted by the calibrated residual-magnitude curve",
    MagCacheConfig, make_policy,
    knobs=(threshold_knob(0.12, "Accumulated error predicted by the magnitude curve that triggers a full step.",
                          "0.03-0.24"), PROFILE_KNOB,
           Knob("magcache_max_skips", "int", 4, "K: the most steps skipped in a row before a full step. "
                                                "Useful: 2-6.", 0, 100),
           Knob("magcache_retention", "float", 0.1, "R: the fraction of first steps never skipped. Useful: 0.1-0.3.",
                0.0, 0.99, 0.01, advanced=True), CACHE_LEVEL_KNOB),
    calibration="published curve, or your own", needs_profile="magcache",
    sweep={"knob": "threshold", "full": [0.015, 0.03, 0.06, 0.12, 0.24], "quick": [0.03, 0.12],
           "inputs": {"profile": "<calibrated>"}},
)
