"""The object a cached MODEL carries: the validated config and how to start a run.

It lives in ``model_options["transformer_options"]`` under one key, is copied with
the model, and holds no tensors. Every sampling run gets its own ``CacheRun``
(created in the OUTER_SAMPLE wrapper, dropped in its ``finally``), so nothing
survives a run, and two samplers sharing one cached model never share state.
"""
from __future__ import annotations

import logging
import uuid

from ..cache_core import distributed
from ..cache_core.config import CacheConfig
from ..cache_core.engine import CacheRun
from ..cache_core.policies import make_policy
from ..cache_core.policies.calibrate import CalibrationPolicy
from . import events
from .architectures import Architecture

log = logging.getLogger("diffusion_cache")

HOLDER_KEY = "diffusion_cache"
RUN_KEY = "diffusion_cache_run"
# what a multi-GPU host may put in transformer_options: the process group whose ranks must
# decide alike (a torch.distributed ProcessGroup), or False for per-rank decisions
GROUP_KEY = distributed.GROUP_KEY


# k-diffusion samplers whose second evaluation of step i is at sigma[i + 1] (a corrector)
NEXT_SIGMA_CORRECTORS = {"sample_heun", "sample_heunpp2"}


def corrects_at_next_sigma(sampler) -> bool:
    function = getattr(sampler, "sampler_function", None)
    return getattr(function, "__name__", "") in NEXT_SIGMA_CORRECTORS


class CacheHolder:
    def __init__(self, config: CacheConfig, architecture: Architecture, layout, profile=None,
                 node_id=None, calibrate_to: str | None = None):
        self.config = config
        self.architecture = architecture
        self.layout = layout
        self.profile = profile
        self.node_id = node_id
        self.calibrate_to = calibrate_to      # profile name, when this holder calibrates
        self.last_stats = None                # the last run's statistics (JSON-safe summary)
        self.token = uuid.uuid4().hex         # names this holder's block patches (survives deepcopy)

    @property
    def uses_blocks(self) -> bool:
        return self.layout is not None and self.layout.total > 0

    def make_policy(self, group=None):
        if self.calibrate_to is not None:
            policy = CalibrationPolicy("stack" if self.uses_blocks else "output")
        else:
            policy = make_policy(self.config, self.profile)
        policy.group = group
        return policy

    def new_run(self, sigmas, model_sampling, diffusion_model, sampler=None, group=None) -> CacheRun:
        """A fresh run; ``group`` is the host's process group for the decisions (None: every
        rank of torch.distributed when it is initialised; False: each rank decides alone)."""
        s = self.config.schedule
        window = (float(model_sampling.percent_to_sigma(s.start_percent)),
                  float(model_sampling.percent_to_sigma(s.end_percent)))
        if s.start_percent <= 0.0:
            window = (float("inf"), window[1])
        if s.end_percent >= 1.0:
            window = (window[0], float("-inf"))
        probe_fn = None
        block0 = self.architecture.first_block(diffusion_model) if self.uses_blocks else None
        if self.architecture.probe is not None and block0 is not None:
            probe = self.architecture.probe
            probe_fn = lambda args: probe(block0, args)  # noqa: E731
        node_id = self.node_id

        def on_record(run, record):
            events.send(events.STEP_EVENT, events.step_payload(node_id, run.run_id, record, run.locator.total_steps))

        return CacheRun(self.config, self.make_policy(group), [float(x) for x in sigmas],
                        self.layout if self.uses_blocks else None, window,
                        expect_reports=True, corrector_at_next_sigma=corrects_at_next_sigma(sampler),
                        on_record=on_record, probe_fn=probe_fn,
                        label="calibrate" if self.calibrate_to is not None else None)
