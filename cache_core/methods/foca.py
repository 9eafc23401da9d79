"""FoCa: a BDF2 forecast calibrated by a Heun step."""
from ._forecast import forecast_method

METHOD = forecast_method("foca", "FoCa (forecast-then-calibrate)", "foca",
                         "BDF2 forecast calibrated by a Heun step",
                         "every N-th step full; in between a BDF2 forecast calibrated by a Heun step", order=False)
