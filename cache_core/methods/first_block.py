"""First-Block Cache: compute block 0, skip the rest while its residual barely changes."""
from dataclasses import dataclass

from ..policies.first_block import FirstBlockPolicy
from .spec import Method, ThresholdConfig, threshold_knob


@dataclass(frozen=True)
class FirstBlockConfig(ThresholdConfig):
    threshold: float = 0.08


METHOD = Method(
    "first_block", "First-Block Cache", "dynamic", "residual of blocks 1..L",
    "when block 0's residual moved more than the threshold since the last full step",
    "compute block 0, skip the rest while its residual barely changes",
    FirstBlockConfig, lambda c, ctx: FirstBlockPolicy(c.threshold, ctx.reduce),
    knobs=(threshold_knob(0.08, "Relative change of block 0's residual that triggers a full step.", "0.05-0.3"),),
    needs_blocks=True, fallback="first_block",
    sweep={"knob": "threshold", "full": [0.08, 0.12, 0.2, 0.3, 0.5], "quick": [0.12, 0.3]},
)
