"""What a method is made of: its knobs (node inputs), its config, its policy, its docs.

A method module defines one ``Method``: a small frozen config dataclass whose
``__post_init__`` says what to change, the policy that decides when to compute, the
predictor a skipped step uses by default, the knobs the node shows for it (with the
meaning and useful range *for this method*), its line of documentation and its
benchmark sweep. ``cache_core.methods`` lists them; the node, the README's method table,
the benchmark and the tests read that list.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)``; the message says what to change."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class Knob:
    """One node input, as one method reads it."""
    name: str
    kind: str                       # "float" | "int" | "combo" | "string" | "bool"
    default: Any
    tooltip: str                    # what it means for this method, and its useful range
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple = ()
    advanced: bool = False          # behind the node's "advanced" toggle


@dataclass(frozen=True)
class Method:
    id: str
    label: str
    family: str                     # README: static, dynamic, predictive, ...
    cached: str                     # README: what a skipped step reuses
    computes_when: str              # README: when a step is computed
    about: str                      # one line: what it does
    config: type                    # frozen dataclass of the method's own settings
    policy: Callable                # (config, ctx: PolicyContext) -> Policy
    knobs: tuple = ()               # the method's own knobs; shared ones come from COMMON_KNOBS
    predictor: str = "reuse"        # what a skipped step returns unless the user picks another
    calibration: str = "none"       # README column
    needs_blocks: bool = False      # block-level: falls back to ``fallback`` without block hooks
    fallback: str | None = None
    unet_only: bool = False
    needs_profile: str | None = None    # "teacache" / "magcache": the profile data it needs
    sweep: dict = field(default_factory=dict)   # benchmark: {"knob", "full", "quick", "inputs", "extra"}

    def make_config(self, inputs: dict):
        """This method's config from flat node inputs (other methods' inputs are ignored).

        A knob whose value is its "0 = the method's default" sentinel keeps the default.
        """
        own = {f.name for f in fields(self.config)}
        values = {}
        for k, v in inputs.items():
            if k not in own:
                continue
            if v is None or (k in ZERO_MEANS_DEFAULT and v == 0):
                continue
            values[k] = v
        return self.config(**values)

    def all_knobs(self) -> tuple:
        """Own knobs first, then the shared ones this method does not redefine."""
        names = {k.name for k in self.knobs}
        return tuple(self.knobs) + tuple(k for k in COMMON_KNOBS if k.name not in names)

    def describe(self, config) -> str:
        if hasattr(config, "describe"):
            return config.describe()
        return " ".join(f"{f.name}={_fmt(getattr(config, f.name))}" for f in fields(config))


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may need besides its config."""
    profile: Any = None             # cache_core.profiles.Profile, for methods that need one
    reduce: str = "max"             # how per-sample metrics combine
    predictor_order: int = 1
    predictor_axis: str = "step"
    schedule: Any = None            # the shared guards (config.ScheduleConfig): steps always computed


# node inputs whose value 0 means "this method's default"
ZERO_MEANS_DEFAULT = {"threshold"}


def threshold_knob(default: float, meaning: str, useful: str) -> Knob:
    return Knob("threshold", "float", 0.0, f"{meaning} Useful: {useful}; 0 = the default {default:g}. "
                                           "Larger = faster, lower quality.", 0.0, 10.0, 0.005)


def interval_knob(default: int, meaning: str = "compute every N-th step, reuse in between") -> Knob:
    return Knob("interval", "int", 2, f"{meaning}. Useful: 2-6 (this method's default {default}). "
                                      "Larger = faster, lower quality.", 1, 100)


ORDER_KNOB = Knob("predictor_order", "int", 1, "Order of the forecast: 1 = linear (steadiest), 2-4 follow "
                                               "curvature but can overshoot at long intervals.", 1, 4)
AXIS_KNOB = Knob("predictor_axis", "combo", "step", "Forecast along the step index or along sigma (the noise "
                                                    "level); sigma helps on schedules with uneven steps.",
                 choices=("step", "sigma"), advanced=True)

