"""EasyCache (paper version): accumulate the runtime transformation rate of the model output."""
from dataclasses import dataclass

from ..policies.easycache import EasyCachePolicy
from .spec import Method, ThresholdConfig, threshold_knob


@dataclass(frozen=True)
class EasyCacheConfig(ThresholdConfig):
    threshold: float = 0.1


METHOD = Method(
    "easycache", "EasyCache", "dynamic (paper version)", "model output − input",
    "accumulated transformation-rate estimate ≥ threshold",
    "accumulate the runtime transformation rate of the model output (paper version)",
    EasyCacheConfig, lambda c, ctx: EasyCachePolicy(c.threshold),
    knobs=(threshold_knob(0.1, "Accumulated estimate of the output's relative change that triggers a full step.",
                          "0.025-0.2"),),
    sweep={"knob": "threshold", "full": [0.025, 0.05, 0.1, 0.2], "quick": [0.05, 0.2]},
)
