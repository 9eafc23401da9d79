"""The policy interface."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from .. import distributed
from ..decisions import Decision, StepContext


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    metric: float | None = None
    threshold: float | None = None
    reason: str = ""
    span: int | None = None        # index into the policy's spans() to skip; None = the first


def reduce_values(values: Sequence[float], how: str) -> float:
    if how == "mean":
        return sum(values) / len(values)
    return max(values)


class Policy:
    """Decides, once per sampler step, whether the model (or its cacheable span) runs.

    ``probe`` names what the engine must measure before asking:
      None                    nothing (the rule depends on the schedule only)
      "modulated_input"       the first block's modulated input (TeaCache)
      "front_residual"        the front blocks' output minus their input (First-Block Cache, DBCache)
      "model_input"           the model's input latent (EasyCache)
    ``granularity`` is "stack" (skip the block span, add its cached residual to the
    fresh input) or "output" (skip the whole model call).
    """
    name = "policy"
    probe: str | None = None
    granularity = "stack"
    caches_output_change = False    # whole-call caching keeps output - input (EasyCache), not the output
    front_blocks = 0                # blocks always computed before the decision (their residual is the probe)
    back_blocks = 0                 # blocks always computed at the end
    probe_optional = False          # True: decide() copes with a probe of None (otherwise the step computes)
    group = None                    # the ranks that decide alike: None = every rank of torch.distributed
    #                                 when it is initialised, a process group, or False = this process alone

    def agreed(self, value: float | None, how: str = "max") -> float | None:
        """The scalar a decision compares with its threshold, the same on every rank.

        Policies that measure something call this (or ``metric_of``) exactly once per
        ``decide``, with None when there is nothing to measure yet; see ``distributed``."""
        return distributed.agree(value, how, self.group)

    def metric_of(self, values: Sequence[float], how: str) -> float | None:
        """Per-sample measurements reduced to one metric (None for none), agreed across ranks."""
        return self.agreed(reduce_values(values, how) if values else None, how)

    def spans(self, total_blocks: int) -> list[tuple[int, int]]:
        """The block spans [a, b) this policy may skip; residuals are recorded for each."""
        return [(self.front_blocks, total_blocks - self.back_blocks)]

    def begin_run(self, sigmas: Sequence[float]) -> None:
        """Called once per sampling run with the run's sigma schedule."""

    def decide(self, ctx: StepContext, keys: Sequence[Hashable], probe: torch.Tensor | None,
               forced: str | None) -> Verdict:
        raise NotImplementedError

    def observe_output(self, ctx: StepContext, keys: Sequence[Hashable], x: torch.Tensor,
                       output: torch.Tensor) -> None:
        """Called after a full model computation with its input and output."""

    def release(self) -> None:
        """Drop every tensor the policy holds (end of run)."""
        self.begin_run([])


COMPUTE = Decision.COMPUTE
REUSE = Decision.REUSE