COMMON_KNOBS: tuple = (
    Knob("start_percent", "float", 0.0, "Caching starts at this fraction of the denoising (by sigma). "
                                        "Useful: 0-0.3.", 0.0, 1.0, 0.01, advanced=True),
    Knob("end_percent", "float", 1.0, "Caching stops at this fraction of the denoising (by sigma). "
                                      "Useful: 0.8-1.", 0.0, 1.0, 0.01, advanced=True),
    Knob("warmup_steps", "int", 1, "The first N steps of each sampler run are always computed. Useful: 1-4.",
         0, 1000, advanced=True),
    Knob("last_steps_computed", "int", 1, "The last N steps of each sampler run are always computed. "
                                          "Useful: 1-2.", 0, 1000, advanced=True),
    Knob("max_consecutive_cached", "int", 0, "Never cache more than N steps in a row (0 = no limit).",
         0, 1000, advanced=True),
    Knob("max_cached_steps", "int", 0, "Never cache more than N steps in a run (0 = no limit).", 0, 1000,
         advanced=True),
    Knob("predictor", "combo", "auto", "What skipped steps return. auto = the method's own; reuse = the last "
                                       "computed value; taylor / hermite / foca / freq = a forecast from the "
                                       "computed ones; spectrum = a Chebyshev ridge fit over all of them.",
         choices=("auto", "reuse", "taylor", "hermite", "foca", "freq", "spectrum"), advanced=True),
    Knob("predictor_order", "int", 1, ORDER_KNOB.tooltip, 1, 4, advanced=True),
    AXIS_KNOB,
    Knob("verbose", "bool", False, "Log every step's decision and metric.", advanced=True),
    Knob("cfg_cache_interval", "int", 0, "CFG-Cache (FasterCache): run the unconditional branch only every N-th "
                                         "step (while t < 641) and rebuild it in between from the conditional "
                                         "output and the cached, frequency-compensated difference; works with "
                                         "every method. 0 = off. Useful: 2-5.", 0, 100, advanced=True),
)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_next(config, cls) -> None:
    """The next config base's checks (configs combine bases such as ``CacheLevelConfig``)."""
    after = getattr(super(cls, config), "__post_init__", None)
    if after is not None:
        after()


@dataclass(frozen=True)
class ThresholdConfig:
    """A method with one threshold; subclasses set its default."""
    threshold: float = 0.1

    def __post_init__(self):
        check(self.threshold >= 0, f"threshold must be 0 or more (larger = more reuse); got {self.threshold}")
        _check_next(self, ThresholdConfig)


@dataclass(frozen=True)
class IntervalConfig:
    """A method with a compute interval; subclasses set its default."""
    interval: int = 2

    def __post_init__(self):
        check(self.interval >= 1, f"interval must be 1 or more (1 = never reuse); got {self.interval}")
        _check_next(self, IntervalConfig)


CACHE_LEVELS = ("output", "blocks")
CACHE_LEVEL_KNOB = Knob(
    "cache_level", "combo", "output",
    "What a skipped step rebuilds. output = the model's whole output (every layer skipped, the embeddings and "
    "the final layer too); blocks = the block span's residual (the embeddings and the final layer still run). "
    "A model call that carries ControlNet residuals caches the block span either way, so that they apply "
    "fresh.", choices=CACHE_LEVELS, advanced=True)


@dataclass(frozen=True)
class CacheLevelConfig:
    """A method whose decisions need nothing from inside the model call (a schedule, a plan, its own
    forecast's error) can skip the whole call: ``cache_level``."""
    cache_level: str = "output"

    def __post_init__(self):
        check(self.cache_level in CACHE_LEVELS,
              f"cache_level must be one of {', '.join(CACHE_LEVELS)}; got {self.cache_level!r}")
        _check_next(self, CacheLevelConfig)
