"""Fixed interval (FORA-style): compute every N-th step, reuse in between."""
from dataclasses import dataclass

from ..policies.interval import FixedIntervalPolicy
from .spec import CACHE_LEVEL_KNOB, CacheLevelConfig, IntervalConfig, Method, interval_knob


@dataclass(frozen=True)
class FixedIntervalConfig(CacheLevelConfig, IntervalConfig):
    interval: int = 2


METHOD = Method(
    "fixed_interval", "Fixed interval (FORA-style)", "static (FORA-style)", "model output (block residual with a ControlNet)", "every N-th step",
    "compute every N-th step, reuse in between",
    FixedIntervalConfig, lambda c, ctx: FixedIntervalPolicy(c.interval), knobs=(interval_knob(2), CACHE_LEVEL_KNOB),
    sweep={"knob": "interval", "full": [2, 3, 4, 6], "quick": [2, 4]},
)
