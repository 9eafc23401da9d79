"""A compute budget: a target speedup, or exactly K of N steps computed, planned per run."""
from dataclasses import dataclass

from ..policies.budget import BudgetPolicy
from .spec import CACHE_LEVEL_KNOB, CacheLevelConfig, Knob, Method, check


@dataclass(frozen=True)
class BudgetConfig(CacheLevelConfig):
    compute_steps: int = 0
    target_speedup: float = 2.5

    def __post_init__(self):
        check(self.compute_steps >= 0, f"compute_steps must be 0 (use target_speedup) or more; "
                                       f"got {self.compute_steps}")
        check(self.target_speedup >= 1.0, f"target_speedup must be 1 or more; got {self.target_speedup}")
        super().__post_init__()

    def describe(self) -> str:
        return f"compute_steps={self.compute_steps}" if self.compute_steps else f"target_speedup={self.target_speedup:g}"


METHOD = Method(
    "budget", "Compute budget (planned)", "planned (LeMiCa / MeanCache-style)", "model output (block residual with a ControlNet), any predictor",
    "exactly K planned steps: compute_steps, or N / target_speedup",
    "meet a compute budget exactly: the steps to compute are planned per run (from a calibration profile when it "
    "was recorded on this schedule, else dense early, uniform middle, denser tail)",
    BudgetConfig, lambda c, ctx: BudgetPolicy(c.compute_steps, c.target_speedup, ctx.profile, ctx.schedule),
    knobs=(Knob("target_speedup", "float", 2.5, "Compute about N / this of the N steps (steps 0, 1 and the last "
                                                "always). Useful: 1.5-4. Used when compute_steps is 0.",
                1.0, 20.0, 0.1),
           Knob("compute_steps", "int", 0, "Compute exactly this many steps of each run (e.g. 8 of 28); 0 = use "
                                           "target_speedup. At least 3 (steps 0, 1 and the last).", 0, 1000),
           Knob("profile", "combo", "auto", "A calibration profile recorded with the same sampler, scheduler and "
                                            "step count plans the steps that add the least error; auto = one you "
                                            "calibrated for this architecture. Without one (or on another "
                                            "schedule), a model-independent plan.", choices=("auto",)),
           CACHE_LEVEL_KNOB),
    calibration="optional: your own, on the same schedule", needs_profile="budget",
    sweep={"knob": "target_speedup", "full": [1.5, 2.0, 3.0, 4.0], "quick": [2.0, 3.0]},
)
