"""HiCache: a damped Hermite-basis forecast of the cached residual."""
from ._forecast import forecast_method

METHOD = forecast_method("hicache", "HiCache (Hermite forecast)", "hermite",
                         "as taylorseer, with a damped Hermite basis",
                         "every N-th step full; in between a damped Hermite-basis forecast")
