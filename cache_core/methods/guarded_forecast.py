"""Guarded forecast: forecast by default; the interval adapts to the forecast's measured error."""
from dataclasses import dataclass

from ..policies.guarded import GuardedForecastPolicy
from .spec import AXIS_KNOB, ORDER_KNOB, Method, ThresholdConfig, threshold_knob


@dataclass(frozen=True)
class GuardedForecastConfig(ThresholdConfig):
    threshold: float = 0.4


METHOD = Method(
    "guarded_forecast", "Guarded forecast (adaptive interval)", "predictive, guarded",
    "stack residual, forecast by Taylor extrapolation",
    "when the interval is reached; each computed step measures the forecast's error there and sets the next "
    "interval from it (longer while it stays under the threshold, shorter after it does not)",
    "forecast by default; each computed step checks what the forecast would have returned against the real "
    "residual (no extra model work) and sets the next interval from that error",
    GuardedForecastConfig,
    lambda c, ctx: GuardedForecastPolicy(c.threshold, order=ctx.predictor_order, axis=ctx.predictor_axis,
                                         reduce=ctx.reduce),
    knobs=(threshold_knob(0.4, "Relative error of the forecast, measured at each computed step, that the "
                               "next interval aims for (the first interval is 8 steps, then half of it, then "
                               "set by the error; max_consecutive_cached caps it).", "0.1-0.6"),
           ORDER_KNOB, AXIS_KNOB),
    predictor="taylor",
    sweep={"knob": "threshold", "full": [0.1, 0.2, 0.3, 0.4, 0.6], "quick": [0.2, 0.4]},
)
