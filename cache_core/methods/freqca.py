"""FreqCa: reuse the low frequencies, forecast the high ones."""
from ._forecast import forecast_method

METHOD = forecast_method("freqca", "FreqCa (frequency split)", "freq", "low band reused, high band forecast",
                         "every N-th step full; reuse the low frequencies, forecast the high ones")
