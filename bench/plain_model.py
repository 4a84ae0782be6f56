"""The comparisons for bench.serving: the same network and preprocessing with one Keras
`model.predict` call per request instead of the compiled tf.function, and the floor: a
pyfunc that does nothing but answer a constant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from pipeline.forecaster import PriceForecaster


class Constant(PythonModel):
    """What serving costs when the model costs nothing: the same server, the same body."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame([{"forecast_close": 1.0}])


class PredictPerRequest(PriceForecaster):
    def load(self, keras_path: Path, spec_path: Path) -> None:
        super().load(keras_path, spec_path)
        net = self.net
        self._one = lambda x: net.predict(x, verbose=0)
