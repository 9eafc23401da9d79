"""The policy interface."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from .. import distributed
from ..decisions import Decision, StepContext
from ..lead import LeadBranch


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

    The block probes ("modulated_input", "front_residual", a block input) and the residuals the
    engine hands a policy are the cache's own tensors: a policy may keep them without a copy
    (and must not write into them). The model input ("model_input") and ``observe_output``'s
    input and output are the host's: a policy copies what it keeps of them.
    """
    name = "policy"
    probe: str | None = None
    granularity = "stack"
    caches_output_change = False    # whole-call caching keeps output - input (EasyCache), not the output
    front_blocks = 0                # blocks always computed before the decision (their residual is the probe)
    back_blocks = 0                 # blocks always computed at the end
    probe_optional = False          # True: decide() copes with a probe of None (otherwise the step computes)
    lead_branch = None              # the run's LeadBranch (set by the engine): the branch that decides
    group = None                    # the ranks that decide alike: None = every rank of torch.distributed
    #                                 when it is initialised, a process group, or False = this process alone
    unverified_drafts = 0           # a block method's drafts after each computed step that need no probe:
    #                                 the engine asks ``draft_without_probe`` before the host's pass, and
    #                                 answers such a draft whole (where the host allows whole passes)

    def agreed(self, value: float | None, how: str = "max") -> float | None:
        """The scalar a decision compares with its threshold, the same on every rank.

        Policies that measure something call this (or ``metric_of``) exactly once per
        ``decide``, with None when there is nothing to measure yet; see ``distributed``."""
        return distributed.agree(value, how, self.group)

    def lead_slice(self, keys: Sequence[Hashable], tensor: torch.Tensor) -> torch.Tensor | None:
        """The deciding branch's part of a batch (None when this call lacks it)."""
        if self.lead_branch is None:
            self.lead_branch = LeadBranch()
        return self.lead_branch.slice(keys, tensor)

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

    def draft_without_probe(self, ctx: StepContext) -> Verdict | None:
        """Asked before the pass of a step that nothing forces to compute, of a policy with
        ``unverified_drafts``: a verdict to reuse answers the pass from the cache with no probe;
        None leaves the step to ``decide`` on its probe."""
        return None

    def observe_output(self, ctx: StepContext, keys: Sequence[Hashable], x: torch.Tensor,
                       output: torch.Tensor, owned: bool = False) -> None:
        """Called after a full model computation with its input and output. ``owned``: the output
        is a tensor made for this call alone, which the policy may keep without a copy."""

    def ran(self, ctx: StepContext, computed: bool) -> None:
        """What the step actually did, after the engine's guards and fallbacks (a verdict to
        reuse becomes a computed step when nothing usable was cached)."""

    def release(self) -> None:
        """Drop every tensor the policy holds (end of run)."""
        self.begin_run([])


class Accumulator:
    """A running sum of per-step change estimates: reuse while it stays below the threshold,
    compute (and start again) once it reaches it. TeaCache and EasyCache decide this way."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)
        self.total = 0.0

    def reset(self) -> None:
        self.total = 0.0

    def add(self, amount: float) -> "Verdict":
        self.total += amount
        if self.total < self.threshold:
            return Verdict(Decision.REUSE, self.total, self.threshold)
        metric, self.total = self.total, 0.0
        return Verdict(Decision.COMPUTE, metric, self.threshold, "accumulated change over threshold")


COMPUTE = Decision.COMPUTE
REUSE = Decision.REUSE
