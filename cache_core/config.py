"""Validated configuration of a cache: one frozen dataclass, errors that say what to change."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

# method id -> (display name, one-line description, knob that "threshold" means, default)
METHODS: dict[str, dict] = {
    "first_block": {"label": "First-Block Cache", "knob": "threshold", "default": 0.08,
                    "needs_blocks": True,
                    "about": "compute block 0, skip the rest while its residual barely changes"},
    "dbcache": {"label": "DBCache (block-level)", "knob": "threshold", "default": 0.08, "needs_blocks": True,
                "about": "compute the front_blocks and back_blocks, cache the middle while the front residual holds"},
    "dbcache_hybrid": {"label": "DBCache hybrid (step + block)", "knob": "threshold", "default": 0.12,
                       "needs_blocks": True,
                       "about": "like dbcache, and below half the threshold skip the back blocks too"},
    "delta_dit": {"label": "Delta-DiT (block-level)", "knob": "interval", "default": 2, "needs_blocks": True,
                  "about": "every N-th step full; otherwise cache the rear blocks early, the front blocks late"},
    "deepcache": {"label": "DeepCache (U-Net)", "knob": "interval", "default": 3, "unet_only": True,
                  "about": "U-Nets: every N-th step full; otherwise reuse the deep features, run only the shallow branch"},
    "taylorseer": {"label": "TaylorSeer (forecast)", "knob": "interval", "default": 4, "predictor": "taylor",
                   "about": "every N-th step full; in between forecast the cached residual by Taylor extrapolation"},
    "hicache": {"label": "HiCache (Hermite forecast)", "knob": "interval", "default": 4, "predictor": "hermite",
                "about": "every N-th step full; in between a damped Hermite-basis forecast"},
    "foca": {"label": "FoCa (forecast-then-calibrate)", "knob": "interval", "default": 4, "predictor": "foca",
             "about": "every N-th step full; in between a BDF2 forecast calibrated by a Heun step"},
    "freqca": {"label": "FreqCa (frequency split)", "knob": "interval", "default": 4, "predictor": "freq",
               "about": "every N-th step full; reuse the low frequencies, forecast the high ones"},
    "speca": {"label": "SpeCa (speculative forecast)", "knob": "threshold", "default": 0.05, "needs_blocks": True,
              "predictor": "taylor",
              "about": "forecast every step, verify against the real first block, compute when the error is too big"},
    "teacache": {"label": "TeaCache", "knob": "threshold", "default": 0.4,
                 "about": "accumulate the polynomial-rescaled change of the first block's modulated input"},
    "magcache": {"label": "MagCache", "knob": "threshold", "default": 0.12,
                 "about": "accumulate the error predicted by the calibrated residual-magnitude curve"},
    "easycache": {"label": "EasyCache", "knob": "threshold", "default": 0.1,
                  "about": "accumulate the runtime transformation rate of the model output (paper version)"},
    "fixed_interval": {"label": "Fixed interval (FORA-style)", "knob": "interval", "default": 2,
                       "about": "compute every N-th step, reuse in between"},
    "step_mask": {"label": "Step mask (SCM)", "knob": "step_mask", "default": "medium",
                  "about": "compute exactly the steps a mask marks with 1"},
}

REDUCTIONS = ("max", "mean")
PREDICTORS = ("reuse", "taylor", "hermite", "foca", "freq")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


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
    """Everything one Diffusion Cache node asks for."""
    method: str = "first_block"
    threshold: float | None = None     # None = the method's default
    interval: int = 2
    step_mask: str = "medium"
    profile: str = "auto"
    magcache_max_skips: int = 4        # MagCache K
    magcache_retention: float = 0.1    # MagCache R: fraction of steps never skipped
    front_blocks: int = 1              # DBCache Fn
    back_blocks: int = 0               # DBCache Bn
    delta_cached_blocks: int = 0       # Delta-DiT: blocks cached per phase (0 = half of them)
    delta_boundary: float = 0.5        # Delta-DiT: progress where caching moves from rear to front blocks
    deepcache_depth: int = 0           # DeepCache: deepest input block still recomputed (0 = only the first)
    deepcache_mode: str = "uniform"    # DeepCache: "uniform" or "non-uniform" full-step schedule
    predictor: str = "auto"            # what cached steps return: auto (the method's), reuse, taylor, ...
    predictor_order: int = 1           # Taylor / Hermite order
    predictor_axis: str = "step"       # forecast along the step index or along sigma
    reduce: str = "max"                # how per-branch metrics combine into one decision
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    verbose: bool = False

    def __post_init__(self):
        _check(self.method in METHODS,
               f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.threshold is not None:
            _check(self.threshold >= 0.0,
                   f"threshold must be 0 or more (larger = more reuse); got {self.threshold}")
        _check(self.interval >= 1, f"interval must be 1 or more (1 = never reuse); got {self.interval}")
        _check(self.magcache_max_skips >= 0, f"magcache_max_skips must be 0 or more; got {self.magcache_max_skips}")
        _check(0.0 <= self.magcache_retention < 1.0,
               f"magcache_retention must be in [0, 1); got {self.magcache_retention}")
        _check(self.reduce in REDUCTIONS, f"reduce must be one of {REDUCTIONS}; got {self.reduce!r}")
        _check(self.front_blocks >= 1, f"front_blocks must be 1 or more (its residual is the probe); got {self.front_blocks}")
        _check(self.back_blocks >= 0, f"back_blocks must be 0 or more; got {self.back_blocks}")
        _check(self.delta_cached_blocks >= 0,
               f"delta_cached_blocks must be 0 (half the blocks) or more; got {self.delta_cached_blocks}")
        _check(0.0 <= self.delta_boundary <= 1.0, f"delta_boundary must be in [0, 1]; got {self.delta_boundary}")
        _check(self.predictor in ("auto",) + PREDICTORS,
               f"predictor must be one of auto, {', '.join(PREDICTORS)}; got {self.predictor!r}")
        _check(1 <= self.predictor_order <= 4, f"predictor_order must be 1 to 4; got {self.predictor_order}")
        _check(self.predictor_axis in ("step", "sigma"),
               f"predictor_axis must be 'step' or 'sigma'; got {self.predictor_axis!r}")
        _check(self.deepcache_depth >= 0, f"deepcache_depth must be 0 or more; got {self.deepcache_depth}")
        _check(self.deepcache_mode in ("uniform", "non-uniform"),
               f"deepcache_mode must be 'uniform' or 'non-uniform'; got {self.deepcache_mode!r}")
        if self.method == "step_mask":
            from .policies.interval import parse_step_mask
            parse_step_mask(self.step_mask, 28)  # raises with a message on a bad mask

    @property
    def effective_predictor(self) -> str:
        if self.predictor != "auto":
            return self.predictor
        return METHODS[self.method].get("predictor", "reuse")

    @property
    def effective_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        default = METHODS[self.method]["default"]
        return float(default) if isinstance(default, (int, float)) else 0.0

    def with_overrides(self, **changes) -> "CacheConfig":
        return replace(self, **changes)

    def describe(self) -> str:
        parts = [f"method={self.method}"]
        knob = METHODS[self.method]["knob"]
        if knob == "threshold":
            parts.append(f"threshold={self.effective_threshold:g}")
        elif knob == "interval":
            parts.append(f"interval={self.interval}")
        elif knob == "step_mask":
            parts.append(f"step_mask={self.step_mask}")
        if self.method.startswith("dbcache"):
            parts.append(f"F{self.front_blocks}B{self.back_blocks}")
        if self.effective_predictor != "reuse":
            parts.append(f"predictor={self.effective_predictor}(order {self.predictor_order}, {self.predictor_axis})")
        s = self.schedule
        parts.append(f"window={s.start_percent:g}-{s.end_percent:g}")
        parts.append(f"warmup={s.warmup_steps} last={s.last_steps_computed}")
        if s.max_consecutive_cached:
            parts.append(f"max_consecutive={s.max_consecutive_cached}")
        return " ".join(parts)


def config_from_inputs(**inputs) -> CacheConfig:
    """Build a CacheConfig from flat node inputs (schedule knobs included)."""
    schedule_names = {f.name for f in fields(ScheduleConfig)}
    schedule = ScheduleConfig(**{k: v for k, v in inputs.items() if k in schedule_names})
    rest = {k: v for k, v in inputs.items() if k not in schedule_names}
    return CacheConfig(schedule=schedule, **rest)
