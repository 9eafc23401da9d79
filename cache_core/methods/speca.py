"""SpeCa: forecast every step, verify the drafts against the real first block."""
from dataclasses import dataclass

from ..policies.speculative import SpeculativePolicy
from .spec import AXIS_KNOB, ORDER_KNOB, Method, ThresholdConfig, threshold_knob


@dataclass(frozen=True)
class SpeCaConfig(ThresholdConfig):
    threshold: float = 0.05


METHOD = Method(
    "speca", "SpeCa (speculative forecast)", "predictive, verified",
    "forecast every step; the real block 0 verifies the drafts (the first after a computed step is answered "
    "whole while the last check says it passes)", "when the draft's error exceeds the threshold",
    "forecast every step, verify against the real first block, compute when the error is too big",
    SpeCaConfig, lambda c, ctx: SpeculativePolicy(c.threshold, ctx.predictor_order, ctx.predictor_axis, ctx.reduce),
    knobs=(threshold_knob(0.05, "Relative L1 error of the first block's forecast residual against the real "
                                "one above which the draft is rejected. The first draft after a computed "
                                "step runs nothing of the model while the last error e, measured d steps "
                                "out, gives e / d² under it.", "0.02-0.2"),
           ORDER_KNOB, AXIS_KNOB),
    predictor="taylor", needs_blocks=True, fallback="taylorseer",
    sweep={"knob": "threshold", "full": [0.02, 0.05, 0.1, 0.2], "quick": [0.05, 0.2]},
)
