"""Build the policy a config asks for."""
from __future__ import annotations

from ..config import CacheConfig
from ..profiles import Profile
from .base import Policy
from .deepcache import DeepCachePolicy
from .delta_dit import DeltaDiTPolicy
from .easycache import EasyCachePolicy
from .first_block import FirstBlockPolicy, FrontResidualPolicy
from .interval import FixedIntervalPolicy, StepMaskPolicy
from .magcache import MagCachePolicy
from .speculative import SpeculativePolicy
from .teacache import TeaCachePolicy


def make_policy(config: CacheConfig, profile: Profile | None = None) -> Policy:
    m = config.method
    t = config.effective_threshold
    if m == "first_block":
        return FirstBlockPolicy(t, config.reduce)
    if m in ("dbcache", "dbcache_hybrid"):
        return FrontResidualPolicy(t, config.front_blocks, config.back_blocks, config.reduce,
                                   hybrid=m == "dbcache_hybrid", name=m)
    if m == "delta_dit":
        return DeltaDiTPolicy(config.interval, config.delta_cached_blocks, config.delta_boundary)
    if m == "deepcache":
        return DeepCachePolicy(config.interval, config.deepcache_depth, config.deepcache_mode)
    if m == "teacache":
        coeffs = profile.teacache_coefficients if profile and profile.teacache_coefficients else None
        if coeffs is None:
            raise ValueError("TeaCache needs a profile with a polynomial; pick a published profile "
                             "or calibrate this model with the Diffusion Cache Calibrate node")
        return TeaCachePolicy(t, coeffs, config.reduce)
    if m == "magcache":
        if profile is None or profile.magnitude is None:
            raise ValueError("MagCache needs a magnitude profile; pick 'flux' for Flux models or "
                             "calibrate this model with the Diffusion Cache Calibrate node")
        return MagCachePolicy(t, profile.magnitude, config.magcache_max_skips, config.magcache_retention)
    if m == "easycache":
        return EasyCachePolicy(t)
    if m in ("fixed_interval", "taylorseer", "hicache", "foca", "freqca"):
        policy = FixedIntervalPolicy(config.interval)
        policy.name = m
        return policy
    if m == "speca":
        return SpeculativePolicy(t, config.predictor_order, config.predictor_axis, config.reduce)
    if m == "step_mask":
        return StepMaskPolicy(config.step_mask)
    raise ValueError(f"unknown method {m!r}")
