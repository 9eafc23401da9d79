"""Build the policy a config asks for, through the method's registry entry."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Policy

if TYPE_CHECKING:
    from ..config import CacheConfig
    from ..profiles import Profile


def make_policy(config: "CacheConfig", profile: "Profile | None" = None) -> Policy:
    from ..methods import PolicyContext
    context = PolicyContext(profile=profile, reduce=config.reduce, predictor_order=config.predictor_order,
                            predictor_axis=config.predictor_axis, schedule=config.schedule)
    return config.spec.policy(config.params, context)
