"""Decision rules: one module per family. A policy says *when* to compute."""
from .base import Policy, Verdict  # noqa: F401
from .factory import make_policy  # noqa: F401
