"""Host-agnostic core of Diffusion Cache: configs, decisions, policies, predictors,
metrics, calibration and run statistics. Plain PyTorch; never imports ComfyUI."""
from .config import (METHODS, CacheConfig, ScheduleConfig, config_from_inputs)  # noqa: F401
from .decisions import Decision, StepContext  # noqa: F401
