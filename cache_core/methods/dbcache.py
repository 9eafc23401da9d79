"""DBCache: compute the front and back blocks, cache the middle while the front residual holds."""
from dataclasses import dataclass

from ..policies.first_block import FrontResidualPolicy
from .spec import Knob, Method, ThresholdConfig, check, threshold_knob


@dataclass(frozen=True)
class DBCacheConfig(ThresholdConfig):
    threshold: float = 0.08
    front_blocks: int = 1
    back_blocks: int = 0

    def __post_init__(self):
        super().__post_init__()
        check(self.front_blocks >= 1, f"front_blocks must be 1 or more (its residual is the probe); "
                                      f"got {self.front_blocks}")
        check(self.back_blocks >= 0, f"back_blocks must be 0 or more; got {self.back_blocks}")

    def describe(self) -> str:
        return f"threshold={self.threshold:g} F{self.front_blocks}B{self.back_blocks}"


FRONT = Knob("front_blocks", "int", 1, "Fn: blocks always computed first; their residual decides. "
                                       "Useful: 1-4.", 1, 200)
BACK = Knob("back_blocks", "int", 0, "Bn: blocks always computed last; they correct the cached middle. "
                                     "Useful: 0-4.", 0, 200)


def make_policy(c, ctx, hybrid=False, name="dbcache"):
    return FrontResidualPolicy(c.threshold, c.front_blocks, c.back_blocks, ctx.reduce, hybrid=hybrid, name=name)


METHOD = Method(
    "dbcache", "DBCache (block-level)", "dynamic, block-level", "residual of the middle blocks (Fn and Bn always run)",
    "when the Fn residual moved more than the threshold",
    "compute the front_blocks and back_blocks, cache the middle while the front residual holds",
    DBCacheConfig, make_policy,
    knobs=(threshold_knob(0.08, "Relative change of the front blocks' residual that triggers a full step.",
                          "0.05-0.5"), FRONT, BACK),
    needs_blocks=True, fallback="first_block",
    # F1B1: one back block always computed (F1B0 would be first_block)
    sweep={"knob": "threshold", "full": [0.08, 0.16, 0.3, 0.5], "quick": [0.16, 0.5], "inputs": {"back_blocks": 1}},
)
