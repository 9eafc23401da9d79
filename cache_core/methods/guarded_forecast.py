"""Guarded forecast: forecast by default; the interval adapts to the forecast's measured error."""
from dataclasses import dataclass

from ..policies.guarded import GuardedForecastPolicy
from .spec import AXIS_KNOB, CACHE_LEVEL_KNOB, ORDER_KNOB, CacheLevelConfig, Method, ThresholdConfig, threshold_knob


@dataclass(frozen=True)
class GuardedForecastConfig(CacheLevelConfig, ThresholdConfig):
    threshold: float = 0.15


METHOD = Method(
    "guarded_forecast", "Guarded forecast (adaptive interval)", "predictive, guarded",
    "model output (block residual with a ControlNet), forecast by Taylor extrapolation",
    "when the interval is reached; each computed step measures the forecast's error there and sets the next "
    "interval from it (longer while it stays under the threshold, shorter after it does not)",
    "forecast by default; each computed step checks what the forecast would have returned against the real "
    "residual (no extra model work) and sets the next interval from that error",
    GuardedForecastConfig,
    lambda c, ctx: GuardedForecastPolicy(c.threshold, order=ctx.predictor_order, axis=ctx.predictor_axis,
                                         reduce=ctx.reduce),
    knobs=(threshold_knob(0.15, "Relative error of the forecast, measured at each computed step, that the "
                                "next interval aims for (the first interval is 8 steps, then half of it, then "
                                "set by the error; max_consecutive_cached caps it). With cache_level blocks "
                                "the block residual is measured: about twice the value.", "0.1-0.3"),
           ORDER_KNOB, AXIS_KNOB, CACHE_LEVEL_KNOB),
    predictor="taylor",
    sweep={"knob": "threshold", "full": [0.1, 0.15, 0.2, 0.3], "quick": [0.15, 0.3]},
)
