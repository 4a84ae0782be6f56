"""Where registered versions logged before the subpackages find their model class.

Their pickled pyfunc names `pipeline.forecaster.PriceForecaster`; it lives in
pipeline/forecasting/forecaster.py now, and this name must keep loading them.
"""

from pipeline.forecasting.forecaster import PriceForecaster

__all__ = ["PriceForecaster"]
