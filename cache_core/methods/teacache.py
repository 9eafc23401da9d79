"""TeaCache: accumulate the polynomial-rescaled change of block 0's modulated input."""
from dataclasses import dataclass

from ..policies.teacache import TeaCachePolicy
from .spec import Knob, Method, ThresholdConfig, threshold_knob

PROFILE_KNOB = Knob("profile", "combo", "auto", "The calibration profile. auto = a profile you calibrated for this "
                                                "architecture, else the published one.", choices=("auto",))


@dataclass(frozen=True)
class TeaCacheConfig(ThresholdConfig):
    threshold: float = 0.4


def make_policy(c, ctx):
    coefficients = ctx.profile.teacache_coefficients if ctx.profile is not None else None
    if not coefficients:
        raise ValueError("TeaCache needs a profile with a polynomial; pick a published profile "
                         "or calibrate this model with the Diffusion Cache Calibrate node")
    # the published fits are used as their code uses them: P as it is, |P| on the ComfyUI
    # node's Flux path (the Flux fit is positive anyway); a fit of your own adds |P|
    profile = ctx.profile
    signed = profile.source == "published" and not profile.name.startswith("flux")
    return TeaCachePolicy(c.threshold, coefficients, ctx.reduce, signed=signed)


METHOD = Method(
    "teacache", "TeaCache", "dynamic", "stack residual",
    "accumulated polynomial-rescaled change of block 0's modulated input ≥ threshold",
    "accumulate the polynomial-rescaled change of the first block's modulated input",
    TeaCacheConfig, make_policy,
    knobs=(threshold_knob(0.4, "Accumulated rescaled change of block 0's modulated input that triggers a full "
                               "step.", "0.05-0.6 (published fits: 0.25 ≈ 1.5x, 0.4 ≈ 1.8x, 0.6 ≈ 2x on Flux)"),
           PROFILE_KNOB),
    calibration="published polynomial, or your own", needs_profile="teacache",
    sweep={"knob": "threshold", "full": [0.02, 0.05, 0.1, 0.2, 0.4], "quick": [0.05, 0.2],
           "inputs": {"profile": "<calibrated>"}},
)
