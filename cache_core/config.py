"""Validated configuration of a cache: the method's own config, the shared guards, the predictor.

Each method's settings live in its module (``cache_core/methods/<id>.py``); this module
holds what every method shares. Errors say what to change.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from . import methods as _methods
from .methods.spec import check as _check
from .predictors import PREDICTORS

METHODS = _methods.METHODS
REDUCTIONS = ("max", "mean")


@dataclass(frozen=True)
class ScheduleConfig:
    """Guards shared by every method: when caching may happen at all."""
    start_percent: float = 0.0
    end_percent: float = 1.0
    warmup_steps: int = 1
    last_steps_computed: int = 1
    max_consecutive_cached: int = 0  # 0 = unlimited
    max_cached_steps: int = 0        # 0 = unlimited

    def __post_init__(self):
        _check(0.0 <= self.start_percent <= 1.0,
               f"start_percent must be in [0, 1]; got {self.start_percent}")
        _check(0.0 <= self.end_percent <= 1.0,
               f"end_percent must be in [0, 1]; got {self.end_percent}")
        _check(self.start_percent < self.end_percent,
               f"start_percent ({self.start_percent}) must be below end_percent ({self.end_percent}); "
               "lower start_percent or raise end_percent")
        _check(self.warmup_steps >= 0, f"warmup_steps must be 0 or more; got {self.warmup_steps}")
        _check(self.last_steps_computed >= 0,
               f"last_steps_computed must be 0 or more; got {self.last_steps_computed}")
        _check(self.max_consecutive_cached >= 0,
               f"max_consecutive_cached must be 0 (unlimited) or more; got {self.max_consecutive_cached}")
        _check(self.max_cached_steps >= 0,
               f"max_cached_steps must be 0 (unlimited) or more; got {self.max_cached_steps}")


@dataclass(frozen=True)
class CacheConfig:
    """Everything one Diffusion Cache node asks for.

    ``params`` is the method's own config (``METHODS[method].config``); build a whole
    config from flat node inputs with ``CacheConfig.build(method=..., **inputs)``.
    """
    method: str = "first_block"
    params: Any = None                 # None = the method's defaults
    predictor: str = "auto"            # what cached steps return: auto (the method's), reuse, taylor, ...
    predictor_order: int = 1           # Taylor / Hermite order
    predictor_axis: str = "step"       # forecast along the step index or along sigma
    reduce: str = "max"                # how per-sample metrics combine into one decision
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    verbose: bool = False
    cfg_cache_interval: int = 0        # CFG-Cache: run the uncond branch every N-th step (0 = off)

    def __post_init__(self):
        spec = _methods.get(self.method)
        if self.params is None:
            object.__setattr__(self, "params", spec.config())
        _check(isinstance(self.params, spec.config),
               f"{self.method} takes a {spec.config.__name__}; got {type(self.params).__name__}")
        _check(self.reduce in REDUCTIONS, f"reduce must be one of {REDUCTIONS}; got {self.reduce!r}")
        _check(self.predictor in ("auto",) + PREDICTORS,
               f"predictor must be one of auto, {', '.join(PREDICTORS)}; got {self.predictor!r}")
        _check(1 <= self.predictor_order <= 4, f"predictor_order must be 1 to 4; got {self.predictor_order}")
        _check(self.predictor_axis in ("step", "sigma"),
               f"predictor_axis must be 'step' or 'sigma'; got {self.predictor_axis!r}")
        _check(self.cfg_cache_interval >= 0,
               f"cfg_cache_interval must be 0 (off) or more; got {self.cfg_cache_interval}")

    @classmethod
    def build(cls, method: str = "first_block", schedule: ScheduleConfig | None = None, **inputs) -> "CacheConfig":
        """A config from flat inputs, as the node has them; inputs other methods read are ignored."""
        spec = _methods.get(method)
        schedule_names = {f.name for f in fields(ScheduleConfig)}
        _methods.check_ranges(inputs, skip=schedule_names)
        if schedule is None:
            schedule = ScheduleConfig(**{k: v for k, v in inputs.items() if k in schedule_names})
        shared = {k: inputs[k] for k in ("predictor", "predictor_order", "predictor_axis", "reduce", "verbose",
                                          "cfg_cache_interval")
                  if k in inputs and inputs[k] is not None}
        return cls(method=method, params=spec.make_config(inputs), schedule=schedule, **shared)

    @property
    def spec(self):
        return _methods.get(self.method)

    @property
    def effective_predictor(self) -> str:
        return self.spec.predictor if self.predictor == "auto" else self.predictor

    @property
    def effective_threshold(self) -> float | None:
        return getattr(self.params, "threshold", None)

    def with_method(self, method: str, inputs: dict) -> "CacheConfig":
        """The same guards and predictor settings, for another method read from the same inputs."""
        spec = _methods.get(method)
        return CacheConfig(method=method, params=spec.make_config(inputs), predictor=self.predictor,
                           predictor_order=self.predictor_order, predictor_axis=self.predictor_axis,
                           reduce=self.reduce, schedule=self.schedule, verbose=self.verbose,
                           cfg_cache_interval=self.cfg_cache_interval)

    def describe(self) -> str:
        parts = [f"method={self.method}", self.spec.describe(self.params)]
        if self.effective_predictor != "reuse":
            parts.append(f"predictor={self.effective_predictor}(order {self.predictor_order}, {self.predictor_axis})")
        s = self.schedule
        parts.append(f"window={s.start_percent:g}-{s.end_percent:g}")
        parts.append(f"warmup={s.warmup_steps} last={s.last_steps_computed}")
        if s.max_consecutive_cached:
            parts.append(f"max_consecutive={s.max_consecutive_cached}")
        if self.cfg_cache_interval:
            parts.append(f"cfg_cache_interval={self.cfg_cache_interval}")
        return " ".join(p for p in parts if p)


def config_from_inputs(**inputs) -> CacheConfig:
    """Build a CacheConfig from flat node inputs (schedule knobs included)."""
    return CacheConfig.build(**inputs)
