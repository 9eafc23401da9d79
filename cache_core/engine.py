"""One sampling run of a cache: step contexts, decisions, block spans, statistics.

The host (ComfyUI's wrappers and block patches, or a test) drives it with these
kinds of events:

* ``begin_sampler_evaluation(sigma)`` / ``end_sampler_evaluation()`` around one
  evaluation of the sampler's model function (ComfyUI's ``predict_noise``), optional;
* ``begin_evaluation(sigma, branches, variant)`` / ``end_evaluation()`` around one pass
  over the conditionings (ComfyUI's ``calc_cond_batch``), possibly split over several
  model calls. Without a sampler evaluation around it, a pass is its own evaluation;
* ``answer_pass(x, sigma, branches)`` / ``record_pass(x, sigma, outputs)`` inside a pass,
  for runs that cache whole passes (``pass_level``): the step is decided before the host
  prepares any model call, and a cached pass returns every branch's output at once;
* ``model_call(x, keys, branches, run_model)`` for each model call; for
  output-granularity policies it computes or reuses the whole call;
* ``block(g, args, run_block, probe_fn)`` for each transformer block ``g`` of a
  call; for stack-granularity policies it computes the block, or skips it and
  adds the cached residual of the skipped run of blocks to the fresh input.

A skipped span of blocks returns its inputs unchanged, except that the last block
of each run of one block kind adds that run's cached residual: the sum of the
per-block residuals recorded at the last full step. Summing per block keeps
anything the host adds between blocks (ControlNet residuals) out of the cache,
so the host's fresh additions still apply on cached steps.

One sampler evaluation may make several passes at its sigma: guidance passes (skip-layer
guidance, PAG, SAG) with other patches or another input, and ComfyUI's context windows,
one pass per window. The host names what distinguishes a pass (``variant``); the run's
first pass is the main one, and every other pass keeps its own cached state (its branch
keys are ``PassKey(pass, key)``), decided with the step but never mixed into the main
pass's residuals, outputs or forecast histories.

Streams are the block arguments named in ``STREAM_KEYS``. A stream may be a tuple of
tensors (LTX-2 hands its blocks ``img = (video, audio)``): each element gets its own
residual. Other block arguments are passed through untouched.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Hashable, Sequence

import torch

from .branch_store import BranchStore, split_batch
from .config import CacheConfig
from .decisions import Decision, StepContext
from .eager import eager_methods
from .layout import BlockLayout
from .lead import LeadBranch
from .policies.base import Policy, Verdict
from .predictors import make_predictor
from .run_stats import DecisionRecord, RunStats
from .schedule import StepLocator

log = logging.getLogger("diffusion_cache")
_run_ids = itertools.count(1)
STREAM_KEYS = ("img", "txt", "x")


@dataclass(frozen=True)
class PassKey:
    """The branch ``key`` as seen by a pass other than the main one (a guidance pass, a
    context window): its cached state is its own."""
    pass_id: tuple
    key: Hashable

    def __str__(self) -> str:
        return f"{self.key} (pass {self.pass_id[1] + 1} of variant {hash(self.pass_id[0]) & 0xffff:04x})"


@dataclass
class _Call:
    keys: tuple
    implicit: bool = False                             # begun by block 0, no model-call event
    verdict: Verdict | None = None
    skip_span: tuple | None = None                     # the span of blocks skipped by this call
    recording: bool = True                             # a full computation: record span residuals
    front_in: torch.Tensor | None = None               # input of the front blocks (probe)
    residual_acc: dict = field(default_factory=dict)   # per-block mode: (span, run) -> stream -> sum
    span_in: dict = field(default_factory=dict)        # (span, run) -> stream -> (input, its version)
    joined_in: dict = field(default_factory=dict)      # (span, 1) -> (stream, inputs of run 0 it joins)
    pending: dict = field(default_factory=dict)        # span -> (inputs, outputs) of its run 0, not yet recorded
    per_block: bool = True                             # the host adds to the streams between blocks
    recorded: dict = field(default_factory=dict)       # residuals recorded by this call
    first_block: int | None = None                     # the first block of this call that reached the run
    first_in: torch.Tensor | None = None               # implicit calls: block 0's image input
    whole: bool = False                                # a stack run's call cached whole: its blocks just run


@dataclass
class _Evaluation:
    ctx: StepContext
    verdict: Verdict | None = None
    fell_back: bool = False
    blocks_computed: int = 0
    blocks_total: int = 0
    calls: int = 0
    block_mask: list = field(default_factory=list)     # the first call's per-block bits
    explicit: bool = False                             # a sampler evaluation: passes join it
    in_pass: bool = False
    passes: dict = field(default_factory=dict)         # variant -> passes begun in this evaluation
    pass_computing: bool = False                       # a whole pass decided to compute: its calls just run
    calls_before_pass: int = 0                         # model calls of this evaluation before that pass
    pass_left_to_blocks: bool = False                  # a pass the blocks decide (``mixed_passes``)
    blocks_before_pass: tuple = (0, 0)                 # (computed, total) blocks of the evaluation before it
    answered_whole: bool = False                       # the evaluation's first pass was answered whole


@eager_methods("answer_pass", "record_pass", "model_call", "_whole_call", "_deep_call", "block", "_block_of_whole_pass", "_block", "_compute_and_record", "_compute_and_record_per_block")
class CacheRun:
    def __init__(self, config: CacheConfig, policy: Policy, sigmas: Sequence[float],
                 layout: BlockLayout | None = None, window_sigmas: tuple | None = None,
                 expect_reports: bool = False, corrector_at_next_sigma: bool = False,
                 on_record: Callable | None = None,
                 probe_fn: Callable[[dict], torch.Tensor] | None = None, label: str | None = None):
        self.config = config
        self.policy = policy
        self.label = label or config.method      # what the run's statistics and log lines call it
        self.sigmas = [float(s) for s in sigmas]
        self.layout = layout if (layout is not None and layout.total > 0) else None
        if policy.granularity == "deep":
            self.granularity = "deep"              # U-Net: the host runs the shallow branch itself
        else:
            self.granularity = policy.granularity if self.layout else "output"
        self.window = window_sigmas or (float("inf"), float("-inf"))
        self.locator = StepLocator(self.sigmas, expect_reports=expect_reports,
                                   corrector_at_next_sigma=corrector_at_next_sigma)
        self.run_id = next(_run_ids)
        self.store = BranchStore(f"{self.label} run {self.run_id}")
        self.predictor = make_predictor(config.effective_predictor, self.store, config.predictor_order,
                                        config.predictor_axis)
        self.stats = RunStats(self.run_id, self.label, self.locator.total_steps)
        self.on_record = on_record
        self.probe_fn = probe_fn
        self.consecutive_cached = 0
        self.cached_steps = 0
        self.output_of: dict = {}        # branch -> the model-input chunk whose output its "O"/"D" slot holds
        self.probe_warned = False        # one warning per run for a probe that cannot be read
        self.lead_branch = LeadBranch()  # the branch whose measurements decide (first key of the run)
        policy.lead_branch = self.lead_branch
        self.evaluation: _Evaluation | None = None
        self.call: _Call | None = None
        self.main_pass = None            # (variant, index) of the run's first pass: plain branch keys
        self.pass_id = None              # the pass in progress, when it is not the main one
        self.policy.begin_run(self.sigmas)
        if self.layout:
            total = self.layout.total
            self.front = min(max(int(getattr(policy, "front_blocks", 0)), 0), total)
            self.spans = [s for s in (tuple(x) for x in policy.spans(total)) if 0 <= s[0] < s[1] <= total]
            self.span_runs = {span: self.layout.segment_runs(*span) for span in self.spans}
            self.membership: dict[int, list] = {}        # block -> [(span, run index), ...]
            self.run_end: dict[tuple, int] = {}          # (span, run index) -> last block
            for span, runs in self.span_runs.items():
                for r, (a, b) in enumerate(runs):
                    self.run_end[(span, r)] = b
                    for g in range(a, b + 1):
                        self.membership.setdefault(g, []).append((span, r))
            self.stream_keys: dict[tuple, tuple] = {}    # (span, run index) -> streams it caches
            # a span of two block kinds whose second kind reads the first kind's streams joined
            # (Flux: single blocks read cat(txt, img)) records one residual, of the joined stream
            # against the first run's inputs: span -> (stream, order of the joined streams), False
            # when the host does not join them (learned at the first recorded call)
            self.joins: dict[tuple, tuple | bool] = {}
            self.joinable = {span for span, runs in self.span_runs.items() if len(runs) == 2}
            self.run_ends: dict[int, list] = {}          # block -> the (span, run index) that end there
            for key, b in self.run_end.items():
                self.run_ends.setdefault(b, []).append(key)
        self.inputs_survive: dict = {}                   # (block, stream) -> does the block leave that input
        #                                                  alone? (learned at its first recorded call)
        self.front_input_survives: bool | None = None    # ... and the front blocks theirs? (learned)
        # a method whose decisions need nothing from inside the call may skip whole calls (cache_level
        # "output"): every layer is skipped, not just the blocks. Calls with ControlNet residuals still
        # cache the block span, so that those apply fresh
        self.whole_calls = (self.granularity == "stack" and policy.probe is None
                            and getattr(config.params, "cache_level", "blocks") == "output"
                            and self.front == 0 and self.spans == [(0, self.layout.total)])
        # such a method may also cache whole passes (every model call of one pass over the conditionings,
        # and the host's work around them); the host says whether its passes allow it (``use_pass_level``)
        # (a method that measures the model input, EasyCache, reads the pass's input instead)
        # a block method whose first drafts need no probe (SpeCa) answers those as whole passes and
        # leaves every other pass to its blocks, which decide on the probe
        self.mixed_passes = self.granularity == "stack" and int(getattr(policy, "unverified_drafts", 0)) > 0
        self.pass_level_possible = self.mixed_passes or (policy.probe in (None, "model_input")
                                                         and (self.whole_calls or self.granularity == "output"))
        self.pass_slot = "YD" if policy.caches_output_change else "Y"   # y, or y - x (the output's change)
        self.pass_level: bool | None = None       # None: not known until the host's first pass
        self.calls_per_pass = 1                   # model calls of the last computed pass (block statistics)

    # ---- evaluations -------------------------------------------------------------
    def begin_sampler_evaluation(self, sigma: float) -> StepContext:
        """One evaluation of the sampler's model function: the passes it makes (guidance
        passes, context windows) all belong to its step and stage."""
        if self.evaluation is not None:
            self._finish_evaluation()
        return self._open_evaluation(sigma, (), explicit=True).ctx

    def end_sampler_evaluation(self) -> None:
        self.pass_id = None
        if self.evaluation is not None:
            self._finish_evaluation()

    def begin_evaluation(self, sigma: float, branches: Sequence = (), variant: Hashable = None) -> StepContext:
        """One pass over the conditionings. ``variant`` is what distinguishes this pass from
        the others of its sampler evaluation (the host's patches, window, conditionings)."""
        ev = self.evaluation
        if ev is None or not ev.explicit:
            if ev is not None:
                self._finish_evaluation()
            ev = self._open_evaluation(sigma, branches, explicit=False)
        elif branches and not ev.ctx.branches:
            ev.ctx = replace(ev.ctx, branches=tuple(branches))
        index = ev.passes.get(variant, 0)
        ev.passes[variant] = index + 1
        ident = (variant, index)
        if self.main_pass is None:
            self.main_pass = ident
        self.pass_id = None if ident == self.main_pass else ident
        ev.in_pass = True
        return ev.ctx

    def _open_evaluation(self, sigma: float, branches: Sequence, explicit: bool) -> _Evaluation:
        loc = self.locator.locate(sigma)
        ctx = StepContext(self.run_id, loc.step, self.locator.total_steps, loc.stage, float(sigma),
                          self.locator.progress(loc.step), tuple(branches))
        self.evaluation = _Evaluation(ctx, explicit=explicit)
        return self.evaluation

    def _branch_keys(self, keys: Sequence[Hashable]) -> tuple:
        """The cache's keys for the conditionings ``keys`` of the pass in progress."""
        keys = tuple(keys)
        return keys if self.pass_id is None else tuple(PassKey(self.pass_id, k) for k in keys)

    def end_evaluation(self) -> None:
        """The end of a pass; inside a sampler evaluation the evaluation goes on."""
        ev = self.evaluation
        self.pass_id = None
        if ev is not None and ev.explicit and ev.in_pass:
            ev.in_pass = False
            return
        self._finish_evaluation()

    def _finish_evaluation(self) -> None:
        ev, self.evaluation = self.evaluation, None
        self.pass_id = None
        if ev is None or ev.calls == 0:
            return
        verdict = ev.verdict or Verdict(Decision.COMPUTE)
        decision = Decision.COMPUTE if ev.fell_back else verdict.decision
        if decision == Decision.REUSE:
            decision = self.predictor.decision     # REUSE, or PREDICT when the predictor forecasts
        if ev.ctx.stage == 0:
            self.consecutive_cached = 0 if decision == Decision.COMPUTE else self.consecutive_cached + 1
            self.cached_steps += decision != Decision.COMPUTE
            self.policy.ran(ev.ctx, decision == Decision.COMPUTE)   # what ran, after guards and fallbacks
        record = DecisionRecord(ev.ctx.step, ev.ctx.stage, ev.ctx.sigma, list(ev.ctx.branches),
                                decision.value, verdict.metric, verdict.threshold,
                                ev.blocks_computed, ev.blocks_total,
                                _reason(decision, verdict),
                                "".join(ev.block_mask))
        self.stats.add(record)
        self.stats.note_cache_bytes(self.predictor.nbytes())
        if self.config.verbose:
            log.info("Diffusion Cache step %d/%d stage %d sigma %.4f: %s (metric %s, threshold %s) %s",
                     ev.ctx.step + 1, ev.ctx.total_steps, ev.ctx.stage, ev.ctx.sigma, decision.value,
                     _fmt(verdict.metric), _fmt(verdict.threshold), record.reason)
        if self.on_record is not None:
            self.on_record(self, record)

    def step_reported(self, index: int) -> None:
        """The sampler's progress report: step ``index`` had its first evaluation."""
        self.locator.step_reported(index)

    # ---- decisions ----------------------------------------------------------------
    def _forced_reason(self, ctx: StepContext) -> str | None:
        s = self.config.schedule
        start_sigma, end_sigma = self.window
        if ctx.stage > 0:
            return "extra sampler stage"
        if ctx.sigma > start_sigma:
            return "before start_percent"
        if ctx.sigma <= end_sigma:
            return "after end_percent"
        if ctx.step < s.warmup_steps:
            return "warm-up"
        if ctx.step >= ctx.total_steps - s.last_steps_computed:
            return "last steps"
        if s.max_consecutive_cached and self.consecutive_cached >= s.max_consecutive_cached:
            return "max consecutive cached"
        if s.max_cached_steps and self.cached_steps >= s.max_cached_steps:
            return "max cached steps"
        return None

    def _decide(self, keys: Sequence[Hashable], probe: torch.Tensor | None, cache_ready: bool) -> Verdict:
        ev = self.evaluation
        if ev.verdict is not None:          # a later call of the same evaluation follows the first
            return ev.verdict
        forced = self._forced_reason(ev.ctx)
        if forced is None and not cache_ready:
            forced = "nothing cached yet"
        if ev.ctx.stage > 0:
            verdict = Verdict(Decision.COMPUTE, None, None, forced)
        elif probe is None and self.policy.probe is not None and not getattr(self.policy, "probe_optional", False):
            self._warn_probe()
            verdict = Verdict(Decision.COMPUTE, None, None, forced or "probe unavailable")
        else:
            lead_keys, lead_probe = self._lead_view(keys, probe)
            verdict = self.policy.decide(ev.ctx, lead_keys, lead_probe, forced)
            if forced and verdict.decision != Decision.COMPUTE:
                verdict = Verdict(Decision.COMPUTE, verdict.metric, verdict.threshold, forced)
        ev.verdict = verdict
        return verdict

    def _warn_probe(self) -> None:
        if not self.probe_warned:
            self.probe_warned = True
            log.warning("Diffusion Cache: %s could not read its probe (%s): block 0 ran outside the cache's "
                        "patch, or another pack changed its inputs or outputs; such steps are computed",
                        self.label, self.policy.probe)

    def _lead_view(self, keys: Sequence[Hashable], tensor: torch.Tensor | None):
        """Policies measure one branch, the same whether ComfyUI batches the conditionings
        or splits them over several calls: the run's first key, when this call has it."""
        return self.lead_branch.view(keys, _first_tensor(tensor))

    def _ensure_evaluation(self, sigma: float | None) -> _Evaluation:
        if self.evaluation is None:
            self.begin_evaluation(sigma if sigma is not None else self.sigmas[0])
        return self.evaluation

    # ---- whole passes ----------------------------------------------------------------
    def use_pass_level(self, allowed: bool) -> bool:
        """Fix, once per run at its first pass, whether whole passes are cached: the method must
        decide from the schedule alone and cache whole outputs, and the host's passes must allow it
        (no ControlNet residuals, whose fresh values a cached pass would drop). Later calls keep
        the first answer, so a run never mixes the two caches."""
        if self.pass_level is None:
            self.pass_level = bool(allowed) and self.pass_level_possible
        return self.pass_level

    def answer_pass(self, x: torch.Tensor, sigma: torch.Tensor, branches: Sequence[Hashable]) -> dict | None:
        """Decide the pass in progress before its model calls. A cached pass returns each branch's
        output, ``x - sigma * y`` with ``y`` the branch's cached (or forecast) noise prediction
        ``(x - output) / sigma`` (a method that caches the output's change keeps ``y - x``: y = x + D);
        None: the pass computes, and the host reports its outputs with ``record_pass``.
        ``sigma``: the pass's per-sample (or single) noise level."""
        ev = self.evaluation
        keys, slot = self._branch_keys(branches), self.pass_slot
        level = _uniform_sigma(sigma) if ev.ctx.sigma > 0 else None   # one noise level: a scalar
        scale = None if level is not None or ev.ctx.sigma <= 0 else _per_sample(sigma, x)
        ready = bool(keys) and (level is not None and level > 0 or scale is not None) and \
            all(self.predictor.ready(slot, (k,), like=x) for k in keys)
        if self.mixed_passes:
            verdict = self._draft_without_probe(ev, ready)
            if verdict is None:                     # the blocks decide this pass, on the probe
                ev.pass_left_to_blocks = True
                ev.calls_before_pass = ev.calls
                ev.blocks_before_pass = (ev.blocks_computed, ev.blocks_total)
                return None
        elif self.policy.probe == "model_input":    # every branch sees the same input: the lead's decides
            if self.pass_id is None and keys and self.lead_branch.key not in keys:
                self.lead_branch.key = keys[0]      # the first branch of the main pass (its prompt switched)
            verdict = self._decide(keys[:1], x, ready)
        else:
            verdict = self._decide(keys, None, ready)
        blocks = self.layout.total if self.layout else 1
        if verdict.decision != Decision.COMPUTE and ready:
            ev.calls += 1
            ev.blocks_total += blocks * self.calls_per_pass
            out = {}
            for b, k in zip(branches, keys):
                if scale is None and slot == "Y":     # x - sigma * y: one op, folded into a forecast's sum
                    out[b] = self.predictor.predict_onto(slot, (k,), ev.ctx, x, -level)
                    continue
                value, gain = self.predictor.predict_scaled(slot, (k,), ev.ctx)  # the cached y (or y - x)
                value = value.to(x.device)                                       # is value * gain
                if slot == "YD":                       # y = x + (y - x)
                    y = torch.add(x, value, alpha=gain)
                    out[b] = torch.add(x, y, alpha=-level) if scale is None else torch.addcmul(x, scale, y, value=-1.0)
                    continue
                out[b] = torch.addcmul(x, scale if gain == 1.0 else scale * gain, value, value=-1.0)
            return out
        if verdict.decision != Decision.COMPUTE:
            ev.fell_back = True       # nothing usable cached for this pass: compute it
        ev.pass_computing = True
        ev.calls_before_pass = ev.calls
        return None

    def _draft_without_probe(self, ev: _Evaluation, ready: bool) -> Verdict | None:
        """``mixed_passes``: the verdict that answers this pass whole before its probe, or None."""
        if ev.verdict is not None:          # a later pass of this evaluation follows its first
            return ev.verdict if ev.answered_whole and ready else None
        if not ready or self._forced_reason(ev.ctx) is not None:
            return None
        verdict = self.policy.draft_without_probe(ev.ctx)
        if verdict is None or verdict.decision == Decision.COMPUTE:
            return None
        ev.verdict, ev.answered_whole = verdict, True
        return verdict

    def record_pass(self, x: torch.Tensor, sigma: torch.Tensor, outputs: dict) -> None:
        """The outputs (branch -> tensor) of a pass that ``answer_pass`` left to compute."""
        ev = self.evaluation
        if ev is not None and ev.pass_left_to_blocks:     # kept when every block of the pass ran
            ev.pass_left_to_blocks = False
            self.calls_per_pass = max(1, ev.calls - ev.calls_before_pass)
            computed = ev.blocks_computed - ev.blocks_before_pass[0]
            if ev.ctx.sigma > 0 and computed > 0 and computed == ev.blocks_total - ev.blocks_before_pass[1]:
                self._record_predictions(ev, x, sigma, outputs)
            return
        if ev is None or not ev.pass_computing:
            return
        ev.pass_computing = False
        self.calls_per_pass = max(1, ev.calls - ev.calls_before_pass)
        if ev.ctx.sigma <= 0:
            return
        ys = self._record_predictions(ev, x, sigma, outputs)
        wants_residuals = getattr(self.policy, "wants_residuals", False)
        if ev.ctx.stage == 0 and ys and (wants_residuals or _overrides(self.policy, "observe_output")):
            lead = self.lead_branch.key if self.lead_branch.key in ys else next(iter(ys))
            value, g = ys[lead]                 # only a policy that looks at it gets y made
            if wants_residuals and self.pass_slot == "Y":    # y = value * gain, for the policy to fold
                self.policy.observe_residuals(ev.ctx, (lead,), {"Y": value}, gain=1.0 if g is None else g)
                return
            if g is None:
                y, owned = value, self.pass_slot == "YD"
            else:
                y, owned = (value * g if self.pass_slot == "Y" else torch.add(x, value, alpha=g)), True
            if wants_residuals:
                self.policy.observe_residuals(ev.ctx, (lead,), {"Y": y})
            else:
                self.policy.observe_output(ev.ctx, (lead,), x, y, owned=owned)

    def _record_predictions(self, ev: _Evaluation, x: torch.Tensor, sigma: torch.Tensor, outputs: dict) -> dict:
        """Record each branch's prediction of a computed pass; returns branch key -> (value, gain)."""
        level = _uniform_sigma(sigma)
        # with one sigma for the pass, each branch is recorded in one op with a gain for the predictor:
        # y = (x - out) / sigma as x - out with gain 1 / sigma; the output's change y - x as
        # out - (1 - sigma) x with gain -1 / sigma
        gain = None if level is None or level <= 0 else (1.0 / level if self.pass_slot == "Y" else -1.0 / level)
        scale = None if gain is not None else _per_sample(sigma, x)
        if gain is None and scale is None:
            return {}
        ys = {}
        for b, k in zip(outputs, self._branch_keys(tuple(outputs))):
            if gain is not None:
                d = x - outputs[b] if self.pass_slot == "Y" else torch.add(outputs[b], x, alpha=level - 1.0)
                self.predictor.record(self.pass_slot, (k,), d, ev.ctx, gain=gain)
                ys[k] = (d, gain)
                continue
            y = (x - outputs[b]) / scale
            self.predictor.record(self.pass_slot, (k,), y - x if self.pass_slot == "YD" else y, ev.ctx)
            ys[k] = (y, None)                   # y itself (recorded as is for "Y")
        return ys

    # ---- model calls ---------------------------------------------------------------
    def model_call(self, x: torch.Tensor, keys: Sequence[Hashable], run_model: Callable[[], torch.Tensor],
                   sigma: float | None = None, run_shallow: Callable | None = None,
                   adds_between_blocks: bool = True) -> torch.Tensor:
        """One model call. For the "deep" granularity the host passes ``run_shallow(feature)``
        (runs only the shallow branch around a cached deep feature) and, during
        ``run_model``, reports the deep feature through ``record_deep_feature``.

        ``adds_between_blocks``: the host adds to the streams between blocks in this call
        (ControlNet residuals). Then residuals are summed per block, so a cached step still
        gets the host's fresh additions; otherwise each span records one residual, its
        output minus its input."""
        ev = self._ensure_evaluation(sigma)
        ev.calls += 1
        keys = self._branch_keys(keys)
        if ev.pass_computing:          # the whole pass was decided (and is recorded) by answer_pass
            blocks = self.layout.total if self.layout else 1
            ev.blocks_total += blocks
            self.call = _Call(keys, whole=True)
            try:
                out = run_model()
            finally:
                self.call = None
            ev.blocks_computed += blocks
            return out
        self.call = _Call(keys, per_block=adds_between_blocks)
        if self.granularity == "stack" and self.whole_calls and not adds_between_blocks \
                and isinstance(x, torch.Tensor):
            self.call.whole = True
            return self._whole_call(ev, keys, x, run_model, self.layout.total)
        if self.granularity == "stack":
            call = self.call
            try:
                out = run_model()       # blocks decide through block()
            finally:
                self.call = None
            self._flush_pending(call)
            if call.first_block is None:
                return self._no_block_ran(ev, keys, x, out)
            if ev.ctx.stage == 0 and call.verdict is not None and call.recording:
                self._observe(ev.ctx, keys, x, out, call.recorded)
            return out
        if self.granularity == "deep":
            return self._deep_call(ev, keys, run_model, run_shallow)
        return self._whole_call(ev, keys, x, run_model, 1)

    def _whole_call(self, ev, keys, x, run_model, blocks: int) -> torch.Tensor:
        """Compute the whole call, or return its cached (or forecast) output. ``blocks``: what
        the call counts for in the block statistics (a stack run's call counts its blocks)."""
        ev.blocks_total += blocks
        slot = "D" if self.policy.caches_output_change else "O"
        # outputs may be shaped unlike the input (conditioning channels concatenated to it): the slot
        # fits when the input is shaped like the one it was recorded for
        ready = self.predictor.ready(slot, keys) and \
            all(self.output_of.get(k) == _chunk_signature(x, keys) for k in keys)   # per branch
        verdict = self._decide(keys, x, ready)
        if verdict.decision != Decision.COMPUTE:
            if ready:
                cached = self.predictor.predict(slot, keys, ev.ctx)
                self.call = None
                if slot == "D":      # the output's channels are the input's first ones
                    return x[:, :cached.shape[1]] + cached.to(x.device)
                return cached.to(x.device).clone()
            ev.fell_back = True
        out = run_model()
        ev.blocks_computed += blocks
        kept = None
        if slot == "D" and out.shape[0] == x.shape[0] and out.shape[2:] == x.shape[2:] and out.shape[1] <= x.shape[1]:
            kept = out - x[:, :out.shape[1]]
        elif slot == "O":
            kept = out.clone()      # a copy: the host may write into out
        if kept is not None:
            self.predictor.record(slot, keys, kept, ev.ctx)
            self.output_of.update(dict.fromkeys(keys, _chunk_signature(x, keys)))
        if ev.ctx.stage == 0:   # a stack run's policy measures what was cached, here the output
            self._observe(ev.ctx, keys, x, out,
                          {slot: kept} if self.granularity == "stack" and kept is not None else None)
        self.call = None
        return out

    def _no_block_ran(self, ev, keys, x, out):
        """A model call in which none of the blocks reached the run: its block patches were
        replaced, or the model calls its blocks without the host's options. This call was
        computed in full; the rest of the run caches whole model calls."""
        log.warning("Diffusion Cache: none of the cache's block patches ran in a model call (another node "
                    "replaced them, or this model calls its blocks without transformer_options); %s caches "
                    "whole model calls for the rest of this run", self.label)
        self.granularity = "output"
        self.policy.granularity = "output"
        self._decide(keys, x, False)
        ev.blocks_total += 1
        ev.blocks_computed += 1
        self.predictor.record("O", keys, out.clone(), ev.ctx)
        self.output_of.update(dict.fromkeys(keys, _chunk_signature(x, keys)))
        if ev.ctx.stage == 0:
            self._observe(ev.ctx, keys, x, out, None)
        return out

    def _observe(self, ctx, keys, x, out, residuals) -> None:
        lead_keys, lead_x = self._lead_view(keys, x)
        _, lead_out = self._lead_view(keys, out)
        self.policy.observe_output(ctx, lead_keys, lead_x, lead_out)
        if residuals is not None and getattr(self.policy, "wants_residuals", False):
            lead = {slot: (None if v is None else self._lead_view(keys, v)[1]) for slot, v in residuals.items()}
            self.policy.observe_residuals(ctx, lead_keys, lead)

    def _deep_call(self, ev, keys, run_model, run_shallow):
        ev.blocks_total += 1
        ready = run_shallow is not None and self.predictor.ready("deep", keys)
        verdict = self._decide(keys, None, ready)
        try:
            if verdict.decision != Decision.COMPUTE and ready:
                self.call.recording = False      # the shallow branch reports the feature it was given
                feature = self.predictor.predict("deep", keys, ev.ctx)
                return run_shallow(feature.clone())   # a copy: output-block patches may write into it
            if verdict.decision != Decision.COMPUTE:
                ev.fell_back = True
            ev.blocks_computed += 1
            return run_model()
        finally:
            self.call = None

    def record_deep_feature(self, feature: torch.Tensor) -> None:
        """The host reports the deep feature of the full call in progress. Only a computed
        feature is recorded, as a copy (the host's patches may edit theirs in place later)."""
        if self.call is not None and self.call.recording and self.evaluation is not None:
            self.predictor.record("deep", self.call.keys, feature.detach().clone(), self.evaluation.ctx)

    # ---- blocks ----------------------------------------------------------------------
    def block(self, g: int, args: dict, run_block: Callable[[dict], dict],
              probe_fn: Callable[[dict], torch.Tensor] | None = None, keys: Sequence[Hashable] = ()) -> dict:
        """Run, or skip, transformer block ``g`` (global index) of the current call.

        Models whose forward pass fires no model-call event (SD3's MMDiT) start a
        call implicitly at block 0, with the conditioning ``keys`` of the batch.
        """
        if self.granularity != "stack" or (self.call is not None and self.call.whole):
            return run_block(args)
        if self.evaluation is not None and self.evaluation.pass_computing:
            return self._block_of_whole_pass(g, args, run_block)
        if g == 0 and (self.call is None or self.call.implicit):
            self._ensure_evaluation(None).calls += 1
            self.call = _Call(self._branch_keys(tuple(keys) or ("batch",)), implicit=True)
        ev, call = self.evaluation, self.call
        if ev is None or call is None:
            return run_block(args)
        if call.first_block is None:
            call.first_block = g
            if call.implicit and isinstance(args.get("img"), torch.Tensor):
                call.first_in = args["img"]
        before = ev.blocks_computed
        out = self._block(g, args, run_block, probe_fn or self.probe_fn, ev, call)
        if ev.calls == 1 and len(ev.block_mask) == g:
            ev.block_mask.append("1" if ev.blocks_computed > before else "0")
        if call.implicit and g == self.layout.total - 1:
            self._end_implicit_call(ev, call, out)
        return out

    def _block_of_whole_pass(self, g: int, args: dict, run_block) -> dict:
        """A block of a computed whole pass on a model without a model-call event (SD3): it runs;
        block 0 counts a model call."""
        ev = self.evaluation
        ev.calls += g == 0
        ev.blocks_total += 1
        out = run_block(args)
        ev.blocks_computed += 1
        return out

    def _end_implicit_call(self, ev, call, out) -> None:
        """The last block of a call that block 0 began (no model-call event): observe it as
        ``model_call`` would, with block 0's input and the last block's image stream."""
        self._flush_pending(call)
        x, recorded = call.first_in, call.recorded
        call.first_in, call.recorded = None, {}
        img = out.get("img") if isinstance(out, dict) else None
        if ev.ctx.stage == 0 and call.verdict is not None and call.recording and x is not None \
                and isinstance(img, torch.Tensor):
            self._observe(ev.ctx, call.keys, x, img, recorded)

    def _block(self, g, args, run_block, probe_fn, ev, call) -> dict:
        ev.blocks_total += 1
        if g < self.front:                       # front blocks always run; they give the probe
            img = _primary(args)
            if isinstance(img, torch.Tensor) and (call.front_in is None or call.front_in[0].shape != img.shape):
                # (restart at a change of stream layout.) The input by reference once the run has seen
                # that the front blocks leave it alone; until then a copy, to check that
                call.front_in = (img if self.front_input_survives else img.clone(), img)
            out = run_block(args)
            ev.blocks_computed += 1
            if g == self.front - 1:
                front_in, call.front_in = call.front_in, None
                img = _primary(out)
                probe = None          # the front residual, when every front block ran here
                if call.first_block == 0 and isinstance(img, torch.Tensor) and front_in is not None \
                        and front_in[0].shape == img.shape:
                    if self.front_input_survives is None:
                        self.front_input_survives = torch.equal(front_in[0], front_in[1])
                    probe = img - front_in[0]
                self._decide_call(call, probe, out)
            return out
        if call.verdict is None:
            probe = None
            if self.policy.probe in ("modulated_input", "block_input") and g == 0:
                try:                  # block 0's input, read by the architecture's probe
                    probe = _owned(probe_fn(args) if probe_fn is not None else _primary(args), args)
                except Exception as e:
                    log.debug("Diffusion Cache: probe failed: %s: %s", type(e).__name__, e)
                    probe = None
            self._decide_call(call, probe, args)
        if call.skip_span is not None and g == call.skip_span[0] and \
                not self._span_ready(call.skip_span, call.keys, args, check_shapes=True):
            # the cached residual does not fit this call's streams: nothing skipped yet, so compute exactly
            call.skip_span = None
            self.evaluation.fell_back = True
        if call.skip_span is not None and call.skip_span[0] <= g < call.skip_span[1]:
            return self._skip(g, args, call)
        ev.blocks_computed += 1
        if call.recording and g in self.membership:
            return self._compute_and_record(g, args, run_block, call)
        return run_block(args)

    def _decide_call(self, call: _Call, probe, like: dict) -> None:
        default_span = self.spans[0] if self.spans else None
        ready = default_span is not None and self._span_ready(default_span, call.keys, like)
        verdict = self._decide(call.keys, probe, ready)
        call.verdict = verdict
        if verdict.decision == Decision.COMPUTE:
            return
        index = verdict.span or 0
        span = self.spans[index] if index < len(self.spans) else None
        if span is not None and self._span_ready(span, call.keys, like):
            call.skip_span, call.recording = span, False
        else:
            self.evaluation.fell_back = True     # nothing usable cached: compute this call

    def _span_ready(self, span: tuple, keys: tuple, like: dict, check_shapes: bool | None = None) -> bool:
        """Residuals of every run of ``span`` are cached for ``keys``; with ``check_shapes`` the
        first run's must also fit the streams in ``like`` (the inputs where the span starts)."""
        if check_shapes is None:
            check_shapes = span[0] == self.front     # ``like`` holds the span's own inputs
        runs = self.span_runs[span]
        for r in range(len(runs)):
            streams = self.stream_keys.get((span, r))
            if streams is None:
                return False
            leaves = _leaves(like) if check_shapes and r == 0 else {}
            if check_shapes and r == 1 and not self.stream_keys.get((span, 0), True):
                return self._joined_fits(span, keys, _leaves(like), streams)
            for k in streams:
                if not self.predictor.ready(_slot(span, r, k), keys, like=leaves.get(k)):
                    return False
        return True

    def _joined_fits(self, span: tuple, keys: tuple, leaves: dict, streams: tuple) -> bool:
        """The joined residual of ``span`` fits the streams where the span starts, joined."""
        join = self.joins.get(span)
        if not join or streams != (join[0],) or any(k not in leaves for k in join[1]):
            return False
        parts = [leaves[k] for k in join[1]]
        first = parts[0]
        shape = (first.shape[0], sum(p.shape[1] for p in parts)) + tuple(first.shape[2:])
        slot = _slot(span, 1, join[0])
        return self.predictor.ready(slot, keys) and self.store.fits(slot, keys, shape, first.dtype, first.device)

    def _compute_and_record(self, g: int, args: dict, run_block, call: _Call) -> dict:
        if call.per_block:
            return self._compute_and_record_per_block(g, args, run_block, call)
        # one residual per span: its output minus its input, in the model's dtype. A run starts at
        # its first block that runs in this call (the host may skip blocks: skip-layer guidance)
        starts = [key for key in self.membership[g] if key not in call.span_in]
        kept = None
        for key in starts:
            if key[1] == 1 and key[0] in call.pending and self._join_run(key, call, args):
                call.span_in[key] = {}              # started: run 0's inputs are its start
                continue
            if kept is None:
                # each input by reference once the run has seen that this block leaves it alone (Flux's
                # single blocks add into theirs in place: those are copied)
                kept = {k: (v if self.inputs_survive.get((g, k)) else v.clone(), v, g)
                        for k, v in _leaves(args).items()}
            call.span_in[key] = kept
        out = run_block(args)
        for key in self.run_ends.get(g, ()):
            if key in call.joined_in:
                self._record_joined(key, call.joined_in.pop(key), out, call)
                call.span_in.pop(key, None)
            elif key[1] == 0 and key[0] in self.joinable and self.joins.get(key[0]) is not False:
                inputs = call.span_in.pop(key, {})
                if inputs:         # recorded with the next run, or alone when the host does not join them
                    self._learn_survival(inputs)
                    call.pending[key[0]] = (inputs, out)
            else:
                self._record_span(key, call.span_in.pop(key, {}), out, call)
        return out

    def _join_run(self, key: tuple, call: _Call, args: dict) -> bool:
        """Start run 1 of a joinable span as the join of run 0's inputs; False (run 0 recorded
        alone) when this host's second block kind does not read the first kind's outputs joined."""
        span = key[0]
        inputs, out = call.pending.pop(span)
        leaves = _leaves(args)
        if span not in self.joins:
            self.joins[span] = _join_order(_leaves(out), leaves)
        join = self.joins[span]
        if join:
            name, order = join
            parts = tuple(inputs[k][0] for k in order if k in inputs)
            x = leaves.get(name)
            if len(parts) == len(order) and x is not None and _joins_to(parts, x.shape):
                call.joined_in[key] = (name, parts)
                return True
        self._record_span((span, 0), inputs, out, call)
        return False

    def _flush_pending(self, call: _Call) -> None:
        """Record the run 0 residuals whose next run did not start in this call."""
        for span, (inputs, out) in list(call.pending.items()):
            self._record_span((span, 0), inputs, out, call)
        call.pending.clear()

    def _learn_survival(self, kept: dict) -> None:
        for k, (start, ref, g) in kept.items():     # once per run and input: did the block write into it?
            if (g, k) not in self.inputs_survive:
                self.inputs_survive[(g, k)] = start is not ref and torch.equal(ref, start)

    def _record_span(self, key: tuple, kept: dict, out: dict, call: _Call) -> None:
        span, r = key
        if not kept:          # the span's first block did not run in this call (skipped by the host)
            return
        self._learn_survival(kept)
        outs = _leaves(out)
        streams = {k: None for k, v in out.items() if v is None}
        for k, v in outs.items():
            if k in kept:
                start = kept[k][0]
                streams[k] = v - start if v.shape == start.shape else None
        self.stream_keys[key] = tuple(streams)
        for k, value in streams.items():
            slot = _slot(span, r, k)
            self.predictor.record(slot, call.keys, value, self.evaluation.ctx)
            call.recorded[slot] = value

    def _record_joined(self, key: tuple, joined: tuple, out: dict, call: _Call) -> None:
        """The one residual of a joined span: the joined stream's output minus run 0's inputs,
        joined (each part subtracted into its slice of one tensor: one pass)."""
        span, r = key
        name, parts = joined
        v = _leaves(out).get(name)
        residual = None
        if v is not None and _joins_to(parts, v.shape) and all(p.dtype == v.dtype for p in parts):
            residual = torch.empty_like(v)
            offset = 0
            for p in parts:
                n = p.shape[1]
                torch.sub(v.narrow(1, offset, n), p, out=residual.narrow(1, offset, n))
                offset += n
        self.stream_keys[(span, 0)] = ()        # run 0's blocks hand their inputs on when skipped
        self.stream_keys[key] = (name,)
        slot = _slot(span, r, name)
        self.predictor.record(slot, call.keys, residual, self.evaluation.ctx)
        call.recorded[slot] = residual

    def _compute_and_record_per_block(self, g: int, args: dict, run_block, call: _Call) -> dict:
        inputs = {k: v.clone() for k, v in _leaves(args).items()}
        out = run_block(args)
        outs = _leaves(out)
        deltas = {k: None for k, v in out.items() if v is None}
        for k, v in outs.items():
            if k in inputs and v.shape == inputs[k].shape:
                deltas[k] = v.float() - inputs[k].float()
        for span, r in self.membership[g]:
            acc = call.residual_acc.setdefault((span, r), {})
            for k, delta in deltas.items():
                acc[k] = delta if delta is None or acc.get(k) is None else acc[k] + delta
            if self.run_end[(span, r)] == g:
                self.stream_keys[(span, r)] = tuple(acc)
                for k, total in acc.items():
                    value = None if total is None else total.to(outs[k].dtype if k in outs else total.dtype)
                    slot = _slot(span, r, k)
                    self.predictor.record(slot, call.keys, value, self.evaluation.ctx)
                    call.recorded[slot] = value
                del call.residual_acc[(span, r)]
        return out

    def _skip(self, g: int, args: dict, call: _Call) -> dict:
        span = call.skip_span
        r = next(r for s, r in self.membership[g] if s == span)
        streams = self.stream_keys.get((span, r), ())
        out = {k: args[k] for k in STREAM_KEYS if k in args}      # a block hands on what it does not change
        out.update((leaf.partition(".")[0], args.get(leaf.partition(".")[0])) for leaf in streams)
        if self.run_end[(span, r)] != g:
            return out
        for leaf in streams:
            name, _, index = leaf.partition(".")
            slot = _slot(span, r, leaf)
            if not index:              # the stream plus its residual: the add folded into a forecast's sum
                value = out[name]
                out[name] = None if value is None else self._onto(slot, call.keys, value)
                continue
            residual = self.predictor.predict(slot, call.keys, self.evaluation.ctx)
            parts = list(out[name] or ())            # a tuple stream: add to its element
            i = int(index)
            if residual is not None and i < len(parts) and isinstance(parts[i], torch.Tensor):
                parts[i] = parts[i] + residual.to(device=parts[i].device, dtype=parts[i].dtype)
            out[name] = tuple(parts)
        return out

    def _onto(self, slot: str, keys: tuple, value: torch.Tensor) -> torch.Tensor | None:
        """``value`` plus the slot's cached (or forecast) residual, in ``value``'s dtype."""
        ctx = self.evaluation.ctx
        if value.dtype == torch.float32:
            return self.predictor.predict_onto(slot, keys, ctx, value, 1.0)
        residual = self.predictor.predict(slot, keys, ctx)
        return None if residual is None else value + residual.to(device=value.device, dtype=value.dtype)

    # ---- end of run ----------------------------------------------------------------------
    def finish(self) -> RunStats:
        """End the run (also after an interrupt or an error): report, and free every tensor."""
        try:
            if self.evaluation is not None:
                self.end_sampler_evaluation()     # also a sampler evaluation the host left open
        finally:
            self.call = self.evaluation = None        # an unfinished or implicit call holds residuals
            try:
                self.predictor.clear()
            finally:
                self.policy.release()
        self.stats.resets.extend(self.store.resets)
        self.stats.extra["whole_passes"] = bool(self.pass_level)     # cached steps answered before the host's pass
        self.stats.finish()
        return self.stats


def _slot(span: tuple, run: int, stream: str) -> str:
    return f"{span[0]}-{span[1]}/{run}:{stream}"


def _join_order(outs: dict, inputs: dict):
    """(stream, order) when the one stream in ``inputs`` is the join of the tensors in ``outs``
    along dim 1 in that order (Flux's single blocks read cat(txt, img)); False otherwise."""
    if len(inputs) != 1 or not 1 < len(outs) <= 3:
        return False
    (name, x), = inputs.items()
    for order in itertools.permutations(outs):
        parts = [outs[k] for k in order]
        if _joins_to(parts, x.shape) and all(p.dtype == x.dtype and p.device == x.device for p in parts) \
                and torch.equal(torch.cat(parts, 1), x):
            return name, order
    return False


def _joins_to(parts, shape) -> bool:
    """``parts`` joined along dim 1 are shaped ``shape``."""
    return len(shape) >= 2 and all(p.ndim == len(shape) and p.shape[0] == shape[0] and p.shape[2:] == shape[2:]
                                   for p in parts) and sum(p.shape[1] for p in parts) == shape[1]


def _leaves(streams) -> dict:
    """The tensors of a block's streams (``STREAM_KEYS``), by name: "img" for a tensor, "img.0",
    "img.1" for the elements of a tuple stream (LTX-2's (video, audio)). Anything else is opaque."""
    out = {}
    if not isinstance(streams, dict):
        return out
    for k in STREAM_KEYS:
        v = streams.get(k)
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif isinstance(v, (tuple, list)):
            out.update((f"{k}.{i}", t) for i, t in enumerate(v) if isinstance(t, torch.Tensor))
    return out


def _owned(probe, args: dict):
    """A probe the policies may keep: a copy when it is (a view of) one of the host's block
    arguments, which the host may reuse or change; a tensor computed from them already is."""
    if not isinstance(probe, torch.Tensor):
        return probe
    ptr = probe.untyped_storage().data_ptr()
    for v in args.values():
        for t in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == ptr:
                return probe.clone()
    return probe


def _primary(streams) -> torch.Tensor | None:
    """The stream a probe reads: the first tensor of the first stream (img, else x)."""
    return next(iter(_leaves(streams).values()), None)


def _chunk_signature(x: torch.Tensor, keys) -> tuple:
    """Shape (per conditioning chunk), dtype and device of a model input."""
    n = max(len(keys), 1)
    return (x.shape[0] // n,) + tuple(x.shape[1:]), x.dtype, x.device


def _per_sample(sigma, x: torch.Tensor) -> torch.Tensor | None:
    """``sigma`` (one value, or one per sample of ``x``) shaped to scale ``x``; None when it cannot."""
    if not isinstance(sigma, torch.Tensor) or not isinstance(x, torch.Tensor) or x.ndim == 0:
        return None
    if sigma.numel() == 1:
        return sigma.reshape((1,) * x.ndim).to(device=x.device, dtype=x.dtype)
    if sigma.numel() != x.shape[0]:
        return None
    return sigma.reshape((x.shape[0],) + (1,) * (x.ndim - 1)).to(device=x.device, dtype=x.dtype)


def _uniform_sigma(sigma) -> float | None:
    """The pass's one noise level (one value, or the same for every sample); None otherwise."""
    if not isinstance(sigma, torch.Tensor) or sigma.numel() == 0:
        return None
    values = sigma.detach().flatten().tolist()      # one transfer, not one per comparison
    first = float(values[0])
    return first if all(v == values[0] for v in values) else None


def _overrides(policy, name: str) -> bool:
    """Does the policy's class replace ``Policy.name`` (a hook the engine may then skip)?"""
    return getattr(type(policy), name, None) is not getattr(Policy, name)


def _first_tensor(value):
    """A tensor as it is; a list or tuple of streams (LTX-2's model input) by its first tensor."""
    if isinstance(value, (tuple, list)):
        return next((t for t in value if isinstance(t, torch.Tensor)), None)
    return value


def _reason(decision: Decision, verdict: Verdict) -> str:
    if decision != Decision.COMPUTE:
        return ""
    return verdict.reason if verdict.decision == Decision.COMPUTE else "nothing cached for a pass"


def _fmt(v):
    return "-" if v is None else f"{v:.4g}"
