"""PAB (Pyramid Attention Broadcast): every step runs, attention kernel outputs are reused."""
from dataclasses import dataclass

from ..policies.interval import FixedIntervalPolicy
from .spec import Knob, Method, check


@dataclass(frozen=True)
class PabConfig:
    pab_self_range: int = 2
    pab_cross_range: int = 6
    pab_temporal_range: int = 4
    pab_window_start: float = 100.0
    pab_window_end: float = 800.0

    def __post_init__(self):
        for name in ("pab_self_range", "pab_cross_range", "pab_temporal_range"):
            check(getattr(self, name) >= 1, f"{name} must be 1 or more (1 = never reuse); got {getattr(self, name)}")
        check(0 <= self.pab_window_start <= self.pab_window_end <= 1000,
              f"pab_window_start ({self.pab_window_start}) must be at most pab_window_end "
              f"({self.pab_window_end}), both in 0-1000")


class PabPolicy(FixedIntervalPolicy):
    """Every step is computed (attention is reused inside the step); no block span is kept."""
    name = "pab"

    def __init__(self):
        super().__init__(1)

    def spans(self, total_blocks: int):
        return []

    def decide(self, ctx, keys, probe, forced):
        verdict = super().decide(ctx, keys, probe, forced)
        return verdict if forced else type(verdict)(verdict.decision, verdict.metric, verdict.threshold,
                                                     "every step (attention reused)")


def _range_knob(name: str, default: int, kind: str) -> Knob:
    return Knob(name, "int", default, f"PAB: recompute {kind} attention every N-th call, reuse the output in "
                                      f"between (inside the window). Useful: 2-8; 1 = never reuse.", 1, 50)


METHOD = Method(
    "pab", "PAB (Pyramid Attention Broadcast)", "attention reuse", "attention kernel outputs (self / cross)",
    "every step; each attention call recomputes every N-th call (N per attention kind) inside the window",
    "reuse attention outputs over a range of steps, longer for cross- than for self-attention",
    PabConfig, lambda c, ctx: PabPolicy(),
    knobs=(_range_knob("pab_self_range", 2, "self-"), _range_knob("pab_cross_range", 6, "cross-"),
           Knob("pab_temporal_range", "int", 4, "PAB: the range for temporal attention of factorised video "
                                                 "models; the transformer models here have none (their "
                                                 "self-attention is spatio-temporal and uses pab_self_range).",
                1, 50, advanced=True),
           Knob("pab_window_start", "float", 100.0, "PAB reuses attention only while the timestep (0-1000) is "
                                                    "above this. Useful: 100-450.", 0.0, 1000.0, 1.0,
                advanced=True),
           Knob("pab_window_end", "float", 800.0, "PAB reuses attention only while the timestep (0-1000) is "
                                                  "below this. Useful: 800-930.", 0.0, 1000.0, 1.0,
                advanced=True)),
    calibration="none (needs the attention override hook)",
    sweep={"knob": "pab_self_range", "full": [2, 3, 4], "quick": [2],
           "inputs": {"pab_window_start": 0.0, "pab_window_end": 1000.0}},
)
