"""What the engine decides for one model evaluation, and the context it decides in."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Decision(str, enum.Enum):
    COMPUTE = "computed"   # run the model (or the block span) and refresh the cache
    REUSE = "reused"       # return the cached value (residual added to the fresh input)
    PREDICT = "forecast"   # return a value forecast from the cached history


@dataclass(frozen=True)
class StepContext:
    """Where one model evaluation sits in its sampling run.

    ``step`` comes from the sigma's place in the run's schedule, ``stage`` is 0 for
    the first evaluation of a step and 1, 2, ... for the extra evaluations of
    multi-stage samplers (Heun, DPM++ 2S, ...).
    """
    run_id: int
    step: int
    total_steps: int
    stage: int
    sigma: float
    progress: float                      # 0 at the first step, 1 at the last
    branches: tuple = field(default=())  # ("cond", "uncond", ...) per batch chunk

    @property
    def is_last_step(self) -> bool:
        return self.step >= self.total_steps - 1
