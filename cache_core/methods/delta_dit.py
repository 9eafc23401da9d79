"""Delta-DiT: at a fixed interval, cache the rear blocks early and the front blocks late."""
from dataclasses import dataclass

from ..policies.delta_dit import DeltaDiTPolicy
from .spec import IntervalConfig, Knob, Method, check, interval_knob


@dataclass(frozen=True)
class DeltaDiTConfig(IntervalConfig):
    interval: int = 2
    delta_cached_blocks: int = 0
    delta_boundary: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        check(self.delta_cached_blocks >= 0,
              f"delta_cached_blocks must be 0 (half the blocks) or more; got {self.delta_cached_blocks}")
        check(0.0 <= self.delta_boundary <= 1.0, f"delta_boundary must be in [0, 1]; got {self.delta_boundary}")


METHOD = Method(
    "delta_dit", "Delta-DiT (block-level)", "static, block-level",
    "residual of a block range: rear blocks early, front blocks late", "every N-th step",
    "every N-th step full; otherwise cache the rear blocks early, the front blocks late",
    DeltaDiTConfig, lambda c, ctx: DeltaDiTPolicy(c.interval, c.delta_cached_blocks, c.delta_boundary),
    knobs=(interval_knob(2),
           Knob("delta_cached_blocks", "int", 0, "Blocks cached per phase (0 = half of the model's blocks).",
                0, 200, advanced=True),
           Knob("delta_boundary", "float", 0.5, "Progress where caching moves from the rear blocks to the front "
                                                "blocks. Useful: 0.3-0.7.", 0.0, 1.0, 0.05, advanced=True)),
    needs_blocks=True, fallback="fixed_interval",
    sweep={"knob": "interval", "full": [2, 3, 4], "quick": [2, 4]},
)
