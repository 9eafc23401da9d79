"""The forecasting methods share one shape: a fixed interval, and a forecast in between."""
from dataclasses import dataclass

from ..policies.interval import FixedIntervalPolicy
from .spec import AXIS_KNOB, CACHE_LEVEL_KNOB, ORDER_KNOB, CacheLevelConfig, IntervalConfig, Method, interval_knob


@dataclass(frozen=True)
class ForecastConfig(CacheLevelConfig, IntervalConfig):
    interval: int = 4


def forecast_method(method_id: str, label: str, predictor: str, cached: str, about: str, order: bool = True,
                    sweep_quick=(4,), sweep_extra=()) -> Method:
    knobs = (interval_knob(4, "compute every N-th step, forecast in between"),)
    knobs += (ORDER_KNOB, AXIS_KNOB) if order else (AXIS_KNOB,)
    knobs += (CACHE_LEVEL_KNOB,)
    return Method(
        method_id, label, "predictive", cached, "every N-th step", about,
        ForecastConfig, lambda c, ctx: FixedIntervalPolicy(c.interval), knobs=knobs, predictor=predictor,
        sweep={"knob": "interval", "full": [2, 3, 4, 6], "quick": list(sweep_quick), "extra": list(sweep_extra)},
    )
