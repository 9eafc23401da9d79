"""Spectrum: forecast the cached feature by a Chebyshev ridge regression over every computed step."""
from dataclasses import dataclass

from ..policies.interval import AdaptiveWindowPolicy
from .spec import CACHE_LEVEL_KNOB, CacheLevelConfig, Knob, Method, check


@dataclass(frozen=True)
class SpectrumConfig(CacheLevelConfig):
    spectrum_alpha: float = 0.75
    spectrum_window: int = 2
    spectrum_warmup: int = 5

    def __post_init__(self):
        check(self.spectrum_alpha >= 0, f"spectrum_alpha must be 0 or more; got {self.spectrum_alpha}")
        check(self.spectrum_window >= 1, f"spectrum_window must be 1 or more; got {self.spectrum_window}")
        check(self.spectrum_warmup >= 0, f"spectrum_warmup must be 0 or more; got {self.spectrum_warmup}")
        super().__post_init__()


METHOD = Method(
    "spectrum", "Spectrum (Chebyshev forecast)", "predictive", "model output (block residual with a ControlNet), forecast by a Chebyshev ridge fit",
    "after the warm-up, every floor(N0 + k·alpha)-th step (intervals grow)",
    "forecast the cached residual by a Chebyshev ridge regression (degree 4, lambda 0.1) blended with the "
    "linear term; compute at intervals that grow by alpha",
    SpectrumConfig, lambda c, ctx: AdaptiveWindowPolicy(c.spectrum_window, c.spectrum_alpha, c.spectrum_warmup),
    knobs=(Knob("spectrum_alpha", "float", 0.75, "alpha: the interval between computed steps grows by this after "
                                                 "each one. Published: 0.75 (14 of 50 steps, about 3.5x), 3.0 (10 of "
                                                 "50, about 5x). Larger = faster, lower quality.", 0.0, 20.0, 0.05),
           Knob("spectrum_window", "int", 2, "N0: the first interval after the warm-up. Useful: 2-3.", 1, 100,
                advanced=True),
           Knob("spectrum_warmup", "int", 5, "Steps computed before forecasting starts (published 5; at most a "
                                             "quarter of the run). Useful: 3-5.", 0, 100, advanced=True),
           CACHE_LEVEL_KNOB),
    predictor="spectrum",
    sweep={"knob": "spectrum_alpha", "full": [0.5, 0.75, 1.5, 3.0], "quick": [0.75, 3.0]},
)
