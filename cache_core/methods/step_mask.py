"""Step mask (SCM): compute exactly the steps a mask marks with 1."""
from dataclasses import dataclass

from ..policies.interval import StepMaskPolicy, parse_step_mask
from .spec import CACHE_LEVEL_KNOB, CacheLevelConfig, Knob, Method


@dataclass(frozen=True)
class StepMaskConfig(CacheLevelConfig):
    step_mask: str = "medium"

    def __post_init__(self):
        parse_step_mask(self.step_mask, 28)   # raises with a message on a bad mask
        super().__post_init__()


METHOD = Method(
    "step_mask", "Step mask (SCM)", "static (SCM)", "model output (block residual with a ControlNet)", "where the mask has 1",
    "compute exactly the steps a mask marks with 1",
    StepMaskConfig, lambda c, ctx: StepMaskPolicy(c.step_mask),
    knobs=(Knob("step_mask", "string", "medium", "A preset (slow, medium, fast, ultra: cache-dit's 28-step bins) "
                                                 "or a 0/1 string per step, 1 = compute; stretched to the run's "
                                                 "step count."), CACHE_LEVEL_KNOB),
    sweep={"knob": "step_mask", "full": ["slow", "medium", "fast", "ultra"], "quick": ["slow", "fast"]},
)
