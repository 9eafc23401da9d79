"""The policy interface."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from ..decisions import Decision, StepContext


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    metric: float | None = None
    threshold: float | None = None
    reason: str = ""


def reduce_values(values: Sequence[float], how: str) -> float:
    if how == "mean":
        return sum(values) / len(values)
    return max(values)


class Policy:
    """Decides, once per sampler step, whether the model (or its cacheable span) runs.

    ``probe`` names what the engine must measure before asking:
      None                    nothing (the rule depends on the schedule only)
      "modulated_input"       the first block's modulated input (TeaCache)
      "first_block_residual"  block 0's output minus its input (First-Block Cache)
      "model_input"           the model's input latent (EasyCache)
    ``granularity`` is "stack" (skip the block span, add its cached residual to the
    fresh input) or "output" (skip the whole model call).
    """
    name = "policy"
    probe: str | None = None
    granularity = "stack"

    def begin_run(self, sigmas: Sequence[float]) -> None:
        """Called once per sampling run with the run's sigma schedule."""

    def decide(self, ctx: StepContext, keys: Sequence[Hashable], probe: torch.Tensor | None,
               forced: str | None) -> Verdict:
        raise NotImplementedError

    def observe_output(self, ctx: StepContext, keys: Sequence[Hashable], x: torch.Tensor,
                       output: torch.Tensor) -> None:
        """Called after a full model computation with its input and output."""

    def reset(self) -> None:
        self.begin_run([])

    def release(self) -> None:
        """Drop every tensor the policy holds (end of run)."""
        self.begin_run([])


COMPUTE = Decision.COMPUTE
REUSE = Decision.REUSE
