"""TaylorSeer: forecast the cached residual by Taylor (Newton) extrapolation."""
from ._forecast import forecast_method

METHOD = forecast_method("taylorseer", "TaylorSeer (forecast)", "taylor",
                         "model output (block residual with a ControlNet), forecast by Taylor (Newton) extrapolation",
                         "every N-th step full; in between forecast the cached residual by Taylor extrapolation",
                         sweep_quick=(3, 6), sweep_extra=({"interval": 4, "predictor_order": 2},))
